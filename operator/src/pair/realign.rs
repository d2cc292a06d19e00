//! Re-alignment of a stale member from the authoritative one.
//!
//! Streaming: a `rejoin` Job on the stale member's PVC while it is scaled to 0 (pg_rewind, with
//! a fresh clone as the fallback; `force` asks for the clone), then it starts as a standby and
//! `InSync` follows when it streams with zero lag. External: a `sync` Job into the running
//! member, then a `check` Job; the member stops being stale only when both compare equal.

use receiptdb_postgres::job_report::{JobReport, RejoinReport};

use crate::crd::{
    DiscardedWal, Member, Operation, OperationKind, OperationStep, ServerRole, SyncRecord,
};

use super::context::Cx;
use super::jobs::{self, JobProgress};
use super::last_check;
use super::{JobKind, Reported};

/// Start re-aligning the stale non-authoritative member, when it may be. True when started.
pub(crate) fn plan(cx: &mut Cx) -> bool {
    let Some(auth) = cx.status.authoritative_member else {
        return false;
    };
    let n = auth.other();
    let st = cx.member(n);
    if !st.initialized || !st.stale || cx.in_maintenance(n) || !source_ready(cx, auth) {
        return false;
    }
    start(cx, n, false, "the member's data is stale", None);
    true
}

/// The authoritative member can be copied from.
pub(crate) fn source_ready(cx: &Cx, auth: Member) -> bool {
    cx.healthy(auth)
        && cx.may_serve(auth)
        && (!cx.streaming() || cx.member(auth).role == Some(ServerRole::Primary))
}

/// Start re-aligning `n` (streaming: rejoin, fenced; external: sync into the running member).
pub(crate) fn start(cx: &mut Cx, n: Member, force: bool, reason: &str, request: Option<&str>) {
    let kind = if cx.streaming() {
        OperationKind::Rejoin
    } else {
        OperationKind::Sync
    };
    let mut op = Operation::new(kind, n, OperationStep::RunningJob, cx.micro_time());
    op.force = force;
    op.reason = reason.to_string();
    op.request = request.map(str::to_string);
    cx.mark_stale(n);
    cx.event(
        false,
        "RealignStarted",
        format!(
            "re-aligning {n} from {} ({reason}{})",
            n.other(),
            if force { ", full copy" } else { "" }
        ),
    );
    cx.status.operation = Some(op);
}

/// Advance a `Rejoin` or `Sync` operation; `None` when it is over.
pub(crate) fn advance(cx: &mut Cx, mut op: Operation) -> Option<Operation> {
    let n = op.member;
    if cx.status.authoritative_member != Some(n.other()) {
        return None; // the source is not the truth anymore: plan again
    }
    if op.step == OperationStep::Verifying {
        return verify(cx, op);
    }
    let kind = jobs::awaited(&op).unwrap_or(JobKind::Rejoin);
    match jobs::run(cx, &mut op, kind) {
        JobProgress::Waiting => Some(op),
        JobProgress::Failed(why, _) => {
            let backoff = jobs::record_failure(cx, &mut op);
            cx.event(
                true,
                "RealignFailed",
                format!(
                    "{} of {n} failed (attempt {}): {why}; retrying in {}s",
                    kind.as_str(),
                    op.attempts,
                    backoff.as_secs()
                ),
            );
            op.last_error = Some(why);
            Some(op)
        }
        JobProgress::Succeeded(report) if op.kind == OperationKind::Sync => {
            record(cx, n, kind, report.as_ref());
            op.step = OperationStep::Verifying;
            op.job_created = false;
            op.job = None;
            Some(op)
        }
        JobProgress::Succeeded(report) => {
            record(cx, n, kind, report.as_ref());
            cx.realigned(n);
            cx.member_mut(n).failing_since = None;
            cx.event(
                false,
                "Realigned",
                format!("{n} re-aligned; starting as a standby"),
            );
            None
        }
    }
}

fn verify(cx: &mut Cx, mut op: Operation) -> Option<Operation> {
    let n = op.member;
    match jobs::run(cx, &mut op, JobKind::Check) {
        JobProgress::Waiting => Some(op),
        JobProgress::Succeeded(report) | JobProgress::Failed(_, report)
            if last_check::verdict(report.as_ref()) == Some(true) =>
        {
            last_check::record(cx, report.as_ref());
            cx.verified_equal(n);
            cx.event(
                false,
                "Realigned",
                format!("{n} re-aligned and verified equal"),
            );
            None
        }
        JobProgress::Succeeded(report) | JobProgress::Failed(_, report) => {
            last_check::record(cx, report.as_ref());
            let backoff = jobs::record_failure(cx, &mut op);
            op.step = OperationStep::RunningJob;
            cx.event(
                true,
                "RealignFailed",
                format!(
                    "{n} still differs after sync (attempt {}); syncing again in {}s",
                    op.attempts,
                    backoff.as_secs()
                ),
            );
            Some(op)
        }
    }
}

/// Record a finished re-alignment in `lastSync` from the Job's report; WAL it discarded also
/// gets a Warning Event.
fn record(cx: &mut Cx, n: Member, kind: JobKind, report: Option<&Reported>) {
    let from = n.other();
    let (method, details, discarded) = match report.and_then(Reported::report) {
        Some(JobReport::Rejoin(r)) => {
            let method = r.method.map_or("rejoin", |m| m.as_str());
            (method, Some(r.reason.clone()), discarded(r))
        }
        Some(JobReport::Clone(_)) => ("clone", None, None),
        Some(JobReport::Sync(r)) => (
            "sync",
            Some(format!(
                "{} table(s) loaded, {} rows: {}",
                r.tables_count, r.rows, r.reason
            )),
            None,
        ),
        // No readable report: the Job that ran says how.
        _ => match kind {
            JobKind::Clone => ("clone", None, None),
            JobKind::Sync => ("sync", None, None),
            _ => ("rejoin", None, None),
        },
    };
    let mut message = match method {
        "none" => format!("{n} re-aligned from {from} with no data changed"),
        m => format!("{n} re-aligned from {from} by {m}"),
    };
    if let Some(d) = details.filter(|d| !d.is_empty()) {
        message.push_str(&format!(" ({d})"));
    }
    if let Some(d) = &discarded {
        cx.event(
            true,
            "WalDiscarded",
            format!(
                "re-aligning {n} discarded {} bytes of WAL that {from} never had: {}-{} on timeline {}",
                d.bytes,
                d.from.as_deref().unwrap_or("?"),
                d.to.as_deref().unwrap_or("?"),
                d.timeline.map_or("?".to_string(), |t| t.to_string()),
            ),
        );
    }
    cx.status.last_sync = Some(SyncRecord {
        time: cx.time(),
        member: n,
        method: method.to_string(),
        succeeded: true,
        message,
        discarded,
    });
}

/// The WAL a rejoin discarded, when it discarded any.
pub fn discarded(r: &RejoinReport) -> Option<DiscardedWal> {
    (r.lost.bytes > 0).then(|| DiscardedWal {
        timeline: r.stale_timeline,
        from: r.lost.from.map(|l| l.to_string()),
        to: r.lost.to.map(|l| l.to_string()),
        bytes: i64::try_from(r.lost.bytes).unwrap_or(i64::MAX),
    })
}
