//! The pair's named transitions: the only code that writes who serves and whose data is the
//! truth.
//!
//! `status.activeMember`, `status.authoritativeMember`, `status.synchronousStandby` and each
//! member's `initialized`, `stale` and `fenced` are written here and nowhere else; reading them
//! is free everywhere. A test below (`only_transitions_write_member_state`) reads every source
//! file of the core and fails when another one writes them, so the rule cannot erode silently.
//!
//! Each transition sets the fields that change together and checks, in debug builds (every
//! test), the safety rule it touches (numbered as in the module docs of `pair`):
//!
//! | transition              | what happened                                | checks         |
//! |-------------------------|----------------------------------------------|----------------|
//! | [`Cx::retire`]          | a failover or switchover passed its point of no return: the old active member is stale and (streaming) fenced, nothing serves, the synchronous promise is void | 3: it is the incumbent being replaced |
//! | [`Cx::hand_over`]       | the promotion completed: active and authoritative move | 1, 3 |
//!
//! Between passes the transitions keep: the active member, when there is one, is the
//! authoritative one; the authoritative member is stale only while a failover or switchover
//! hands over away from it (between [`Cx::retire`] and [`Cx::hand_over`]).

use crate::crd::Member;

use super::context::Cx;

impl Cx<'_> {
    /// A failover or switchover away from `from` passed its point of no return. From here on
    /// `from`'s data is not the truth (what it wrote after the fork is discarded by its rejoin):
    /// nothing serves until [`Cx::hand_over`], the synchronous promise (made about the other
    /// member as `from`'s standby) is void, and `from` is stale and, streaming, fenced (scaled
    /// down) until it is re-aligned. It never serves again before that.
    ///
    /// Rule 3: fencing `from` is what lets the other member be promoted, so `from` must be the
    /// member clients were served by (the active one, or the authoritative one while nothing
    /// served).
    pub(crate) fn retire(&mut self, from: Member) {
        debug_assert_eq!(
            self.status
                .active_member
                .or(self.status.authoritative_member),
            Some(from),
            "retiring {from}, which is not the incumbent"
        );
        self.status.active_member = None;
        self.status.synchronous_standby = None;
        let streaming = self.streaming();
        let st = self.member_mut(from);
        st.stale = true;
        st.fenced = streaming;
    }

    /// A failover or switchover from `from` to `to` completed its promotion (external mode: no
    /// promotion, both members hold the data): `to` is active and authoritative.
    ///
    /// Rule 1: `to` is neither stale nor fenced. Rule 3: streaming, `from` was retired (stale
    /// and fenced) before, so it cannot serve alongside `to`; the promotion itself waited until
    /// it was confirmed down (`promotion.rs`).
    pub(crate) fn hand_over(&mut self, from: Member, to: Member) {
        debug_assert_ne!(from, to, "handing over from {from} to itself");
        let t = self.member(to);
        debug_assert!(
            !t.stale && !t.fenced,
            "handing over to {to} while it is stale or fenced"
        );
        if self.streaming() {
            let f = self.member(from);
            debug_assert!(
                f.stale && f.fenced,
                "handing over to {to} while {from} is not fenced"
            );
        }
        self.status.active_member = Some(to);
        self.status.authoritative_member = Some(to);
        self.check_invariants();
    }

    /// Bootstrap gave `m` its first data (an `initdb`, or a `clone` from the authoritative
    /// member). The first member initialised becomes the authoritative one. External mode: a
    /// member initialised on its own holds none of the data yet, so it is stale until a `sync`
    /// re-aligns it.
    ///
    /// Rule 2: the authoritative member is never stale (streaming, a member other than the
    /// authoritative one is initialised only by cloning it).
    pub(crate) fn bootstrap_initialized(&mut self, m: Member) {
        let auth = *self.status.authoritative_member.get_or_insert(m);
        let streaming = self.streaming();
        let st = self.member_mut(m);
        st.initialized = true;
        st.fenced = false;
        st.stale = !streaming && m != auth;
        debug_assert!(
            !self.member(auth).stale,
            "bootstrap left the authoritative member {auth} stale"
        );
        self.check_invariants();
    }

    /// `m`'s data directory is gone: it holds nothing, so it is neither initialised nor stale
    /// (a clone, or a restore, gives it data again). No rule to check: a member without data
    /// never serves, is never promoted, and is never copied from.
    pub(crate) fn data_lost(&mut self, m: Member) {
        let st = self.member_mut(m);
        st.initialized = false;
        st.stale = false;
    }

    /// Re-aligning `n` from the authoritative member starts: `n` is stale and, streaming, fenced
    /// (scaled down for its `rejoin` Job).
    ///
    /// Rule 2: data flows only from the authoritative member to the other, so `n` is the other
    /// one; rule 1: `n` is not the active member.
    pub(crate) fn mark_stale(&mut self, n: Member) {
        debug_assert_eq!(
            self.status.authoritative_member,
            Some(n.other()),
            "re-aligning {n}, which is not the non-authoritative member"
        );
        debug_assert_ne!(
            self.status.active_member,
            Some(n),
            "marking the active member {n} stale"
        );
        let streaming = self.streaming();
        let st = self.member_mut(n);
        st.stale = true;
        st.fenced = streaming;
    }

    /// The `rejoin` (or `clone`) of `n` from the authoritative member succeeded: its data is
    /// current and it starts again, as a standby.
    ///
    /// Rule 2: the data came from the authoritative member, which `n` is not.
    pub(crate) fn realigned(&mut self, n: Member) {
        debug_assert_eq!(
            self.status.authoritative_member,
            Some(n.other()),
            "{n} re-aligned from a member that is not authoritative"
        );
        let st = self.member_mut(n);
        st.stale = false;
        st.fenced = false;
    }

    /// External mode: after a `sync` into `n`, a `check` found it equal to the authoritative
    /// member: `n` is not stale anymore. `fenced` is left as it is: an external re-alignment
    /// never fences (the `sync` Job writes into the running member).
    ///
    /// Rule 2: it was compared with the authoritative member, which `n` is not.
    pub(crate) fn verified_equal(&mut self, n: Member) {
        debug_assert_eq!(
            self.status.authoritative_member,
            Some(n.other()),
            "{n} compared with a member that is not authoritative"
        );
        self.member_mut(n).stale = false;
    }

    /// No member serves clients any more (the active one may not serve, or both members are
    /// down); the authoritative member stays, as the one to serve again first. Always safe:
    /// rule 1 asks for at most one member, and none is one.
    pub(crate) fn stop_serving(&mut self) {
        self.status.active_member = None;
    }

    /// While nothing served, the authoritative member `m` answers again as a primary with its
    /// data: it serves clients again.
    ///
    /// Rule 1: `m` may serve (initialised, neither stale nor fenced); rule 2: it is the
    /// authoritative member (the other one may hold old data).
    pub(crate) fn resume_serving(&mut self, m: Member) {
        debug_assert_eq!(
            self.status.authoritative_member,
            Some(m),
            "serving {m}, which is not authoritative"
        );
        debug_assert!(self.may_serve(m), "serving {m} while it may not serve");
        self.status.active_member = Some(m);
        self.check_invariants();
    }

    /// The active member reports its standby as `sync`, and the standby has replayed all of the
    /// active member's WAL: from now on every acknowledged commit is on `standby`, which
    /// `status.synchronousStandby` promises (see `synchronous.rs`).
    ///
    /// Rule 4: a synchronous failover goes only to the promised standby, so the promise is made
    /// only for the active member's standby, and only while it may serve.
    pub(crate) fn make_sync_promise(&mut self, standby: Member) {
        debug_assert_eq!(
            self.status.active_member,
            Some(standby.other()),
            "promising {standby}, which is not the active member's standby"
        );
        debug_assert!(
            self.may_serve(standby),
            "promising {standby} while it may not serve"
        );
        self.status.synchronous_standby = Some(standby);
    }

    /// Commits do not (or will soon not) wait for the standby: the synchronous promise is off.
    /// Always safe: a promise missing while it holds only refuses a failover; the order that
    /// matters (withdraw and persist first, stop waiting after) is `synchronous::manage`'s.
    pub(crate) fn withdraw_sync_promise(&mut self) {
        self.status.synchronous_standby = None;
    }

    /// Invariants every transition leaves behind.
    fn check_invariants(&self) {
        debug_assert!(
            self.status.active_member.is_none()
                || self.status.active_member == self.status.authoritative_member,
            "active {:?} is not the authoritative {:?}",
            self.status.active_member,
            self.status.authoritative_member
        );
    }
}
