//! The final report of a Job entrypoint: one line of JSON, at most 4 KiB, so it fits a Pod's
//! termination message (`--report /dev/termination-log`) and the operator reads the outcome
//! without reading logs. Shared by every entrypoint (`initdb`, `clone`, `rejoin`, `check`,
//! `sync`, `backup`, `restore`), with the small output helpers they have in common.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

/// Milliseconds since `started`, for reports.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Write `full` as the report line to `path`, or `summary` when `full` does not fit the
/// termination message (shortened further by [`one_line`] if it must be).
pub(crate) fn write_file(path: &Path, full: &impl Serialize, summary: &impl Serialize) {
    let line = match serde_json::to_string(full) {
        Ok(s) if s.len() < MAX_REPORT => s,
        _ => one_line(summary),
    };
    write(Some(path), &line);
}

/// Print an error, record it in the report file if any, and return exit code 2.
pub(crate) fn fail(report: &Option<std::path::PathBuf>, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    if let Some(path) = report {
        let f = serde_json::json!({ "ok": false, "error": message });
        write(Some(path), &one_line(&f));
    }
    ExitCode::from(2)
}

/// Print a value as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render the report as JSON: {e}"),
    }
}

/// The termination message limit.
pub(crate) const MAX_REPORT: usize = 4096;

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
        serde_json::json!({ "ok": value.get("ok").cloned().unwrap_or(Value::Null), "error": "report too long" })
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
pub(crate) fn finish<R: Serialize, E: std::fmt::Display>(
    command: &str,
    result: Result<R, E>,
    failed: impl FnOnce(String) -> R,
    report_path: Option<&Path>,
    json: bool,
    print_ok: impl FnOnce(&R),
) -> ExitCode {
    let (rep, error) = match result {
        Ok(rep) => (rep, None),
        Err(e) => {
            let text = e.to_string();
            (failed(text.clone()), Some(text))
        }
    };
    let line = one_line(&rep);
    write(report_path, &line);
    if json {
        println!("{line}");
    } else if let Some(err) = &error {
        eprintln!("{command} failed: {err}");
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
    fn the_report_file_holds_the_full_report_or_its_summary_when_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report");
        let summary = serde_json::json!({ "ok": true, "tables": 3 });
        let small = serde_json::json!({ "ok": true, "tables": ["a", "b", "c"] });
        write_file(&path, &small, &summary);
        let line = std::fs::read_to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), small);
        let big = serde_json::json!({ "ok": true, "tables": vec!["t".repeat(50); 200] });
        write_file(&path, &big, &summary);
        let line = std::fs::read_to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), summary);
        assert!(line.len() < MAX_REPORT);
    }
}
