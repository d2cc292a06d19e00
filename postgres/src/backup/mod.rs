//! `backup` and `restore`: compressed, optionally age-encrypted dumps with a manifest.
//!
//! A backup is `pg_dump -Fc -Z0` taken at an exported snapshot (so the manifest's LSN is the
//! dump's), compressed with zstd in this process (fast on incompressible data, where pg_dump's
//! own gzip is CPU-bound), optionally encrypted to age recipients, in the container described
//! in [`format`]. The file is written 0600 under a temporary name in the output's directory and
//! renamed into place only when complete, so a failed or interrupted backup never leaves a
//! readable partial dump under the final name (runbook 003: mind permissions on dumps).

pub mod files;
pub mod format;
pub mod keys;
pub mod restore;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde::Serialize;

use crate::compare::snapshot::CONNECT_TIMEOUT;
use crate::conn::{ConnError, Target};
use crate::job_report;
use crate::pgbin::client_command_std;
use crate::schema::{session_setup, SqlContext, SqlError};
pub use format::{FormatError, Manifest};
pub use keys::KeyError;
pub use restore::{restore, RestoreError, RestoreOptions, RestoreOutcome};

/// zstd level: 3 is zstd's default, ~300+ MB/s per core.
const ZSTD_LEVEL: i32 = 3;

/// Errors of `backup`. The output file is never left behind on error.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Connecting failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The recipients file is unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// pg_dump failed.
    #[error("pg_dump failed: {0}")]
    Dump(String),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Encryption setup failed.
    #[error("age encryption: {0}")]
    Encrypt(String),
}

/// Options of `backup`.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Where to write the backup.
    pub output: PathBuf,
    /// age recipients file; without it the backup is not encrypted.
    pub recipients_file: Option<PathBuf>,
}

/// What `backup` wrote (its `--json` output; the Job report is [`job_report::BackupReport`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupOutcome {
    /// The file written.
    pub output: String,
    /// Its size.
    pub file_bytes: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// Wall time.
    pub duration_ms: u64,
}

/// Dump `source` into a backup file. See the module documentation.
pub async fn backup(source: &Target, opts: BackupOptions) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    let recipients = match &opts.recipients_file {
        Some(p) => Some(keys::read_recipients(p)?),
        None => None,
    };
    // Hold a snapshot for pg_dump, and learn the LSN and version at that snapshot.
    let client = source.connect(CONNECT_TIMEOUT).await?;
    session_setup(&client, "receiptdb-backup").await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .ctx("starting the snapshot transaction")?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), current_database()::text,
                    current_setting('server_version'),
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                          ELSE pg_current_wal_lsn() END)::text",
            &[],
        )
        .await
        .ctx("exporting the snapshot")?;
    let snapshot: String = row.get(0);
    let mut manifest = Manifest {
        format_version: format::FORMAT_VERSION,
        created_at: crate::compare::now_rfc3339(),
        database: row.get(1),
        server_version: row.get(2),
        snapshot_lsn: row.get::<_, Option<String>>(3).unwrap_or_default(),
        payload_format: "pg_dump-custom+zstd".into(),
        encrypted: recipients.is_some(),
        recipients: recipients.as_ref().map_or(0, Vec::len),
        dump_bytes: 0,
        payload_bytes: 0,
        payload_sha256: String::new(),
    };
    let mut cmd = client_command_std("pg_dump", source);
    cmd.args(["--format=custom", "--compress=0"])
        .arg(format!("--snapshot={snapshot}"));
    let output = opts.output.clone();
    let written = tokio::task::spawn_blocking(move || {
        write_backup(cmd, &output, recipients.as_deref(), &mut manifest)
            .map(|size| (manifest, size))
    })
    .await
    .map_err(|e| BackupError::Dump(format!("the dump task failed: {e}")))?;
    let _ = client.batch_execute("COMMIT").await;
    let (manifest, file_bytes) = written?;
    Ok(BackupOutcome {
        output: opts.output.display().to_string(),
        file_bytes,
        manifest,
        duration_ms: crate::report::elapsed_ms(started),
    })
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Run pg_dump into a temporary 0600 file next to `output`, then rename it into place.
fn write_backup(
    cmd: std::process::Command,
    output: &Path,
    recipients: Option<&[age::x25519::Recipient]>,
    manifest: &mut Manifest,
) -> Result<u64, BackupError> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = write_to(cmd, &tmp, recipients, manifest);
    match result {
        Ok(size) => {
            std::fs::rename(&tmp, output).map_err(io_err(output))?;
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(size)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_to(
    mut cmd: std::process::Command,
    tmp: &Path,
    recipients: Option<&[age::x25519::Recipient]>,
    manifest: &mut Manifest,
) -> Result<u64, BackupError> {
    let err = io_err(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(&err)?;
    file.write_all(format::MAGIC).map_err(&err)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Dump(format!("cannot run pg_dump: {e}")))?;
    let stderr = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    });
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| BackupError::Dump("no stdout".into()))?;
    let hashing = format::HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    let pumped = match recipients {
        Some(rs) => {
            let enc = age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| BackupError::Encrypt(e.to_string()))?;
            enc.wrap_output(hashing).and_then(|w| {
                let (w, n) = compress(&mut stdout, w)?;
                Ok((w.finish()?, n))
            })
        }
        None => compress(&mut stdout, hashing),
    };
    let status = child.wait().map_err(|e| BackupError::Dump(e.to_string()))?;
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(BackupError::Dump(stderr.trim().to_string()));
    }
    let (hashing, dump_bytes) = pumped.map_err(&err)?;
    let (mut buffered, payload_bytes, sha) = hashing.finish();
    manifest.dump_bytes = dump_bytes;
    manifest.payload_bytes = payload_bytes;
    manifest.payload_sha256 = sha;
    format::write_trailer(&mut buffered, manifest).map_err(&err)?;
    let file = buffered.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(&err)?;
    Ok(file.metadata().map_err(&err)?.len())
}

/// zstd-compress everything from `input` into `out`; returns `out` and the input size.
fn compress<W: Write>(input: &mut impl Read, out: W) -> io::Result<(W, u64)> {
    let mut z = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    let n = io::copy(input, &mut z)?;
    Ok((z.finish()?, n))
}

impl From<&BackupOutcome> for job_report::BackupReport {
    fn from(r: &BackupOutcome) -> Self {
        job_report::BackupReport {
            ok: true,
            output: Some(r.output.clone()),
            file_bytes: r.file_bytes,
            database: r.manifest.database.clone(),
            snapshot_lsn: r.manifest.snapshot_lsn.parse().ok(),
            encrypted: r.manifest.encrypted,
            pruned: Vec::new(),
            error: None,
            duration_ms: r.duration_ms,
        }
    }
}
