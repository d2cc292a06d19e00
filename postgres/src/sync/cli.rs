//! The `sync` entrypoint: the runbook's `jma-dbsync.sh`, with its log lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use super::{sync, SyncOptions, SyncOutcome};
use crate::compare::cli::parse_pair;
use crate::compare::Method;
use crate::job_report::{Entrypoint, SyncReport};
use crate::report::{fail, print_json, write_report};

/// `sync --source A --target B [--method counts|checksums] [--force] [-v] [--json]`: re-align
/// the target to the source; only differing tables are copied unless `--force`. Exit 0 done
/// (or nothing to do), 2 error (the target is then unchanged). Passwords: `PGPASSWORD` (both
/// servers) or a passfile (`PGPASSFILE`, one line per server for two passwords).
#[derive(clap::Args, Debug, Clone)]
pub struct SyncArgs {
    /// libpq connection string of the authoritative database (no password in it).
    #[arg(long)]
    pub source: String,
    /// libpq connection string of the database to overwrite.
    #[arg(long)]
    pub target: String,
    /// How to find differing tables.
    #[arg(long, value_enum, default_value_t = Method::Checksums)]
    pub method: Method,
    /// Copy everything without comparing (the runbook's `-allsync`).
    #[arg(long, alias = "allsync")]
    pub force: bool,
    /// Print every step.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the report as JSON on stdout (log lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Tables compared at once (each uses one connection per server).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Also write the report as one line of JSON to this file (e.g. /dev/termination-log).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn stamp() -> String {
    jiff::Zoned::now().strftime("%Y/%m/%d/%H:%M:%S").to_string()
}

/// `HH:MM:SS`, as the runbook prints the processing time.
pub fn hhmmss(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Run `sync`.
pub async fn main(args: SyncArgs) -> ExitCode {
    let (source, target) =
        match parse_pair(Entrypoint::Sync, &args.source, &args.target, &args.report) {
            Ok(p) => p,
            Err(code) => return code,
        };
    let json = args.json;
    let log = move |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let verbose = args.verbose;
    let progress: super::Progress = Arc::new(move |line: &str| {
        if verbose {
            log(&format!("{} {line}", stamp()));
        }
    });
    let opts = SyncOptions {
        method: args.method,
        force: args.force,
        jobs: args.jobs,
        progress: Some(progress),
    };
    let started = Instant::now();
    log(&format!("{} Synchronous begin.", stamp()));
    let result = sync(&source, &target, opts).await;
    let elapsed = hhmmss(started.elapsed().as_secs());
    match result {
        Ok(report) => {
            log("Success all sync");
            log(&format!(
                "{} Synchronous end. processing time {elapsed}",
                stamp()
            ));
            if json {
                print_json(&report);
            } else {
                print_human(&report);
            }
            write_report(args.report.as_deref(), SyncReport::from(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log(&format!(
                "{} Synchronous failed. processing time {elapsed}",
                stamp()
            ));
            fail(Entrypoint::Sync, &args.report, &format!("sync failed: {e}"))
        }
    }
}

fn print_human(r: &SyncOutcome) {
    println!("source: {} (LSN {})", r.source, r.source_lsn);
    println!("target: {}", r.target);
    if let Some(c) = &r.comparison {
        println!(
            "compared {} tables ({:?}) in {} ms: {} differ, {} schema differences",
            c.summary.tables_compared,
            r.method,
            r.durations.compare_ms,
            c.summary.tables_differing,
            c.summary.schema_differences
        );
    }
    println!("action: {:?} ({})", r.mode, r.reason);
    for t in &r.tables {
        println!(
            "  {}: {} rows, {} bytes, {} in {} ms",
            t.table, t.rows, t.bytes, t.format, t.duration_ms
        );
    }
    if !r.sequences_set.is_empty() {
        println!("sequences set: {}", r.sequences_set.join(", "));
    }
    let d = &r.durations;
    println!(
        "copied {} tables, {} rows, {} bytes; open {} ms, compare {} ms, schema {} ms, \
         copy {} ms, commit {} ms, total {} ms",
        r.tables.len(),
        r.rows,
        r.bytes,
        d.open_ms,
        d.compare_ms,
        d.schema_ms,
        d.copy_ms,
        d.commit_ms,
        d.total_ms
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn processing_time_format() {
        assert_eq!(super::hhmmss(9), "00:00:09");
        assert_eq!(super::hhmmss(3725), "01:02:05");
    }
}
