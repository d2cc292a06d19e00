//! When to fail over: the single place that answers it.
//!
//! The incumbent (the active member, or the authoritative one while nothing serves) has been
//! unhealthy for `failover.delaySeconds` (or its data is gone), and the other member may take
//! over without losing what clients were told was committed:
//! - it is healthy, initialised, not stale, not fenced, not under maintenance, and (streaming)
//!   a standby on a timeline at least as new as the incumbent's last known one;
//! - synchronous mode: it was the synchronous standby when the incumbent was last seen.
//!   `status.synchronousStandby` is cleared (and persisted) *before* commits stop waiting for
//!   the standby, so while it names the standby every acknowledged commit reached it. A zero
//!   lag seen earlier is not enough: commits acknowledged asynchronously after that observation
//!   would be lost;
//! - asynchronous mode: its lag behind the incumbent's last known position is known and at most
//!   `replication.maxLagBytes`;
//! - failover is enabled and the pair is not paused (paused pairs never reach this code).
//!
//! Otherwise the failover is refused and the reasons are reported (Ready condition, Event).
//!
//! ## When the active member's node stops answering
//! A lost node (powered off, crashed) and a cut-off one (a network partition) look the same
//! from here: the member's probe times out; its pod may stay `Ready` in the API until the node
//! controller's grace period (40 s by default) runs out; and deleting the pod never completes,
//! since nothing on the node confirms it. What the operator concludes, and from what:
//! - **Failing.** The member is failing from the start of the first probe that found no answer
//!   (`failingSince`: a probe to a silent node fails only after `probeTimeoutSeconds`). The
//!   failover starts `delaySeconds` later. It waits for neither the Node's `NotReady` nor the
//!   pod's deletion.
//! - **"Confirmed down"** ([`super::promotion::confirmed_down`]): its StatefulSet is at 0
//!   replicas, and its pod is gone or its server does not answer the operator. On a lost or
//!   cut-off node that holds as soon as the StatefulSet is scaled down. It is *not* proof that
//!   the old server stopped: a cut-off server keeps running. Promotion is safe for the reasons
//!   below, not because of it.
//! - **Synchronous mode.** While `status.synchronousStandby` names the standby, the old primary
//!   cannot acknowledge a commit made with `synchronous_commit` `on`, `remote_write` or
//!   `remote_apply` (the default is `on`) without that standby's confirmation. Only the operator
//!   relaxes `synchronous_standby_names`, over SQL, after persisting the cleared status
//!   (`super::synchronous`), so an unreachable primary cannot have relaxed it. Once promoted,
//!   the standby streams from nobody and confirms nothing. So promotion waits for nothing more.
//!   Every commit the old primary acknowledged is on the new one, and what it wrote and did not
//!   acknowledge is discarded when it is re-aligned.
//! - **Sessions that lower `synchronous_commit`** (`local`, `off`: PostgreSQL lets any session
//!   do so) take the asynchronous risk. A cut-off old primary can acknowledge their commits to
//!   clients that still reach it, and the re-alignment discards them. Today nothing bounds that
//!   window except the cut's end: the node agent then stops the pod. A self-fencing agent in
//!   the member pod is not built yet.
//! - **Asynchronous mode, or a synchronous pair that had degraded** (`synchronousStandby`
//!   empty): commits may be acknowledged without the standby. The failover goes ahead only
//!   when the standby's last known lag is within `replication.maxLagBytes`; that is the data at
//!   risk, recorded in `lastFailover.lagBytes`. Otherwise it is refused, the reason is
//!   reported, and the pair waits for the old member to answer again, losing nothing. Knowing
//!   the old primary is down (its Node gone, its pod deleted) would not bring back what the
//!   standby never received, so no such confirmation overrides the limit. A degraded
//!   synchronous pair is refused outright: the standby was not confirming commits.
//!   In asynchronous mode a cut-off old primary also goes on acknowledging the commits of
//!   clients on its side of the cut. The client Service stops selecting it when the failover
//!   starts, so only clients that reach its pod directly can do that.
//! - **The old primary returns.** The failover marks it stale and fenced and scales its
//!   StatefulSet to 0, so its pod is already being deleted. When the node reaches the API again,
//!   its agent stops the pod with its `preStop`: `pg_ctl stop -m fast` ends every session at
//!   once. A commit waiting for the standby is terminated (57P01), never cancelled; a cancelled
//!   wait would report the commit as done. A node that was lost starts afresh and kills what
//!   is left. The Service never selects a stale member, and the rejoin Job re-aligns it
//!   (`pg_rewind` discards what it wrote after the fork) before it may serve again.
//! - **The operator's own node.** Leader election hands the pair to the other replica when the
//!   Lease expires (8 s after the last renewal). Until then nothing is decided, and the time
//!   adds to the failover's.

use std::time::Duration;

use crate::crd::{Member, Operation, OperationKind, OperationStep, ServerRole};

use super::context::{parse_lsn, Cx};

