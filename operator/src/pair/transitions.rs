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
