//! An entrypoint's [`JobReport`](crate::job_report::JobReport) as one line of JSON, at most 4 KiB, so it fits a Pod's
//! termination message (`--report /dev/termination-log`) and the operator reads the outcome
//! without reading logs; written to the report file by `cli::finish` (how every entrypoint
//! ends).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::job_report::MAX_REPORT;

/// Milliseconds since `started`, for reports.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Serialize `report` to one line under [`MAX_REPORT`] bytes, shortening long strings (error
/// texts, program output) until it fits.
pub(crate) fn one_line(report: &impl Serialize) -> String {
    let mut value = serde_json::to_value(report).unwrap_or_else(|e| {
        serde_json::json!({ "ok": false, "error": format!("cannot serialize the report: {e}") })
    });
    for limit in [800usize, 300, 100, 40] {
        let text = value.to_string();
        if text.len() < MAX_REPORT {
            return text;
        }
        shorten(&mut value, limit);
    }
    let text = value.to_string();
    if text.len() < MAX_REPORT {
        text
    } else {
        let keep = |k: &str| value.get(k).cloned().unwrap_or(Value::Null);
        serde_json::json!({ "command": keep("command"), "ok": keep("ok"), "error": "report too long" })
            .to_string()
    }
}

fn shorten(v: &mut Value, limit: usize) {
    match v {
        Value::String(s) if s.len() > limit => {
            let mut end = limit;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push_str("...");
        }
        Value::Array(a) => a.iter_mut().for_each(|x| shorten(x, limit)),
        Value::Object(o) => o.values_mut().for_each(|x| shorten(x, limit)),
        _ => {}
    }
}

/// Write the report line to `path` (when given); a failure is logged, not fatal: the report
/// also goes to stdout.
pub(crate) fn write(path: Option<&Path>, line: &str) {
    if let Some(path) = path {
        if let Err(e) = std::fs::write(path, format!("{line}\n")) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the report file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_report::{Entrypoint, JobReport};

    #[test]
    fn long_reports_are_shortened_to_fit() {
        let big = "x".repeat(10_000);
        let line = one_line(&serde_json::json!({ "ok": false, "error": big, "n": 1 }));
        assert!(line.len() < MAX_REPORT, "{}", line.len());
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["n"], 1);
    }

    #[test]
    fn the_report_file_holds_one_parsable_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report");
        let r = JobReport::failed(Entrypoint::Sync, "x".repeat(10_000));
        write(Some(&path), &r.to_line());
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(
            line.len() <= MAX_REPORT && line.ends_with('\n') && line.trim().lines().count() == 1
        );
        let back = JobReport::parse(&line).unwrap();
        assert_eq!((back.entrypoint(), back.ok()), (Entrypoint::Sync, false));
        assert!(back.error().unwrap().starts_with("xxx"));
    }

    #[test]
    fn the_last_resort_keeps_the_command() {
        let many: Vec<String> = (0..2000).map(|i| format!("{i}")).collect();
        let line = one_line(&serde_json::json!({ "command": "check", "ok": true, "tables": many }));
        assert!(line.len() < MAX_REPORT);
        let back = JobReport::parse(&line).unwrap();
        assert_eq!(
            (back.entrypoint(), back.error()),
            (Entrypoint::Check, Some("report too long"))
        );
    }
}
