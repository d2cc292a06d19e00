//! Planned switchover (`receiptdb.io/switchover-to`, or automatic failback to `primary`).
//!
//! Streaming: move clients off the active member (the client Service selects no member, so
//! new connections are refused), stop its writes (`FenceWrites`: read-only, sessions ended),
//! wait until the target has replayed everything the old one wrote, scale the old one down
//! (stale and fenced, it is rejoined afterwards), promote the target, point the Service at it.
//! No commit is lost: the old member accepted none after its position was recorded. Anything
//! going wrong before the old member is scaled down aborts the switchover and lifts the write
//! fence.
//!
//! Clients see only the errors the client guide (runbook 002) tells them to retry: their
//! sessions end with 57P01 and reconnecting fails (08001) until the Service selects the new
//! member. The order matters: fencing writes while the Service still sent new connections to
//! the old member gave every reconnecting client a read-only session, and every write failed
//! with 25006 until the Service moved.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use crate::crd::{annotation, FailbackPolicy, Member, Operation, OperationKind, OperationStep};

use super::context::{format_lsn, parse_lsn, Cx};
use super::health::streaming_to;
use super::promotion::promote_and_switch;
use super::Action;

/// A switchover that cannot reach the fully-replayed state within this time is abandoned: the
/// old member's writes stay fenced meanwhile, so clients cannot write.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after the client Service is observed selecting no member the old member's writes
/// are fenced. The Service's selector is only where the change starts: the EndpointSlice
/// controller then empties the Service's slices, and kube-proxy on every node programs the
/// change at most once per `minSyncPeriod` (1 s by default). Until it has, a client that
/// reconnects still reaches the old member, so fencing earlier would hand it a read-only
/// session. Sessions already open keep writing meanwhile (kube-proxy leaves established
/// connections alone), so the wait delays the switchover, not the clients.
pub const DETACH_GRACE: Duration = Duration::from_secs(2);

/// Handle a switchover request or an automatic failback. Returns true when it acted.
pub(crate) fn plan(cx: &mut Cx) -> bool {
    match cx.obs.requests.switchover_to.clone() {
        Some(Err(v)) => {
            cx.event(
                true,
                "SwitchoverRefused",
                format!(
                    "{}={v:?}: expected primary or secondary",
                    annotation::SWITCHOVER_TO
                ),
            );
            cx.act(Action::ClearAnnotation {
                key: annotation::SWITCHOVER_TO,
            });
            true
        }
        Some(Ok(target)) => {
            if cx.status.active_member == Some(target) {
                cx.event(
                    false,
                    "SwitchoverNotNeeded",
                    format!("{target} is already the active member"),
                );
                cx.act(Action::ClearAnnotation {
                    key: annotation::SWITCHOVER_TO,
                });
                return true;
            }
            match refusal(cx, target) {
                Some(why) => {
                    cx.event(
                        true,
                        "SwitchoverRefused",
                        format!("switchover to {target} refused: {why}"),
                    );
                    cx.act(Action::ClearAnnotation {
                        key: annotation::SWITCHOVER_TO,
                    });
                }
                None => start(cx, target, "requested", Some(annotation::SWITCHOVER_TO)),
            }
            true
        }
        None => drain(cx) || failback(cx),
    }
}

/// The active member's node is cordoned, as `kubectl drain` does before it evicts: switch
/// clients over to the other member while it is safe, rather than let the drain wait for ever
/// (the PodDisruptionBudget keeps the active member's pod until it is no longer active) or
/// someone force it into a crash. When the switchover is refused, the drain waits and the
/// refusal's cause is what the pair's conditions already report.
fn drain(cx: &mut Cx) -> bool {
    let Some(active) = cx.status.active_member else {
        return false;
    };
    if cx.seen(active).node_cordoned != Some(true) || refusal(cx, active.other()).is_some() {
        return false;
    }
    let reason = format!("{active}'s node is cordoned for a drain");
    start(cx, active.other(), &reason, None);
    true
}

fn failback(cx: &mut Cx) -> bool {
    let spec = &cx.spec().failover;
    if spec.failback != FailbackPolicy::Automatic
        || cx.status.active_member != Some(Member::Secondary)
    {
        return false;
    }
    let delay = Duration::from_secs(u64::from(spec.failback_delay_seconds));
    let Some(since) = cx.status.in_sync_since.clone() else {
        return false;
    };
    let held = cx.since(since.0);
    if held < delay {
        cx.requeue_within(delay - held);
        return false;
    }
    if refusal(cx, Member::Primary).is_some() {
        return false;
    }
    start(cx, Member::Primary, "failback", None);
    true
}

