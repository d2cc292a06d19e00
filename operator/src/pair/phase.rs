//! Phase and conditions, computed from the decided status and the observation. Events are
//! emitted here only for transitions of the Ready condition's reason.

use crate::crd::{condition as cond, Member, Operation, OperationKind, OperationStep, Phase};

use super::bootstrap::BOTH_LOST;
use super::conditions::{self, set, Truth};
use super::context::Cx;
use super::health::streaming_to;
use super::last_check::CHECK_ERROR;
use super::Desired;

/// Whether the standby holds the same data as the active member now.
fn in_sync(cx: &Cx) -> (bool, String) {
    let Some(active) = cx.status.active_member else {
        return (false, "no member is active".to_string());
    };
    let n = active.other();
    if !cx.may_serve(n) {
        return (false, format!("{n} is stale or has no data"));
    }
    if !cx.streaming() {
        let equal = cx.healthy(n) && cx.status.last_check.as_ref().is_some_and(|c| c.equal);
        return (equal, format!("{n} compared equal: {equal}"));
    }
    match streaming_to(cx, active, n) {
        None => (false, format!("{n} is not streaming from {active}")),
        Some(0) => (true, format!("{n} streams with zero lag")),
        Some(_) if cx.status.synchronous_standby == Some(n) => {
            (true, format!("{n} is the synchronous standby"))
        }
        // Asynchronous: reaching zero lag proves the standby caught up; after that a lag
        // within `replication.maxLagBytes` (the bound failover accepts) keeps it in sync, so
        // the condition does not flap with every burst of writes.
        Some(l) if cx.status.in_sync_since.is_some() && within_lag_budget(cx, l) => (
            true,
            format!("{n} streams {l} bytes behind (within replication.maxLagBytes)"),
        ),
        Some(l) => (false, format!("{n} lags {l} bytes behind")),
    }
}

fn within_lag_budget(cx: &Cx, lag: u64) -> bool {
    u64::try_from(cx.spec().replication.max_lag_bytes).is_ok_and(|max| lag <= max)
}

/// Set phase and conditions.
pub(crate) fn update(cx: &mut Cx, desired: &Desired, refused: Option<&str>) {
    let (sync, sync_why) = in_sync(cx);
    set(
        cx,
        cond::IN_SYNC,
        Truth::from(sync),
        if sync { "Streaming" } else { "NotInSync" },
        sync_why,
    );
    cx.status.in_sync_since = match (sync, cx.status.in_sync_since.take()) {
        (true, since) => Some(since.unwrap_or_else(|| cx.time())),
        (false, _) => None,
    };

    let active = cx.status.active_member;
    let other_down = active
        .map(|a| a.other())
        .filter(|&n| !(cx.healthy(n) && cx.may_serve(n)));
    let (degraded, reason, message) = match (active, other_down) {
        (None, _) => (
            true,
            "NoActiveMember",
            "no member serves clients".to_string(),
        ),
        (Some(a), _) if !cx.healthy(a) => (true, "ActiveMemberDown", format!("{a} is not healthy")),
        (Some(_), Some(n)) if cx.in_maintenance(n) => (
            false,
            "MemberUnderMaintenance",
            format!("{n} is under maintenance"),
        ),
        (Some(_), Some(n)) => (
            true,
            "NoRedundancy",
            format!("only one member serves; {n} is down or stale"),
        ),
        (Some(_), None) => (false, "Redundant", "both members are up".to_string()),
    };
    set(cx, cond::DEGRADED, Truth::from(degraded), reason, message);

    let phase = phase(cx, degraded && reason != "MemberUnderMaintenance", sync);
    cx.status.phase = Some(phase);

    let serving = desired.service_selects.filter(|&m| cx.healthy(m));
    let (ready_reason, ready_message) = match (serving, refused) {
        (Some(m), _) => ("Serving", format!("clients are served by {m}")),
        (None, Some(why)) => (
            "FailoverRefused",
            format!("automatic failover refused: {why}"),
        ),
        (None, None) => (ready_reason(cx, phase), ready_message(cx, phase)),
    };
    ready(cx, serving.is_some(), ready_reason, ready_message);

    let (truth, reason, message) = match &cx.status.last_check {
        None => (
            Truth::Unknown,
            "NotChecked",
            "no consistency check yet".to_string(),
        ),
        Some(c) if c.message.starts_with(CHECK_ERROR) => {
            (Truth::Unknown, "CheckFailed", c.message.clone())
        }
        Some(c) if c.equal => (Truth::True, "Equal", c.message.clone()),
        Some(c) => (Truth::False, "Differs", c.message.clone()),
    };
    set(cx, cond::CONSISTENCY_VERIFIED, truth, reason, message);
    let (truth, reason, message) = match &cx.status.last_backup {
        None => (Truth::Unknown, "NoBackup", "no backup yet".to_string()),
        Some(b) if b.succeeded => (Truth::True, "Succeeded", b.message.clone()),
        Some(b) => (Truth::False, "Failed", b.message.clone()),
    };
    set(cx, cond::BACKUP_SUCCEEDED, truth, reason, message);
}

