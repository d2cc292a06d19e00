//! Consistency checks: a `check` Job compares the authoritative member (source) with the other
//! one (target) every `consistencyCheck.intervalSeconds`, counted from the last check.
//! A difference is reported (ConsistencyVerified=False, Event) and, with `autoRepair` or when a
//! `receiptdb.io/sync=now` asked for it, the non-authoritative member is re-aligned in full.

use std::time::Duration;

use receiptdb_postgres::job_report::{CheckReport, JobReport};

use crate::crd::{CheckMethod, CheckRecord, Member, Operation, OperationKind, OperationStep};

use super::context::Cx;
use super::jobs::{self, JobProgress};
use super::{realign, JobKind, Reported};

/// Prefix of `lastCheck.message` when the check could not run (ConsistencyVerified Unknown).
pub const CHECK_ERROR: &str = "check could not run: ";

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

/// The check's report, when the message was one.
fn check_report(report: Option<&Reported>) -> Option<&CheckReport> {
    match report?.report()? {
        JobReport::Check(r) => Some(r),
        _ => None,
    }
}

/// The report's verdict: `Some(equal)`, or `None` when the check did not run to the end.
pub fn verdict(report: Option<&Reported>) -> Option<bool> {
    check_report(report).filter(|r| r.ok)?.equal
}

/// Record a check's outcome in `lastCheck`.
pub(crate) fn record(cx: &mut Cx, report: Option<&Reported>) {
    let checked = check_report(report);
    let verdict = verdict(report);
    let differing = checked
        .map(|r| r.differing_tables.clone())
        .unwrap_or_default();
    let message = match (verdict, checked) {
        (Some(true), _) => "the two databases compare equal".to_string(),
        (Some(false), Some(r)) => {
            format!("{} table(s) differ", r.differing_count.max(differing.len()))
        }
        _ => format!(
            "{CHECK_ERROR}{}",
            report.and_then(Reported::error).unwrap_or("no report")
        ),
    };
    cx.status.last_check = Some(CheckRecord {
        time: cx.time(),
        method: checked
            .and_then(|r| r.method)
            .map_or(cx.spec().consistency_check.method, CheckMethod::from),
        equal: verdict == Some(true),
        differing_tables: differing,
        message,
    });
}
