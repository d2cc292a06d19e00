//! `restore`: verify a backup file completely, then restore it into a scratch database and
//! swap that in by renaming, so the target is untouched unless everything succeeded.
//!
//! Connected clients: the swap needs the target database free. Restore forbids new
//! connections to it (`ALLOW_CONNECTIONS false`), terminates the sessions still connected
//! (the runbook stops all programs while restoring; the operator points the client Service at
//! nothing during `Restoring`), renames target → `<db>_old_<ts>` and scratch → target in one
//! transaction, then drops the old database. If the swap fails, connections are allowed again
//! and the scratch database dropped.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use super::format::{self, FormatError, Manifest};
use super::keys::{self, KeyError};
use crate::compare::snapshot::CONNECT_TIMEOUT;
use crate::conn::{ConnError, Target};
use crate::job_report::RestoreReport;
use crate::pgbin::client_command_std;
use crate::schema::{quote_ident, SqlContext, SqlError};

/// Errors of `restore`. In every case the target database is as it was.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is unusable (checked before anything else happens).
    #[error("refusing the backup: {0}")]
    Format(#[from] FormatError),
    /// The identity file is unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Encrypted but no identity given.
    #[error("refusing the backup: it is encrypted and no --identity-file was given")]
    NeedIdentity,
    /// None of the identities opens the file.
    #[error("refusing the backup: cannot decrypt it with the given identities: {0}")]
    Decrypt(String),
    /// Connecting failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// pg_restore failed (the scratch database was dropped).
    #[error("pg_restore failed (target untouched): {0}")]
    Restore(String),
}

/// Options of `restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup file, or a directory of scheduled backups (its newest is restored).
    pub input: PathBuf,
    /// age identity file, for encrypted backups.
    pub identity_file: Option<PathBuf>,
}

/// What `restore` did (its `--json` output; the Job report is [`RestoreReport`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOutcome {
    /// The file restored.
    pub input: String,
    /// Its manifest (verified).
    pub manifest: Manifest,
    /// `user@host:port/db` of the target.
    pub target: String,
    /// The scratch database restored into, then renamed to the target.
    pub scratch_database: String,
    /// Whether a previous target database was replaced.
    pub replaced_existing: bool,
    /// Sessions terminated on the old target database for the swap.
    pub terminated_sessions: i64,
    /// Wall time.
    pub duration_ms: u64,
}

impl From<&RestoreOutcome> for RestoreReport {
    fn from(r: &RestoreOutcome) -> Self {
        RestoreReport {
            ok: true,
            input: Some(r.input.clone()),
            database: r.manifest.database.clone(),
            snapshot_lsn: r.manifest.snapshot_lsn.parse().ok(),
            replaced_existing: r.replaced_existing,
            error: None,
            duration_ms: r.duration_ms,
        }
    }
}

type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

/// Check the file and that it decrypts; returns the manifest and the open file.
fn preflight(
    opts: &RestoreOptions,
    ids: Option<&Identities>,
) -> Result<(Manifest, File, u64), RestoreError> {
    let mut file = File::open(&opts.input).map_err(FormatError::Io)?;
    let v = format::verify(&mut file)?;
    if v.manifest.encrypted {
        let ids = ids.ok_or(RestoreError::NeedIdentity)?;
        file.seek(SeekFrom::Start(v.payload_offset))
            .map_err(FormatError::Io)?;
        let payload = BufReader::new((&file).take(v.manifest.payload_bytes));
        let d = age::Decryptor::new(payload).map_err(|e| RestoreError::Decrypt(e.to_string()))?;
        d.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| RestoreError::Decrypt(e.to_string()))?;
    }
    Ok((v.manifest, file, v.payload_offset))
}

/// Restore a backup into `target`'s database. See the module documentation.
pub async fn restore(
    target: &Target,
    mut opts: RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    opts.input = super::files::resolve_input(&opts.input).map_err(FormatError::Io)?;
    let ids = match &opts.identity_file {
        Some(p) => Some(keys::read_identities(p)?),
        None => None,
    };
    let opts2 = opts.clone();
    let (checked, ids) = tokio::task::spawn_blocking(move || {
        let r = preflight(&opts2, ids.as_ref());
        (r, ids)
    })
    .await
    .map_err(|e| RestoreError::Restore(e.to_string()))?;
    let (manifest, file, offset) = checked?;

    let dbname = target
        .config
        .get_dbname()
        .or(target.config.get_user())
        .unwrap_or("postgres")
        .to_string();
    let admin_db = if dbname == "postgres" {
        "template1"
    } else {
        "postgres"
    };
    let admin = target
        .with_dbname(admin_db)
        .connect(CONNECT_TIMEOUT)
        .await?;
    let stamp = jiff::Timestamp::now().as_second();
    let scratch = truncate_name(&format!("{dbname}_restore_{stamp}"));
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            quote_ident(&scratch)
        ))
        .await
        .ctx("creating the scratch database")?;

    let restore_target = target.with_dbname(&scratch);
    let mut cmd = client_command_std("pg_restore", &restore_target);
    cmd.args(["--exit-on-error", "--dbname"]).arg(&scratch);
    let loaded = tokio::task::spawn_blocking(move || {
        run_restore(cmd, file, offset, &manifest, ids.as_ref()).map(|()| manifest)
    })
    .await
    .map_err(|e| RestoreError::Restore(e.to_string()));
    let manifest = match loaded {
        Ok(Ok(m)) => m,
        Ok(Err(e)) | Err(e) => {
            drop_database(&admin, &scratch).await;
            return Err(e);
        }
    };

    let swapped = swap(&admin, &dbname, &scratch, stamp).await;
    let (replaced_existing, terminated_sessions) = match swapped {
        Ok(x) => x,
        Err(e) => {
            drop_database(&admin, &scratch).await;
            return Err(e);
        }
    };
    Ok(RestoreOutcome {
        input: opts.input.display().to_string(),
        manifest,
        target: target.describe(),
        scratch_database: scratch,
        replaced_existing,
        terminated_sessions,
        duration_ms: crate::report::elapsed_ms(started),
    })
}

