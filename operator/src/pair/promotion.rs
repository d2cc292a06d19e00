//! The tail shared by failover and switchover: make sure the old active member is down, promote
//! the new one, point the Service at it.
//!
//! `Fencing` (failover) and `Promoting` wait until the old active member is *confirmed* down:
//! its StatefulSet observed at 0 replicas and its pod gone or its server not answering. Only
//! then is `Promote` issued, so two writable primaries never serve at once.

use crate::crd::{FailoverRecord, Member, Operation, OperationKind, OperationStep, ServerRole};

use super::context::{millis_between, Cx};
use super::Action;

/// The old active member is scaled down and nothing answers from it.
pub(crate) fn confirmed_down(cx: &Cx, m: Member) -> bool {
    let seen = cx.seen(m);
    let scaled_down = matches!(seen.replicas, None | Some(0));
    let silent = seen.pod.is_none() || seen.server().is_none();
    scaled_down && silent
}

/// Advance a failover; `None` when it is over.
pub(crate) fn advance_failover(cx: &mut Cx, mut op: Operation) -> Option<Operation> {
    let from = op.from.unwrap_or(op.member.other());
    if !cx.streaming() {
        // External mode: the workload writes both copies; failing over only moves clients.
        switched(cx, &op, from);
        return None;
    }
    if op.step == OperationStep::Fencing {
        if !confirmed_down(cx, from) {
            return Some(op);
        }
        op.step = OperationStep::Promoting;
    }
    promote_and_switch(cx, op, from)
}

/// `Promoting` and `Switching`, for failover and switchover alike.
pub(crate) fn promote_and_switch(
    cx: &mut Cx,
    mut op: Operation,
    from: Member,
) -> Option<Operation> {
    let to = op.member;
    if op.step == OperationStep::Promoting {
        if !confirmed_down(cx, from) {
            return Some(op);
        }
        match cx.seen(to).server() {
            Some(p) if !p.in_recovery => {
                op.step = OperationStep::Switching;
                let st = cx.member_mut(to);
                st.role = Some(ServerRole::Primary);
                st.lag_bytes = None;
            }
            Some(_) if cx.healthy(to) => {
                cx.act(Action::Promote { member: to });
                return Some(op);
            }
            _ => return Some(op), // wait for the member to answer; it was healthy when chosen
        }
    }
    // Switching: the Service selects `to` (desired state); done once it is observed so. It
    // never selects a write-fenced member (`desired.rs`), so a fence `to` still carries (set
    // while it was a primary before, and not lifted) is lifted here, or the handover would
    // wait for ever.
    cx.hand_over(from, to);
    if cx
        .seen(to)
        .server()
        .is_some_and(|p| p.read_only && !p.in_recovery)
    {
        cx.act(Action::UnfenceWrites { member: to });
    }
    if cx.obs.service_selects == Some(Some(to)) {
        switched(cx, &op, from);
        return None;
    }
    Some(op)
}

/// Clients are on the new member: record it.
fn switched(cx: &mut Cx, op: &Operation, from: Member) {
    let to = op.member;
    let now = cx.time();
    cx.hand_over(from, to);
    if op.kind != OperationKind::Failover {
        cx.event(
            false,
            "SwitchoverCompleted",
            format!("clients switched from {from} to {to}"),
        );
        return;
    }
    let since = op
        .failing_since
        .clone()
        .unwrap_or_else(|| op.started.clone());
    let record = FailoverRecord {
        time: now.clone(),
        from,
        to,
        reason: op.reason.clone(),
        detection_millis: millis_between(since.0, op.started.0).max(0),
        total_millis: millis_between(since.0, now.0).max(0),
        lag_bytes: op.lag_bytes,
    };
    cx.event(
        true,
        "FailedOver",
        format!(
            "clients switched from {from} to {to} in {} ms ({}); data at risk: {} bytes",
            record.total_millis,
            record.reason,
            record
                .lag_bytes
                .map_or_else(|| "unknown".to_string(), |l| l.to_string())
        ),
    );
    cx.status.last_failover = Some(record);
}
