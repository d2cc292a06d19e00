//! Bootstrap: give members their first data, or new data after it was lost.
//!
//! Streaming: `initdb` on `primary` (then a `restore` into it when `bootstrap.fromBackup` is
//! set), then `clone` of the other member from it. External: `initdb` on each member, the
//! non-authoritative one marked stale so a `sync` Job (re-alignment) copies the data over.
//! When both members' data is lost after the pair held data, an empty `initdb` would silently
//! serve an empty database: the pair is re-created from the backup when one is configured, and
//! otherwise stops with `Failed` for a person to decide.

use receiptdb_postgres::job_report::JobReport;

use crate::crd::{Member, Operation, OperationKind, OperationStep, SyncRecord};

use super::context::Cx;
use super::jobs::{self, JobProgress};
use super::{JobKind, Reported};

/// Why bootstrap cannot continue on its own, when it cannot.
pub(crate) const BOTH_LOST: &str = "both members' data is lost and no bootstrap.fromBackup is \
    configured: restore a backup by hand or set bootstrap.fromBackup";

/// Start the next bootstrap operation, if one is due. Returns true when bootstrap owns this pass.
pub(crate) fn plan(cx: &mut Cx) -> bool {
    let lost_before = cx.status.authoritative_member.is_some();
    let auth = cx.status.authoritative_member.unwrap_or(Member::Primary);
    let initialized = |cx: &Cx, m: Member| cx.member(m).initialized;
    if !initialized(cx, Member::Primary) && !initialized(cx, Member::Secondary) {
        if lost_before && cx.spec().bootstrap.from_backup.is_none() {
            return true; // Failed: see BOTH_LOST
        }
        if cx.in_maintenance(auth) {
            return true;
        }
        cx.status.pending_restore = cx.spec().bootstrap.from_backup.is_some();
        let reason = if lost_before {
            "both members' data is lost"
        } else {
            "new pair"
        };
        start(cx, OperationKind::Initdb, auth, reason);
        return true;
    }
    if !initialized(cx, auth) {
        return false; // the other member holds data: failover decides whether it may take over
    }
    if cx.status.pending_restore {
        if cx.healthy(auth) {
            start(cx, OperationKind::Restore, auth, "bootstrap.fromBackup");
        }
        return true;
    }
    let other = auth.other();
    if initialized(cx, other) || cx.in_maintenance(other) {
        return false;
    }
    let source_ready = cx.healthy(auth) && cx.may_serve(auth);
    if cx.streaming() {
        if source_ready {
            start(cx, OperationKind::Clone, other, "the member has no data");
        }
    } else {
        start(cx, OperationKind::Initdb, other, "the member has no data");
    }
    true
}

fn start(cx: &mut Cx, kind: OperationKind, m: Member, reason: &str) {
    let mut op = Operation::new(kind, m, OperationStep::RunningJob, cx.micro_time());
    op.reason = reason.to_string();
    cx.event(
        false,
        "BootstrapStarted",
        format!("{kind:?} of {m}: {reason}"),
    );
    cx.status.operation = Some(op);
}

/// Advance an `Initdb`, `Clone` or `Restore` operation; `None` when it is over.
pub(crate) fn advance(cx: &mut Cx, mut op: Operation) -> Option<Operation> {
    let kind = match op.kind {
        OperationKind::Initdb => JobKind::Initdb,
        OperationKind::Clone => JobKind::Clone,
        _ => JobKind::Restore,
    };
    let m = op.member;
    if kind == JobKind::Clone {
        let auth = cx.status.authoritative_member;
        if auth != Some(m.other()) || !cx.member(m.other()).initialized {
            return None; // the source is not the truth anymore: plan again
        }
    }
    match jobs::run(cx, &mut op, kind) {
        JobProgress::Waiting => Some(op),
        JobProgress::Succeeded(report) => {
            succeeded(cx, &op, kind, report.as_ref());
            None
        }
        JobProgress::Failed(why, _) => {
            let backoff = jobs::record_failure(cx, &mut op);
            cx.event(
                true,
                "BootstrapFailed",
                format!(
                    "{} Job for {m} failed (attempt {}): {why}; retrying in {}s",
                    kind.as_str(),
                    op.attempts,
                    backoff.as_secs()
                ),
            );
            op.last_error = Some(why);
            Some(op)
        }
    }
}

fn succeeded(cx: &mut Cx, op: &Operation, kind: JobKind, report: Option<&Reported>) {
    let report = report.and_then(Reported::report);
    let m = op.member;
    let now = cx.time();
    match kind {
        JobKind::Restore => {
            cx.status.pending_restore = false;
            cx.status.last_sync = Some(SyncRecord {
                time: now,
                member: m,
                method: "restore".to_string(),
                succeeded: true,
                message: restored_message(report),
                discarded: None,
            });
        }
        _ => {
            cx.bootstrap_initialized(m);
            if kind == JobKind::Clone {
                cx.status.last_sync = Some(SyncRecord {
                    time: now,
                    member: m,
                    method: "clone".to_string(),
                    succeeded: true,
                    message: cloned_message(report),
                    discarded: None,
                });
            }
        }
    }
    cx.event(
        false,
        "BootstrapStepSucceeded",
        format!("{} of {m} succeeded", kind.as_str()),
    );
}

fn restored_message(report: Option<&JobReport>) -> String {
    match report {
        Some(JobReport::Restore(r)) => format!(
            "restored {} from {} (snapshot LSN {})",
            r.database,
            r.input.as_deref().unwrap_or("a backup"),
            r.snapshot_lsn
                .map_or("unknown".to_string(), |l| l.to_string())
        ),
        _ => "restored from bootstrap.fromBackup".to_string(),
    }
}

fn cloned_message(report: Option<&JobReport>) -> String {
    match report {
        Some(JobReport::Clone(r)) => match r.timeline {
            Some(t) => format!("cloned from {} (timeline {t})", r.source),
            None => format!("cloned from {}", r.source),
        },
        _ => "cloned from the authoritative member".to_string(),
    }
}
