//! How an entrypoint ends: its [`JobReport`] as one line of JSON, at most 4 KiB, so it fits a
//! Pod's termination message (`--report /dev/termination-log`) and the operator reads the
//! outcome without reading logs; with the small output helpers every entrypoint (`initdb`,
//! `clone`, `rejoin`, `check`, `sync`, `backup`, `restore`) has in common.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::job_report::{Entrypoint, JobReport, MAX_REPORT};

/// Milliseconds since `started`, for reports.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Write `report` as the report line to `path`, when given.
pub(crate) fn write_report(path: Option<&Path>, report: impl Into<JobReport>) {
    if path.is_some() {
        write(path, &report.into().to_line());
    }
}

/// Print an error, record it in the report file if any, and return exit code 2.
pub(crate) fn fail(
    entrypoint: Entrypoint,
    report: &Option<std::path::PathBuf>,
    message: &str,
) -> ExitCode {
    eprintln!("error: {message}");
    write_report(report.as_deref(), JobReport::failed(entrypoint, message));
    ExitCode::from(2)
}

/// Print a value as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render the report as JSON: {e}"),
    }
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

/// How a member entrypoint (`initdb`, `clone`, `rejoin`) ends: the report of its result, or the
/// one `failed` builds from the error text; the one-line JSON written to `--report FILE` and, with
/// `--json`, to stdout; otherwise `print_ok`'s text, or "COMMAND failed: ERROR" on stderr. Exit 0
/// on success, 2 on error.
pub(crate) fn finish<R, E: std::fmt::Display>(
    command: Entrypoint,
    result: Result<R, E>,
    failed: impl FnOnce(String) -> R,
    report_path: Option<&Path>,
    json: bool,
    print_ok: impl FnOnce(&R),
) -> ExitCode
where
    R: Clone + Into<JobReport>,
{
    let (rep, error) = match result {
        Ok(rep) => (rep, None),
        Err(e) => {
            let text = e.to_string();
            (failed(text.clone()), Some(text))
        }
    };
    let line = rep.clone().into().to_line();
    write(report_path, &line);
    if json {
        println!("{line}");
    } else if let Some(err) = &error {
        eprintln!("{} failed: {err}", command.as_str());
    } else {
        print_ok(&rep);
    }
    if error.is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        write_report(Some(&path), r);
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
