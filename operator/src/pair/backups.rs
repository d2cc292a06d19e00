//! `status.lastBackup` from the scheduled backup's Jobs.
//!
//! The CronJob runs the backups; the operator only reads their outcome: the newest finished Job
//! and the report its pod left in the termination message. A new outcome becomes
//! `status.lastBackup` (hence the `BackupSucceeded` condition) and one Event, Normal when it
//! succeeded and Warning when it failed. The same outcome seen again changes nothing.

use receiptdb_postgres::job_report::JobReport;

use crate::crd::BackupRecord;

use super::context::Cx;
use super::{FinishedBackup, Reported};

/// Record the newest finished backup, when it is newer than the one recorded.
pub(crate) fn record(cx: &mut Cx) {
    let Some(job) = &cx.obs.last_backup_job else {
        return;
    };
    let known = cx.status.last_backup.as_ref();
    if known.is_some_and(|b| b.time.0 >= job.finished.0) {
        return;
    }
    let rec = backup_record(job);
    if rec.succeeded {
        cx.event(false, "BackupSucceeded", rec.message.clone());
    } else {
        cx.event(true, "BackupFailed", rec.message.clone());
    }
    cx.status.last_backup = Some(rec);
}

fn backup_record(job: &FinishedBackup) -> BackupRecord {
    let report = job.report.as_ref();
    let written = match report.and_then(Reported::report) {
        Some(JobReport::Backup(r)) if r.ok => Some(r),
        _ => None,
    };
    let file = written.and_then(|r| r.output.clone());
    let size_bytes = written.map(|r| i64::try_from(r.file_bytes).unwrap_or(i64::MAX));
    let message = if job.succeeded {
        match (written, &file) {
            (Some(r), Some(f)) => format!(
                "{f}: {} bytes, LSN {}, {}encrypted (Job {})",
                r.file_bytes,
                r.snapshot_lsn
                    .map_or("unknown".to_string(), |l| l.to_string()),
                if r.encrypted { "" } else { "not " },
                job.name
            ),
            _ => format!("Job {} succeeded (no report)", job.name),
        }
    } else {
        match report.and_then(Reported::error) {
            Some(e) => format!("Job {} failed: {e}", job.name),
            None => format!("Job {} failed (no report; see its pod's log)", job.name),
        }
    };
    BackupRecord {
        time: job.finished.clone(),
        succeeded: job.succeeded,
        file: if job.succeeded { file } else { None },
        size_bytes: if job.succeeded { size_bytes } else { None },
        message,
    }
}
