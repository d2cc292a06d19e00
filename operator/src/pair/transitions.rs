//! The pair's named transitions: the only code that writes who serves and whose data is the
//! truth.
//!
//! `status.activeMember`, `status.authoritativeMember`, `status.synchronousStandby` and each
//! member's `initialized`, `stale` and `fenced` are written here and nowhere else in the
//! operator; reading them is free everywhere. A new state change gets a transition here, named
//! after what happened, rather than a field write at its call site: a test below
//! (`only_transitions_write_member_state`) reads every source file of the crate and fails when
//! another one writes these fields, so the rule cannot erode silently.
//!
//! Each transition sets the fields that change together and checks, in debug builds (so in
//! every test), the safety rule it touches (numbered as in the `pair` module docs):
//! - [`Cx::bootstrap_initialized`]: an `initdb` or `clone` gave a member data; the first one
//!   becomes authoritative. Rule 2: the authoritative member is not stale.
//! - [`Cx::data_lost`]: a member's data directory is gone. No rule: it never serves, is never
//!   promoted, never copied from.
//! - [`Cx::mark_stale`]: re-alignment starts; stale, and fenced when streaming. Rules 1 and 2:
//!   only the non-authoritative, non-active member.
//! - [`Cx::realigned`]: a `rejoin` or `clone` succeeded; neither stale nor fenced. Rule 2: from
//!   the authoritative member.
//! - [`Cx::verified_equal`]: an external `sync` compared equal; not stale. Rule 2: with the
//!   authoritative member.
//! - [`Cx::stop_serving`]: nothing serves. Always safe.
//! - [`Cx::resume_serving`]: the authoritative member serves again. Rules 1 and 2: it may serve
//!   and it is the authoritative one.
//! - [`Cx::make_sync_promise`]: the standby holds every acknowledged commit from now on. Rule 4:
//!   only the active member's standby, only while it may serve.
//! - [`Cx::withdraw_sync_promise`]: the promise is off. Always safe.
//! - [`Cx::retire`]: a failover or switchover passed its point of no return: the old active
//!   member is stale and (streaming) fenced, nothing serves, the promise is void. Rule 3: it is
//!   the incumbent being replaced.
//! - [`Cx::hand_over`]: the promotion completed; active and authoritative move. Rule 1: to a
//!   member neither stale nor fenced; rule 3: streaming, the old one was fenced first.
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The fields only this module writes.
    const GUARDED: [&str; 6] = [
        "active_member",
        "authoritative_member",
        "synchronous_standby",
        "initialized",
        "stale",
        "fenced",
    ];

    /// Method calls that change an `Option` or a value in place.
    const MUTATING_CALLS: [&str; 6] = [
        ".take()",
        ".replace(",
        ".insert(",
        ".get_or_insert",
        ".as_mut()",
        ".clone_from(",
    ];

    /// Whether `code` (comments removed) writes a field named `field` of anything: assigns it
    /// (`=`, `|=`, ...), changes it in place through a mutating call, or lends it out `&mut`.
    fn writes(code: &str, field: &str) -> bool {
        let needle = format!(".{field}");
        code.match_indices(&needle).any(|(at, _)| {
            let after = &code[at + needle.len()..];
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return false; // a longer name
            }
            let after = after.trim_start();
            let assigned =
                (after.starts_with('=') && !after.starts_with("==") && !after.starts_with("=>"))
                    || ["|=", "&=", "^=", "+=", "-="]
                        .iter()
                        .any(|op| after.starts_with(op));
            let mutated = MUTATING_CALLS.iter().any(|call| after.starts_with(call));
            let place = code[..at]
                .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || "_.()".contains(c));
            let lent = place.ends_with("&mut ");
            assigned || mutated || lent
        })
    }

    fn without_comments(source: &str) -> String {
        source
            .lines()
            .map(|l| l.find("//").map_or(l, |i| &l[..i]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_write_detector_tells_writes_from_reads() {
        for write in [
            "cx.status.active_member = None;",
            "cx.status.authoritative_member  = Some(m);",
            "let a = *cx.status.authoritative_member.get_or_insert(m);",
            "st.stale = true;",
            "cx.member_mut(n).fenced = false;",
            "st.fenced |= streaming;",
            "cx.status.synchronous_standby.take();",
            "std::mem::replace(&mut cx.status.active_member, None);",
            "let st = &mut cx.member_mut(m).initialized;",
            "st.initialized =\n    true;",
        ] {
            let field = GUARDED.iter().find(|f| write.contains(*f)).unwrap();
            assert!(writes(write, field), "missed a write: {write}");
        }
        for read in [
            "if cx.status.active_member == Some(target) {",
            "let auth = cx.status.authoritative_member;",
            "!st.stale && !st.fenced",
            "cx.status.synchronous_standby.is_some()",
            "st.stale_since = None;",
            "foo(&mut x, cx.status.active_member);",
            "let initialized = |m: Member| cx.member(m).initialized;",
            "Some(m) if cx.member(from).initialized => m,",
        ] {
            for field in GUARDED {
                assert!(!writes(read, field), "a read taken for a write: {read}");
            }
        }
    }

    /// Only this module writes the guarded fields, anywhere in the operator's sources.
    #[test]
    fn only_transitions_write_member_state() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let this = src.join("pair").join("transitions.rs");
        // Every module of the core is among the files read.
        let core = std::fs::read_to_string(src.join("pair").join("mod.rs")).expect("pair/mod.rs");
        for module in core.lines().filter_map(|l| l.strip_prefix("mod ")) {
            let name = module.trim_end_matches(';');
            let file = src.join("pair").join(format!("{name}.rs"));
            let dir = src.join("pair").join(name).join("mod.rs");
            assert!(
                files.contains(&file) || files.contains(&dir),
                "pair::{name} not read"
            );
        }
        let mut offenders = Vec::new();
        for file in files.iter().filter(|f| **f != this) {
            let code = without_comments(&std::fs::read_to_string(file).expect("a source file"));
            for field in GUARDED.iter().filter(|f| writes(&code, f)) {
                offenders.push(format!("{} writes .{field}", file.display()));
            }
        }
        assert!(
            offenders.is_empty(),
            "write these fields through a transition in pair/transitions.rs:\n{}",
            offenders.join("\n")
        );
        // And this module does write each of them (the guard does not watch a wrong name).
        let mine = std::fs::read_to_string(&this).expect("transitions.rs");
        let mine = without_comments(&mine[..mine.find("#[cfg(test)]").unwrap_or(mine.len())]);
        for field in GUARDED {
            assert!(writes(&mine, field), "transitions.rs never writes .{field}");
        }
    }
}
