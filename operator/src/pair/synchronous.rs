//! Synchronous replication that degrades while the standby is away.
//!
//! `status.synchronousStandby` is a promise: that standby holds every acknowledged commit. It is
//! set only when the active member reports the standby as `sync` and it has replayed all of the
//! active member's WAL (from then on every commit waits for it), and it is cleared one pass
//! *before* `synchronous_standby_names` is emptied: the degrade action is
//! issued only once the persisted status no longer makes the promise. A crash between the two
//! can therefore leave the promise unmade while it still holds, never made while it is broken.
//! Failover in synchronous mode relies on it (see `failover.rs`).

use std::time::Duration;

use crate::crd::Member;

use super::context::{Cx, FAST};
use super::health::streaming_to;
use super::Action;

/// Replay lag at which a streaming standby counts as caught up and is made synchronous again.
/// Commits then wait only for WAL it is already receiving, so writes barely stall.
pub const CAUGHT_UP_BYTES: u64 = 1024 * 1024;

/// Update the promise from what the active member reports.
pub(crate) fn observe(cx: &mut Cx) {
    let Some(active) = cx.status.active_member else {
        return;
    };
    let standby = active.other();
    let Some(p) = cx.seen(active).server() else {
        return; // unreachable: keep the last promise, it is what failover needs
    };
    if p.in_recovery {
        return;
    }
    if !names(&p.synchronous_standby_names, standby) {
        cx.withdraw_sync_promise(); // commits do not wait for it
        return;
    }
    let Some(seen) = p
        .standbys
        .iter()
        .find(|s| s.application_name == standby.as_str() && s.synchronous && s.streaming)
    else {
        // Named but not streaming: commits block, the promise (if made) still holds.
        return;
    };
    // Being synchronous covers the commits acknowledged from then on; commits acknowledged
    // before (while it caught up, asynchronously) may not have reached it yet. So the promise
    // is made only once the standby has also replayed everything the active member has, and
    // kept for as long as it stays synchronous. (Made at the first `sync` report, a switchover
    // that fenced writes right then, aborted by a crash, failed over to a standby one commit
    // behind: found by the property tests.)
    // Nor is it made for a standby that may not serve (stale, about to be re-aligned): the same
    // pass empties `synchronous_standby_names` for it (`manage`), and a promise made then would
    // outlive the setting wherever the active member stops answering.
    // Otherwise the promise made in an earlier pass, if any, holds: nothing before this in the
    // pass changes it, so the status still carries it.
    debug_assert_eq!(cx.status.synchronous_standby, cx.prior.synchronous_standby);
    if seen.replay_lag_bytes == 0 && cx.may_serve(standby) {
        cx.make_sync_promise(standby);
    }
}

/// Whether `synchronous_standby_names` names `m`.
pub fn names(setting: &str, m: Member) -> bool {
    setting
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.eq_ignore_ascii_case(m.as_str()))
}

/// Turn synchronous commits on when the standby has caught up, off while it is away.
pub(crate) fn manage(cx: &mut Cx) {
    let Some(active) = cx.status.active_member else {
        return;
    };
    let standby = active.other();
    let Some(p) = cx.seen(active).server() else {
        return;
    };
    if p.in_recovery || !cx.healthy(active) {
        return;
    }
    let named = names(&p.synchronous_standby_names, standby);
    let lag = streaming_to(cx, active, standby);
    // The primary's view alone is not enough: when the standby's node dies, its walsender keeps
    // reporting it as streaming until `wal_sender_timeout`, and every commit waits that long.
    // A standby whose own probe has failed for `failover.delaySeconds` counts as away. (Were it
    // only cut off from the operator, degrading costs nothing: an unreachable standby could not
    // be failed over to anyway.)
    let delay = Duration::from_secs(u64::from(cx.spec().failover.delay_seconds));
    let standby_down = cx
        .member(standby)
        .failing_since
        .as_ref()
        .is_some_and(|since| cx.since(since.0) >= delay);
    let wanted = cx.streaming()
        && cx.spec().replication.synchronous()
        && cx.may_serve(standby)
        && !standby_down
        && match lag {
            Some(l) if named => l < u64::MAX, // streaming: keep it, however far behind
            Some(l) => l <= CAUGHT_UP_BYTES,
            None => false,
        };
    if wanted && !named {
        cx.act(Action::SetSynchronousStandby {
            on: active,
            standby: Some(standby),
        });
        cx.event(
            false,
            "SynchronousRestored",
            format!("{standby} caught up: commits wait for it again"),
        );
        cx.requeue_within(FAST);
    } else if !wanted && named {
        if cx.prior.synchronous_standby.is_some() {
            // First persist that the promise is off; the next pass lets commits go.
            cx.withdraw_sync_promise();
        } else {
            // `observe`, earlier in this pass, may have made the promise anew from the active
            // member's report (still synchronous, caught up, a member that may serve) while the
            // standby's own probe has been failing: a promise written together with the setting
            // that breaks it would outlive it. (Found by the property tests: commits
            // acknowledged without the standby, then a failover to it.)
            cx.withdraw_sync_promise();
            cx.act(Action::SetSynchronousStandby {
                on: active,
                standby: None,
            });
            cx.event(
                true,
                "SynchronousDegraded",
                format!("{standby} is away: commits no longer wait for it"),
            );
        }
        cx.requeue_within(FAST);
    }
}
