//! The `check` entrypoint, and the `--source`/`--target` parsing `sync` shares.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{compare, CompareOptions, CompareReport, Method};
use crate::conn::Target;
use crate::job_report::{CheckReport, Entrypoint};
use crate::report::{self, fail, print_json};

/// `check`'s exit status when the databases differ (0: equal, 2: an error).
pub const EXIT_DIFFERENT: u8 = 1;

/// `check --source A --target B [--method counts|checksums] [--json]`: compare two databases.
/// Exit 0 equal, 1 different, 2 error. Passwords come from `PGPASSWORD` (used for both
/// servers) or a passfile (`PGPASSFILE`, one line per server: the way to use two passwords).
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// libpq connection string of the reference database (no password in it).
    #[arg(long)]
    pub source: String,
    /// libpq connection string of the database compared against the source.
    #[arg(long)]
    pub target: String,
    /// `counts`: rows per table; `checksums`: rows plus a content hash per table.
    #[arg(long, value_enum, default_value_t = Method::Checksums)]
    pub method: Method,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Tables compared at once (each uses one connection per server).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Also write the report as one line of JSON to this file (e.g. /dev/termination-log).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Run `check`.
pub async fn main(args: CheckArgs) -> ExitCode {
    let (source, target) =
        match parse_pair(Entrypoint::Check, &args.source, &args.target, &args.report) {
            Ok(p) => p,
            Err(code) => return code,
        };
    let opts = CompareOptions {
        method: args.method,
        jobs: args.jobs,
    };
    match compare(&source, &target, opts).await {
        Ok(report) => {
            if args.json {
                print_json(&report);
            } else {
                print_human(&report);
            }
            report::write_report(args.report.as_deref(), CheckReport::from(&report));
            if report.equal {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DIFFERENT)
            }
        }
        Err(e) => fail(
            Entrypoint::Check,
            &args.report,
            &format!("check failed: {e}"),
        ),
    }
}

/// Parse `--source` and `--target`, reporting errors the CLI way (and in the report file).
pub(crate) fn parse_pair(
    entrypoint: Entrypoint,
    source: &str,
    target: &str,
    report: &Option<PathBuf>,
) -> Result<(Target, Target), ExitCode> {
    let s =
        Target::parse(source).map_err(|e| fail(entrypoint, report, &format!("--source: {e}")))?;
    let t =
        Target::parse(target).map_err(|e| fail(entrypoint, report, &format!("--target: {e}")))?;
    Ok((s, t))
}

fn print_human(r: &CompareReport) {
    println!("source: {} (LSN {})", r.source, r.source_lsn);
    println!("target: {} (LSN {})", r.target, r.target_lsn);
    println!("method: {:?}", r.method);
    if !r.tables.is_empty() {
        let width = r
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        println!(
            "{:width$}  {:>12}  {:>12}  result",
            "table", "source rows", "target rows"
        );
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
            println!(
                "{:width$}  {:>12}  {:>12}  {result}",
                t.table, t.source.rows, t.target.rows
            );
        }
    }
    for t in &r.only_in_source {
        println!("only in source: {t}");
    }
    for t in &r.only_in_target {
        println!("only in target: {t}");
    }
    for d in &r.schema_differences {
        println!(
            "schema differs: {}\n  source: {}\n  target: {}",
            d.object,
            d.source.as_deref().unwrap_or("(absent)"),
            d.target.as_deref().unwrap_or("(absent)")
        );
    }
    for s in &r.sequences {
        println!(
            "sequence {}: source next {:?}, target next {:?}: {:?}",
            s.sequence, s.source_next, s.target_next, s.status
        );
    }
    let s = &r.summary;
    if r.equal {
        println!(
            "EQUAL: {} tables compared in {} ms",
            s.tables_compared, r.duration_ms
        );
    } else {
        println!(
            "DIFFERENT: {} of {} tables differ, {} on one side only, {} schema differences, \
             {} sequences behind ({} ms)",
            s.tables_differing,
            s.tables_compared,
            s.tables_missing,
            s.schema_differences,
            s.sequences_behind,
            r.duration_ms
        );
    }
}