/// Ready, with a Warning Event when it turns False for a new reason or message.
pub(crate) fn ready(cx: &mut Cx, ok: bool, reason: &'static str, message: String) {
    let before = conditions::condition(&cx.prior, cond::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    // Messages carrying figures (lag bytes, attempts) change every pass; only a change of
    // their wording is a transition worth an Event.
    let shape = |m: &str| {
        m.chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    let changed = before.as_ref().is_none_or(|(s, r, m)| {
        s != if ok { "True" } else { "False" }
            || r != reason
            || (!ok && shape(m) != shape(&message))
    });
    if changed && (!ok || before.is_some()) {
        cx.event(!ok, reason, message.clone());
    }
    set(cx, cond::READY, Truth::from(ok), reason, message);
}

fn phase(cx: &Cx, degraded: bool, sync: bool) -> Phase {
    if let Some(op) = &cx.status.operation {
        match op.kind {
            OperationKind::Failover => return Phase::FailingOver,
            OperationKind::Switchover => return Phase::SwitchingOver,
            OperationKind::Restore => return Phase::Restoring,
            OperationKind::Rejoin | OperationKind::Sync => return Phase::Syncing,
            OperationKind::Initdb | OperationKind::Clone if cx.status.active_member.is_some() => {
                return Phase::Syncing
            }
            OperationKind::Initdb | OperationKind::Clone => {
                return if cx.status.pending_restore {
                    Phase::Restoring
                } else {
                    Phase::Initializing
                }
            }
            OperationKind::Check => {}
        }
    }
    if cx.status.pending_restore {
        return Phase::Restoring;
    }
    let initialized = |m: Member| cx.member(m).initialized;
    if cx.status.active_member.is_none() {
        let both = initialized(Member::Primary) && initialized(Member::Secondary);
        let lost = !initialized(Member::Primary)
            && !initialized(Member::Secondary)
            && cx.status.authoritative_member.is_some();
        return if both || lost {
            Phase::Failed
        } else {
            Phase::Initializing
        };
    }
    if !initialized(Member::Primary) || !initialized(Member::Secondary) {
        return if cx.status.last_failover.is_some() || cx.status.last_sync.is_some() {
            Phase::Degraded
        } else {
            Phase::Initializing
        };
    }
    if degraded
        || (!sync
            && !cx.in_maintenance(
                cx.status
                    .active_member
                    .map_or(Member::Secondary, |a| a.other()),
            ))
    {
        return Phase::Degraded;
    }
    Phase::Healthy
}

fn ready_reason(cx: &Cx, phase: Phase) -> &'static str {
    match phase {
        Phase::Initializing => "Initializing",
        Phase::FailingOver => "FailingOver",
        Phase::SwitchingOver => "SwitchingOver",
        Phase::Restoring => "Restoring",
        Phase::Failed if cx.status.active_member.is_none() => "NoMemberServing",
        _ => "ActiveMemberDown",
    }
}

fn ready_message(cx: &Cx, phase: Phase) -> String {
    let lost = !cx.member(Member::Primary).initialized
        && !cx.member(Member::Secondary).initialized
        && cx.status.authoritative_member.is_some();
    match phase {
        Phase::Failed if lost && cx.spec().bootstrap.from_backup.is_none() => BOTH_LOST.to_string(),
        Phase::Failed => "both members are down: the client Service selects nothing until one \
            with current data returns"
            .to_string(),
        Phase::Initializing => match &cx.status.operation {
            Some(op) => match &op.last_error {
                Some(e) => format!(
                    "{:?} of {}: attempt {} failed: {e}",
                    op.kind, op.member, op.attempts
                ),
                None => format!("{:?} of {} in progress", op.kind, op.member),
            },
            None => "waiting for the first member to start".to_string(),
        },
        Phase::FailingOver | Phase::SwitchingOver => match &cx.status.operation {
            Some(op) => handover_progress(cx, op),
            None => format!("{phase}: no member serves clients right now"),
        },
        p => format!("{p}: no member serves clients right now"),
    }
}

/// Where a failover or switchover stands while no member serves, naming what it waits for, so a
/// handover that cannot finish (the member being promoted died too) is visible in `Ready`.
fn handover_progress(cx: &Cx, op: &Operation) -> String {
    let to = op.member;
    let from = op.from.unwrap_or(to.other());
    let what = match op.kind {
        OperationKind::Failover => "failover",
        _ => "switchover",
    };
    let down = |m: Member| {
        cx.member(m)
            .message
            .clone()
            .unwrap_or_else(|| "not answering".to_string())
    };
    match op.step {
        OperationStep::Fencing if op.kind == OperationKind::Switchover => format!(
            "{what} from {from} to {to}: the client Service selects no member; {from}'s writes \
             stop once new connections no longer reach it"
        ),
        OperationStep::Fencing => format!(
            "{what} from {from} to {to}: waiting until {from} is confirmed down (scaled to 0 and \
             not answering) before promoting {to}"
        ),
        OperationStep::WaitingForReplay => {
            format!("{what} from {from} to {to}: waiting for {to} to replay all WAL")
        }
        OperationStep::Promoting if !cx.healthy(to) => format!(
            "{what} from {from} to {to}: {to} stopped answering before its promotion ({}); \
             waiting for it to return; {from} stays fenced so that two primaries never serve",
            down(to)
        ),
        OperationStep::Promoting => format!("{what} from {from} to {to}: promoting {to}"),
        OperationStep::Switching => {
            format!("{what} from {from} to {to}: pointing the client Service at {to}")
        }
        step => format!("{what} from {from} to {to}: {step:?}"),
    }
}