/// What the failover check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The incumbent is fine (or may be down for maintenance).
    NotNeeded,
    /// The incumbent is failing but the delay has not passed yet.
    Waiting(Duration),
    /// Needed but not allowed, with the reasons.
    Refused(Vec<String>),
    /// Fail over from `from` to `to`.
    Go {
        from: Member,
        to: Member,
        lag_bytes: Option<i64>,
    },
}

/// The member clients would be served by, were it healthy.
pub(crate) fn incumbent(cx: &Cx) -> Option<Member> {
    cx.status.active_member.or(cx.status.authoritative_member)
}

/// Judge whether to fail over now.
pub(crate) fn judge(cx: &Cx) -> Verdict {
    let Some(from) = incumbent(cx) else {
        return Verdict::NotNeeded;
    };
    let to = from.other();
    let data_lost = !cx.member(from).initialized && cx.member(to).initialized;
    if !data_lost {
        if cx.healthy(from) || cx.in_maintenance(from) || !cx.may_serve(from) {
            return Verdict::NotNeeded;
        }
        let Some(since) = &cx.member(from).failing_since else {
            return Verdict::NotNeeded;
        };
        let delay = Duration::from_secs(u64::from(cx.spec().failover.delay_seconds));
        let failing = cx.since(since.0);
        if failing < delay {
            return Verdict::Waiting(delay - failing);
        }
    }
    let mut why = Vec::new();
    if !cx.spec().failover.enabled {
        why.push("automatic failover is disabled (failover.enabled=false)".to_string());
    }
    if cx.in_maintenance(to) {
        why.push(format!("{to} is under maintenance"));
    }
    let t = cx.member(to);
    if !t.initialized || t.stale || t.fenced {
        why.push(format!(
            "{to} holds stale data and must be re-aligned first"
        ));
    } else if !cx.healthy(to) {
        why.push(format!("{to} is not healthy either"));
    }
    let lag = lag_behind(cx, from, to);
    if cx.streaming() && cx.healthy(to) {
        if cx.member(to).role != Some(ServerRole::Standby) {
            why.push(format!("{to} is not a standby"));
        }
        if let (Some(mine), Some(theirs)) = (t.timeline, cx.member(from).timeline) {
            if mine < theirs {
                why.push(format!(
                    "{to} is on timeline {mine}, behind {from}'s timeline {theirs}"
                ));
            }
        }
        if cx.spec().replication.synchronous() {
            if cx.prior.synchronous_standby != Some(to) {
                why.push(format!(
                    "{to} was not the synchronous standby: acknowledged commits could be lost"
                ));
            }
        } else {
            let max = cx.spec().replication.max_lag_bytes;
            match lag {
                None => why.push(format!("{to}'s lag is unknown")),
                Some(l) if l > max => why.push(format!(
                    "{to} lags {l} bytes behind, more than replication.maxLagBytes={max}"
                )),
                Some(_) => {}
            }
        }
    }
    if why.is_empty() {
        Verdict::Go {
            from,
            to,
            lag_bytes: if cx.spec().replication.synchronous() {
                Some(0)
            } else {
                lag
            },
        }
    } else {
        Verdict::Refused(why)
    }
}

/// How far `to` is behind what was last known of `from`: the smaller of the lag recorded while
/// `from` answered and the gap between `from`'s last position and `to`'s current one.
fn lag_behind(cx: &Cx, from: Member, to: Member) -> Option<i64> {
    let recorded = cx.member(to).lag_bytes;
    let gap = match (
        cx.member(from).lsn.as_deref().and_then(parse_lsn),
        cx.seen(to).server().map(|p| p.lsn),
    ) {
        (Some(a), Some(b)) => Some(i64::try_from(a.saturating_sub(b)).unwrap_or(i64::MAX)),
        _ => None,
    };
    match (recorded, gap) {
        (Some(r), Some(g)) => Some(r.min(g)),
        (r, g) => r.or(g),
    }
}

/// Start the failover decided by [`judge`].
pub(crate) fn start(cx: &mut Cx, from: Member, to: Member, lag_bytes: Option<i64>) {
    let since = cx
        .member(from)
        .failing_since
        .clone()
        .unwrap_or_else(|| cx.micro_time());
    let mut op = Operation::new(
        OperationKind::Failover,
        to,
        OperationStep::Fencing,
        cx.micro_time(),
    );
    op.from = Some(from);
    op.failing_since = Some(since);
    op.lag_bytes = lag_bytes;
    op.reason = match cx.member(from).message.as_deref() {
        Some(m) if cx.member(from).initialized => format!("{from} failed: {m}"),
        _ if !cx.member(from).initialized => format!("{from}'s data is lost"),
        _ => format!("{from} failed"),
    };
    cx.event(
        true,
        "FailoverStarted",
        format!("failing over from {from} to {to}: {}", op.reason),
    );
    // From here on the old active member's data is not the truth: whatever it wrote after the
    // fork is discarded by its rejoin. It never serves again before being re-aligned.
    cx.retire(from);
    cx.status.operation = Some(op);
}
