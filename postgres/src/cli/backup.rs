//! `backup` and `restore` from the command line (see [`crate::backup`]), with `backup --keep`'s
//! retention.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::{parse_target, Reporting};
use super::finish::{finish, Done};
use crate::backup::{self, files, BackupOptions, BackupOutcome, RestoreOptions, RestoreOutcome};
use crate::job_report::{BackupReport, Entrypoint, JobReport, RestoreReport};

/// What `backup` and `restore` have always said of `--json`.
const JSON_HELP: &str = "Print the report as JSON";

/// `backup --source A --output FILE [--recipients-file FILE]`: dump the source database.
#[derive(clap::Args, Debug, Clone)]
#[command(mut_arg("json", |a| a.help(JSON_HELP)))]
pub struct BackupArgs {
    /// libpq connection string of the database to back up (no password in it).
    #[arg(long)]
    pub source: String,
    /// The backup file to write (0600; replaced atomically if it exists).
    #[arg(long)]
    pub output: PathBuf,
    /// age recipients (age1..., one per line): encrypt the backup to them.
    #[arg(long)]
    pub recipients_file: Option<PathBuf>,
    #[command(flatten)]
    pub reporting: Reporting,
    /// After writing, keep only this many scheduled backups (`backup-*.rdb`) in the output's
    /// directory, deleting the oldest. Other files are never touched.
    #[arg(long)]
    pub keep: Option<usize>,
}

/// `restore --input FILE --target B [--identity-file FILE]`.
#[derive(clap::Args, Debug, Clone)]
#[command(mut_arg("json", |a| a.help(JSON_HELP)))]
pub struct RestoreArgs {
    /// The backup file, or a directory of scheduled backups (`backup-*.rdb`): its newest is
    /// restored.
    #[arg(long)]
    pub input: PathBuf,
    /// libpq connection string naming the database to replace (no password in it).
    #[arg(long)]
    pub target: String,
    /// age identity file (age-keygen format) for an encrypted backup.
    #[arg(long)]
    pub identity_file: Option<PathBuf>,
    #[command(flatten)]
    pub reporting: Reporting,
}

/// Run `backup`: exit 0 written, 2 error.
pub async fn backup(args: BackupArgs) -> ExitCode {
    let result = async {
        let source = parse_target("--source", &args.source)?;
        let opts = BackupOptions {
            output: args.output.clone(),
            recipients_file: args.recipients_file.clone(),
        };
        backup::backup(&source, opts)
            .await
            .map_err(|e| format!("backup failed: {e}"))
    }
    .await;
    let outcome = match result {
        Ok(r) => {
            let pruned = args.keep.map(|keep| prune(&r, keep)).unwrap_or_default();
            let mut report = BackupReport::from(&r);
            report.pruned = pruned.iter().map(|f| f.display().to_string()).collect();
            let mut done = Done::full(report, &r, backup_text(&r));
            for f in pruned {
                done = done.then_print(format!("retention: deleted {}", f.display()));
            }
            Ok(done)
        }
        Err(e) => Err(JobReport::failed(Entrypoint::Backup, e)),
    };
    finish(&args.reporting, outcome)
}

/// `--keep N`: the older scheduled backups beside the one just written, deleted. A failure
/// is said on stderr and does not fail the backup (it is written).
fn prune(r: &BackupOutcome, keep: usize) -> Vec<PathBuf> {
    let dir = match Path::new(&r.output).parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    files::prune(&dir, keep).unwrap_or_else(|e| {
        eprintln!("retention: pruning {} failed: {e}", dir.display());
        Vec::new()
    })
}

fn backup_text(r: &BackupOutcome) -> String {
    let m = &r.manifest;
    format!(
        "backup of {} written to {}: {} bytes (dump {} bytes), sha256 {}, LSN {}, \
         {}encrypted, {} ms",
        m.database,
        r.output,
        r.file_bytes,
        m.dump_bytes,
        m.payload_sha256,
        m.snapshot_lsn,
        if m.encrypted { "" } else { "not " },
        r.duration_ms
    )
}

/// Run `restore`: exit 0 restored, 2 error (target untouched).
pub async fn restore(args: RestoreArgs) -> ExitCode {
    let result = async {
        let target = parse_target("--target", &args.target)?;
        let opts = RestoreOptions {
            input: args.input.clone(),
            identity_file: args.identity_file.clone(),
        };
        backup::restore(&target, opts)
            .await
            .map_err(|e| format!("restore failed: {e}"))
    }
    .await;
    let outcome = match result {
        Ok(r) => Ok(Done::full(RestoreReport::from(&r), &r, restore_text(&r))),
        Err(e) => Err(JobReport::failed(Entrypoint::Restore, e)),
    };
    finish(&args.reporting, outcome)
}

fn restore_text(r: &RestoreOutcome) -> String {
    format!(
        "restored {} ({} of {} at LSN {}) into {} via {}; {} sessions terminated; {} ms",
        r.input,
        r.manifest.database,
        r.manifest.created_at,
        r.manifest.snapshot_lsn,
        r.target,
        r.scratch_database,
        r.terminated_sessions,
        r.duration_ms
    )
}
