//! `sync`: re-align a target database to a source from the command line (see [`crate::sync`]),
//! with the runbook's log lines (`jma-dbsync.sh`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use super::args::{Connections, Reporting, LAST};
use super::finish::{finish, Done};
use crate::compare::{Method, Rate};
use crate::job_report::{Entrypoint, JobReport, SyncReport};
use crate::sync::{self, Progress, SyncOptions, SyncOutcome};

/// `sync --source A --target B [--method counts|checksums] [--force] [-v] [--json]`: re-align
/// the target to the source; only differing tables are copied unless `--force`. Exit 0 done
/// (or nothing to do), 2 error (the target is then unchanged). Passwords: `PGPASSWORD` (both
/// servers) or a passfile (`PGPASSFILE`, one line per server for two passwords).
#[derive(clap::Args, Debug, Clone)]
#[command(
    mut_arg("source", |a| a.help("libpq connection string of the authoritative database (no password in it)")),
    mut_arg("target", |a| a.help("libpq connection string of the database to overwrite")),
    mut_arg("json", |a| a.help("Print the report as JSON on stdout (log lines go to stderr)")),
    mut_arg("report", |a| a.display_order(LAST)),
)]
pub struct SyncArgs {
    #[command(flatten)]
    pub connections: Connections,
    /// How to find differing tables.
    #[arg(long, value_enum, default_value_t = Method::Checksums)]
    pub method: Method,
    /// Copy everything without comparing (the runbook's `-allsync`).
    #[arg(long, alias = "allsync")]
    pub force: bool,
    /// Print every step.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub reporting: Reporting,
    /// Tables compared at once (each uses one connection per server).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Copy each differing table whole, even when a key would let only its differing rows be
    /// replaced.
    #[arg(long)]
    pub whole_tables: bool,
    /// Read at most this many bytes per second from each server, comparing and copying (e.g.
    /// 32MiB; default: no limit).
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    pub max_rate: Option<Rate>,
}

fn stamp() -> String {
    jiff::Zoned::now().strftime("%Y/%m/%d/%H:%M:%S").to_string()
}

/// `HH:MM:SS`, as the runbook prints the processing time.
fn hhmmss(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Run `sync`: exit 0 done (or nothing to do), 2 error.
pub async fn sync(args: SyncArgs) -> ExitCode {
    let (source, target) = match args.connections.parse() {
        Ok(pair) => pair,
        Err(e) => {
            let failed = JobReport::failed(Entrypoint::Sync, e);
            return finish(&args.reporting, Err(failed));
        }
    };
    // The runbook's lines go to stdout, or to stderr when stdout carries the JSON.
    let json = args.reporting.json;
    let log = move |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let verbose = args.verbose;
    let progress: Progress = Arc::new(move |line: &str| {
        if verbose {
            log(&format!("{} {line}", stamp()));
        }
    });
    let opts = SyncOptions {
        method: args.method,
        force: args.force,
        jobs: args.jobs,
        whole_tables: args.whole_tables,
        max_rate: args.max_rate,
        progress: Some(progress),
    };
    let started = Instant::now();
    log(&format!("{} Synchronous begin.", stamp()));
    let result = sync::sync(&source, &target, opts).await;
    let elapsed = hhmmss(started.elapsed().as_secs());
    let outcome = match result {
        Ok(r) => {
            log("Success all sync");
            log(&format!(
                "{} Synchronous end. processing time {elapsed}",
                stamp()
            ));
            Ok(Done::full(SyncReport::from(&r), &r, text(&r)))
        }
        Err(e) => {
            log(&format!(
                "{} Synchronous failed. processing time {elapsed}",
                stamp()
            ));
            let failed = JobReport::failed(Entrypoint::Sync, format!("sync failed: {e}"));
            Err(failed)
        }
    };
    finish(&args.reporting, outcome)
}

/// What was compared, copied and set, for a person.
fn text(r: &SyncOutcome) -> String {
    let mut out = vec![
        format!("source: {} (LSN {})", r.source, r.source_lsn),
        format!("target: {}", r.target),
    ];
    if let Some(c) = &r.comparison {
        out.push(format!(
            "compared {} tables ({:?}) in {} ms: {} differ, {} schema differences",
            c.summary.tables_compared,
            r.method,
            r.durations.compare_ms,
            c.summary.tables_differing,
            c.summary.schema_differences
        ));
    }
    out.push(format!("action: {:?} ({})", r.mode, r.reason));
    for t in &r.tables {
        let how = match &t.chunks {
            Some(c) => format!(
                "differing rows replaced ({} chunks compared, {} differing; {} rows deleted, \
                 {} inserted)",
                c.compared, c.differing, c.rows_deleted, c.rows_inserted
            ),
            None => "whole table".into(),
        };
        out.push(format!(
            "  {}: {how}: {} rows, {} bytes, {} in {} ms",
            t.table, t.rows, t.bytes, t.format, t.duration_ms
        ));
    }
    if !r.sequences_set.is_empty() {
        out.push(format!("sequences set: {}", r.sequences_set.join(", ")));
    }
    let d = &r.durations;
    out.push(format!(
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
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn processing_time_format() {
        assert_eq!(super::hhmmss(9), "00:00:09");
        assert_eq!(super::hhmmss(3725), "01:02:05");
    }
}
