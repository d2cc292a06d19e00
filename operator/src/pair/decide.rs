//! The decision function: one pass, in a fixed order.
//!
//! 1. spec error: report and change nothing;
//! 2. observe: member health and the synchronous-standby promise into status;
//! 3. paused: report only;
//! 4. an operation in flight continues (a failing active member preempts a mere check);
//! 5. otherwise, in order of urgency: failover, (re)activation of the authoritative member,
//!    synchronous replication, bootstrap, re-alignment of a stale member, switchover or
//!    failback, requested sync, periodic check;
//! 6. desired state, phase and conditions from the decided status.
//!
//! Every decision depends only on (spec, persisted status, observation, now), so a restarted
//! operator takes the same next step, and deciding twice on the same input gives the same
//! result.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{annotation, OperationKind, ReceiptDbPair, ServerRole};

use super::context::{Cx, FAST};
use super::failover::{self, Verdict};
use super::{
    backups, bootstrap, checks, desired, health, jobs, phase, promotion, realign, requests,
    spec_error, switchover, synchronous,
};
use super::{Action, Decision, Observation};

/// Requeue while a Job-driven operation runs: Jobs take seconds.
const JOB_POLL: Duration = Duration::from_secs(1);

/// Decide what the pair needs now, from its spec and status, what was observed, and the time.
pub fn decide(pair: &ReceiptDbPair, obs: &Observation, now: Timestamp) -> Decision {
    let mut cx = Cx::new(pair, obs, now);
    if !obs.spec_problems.is_empty() {
        return spec_error::decide(cx, &obs.spec_problems);
    }
    health::observe(&mut cx);
    synchronous::observe(&mut cx);
    backups::record(&mut cx);
    if pair.spec.maintenance.paused {
        return paused(cx);
    }
    cx.status.observed_generation = Some(obs.generation);
    let refused = step(&mut cx);
    jobs::clean_up(&mut cx);
    let desired = desired::compute(&cx);
    phase::update(&mut cx, &desired, refused.as_deref());
    finish(cx, Some(desired))
}

/// Both-stop maintenance: observe and report only. Failure clocks are reset, so the failover
/// delay counts from the end of the pause, not from a stop the user made on purpose.
fn paused(mut cx: Cx) -> Decision {
    for m in crate::crd::Member::ALL {
        cx.member_mut(m).failing_since = None;
    }
    let desired = desired::compute(&cx);
    phase::update(&mut cx, &desired, None);
    cx.status.phase = Some(crate::crd::Phase::Maintenance);
    finish(cx, None)
}

/// The one step of this pass. Returns why an automatic failover was refused, if it was.
fn step(cx: &mut Cx) -> Option<String> {
    if let Some(op) = cx.status.operation.take() {
        if op.kind == OperationKind::Check {
            if let Verdict::Go {
                from,
                to,
                lag_bytes,
            } = failover::judge(cx)
            {
                failover::start(cx, from, to, lag_bytes);
                cx.requeue_within(FAST);
                return None;
            }
        }
        continue_operation(cx, op);
        return None;
    }
    step_down_if_unfit(cx);
    let mut refused = None;
    match failover::judge(cx) {
        Verdict::Go {
            from,
            to,
            lag_bytes,
        } => {
            failover::start(cx, from, to, lag_bytes);
            cx.requeue_within(FAST);
            return None;
        }
        // The next pass's probe takes up to the probe timeout before the verdict: start it that
        // much before the delay runs out, so the failover starts when it does.
        Verdict::Waiting(d) => cx.requeue_within(d.saturating_sub(Duration::from_secs(u64::from(
            cx.spec().failover.probe_timeout_seconds,
        )))),
        Verdict::Refused(why) => {
            let why = why.join("; ");
            nothing_serves_if_both_down(cx);
            refused = Some(why);
        }
        Verdict::NotNeeded => {}
    }
    activate(cx);
    lift_stray_write_fence(cx);
    synchronous::manage(cx);
    let _ = bootstrap::plan(cx)
        || realign::plan(cx)
        || switchover::plan(cx)
        || requests::plan(cx)
        || checks::plan(cx);
    // A new operation takes its first step now rather than one pass later.
    if let Some(op) = cx.status.operation.take() {
        continue_operation(cx, op);
    }
    refused
}

