//! A `check` Job's report: its verdict, and its record in `lastCheck`. Shared by the
//! consistency checks (`checks.rs`) and the verify step of an external `sync`
//! (`realign.rs`), which both read check reports; neither depends on the other for it.

use receiptdb_postgres::job_report::{CheckReport, JobReport};

use crate::crd::{CheckMethod, CheckRecord};

use super::context::Cx;
use super::Reported;

/// Prefix of `lastCheck.message` when the check could not run (ConsistencyVerified Unknown).
pub const CHECK_ERROR: &str = "check could not run: ";

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
