//! Consistency checks: a `check` Job compares the authoritative member (source) with the other
//! one (target) every `consistencyCheck.intervalSeconds`, counted from the last check.
//! A difference is reported (ConsistencyVerified=False, Event) and, with `autoRepair` or when a
//! `receiptdb.io/sync=now` asked for it, the non-authoritative member is re-aligned in full.

use std::time::Duration;

use crate::crd::{Member, Operation, OperationKind, OperationStep};

use super::context::Cx;
use super::jobs::{self, JobProgress};
use super::last_check::{record, verdict};
use super::{realign, JobKind};

/// Start a periodic check when one is due. True when started.
pub(crate) fn plan(cx: &mut Cx) -> bool {
    let interval = cx.spec().consistency_check.interval_seconds;
    if interval == 0 {
        return false;
    }
    let (Some(active), Some(auth)) = (cx.status.active_member, cx.status.authoritative_member)
    else {
        return false;
    };
    let n = auth.other();
    if active != auth || !ready_to_compare(cx, auth, n) {
        return false;
    }
    if let Some(last) = &cx.status.last_check {
        let every = Duration::from_secs(u64::from(interval));
        let elapsed = cx.since(last.time.0);
        if elapsed < every {
            cx.requeue_within(every - elapsed);
            return false;
        }
    }
    start(cx, n, "periodic consistency check", None);
    true
}

/// Both members answer and the target holds current data.
pub(crate) fn ready_to_compare(cx: &Cx, auth: Member, n: Member) -> bool {
    cx.healthy(auth)
        && cx.healthy(n)
        && cx.may_serve(auth)
        && cx.may_serve(n)
        && !cx.in_maintenance(n)
        && !cx.in_maintenance(auth)
}

pub(crate) fn start(cx: &mut Cx, n: Member, reason: &str, request: Option<&str>) {
    let mut op = Operation::new(
        OperationKind::Check,
        n,
        OperationStep::RunningJob,
        cx.micro_time(),
    );
    op.reason = reason.to_string();
    op.request = request.map(str::to_string);
    cx.status.operation = Some(op);
}

/// Advance a `Check`; `None` when over (or the repair operation it started).
pub(crate) fn advance(cx: &mut Cx, mut op: Operation) -> Option<Operation> {
    let n = op.member;
    if cx.status.authoritative_member != Some(n.other()) {
        return None;
    }
    let report = match jobs::run(cx, &mut op, JobKind::Check) {
        JobProgress::Waiting => return Some(op),
        JobProgress::Succeeded(r) | JobProgress::Failed(_, r) => r,
    };
    record(cx, report.as_ref());
    match verdict(report.as_ref()) {
        Some(true) => None,
        Some(false) => {
            let tables = cx
                .status
                .last_check
                .as_ref()
                .map(|c| c.differing_tables.join(", "))
                .unwrap_or_default();
            cx.event(
                true,
                "InconsistencyFound",
                format!("{n} differs from {}: {tables}", n.other()),
            );
            let repair = cx.spec().consistency_check.auto_repair || op.request.is_some();
            if !repair {
                return None;
            }
            let request = op.request.clone();
            realign::start(
                cx,
                n,
                true,
                "a consistency check found differences",
                request.as_deref(),
            );
            cx.status.operation.take()
        }
        None => {
            cx.event(
                true,
                "ConsistencyCheckFailed",
                format!("the check Job could not compare {n}: see lastCheck"),
            );
            None
        }
    }
}