/// With no operation in flight, the active member is one that may serve; a member whose data
/// was lost (or that was marked stale) stops being active, so the Service selects nothing
/// rather than it.
fn step_down_if_unfit(cx: &mut Cx) {
    if let Some(a) = cx.status.active_member {
        if !cx.may_serve(a) {
            cx.stop_serving();
        }
    }
}

fn continue_operation(cx: &mut Cx, op: crate::crd::Operation) {
    let kind = op.kind;
    let request = op.request.clone();
    let next = match kind {
        OperationKind::Failover => promotion::advance_failover(cx, op),
        OperationKind::Switchover => switchover::advance(cx, op),
        OperationKind::Initdb | OperationKind::Clone | OperationKind::Restore => {
            bootstrap::advance(cx, op)
        }
        OperationKind::Rejoin | OperationKind::Sync => realign::advance(cx, op),
        OperationKind::Check => checks::advance(cx, op),
    };
    if !matches!(kind, OperationKind::Failover | OperationKind::Switchover) {
        synchronous::manage(cx);
    }
    match &next {
        None => {
            if let Some(key) = request.as_deref().and_then(annotation_key) {
                cx.act(Action::ClearAnnotation { key });
            }
            cx.requeue_within(FAST);
        }
        Some(op) if matches!(op.kind, OperationKind::Failover | OperationKind::Switchover) => {
            cx.requeue_within(FAST)
        }
        Some(_) => cx.requeue_within(JOB_POLL),
    }
    cx.status.operation = next;
}

fn annotation_key(key: &str) -> Option<&'static str> {
    [annotation::SWITCHOVER_TO, annotation::SYNC]
        .into_iter()
        .find(|k| *k == key)
}

/// Both members down: the client Service selects nothing rather than a member that may come
/// back with old data; the authoritative member is kept as the one to serve again first.
fn nothing_serves_if_both_down(cx: &mut Cx) {
    let Some(active) = cx.status.active_member else {
        return;
    };
    if cx.healthy(active.other()) {
        return;
    }
    cx.stop_serving();
    cx.event(
        true,
        "NoMemberServing",
        format!("{active} and {} are both down", active.other()),
    );
}

/// No member active and no operation: the authoritative member serves again as soon as it
/// answers as a primary with its data (never the other one: it may hold old data).
fn activate(cx: &mut Cx) {
    if cx.status.active_member.is_some() || cx.status.pending_restore {
        return;
    }
    let Some(auth) = cx.status.authoritative_member else {
        return;
    };
    let primary = !cx.streaming() || cx.member(auth).role == Some(ServerRole::Primary);
    if cx.may_serve(auth) && cx.healthy(auth) && primary {
        cx.resume_serving(auth);
        cx.event(false, "Serving", format!("clients are served by {auth}"));
    }
}

/// A write fence left behind by an interrupted switchover is lifted: the active member must
/// accept writes whenever no switchover is in flight.
fn lift_stray_write_fence(cx: &mut Cx) {
    let Some(active) = cx.status.active_member else {
        return;
    };
    if cx
        .seen(active)
        .server()
        .is_some_and(|p| p.read_only && !p.in_recovery)
    {
        cx.act(Action::UnfenceWrites { member: active });
    }
}

fn finish(cx: Cx, desired: Option<super::Desired>) -> Decision {
    let mut actions = cx.actions;
    actions.extend(cx.events);
    Decision {
        desired,
        actions,
        status: cx.status,
        requeue_after: cx.requeue,
    }
}
