//! `check`: compare two databases from the command line (see [`crate::compare`]).

use std::process::ExitCode;

use super::args::{Connections, Reporting, LAST};
use super::finish::{finish, Done};
use crate::compare::{self, CompareOptions, CompareReport, Method, Rate};
use crate::job_report::{CheckReport, Entrypoint, JobReport};

/// `check --source A --target B [--method counts|checksums] [--json]`: compare two databases.
/// Exit 0 equal, 1 different, 2 error. Passwords come from `PGPASSWORD` (used for both
/// servers) or a passfile (`PGPASSFILE`, one line per server: the way to use two passwords).
#[derive(clap::Args, Debug, Clone)]
#[command(
    mut_arg("json", |a| a.help("Print the report as JSON on stdout")),
    mut_arg("report", |a| a.display_order(LAST)),
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub connections: Connections,
    /// `counts`: rows per table; `checksums`: rows plus a content hash per table.
    #[arg(long, value_enum, default_value_t = Method::Checksums)]
    pub method: Method,
    #[command(flatten)]
    pub reporting: Reporting,
    /// Tables compared at once (each uses one connection per server).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Read at most this many bytes per second from each server (e.g. 32MiB; default: no
    /// limit). Tables are then read in slices, leaving the servers to their clients.
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    pub max_rate: Option<Rate>,
}

/// Run `check`: exit 0 equal, 1 different, 2 error.
pub async fn check(args: CheckArgs) -> ExitCode {
    let outcome = async {
        let (source, target) = args.connections.parse()?;
        let opts = CompareOptions {
            method: args.method,
            jobs: args.jobs,
            max_rate: args.max_rate,
        };
        compare::compare(&source, &target, opts)
            .await
            .map_err(|e| format!("check failed: {e}"))
    }
    .await;
    let outcome = match outcome {
        Ok(r) => Ok(Done::full(CheckReport::from(&r), &r, text(&r))),
        Err(e) => Err(JobReport::failed(Entrypoint::Check, e)),
    };
    finish(&args.reporting, outcome)
}

/// The comparison, table by table, for a person.
fn text(r: &CompareReport) -> String {
    let mut out = vec![
        format!("source: {} (LSN {})", r.source, r.source_lsn),
        format!("target: {} (LSN {})", r.target, r.target_lsn),
        format!("method: {:?}", r.method),
    ];
    if !r.tables.is_empty() {
        let width = r
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        out.push(format!(
            "{:width$}  {:>12}  {:>12}  result",
            "table", "source rows", "target rows"
        ));
        for t in &r.tables {
            let result = if t.equal {
                "equal"
            } else if t.columns_differ {
                "DIFFERENT (columns)"
            } else if t.source.rows != t.target.rows {
                "DIFFERENT (rows)"
            } else {
                "DIFFERENT (content)"
            };
            out.push(format!(
                "{:width$}  {:>12}  {:>12}  {result}",
                t.table, t.source.rows, t.target.rows
            ));
        }
    }
    for t in &r.only_in_source {
        out.push(format!("only in source: {t}"));
    }
    for t in &r.only_in_target {
        out.push(format!("only in target: {t}"));
    }
    for d in &r.schema_differences {
        out.push(format!(
            "schema differs: {}\n  source: {}\n  target: {}",
            d.object,
            d.source.as_deref().unwrap_or("(absent)"),
            d.target.as_deref().unwrap_or("(absent)")
        ));
    }
    for s in &r.sequences {
        out.push(format!(
            "sequence {}: source next {:?}, target next {:?}: {:?}",
            s.sequence, s.source_next, s.target_next, s.status
        ));
    }
    let s = &r.summary;
    out.push(if r.equal {
        format!(
            "EQUAL: {} tables compared in {} ms",
            s.tables_compared, r.duration_ms
        )
    } else {
        format!(
            "DIFFERENT: {} of {} tables differ, {} on one side only, {} schema differences, \
             {} sequences behind ({} ms)",
            s.tables_differing,
            s.tables_compared,
            s.tables_missing,
            s.schema_differences,
            s.sequences_behind,
            r.duration_ms
        )
    });
    out.join("\n")
}
