//! `status.lastBackup` from the scheduled backup's Jobs.
//!
//! The CronJob runs the backups; the operator only reads their outcome: the newest finished Job
//! and the report its pod left in the termination message. A new outcome becomes
//! `status.lastBackup` (hence the `BackupSucceeded` condition) and one Event, Normal when it
//! succeeded and Warning when it failed. The same outcome seen again changes nothing.

use crate::crd::BackupRecord;

use super::context::Cx;
use super::FinishedBackup;

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
    let text = |key: &str| {
        report
            .and_then(|r| r.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let file = text("output");
    let size_bytes = report
        .and_then(|r| r.get("file_bytes"))
        .and_then(serde_json::Value::as_i64);
    let manifest = |key: &str| {
        report
            .and_then(|r| r.pointer(&format!("/manifest/{key}")))
            .cloned()
    };
    let message = if job.succeeded {
        let lsn = manifest("snapshot_lsn")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        let encrypted = manifest("encrypted").and_then(|v| v.as_bool()) == Some(true);
        match (&file, size_bytes) {
            (Some(f), Some(n)) => format!(
                "{f}: {n} bytes, LSN {lsn}, {}encrypted (Job {})",
                if encrypted { "" } else { "not " },
                job.name
            ),
            _ => format!("Job {} succeeded (no report)", job.name),
        }
    } else {
        // The report is `{"ok": false, "error": ...}`, or the raw message when it was not JSON.
        match text("error").or_else(|| report.and_then(|r| r.as_str()).map(str::to_string)) {
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