/// PostgreSQL truncates identifiers to 63 bytes; do it ourselves on a char boundary.
fn truncate_name(name: &str) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

async fn drop_database(admin: &Client, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    if let Err(e) = admin.batch_execute(&sql).await {
        tracing::warn!(database = name, error = %crate::conn::error_text(&e), "cannot drop");
    }
}

/// Rename scratch into place; returns (replaced an existing database, sessions terminated).
async fn swap(
    admin: &Client,
    dbname: &str,
    scratch: &str,
    stamp: i64,
) -> Result<(bool, i64), RestoreError> {
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&dbname],
        )
        .await
        .ctx("looking up the target database")?
        .get(0);
    let (db, sc) = (quote_ident(dbname), quote_ident(scratch));
    if !exists {
        admin
            .batch_execute(&format!("ALTER DATABASE {sc} RENAME TO {db}"))
            .await
            .ctx("renaming the restored database into place")?;
        return Ok((false, 0));
    }
    let old = truncate_name(&format!("{dbname}_old_{stamp}"));
    admin
        .batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false"))
        .await
        .ctx("closing the target database to new connections")?;
    let result = async {
        let mut terminated = 0i64;
        for _ in 0..100 {
            let n: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&dbname],
                )
                .await
                .ctx("terminating sessions on the target database")?
                .get(0);
            if n == 0 {
                break;
            }
            terminated += n;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin
            .batch_execute(&format!(
                "BEGIN; ALTER DATABASE {db} RENAME TO {}; ALTER DATABASE {sc} RENAME TO {db}; COMMIT",
                quote_ident(&old)
            ))
            .await
            .ctx("swapping the restored database in")?;
        Ok::<_, RestoreError>(terminated)
    }
    .await;
    match result {
        Ok(terminated) => {
            drop_database(admin, &old).await;
            Ok((true, terminated))
        }
        Err(e) => {
            let _ = admin.batch_execute("ROLLBACK").await;
            let _ = admin
                .batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true"))
                .await;
            Err(e)
        }
    }
}

/// Stream the payload (decrypted when needed, decompressed) into pg_restore.
fn run_restore(
    mut cmd: std::process::Command,
    mut file: File,
    offset: u64,
    manifest: &Manifest,
    ids: Option<&Identities>,
) -> Result<(), RestoreError> {
    let io_fail = |e: io::Error| RestoreError::Restore(e.to_string());
    file.seek(SeekFrom::Start(offset)).map_err(io_fail)?;
    let payload = BufReader::with_capacity(1 << 20, file.take(manifest.payload_bytes));
    let plain: Box<dyn Read> = if manifest.encrypted {
        let ids = ids.ok_or(RestoreError::NeedIdentity)?;
        let d = age::Decryptor::new(payload).map_err(|e| RestoreError::Decrypt(e.to_string()))?;
        Box::new(
            d.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| RestoreError::Decrypt(e.to_string()))?,
        )
    } else {
        Box::new(payload)
    };
    let mut decoder = zstd::stream::read::Decoder::new(plain).map_err(io_fail)?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RestoreError::Restore(format!("cannot run pg_restore: {e}")))?;
    let stderr = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    });
    let fed = match child.stdin.take() {
        Some(mut stdin) => io::copy(&mut decoder, &mut stdin).and_then(|_| stdin.flush()),
        None => Err(io::Error::other("no stdin")),
    };
    let status = child.wait().map_err(io_fail)?;
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if let Err(e) = fed {
        return Err(RestoreError::Restore(format!(
            "feeding pg_restore: {e}; {}",
            stderr.trim()
        )));
    }
    if !status.success() {
        return Err(RestoreError::Restore(stderr.trim().to_string()));
    }
    Ok(())
}
