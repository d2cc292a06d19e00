//! Running one Job inside an operation, and cleaning up finished Jobs.
//!
//! A Job's outcome is read only when the operation recorded that it created it
//! (`operation.jobCreated`): a finished Job seen before that is a leftover of an earlier attempt
//! and is deleted first. A finished Job is deleted only after its outcome is in the *persisted*
//! status (the prior pass moved past it), so a lost status write never loses an outcome.

use std::time::Duration;

use crate::crd::{Member, Operation, OperationKind, OperationStep};

use super::context::Cx;
use super::{Action, JobKind, JobState, Reported};

/// Where an operation's Job is.
pub(crate) enum JobProgress {
    /// Not created yet, waiting for a leftover to go, backing off, or running.
    Waiting,
    Succeeded(Option<Reported>),
    Failed(String, Option<Reported>),
}

/// Drive the Job of `kind` on `op.member`: create it, wait, return its outcome.
pub(crate) fn run(cx: &mut Cx, op: &mut Operation, kind: JobKind) -> JobProgress {
    let member = op.member;
    match cx.obs.job(kind, member) {
        Some(j) if j.state == JobState::Running => {
            op.job = Some(j.name.clone());
            op.job_created = true;
            JobProgress::Waiting
        }
        Some(j) if op.job_created => {
            op.job = Some(j.name.clone());
            match j.state {
                JobState::Succeeded => JobProgress::Succeeded(j.report.clone()),
                _ => JobProgress::Failed(report_error(j.report.as_ref()), j.report.clone()),
            }
        }
        Some(j) => {
            cx.act(Action::DeleteJob {
                name: j.name.clone(),
            });
            JobProgress::Waiting
        }
        None => {
            if let Some(t) = &op.retry_after {
                if t.0 > cx.now {
                    let wait = t.0.duration_since(cx.now).try_into();
                    cx.requeue_within(wait.unwrap_or(Duration::ZERO));
                    return JobProgress::Waiting;
                }
            }
            if mounts_pvc(kind) && !pvc_free(cx, member) {
                return JobProgress::Waiting; // the member's pod still holds its volume
            }
            cx.act(Action::CreateJob { kind, member });
            op.job_created = true;
            op.job = None;
            JobProgress::Waiting
        }
    }
}

/// Jobs that write the member's data directory through its PVC.
pub fn mounts_pvc(kind: JobKind) -> bool {
    matches!(kind, JobKind::Initdb | JobKind::Clone | JobKind::Rejoin)
}

/// The member's StatefulSet is at 0 and its pod is gone: its volume is free for a Job.
pub(crate) fn pvc_free(cx: &Cx, m: Member) -> bool {
    let seen = cx.seen(m);
    matches!(seen.replicas, None | Some(0)) && seen.pod.is_none()
}

/// Record a failed attempt: the next one starts after an exponential backoff (10 s doubling,
/// at most 5 min). Failed Jobs are retried without limit: the usual causes (image, storage,
/// network, the source being busy) are fixed outside the operator, and every Job here is safe
/// to repeat.
pub(crate) fn record_failure(cx: &mut Cx, op: &mut Operation) -> Duration {
    op.attempts = op.attempts.saturating_add(1);
    let backoff = backoff(op.attempts);
    op.retry_after = Some(cx.after(backoff));
    op.job_created = false;
    op.job = None;
    cx.requeue_within(backoff);
    backoff
}

/// Backoff after `attempts` failures.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(5));
    Duration::from_secs(secs.min(300))
}

fn report_error(report: Option<&Reported>) -> String {
    report
        .and_then(Reported::error)
        .map(str::to_string)
        .unwrap_or_else(|| "the Job failed without a report".to_string())
}

/// The Job an operation waits for in a given state, if any.
pub(crate) fn awaited(op: &Operation) -> Option<JobKind> {
    let kind = match (op.kind, op.step) {
        (_, OperationStep::Verifying) => JobKind::Check,
        (_, s) if s != OperationStep::RunningJob => return None,
        (OperationKind::Initdb, _) => JobKind::Initdb,
        (OperationKind::Clone, _) => JobKind::Clone,
        (OperationKind::Rejoin, _) if op.force => JobKind::Clone,
        (OperationKind::Rejoin, _) => JobKind::Rejoin,
        (OperationKind::Sync, _) => JobKind::Sync,
        (OperationKind::Restore, _) => JobKind::Restore,
        (OperationKind::Check, _) => JobKind::Check,
        (OperationKind::Failover | OperationKind::Switchover, _) => return None,
    };
    Some(kind)
}

/// Delete finished Jobs nobody waits for: neither the persisted operation (its outcome is not
/// recorded yet) nor the current one (it deletes its own leftovers).
pub(crate) fn clean_up(cx: &mut Cx) {
    let waits = |op: &Option<Operation>, kind: JobKind, m: Member| {
        op.as_ref()
            .is_some_and(|op| op.member == m && awaited(op) == Some(kind))
    };
    let mut names = Vec::new();
    for j in &cx.obs.jobs {
        if j.state == JobState::Running
            || waits(&cx.prior.operation, j.kind, j.member)
            || waits(&cx.status.operation, j.kind, j.member)
            || j.kind == JobKind::Backup
        {
            continue;
        }
        let name = j.name.clone();
        let already = cx
            .actions
            .iter()
            .any(|a| matches!(a, Action::DeleteJob { name: n } if *n == name));
        if !already {
            names.push(name);
        }
    }
    for name in names {
        cx.act(Action::DeleteJob { name });
    }
}