/// Why a switchover to `target` may not start now, if it may not.
pub(crate) fn refusal(cx: &Cx, target: Member) -> Option<String> {
    let Some(active) = cx.status.active_member else {
        return Some("no member is active".to_string());
    };
    if !cx.healthy(active) {
        return Some(format!("the active member {active} is not healthy"));
    }
    if cx.in_maintenance(target) {
        return Some(format!("{target} is under maintenance"));
    }
    if !cx.may_serve(target) {
        return Some(format!("{target} holds stale data or is scaled down"));
    }
    if !cx.healthy(target) {
        return Some(format!("{target} is not healthy"));
    }
    if cx.seen(target).node_cordoned == Some(true) {
        return Some(format!("{target}'s node is cordoned"));
    }
    if cx.streaming() {
        let sync = cx.status.synchronous_standby == Some(target);
        let max = u64::try_from(cx.spec().replication.max_lag_bytes).unwrap_or(0);
        match streaming_to(cx, active, target) {
            None => return Some(format!("{target} is not streaming from {active}")),
            Some(lag) if !sync && lag > max => {
                return Some(format!("{target} lags {lag} bytes behind"))
            }
            Some(_) => {}
        }
    }
    None
}

fn start(cx: &mut Cx, target: Member, reason: &str, request: Option<&str>) {
    let from = target.other();
    let mut op = Operation::new(
        OperationKind::Switchover,
        target,
        OperationStep::Fencing,
        cx.micro_time(),
    );
    op.from = Some(from);
    op.reason = reason.to_string();
    op.request = request.map(str::to_string);
    cx.event(
        false,
        "SwitchoverStarted",
        format!("switching over from {from} to {target} ({reason})"),
    );
    // External mode: both members hold the data; only clients move, when `advance` takes the
    // operation's first step (in this same pass).
    cx.status.operation = Some(op);
}

/// Advance a switchover; `None` when it is over.
pub(crate) fn advance(cx: &mut Cx, mut op: Operation) -> Option<Operation> {
    let target = op.member;
    let from = op.from.unwrap_or(target.other());
    if !cx.streaming() {
        cx.hand_over(from, target);
        cx.event(
            false,
            "SwitchoverCompleted",
            format!("clients switched from {from} to {target}"),
        );
        return None;
    }
    if matches!(
        op.step,
        OperationStep::Fencing | OperationStep::WaitingForReplay
    ) {
        if let Some(why) = abort_reason(cx, &op, from, target) {
            cx.act(Action::UnfenceWrites { member: from });
            cx.event(
                true,
                "SwitchoverAborted",
                format!("switchover to {target} abandoned: {why}; writes on {from} resumed"),
            );
            return None;
        }
    }
    if op.step == OperationStep::Fencing {
        match cx.seen(from).server() {
            Some(p) if p.read_only && !p.in_recovery => {
                op.target_lsn = Some(format_lsn(p.lsn));
                op.step = OperationStep::WaitingForReplay;
            }
            _ => {
                if clients_detached(cx, &mut op) {
                    cx.act(Action::FenceWrites { member: from });
                }
                return Some(op);
            }
        }
    }
    if op.step == OperationStep::WaitingForReplay {
        let wanted = op.target_lsn.as_deref().and_then(parse_lsn);
        let replayed = cx.seen(target).server().map(|p| p.lsn);
        match (wanted, replayed) {
            (Some(w), Some(r)) if r >= w => {
                op.step = OperationStep::Promoting;
                cx.retire(from);
            }
            _ => return Some(op),
        }
    }
    promote_and_switch(cx, op, from)
}

/// Whether clients are off the old member: the client Service has been observed selecting no
/// member for [`DETACH_GRACE`] (the Service selects none from the switchover's first pass on,
/// `desired.rs`). The wait starts at the first such observation and starts over when the
/// Service is seen selecting a member again; a clock that jumped back cannot stretch it.
fn clients_detached(cx: &mut Cx, op: &mut Operation) -> bool {
    if cx.obs.service_selects != Some(None) {
        op.fence_after = None;
        return false;
    }
    let latest = cx.after(DETACH_GRACE).0;
    let after = match &op.fence_after {
        Some(t) if t.0 <= latest => t.0,
        _ => latest,
    };
    op.fence_after = Some(MicroTime(after));
    match after.duration_since(cx.now).try_into() {
        Ok(left) if left > Duration::ZERO => {
            cx.requeue_within(left);
            false
        }
        _ => true,
    }
}

fn abort_reason(cx: &Cx, op: &Operation, from: Member, target: Member) -> Option<String> {
    if !cx.healthy(from) {
        return Some(format!("{from} stopped answering"));
    }
    if !cx.healthy(target) || streaming_to(cx, from, target).is_none() {
        return Some(format!("{target} is not streaming"));
    }
    if cx.since(op.started.0) > REPLAY_TIMEOUT {
        return Some(format!(
            "{target} did not replay everything within {}s",
            REPLAY_TIMEOUT.as_secs()
        ));
    }
    None
}
