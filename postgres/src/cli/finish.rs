//! How every entrypoint ends: its report line written to `--report FILE`, its result printed
//! (JSON with `--json`, else text), and its exit code: 0 done, 1 only for a `check` that found
//! differences, 2 an error.
//!
//! Entrypoints print in one of two styles, as they always have (`docs/job-interface.md`):
//! `initdb`, `clone` and `rejoin` have no result beyond their report, so `--json` prints the
//! report line, even on failure, and an error otherwise reads "COMMAND failed: ERROR" on stderr;
//! `check`, `sync`, `backup` and `restore` print their full result with `--json`, and an error
//! reads "error: ERROR" on stderr whatever the flags.

use std::process::ExitCode;

use serde::Serialize;

use super::args::Reporting;
use crate::job_report::{Entrypoint, JobReport};
use crate::report;

/// `check`'s exit status when the databases differ (0: equal, 2: an error).
pub const EXIT_DIFFERENT: u8 = 1;

/// The exit status of an error.
const EXIT_ERROR: u8 = 2;

/// An entrypoint that did what it was asked: its report and what it prints.
pub(crate) struct Done {
    report: JobReport,
    /// What `--json` prints: the full result, rendered; None: the report line.
    json: Option<serde_json::Result<String>>,
    /// What it prints without `--json`.
    text: String,
    /// Lines printed after the result, with or without `--json`.
    after: Vec<String>,
}

impl Done {
    /// A result whose `--json` output is its report line (`initdb`, `clone`, `rejoin`).
    pub(crate) fn report_line(report: impl Into<JobReport>, text: String) -> Done {
        Done {
            report: report.into(),
            json: None,
            text,
            after: Vec::new(),
        }
    }

    /// A result whose `--json` output is `full`, pretty (`check`, `sync`, `backup`, `restore`).
    pub(crate) fn full(report: impl Into<JobReport>, full: &impl Serialize, text: String) -> Done {
        Done {
            report: report.into(),
            json: Some(serde_json::to_string_pretty(full)),
            text,
            after: Vec::new(),
        }
    }

    /// Print `line` after the result.
    pub(crate) fn then_print(mut self, line: String) -> Done {
        self.after.push(line);
        self
    }
}

/// Write the report line, print the outcome, return the exit code. The outcome is what the
/// entrypoint did, or the report of one that could not do what it was asked (its `error` says
/// why).
pub(crate) fn finish(reporting: &Reporting, outcome: Result<Done, JobReport>) -> ExitCode {
    let ending = ending(reporting.json, outcome);
    report::write(reporting.report.as_deref(), &ending.line);
    if let Some(err) = &ending.stderr {
        eprintln!("{err}");
    }
    for out in &ending.stdout {
        println!("{out}");
    }
    ExitCode::from(ending.code)
}

/// What [`finish()`] writes, prints and returns, decided before any of it happens.
#[derive(Debug, PartialEq)]
struct Ending {
    /// The report line (for `--report FILE`).
    line: String,
    /// Printed on stderr first (error messages).
    stderr: Option<String>,
    /// Printed on stdout, one `println!` each.
    stdout: Vec<String>,
    code: u8,
}

/// Whether `--json` prints the report line (else the entrypoint's full result).
fn json_is_the_report_line(entrypoint: Entrypoint) -> bool {
    matches!(
        entrypoint,
        Entrypoint::Initdb | Entrypoint::Clone | Entrypoint::Rejoin
    )
}

fn ending(json: bool, outcome: Result<Done, JobReport>) -> Ending {
    match outcome {
        Ok(done) => {
            let line = done.report.to_line();
            let code = match &done.report {
                JobReport::Check(c) if c.equal == Some(false) => EXIT_DIFFERENT,
                _ => 0,
            };
            let (mut stdout, mut stderr) = (Vec::new(), None);
            match (json, done.json) {
                (false, _) => stdout.push(done.text),
                (true, None) => stdout.push(line.clone()),
                (true, Some(Ok(full))) => stdout.push(full),
                (true, Some(Err(e))) => {
                    stderr = Some(format!("error: cannot render the report as JSON: {e}"))
                }
            }
            stdout.extend(done.after);
            Ending {
                line,
                stderr,
                stdout,
                code,
            }
        }
        Err(failed) => {
            let line = failed.to_line();
            let entrypoint = failed.entrypoint();
            let error = failed.error().unwrap_or("failed");
            let (stdout, stderr) = if !json_is_the_report_line(entrypoint) {
                (Vec::new(), Some(format!("error: {error}")))
            } else if json {
                (vec![line.clone()], None)
            } else {
                (
                    Vec::new(),
                    Some(format!("{} failed: {error}", entrypoint.as_str())),
                )
            };
            Ending {
                line,
                stderr,
                stdout,
                code: EXIT_ERROR,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_report::{CheckReport, InitdbReport, SyncReport};

    fn written(path: &std::path::Path) -> JobReport {
        let text = std::fs::read_to_string(path).expect("the report file");
        JobReport::parse(&text).expect("a report line")
    }

    fn check(equal: Option<bool>) -> CheckReport {
        CheckReport {
            ok: true,
            equal,
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes() {
        let code = |outcome| ending(false, outcome).code;
        assert_eq!(code(Ok(Done::full(check(Some(true)), &1, "t".into()))), 0);
        assert_eq!(
            code(Ok(Done::full(check(Some(false)), &1, "t".into()))),
            EXIT_DIFFERENT
        );
        let sync = SyncReport {
            ok: true,
            ..Default::default()
        };
        assert_eq!(code(Ok(Done::full(sync, &1, "t".into()))), 0);
        assert_eq!(
            code(Err(JobReport::failed(Entrypoint::Check, "boom"))),
            EXIT_ERROR
        );
        assert_eq!(
            code(Err(JobReport::failed(Entrypoint::Initdb, "boom"))),
            EXIT_ERROR
        );
    }

    #[test]
    fn json_prints_the_full_result_or_the_report_line() {
        let full = ending(
            true,
            Ok(Done::full(check(Some(true)), &vec![1, 2], "text".into())),
        );
        assert_eq!(full.stdout, ["[\n  1,\n  2\n]"]);
        assert_eq!(full.stderr, None);
        let rep = InitdbReport {
            ok: true,
            ..Default::default()
        };
        let line = ending(true, Ok(Done::report_line(rep.clone(), "text".into())));
        assert_eq!(line.stdout, [JobReport::from(rep.clone()).to_line()]);
        let text = ending(false, Ok(Done::report_line(rep, "text".into())));
        assert_eq!(text.stdout, ["text"]);
        let after = ending(
            true,
            Ok(Done::full(check(None), &1, "t".into()).then_print("retention".into())),
        );
        assert_eq!(after.stdout, ["1", "retention"]);
    }

    #[test]
    fn errors_in_both_styles() {
        let failed = |e| JobReport::failed(e, "boom");
        let data = ending(true, Err(failed(Entrypoint::Sync)));
        assert_eq!(
            (data.stdout.len(), data.stderr.as_deref()),
            (0, Some("error: boom"))
        );
        let member = ending(false, Err(failed(Entrypoint::Clone)));
        assert_eq!(
            (member.stdout.len(), member.stderr.as_deref()),
            (0, Some("clone failed: boom"))
        );
        let member_json = ending(true, Err(failed(Entrypoint::Rejoin)));
        assert_eq!(member_json.stderr, None);
        assert_eq!(member_json.stdout, [failed(Entrypoint::Rejoin).to_line()]);
    }

    #[test]
    fn the_report_file_gets_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report");
        let reporting = Reporting {
            report: Some(path.clone()),
            json: false,
        };
        let code = finish(
            &reporting,
            Ok(Done::full(check(Some(false)), &1, "".into())),
        );
        assert_eq!(code, ExitCode::from(EXIT_DIFFERENT));
        assert_eq!(written(&path), JobReport::Check(check(Some(false))));
        let code = finish(&reporting, Err(JobReport::failed(Entrypoint::Backup, "no")));
        assert_eq!(code, ExitCode::from(EXIT_ERROR));
        assert_eq!(written(&path).error(), Some("no"));
    }
}
