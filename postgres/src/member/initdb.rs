//! `initdb`: create a member's data directory, ready to run as the first primary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cmd::{prepare, run};
use super::conf::{
    edit_settings, missing_or_empty, move_into_place, pg_hba, remove_tree, sibling, write_private,
    DEFAULT_SETTINGS,
};
use super::server::{PrivateServer, CONNECT_TIMEOUT};
use super::{ControlData, MemberError, MemberTls, Secret};
use crate::conn::error_text;
use crate::job_report::InitdbReport;
use crate::pgbin::{hand_to_postgres, server_command};
use crate::report::elapsed_ms;

/// What to create.
#[derive(Debug, Clone)]
pub struct InitdbOptions {
    pub pgdata: PathBuf,
    /// The application database (owned by the superuser).
    pub database: String,
    pub port: u16,
    pub superuser: String,
    pub superuser_password: Secret,
    /// The role standbys stream as (LOGIN REPLICATION).
    pub replication_user: String,
    pub replication_password: Secret,
    /// `initdb --locale`.
    pub locale: String,
    /// Extra `postgresql.conf` settings, after [`DEFAULT_SETTINGS`] (later wins).
    pub settings: Vec<(String, String)>,
    /// Skip fsync of the new files (`initdb --no-sync`): only for throwaway clusters (tests, the
    /// local scenario suite); a crash can then corrupt the directory.
    pub no_sync: bool,
    /// The member's TLS files (paths as its server sees them): TLS on and `hostssl` only.
    pub tls: Option<MemberTls>,
}

/// Initialize `opts.pgdata`: initdb with data checksums and SCRAM authentication, the member
/// settings ([`DEFAULT_SETTINGS`] then `opts.settings`), a SCRAM-only `pg_hba.conf`, the
/// replication role and the application database. Built in `<pgdata>.initdb` and renamed into
/// place when complete. Idempotent: an initialized directory (with `PG_VERSION`) is left alone
/// and reported with `initialized: false`; a non-empty directory without one is refused.
pub async fn initdb(opts: &InitdbOptions) -> Result<InitdbReport, MemberError> {
    let started = Instant::now();
    let mut rep = InitdbReport {
        ok: true,
        initialized: false,
        pgdata: opts.pgdata.display().to_string(),
        system_identifier: None,
        database: Some(opts.database.clone()),
        error: None,
        duration_ms: 0,
    };
    validate(opts)?;
    if opts.pgdata.join("PG_VERSION").exists() {
        tracing::info!(pgdata = %opts.pgdata.display(), "already initialized; left alone");
        rep.system_identifier = ControlData::read(&opts.pgdata)
            .await
            .ok()
            .map(|c| c.system_identifier);
        rep.duration_ms = elapsed_ms(started);
        return Ok(rep);
    }
    if !missing_or_empty(&opts.pgdata)? {
        return Err(MemberError::Refused(format!(
            "{} is not empty and holds no PostgreSQL data directory (no PG_VERSION); refusing to initialize over it",
            opts.pgdata.display()
        )));
    }
    let staging = sibling(&opts.pgdata, "initdb");
    remove_tree(&staging)?;
    run_initdb(opts, &staging).await?;
    std::fs::write(staging.join("pg_hba.conf"), pg_hba(false))
        .map_err(MemberError::io("write pg_hba.conf", &staging))?;
    let mut settings: Vec<(String, String)> = DEFAULT_SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    settings.push(("port".into(), opts.port.to_string()));
    settings.extend(opts.settings.iter().cloned());
    let settings = last_wins(settings);
    edit_settings(&staging.join("postgresql.conf"), &[], &settings, true)?;
    if let Some(tls) = &opts.tls {
        super::tls::apply(&staging, tls)?;
    }

    let server = PrivateServer::start(&staging, opts.port).await?;
    let created = bootstrap(opts, &server).await;
    let stopped = server.stop().await;
    created?;
    stopped?;
    rep.system_identifier = Some(ControlData::read(&staging).await?.system_identifier);
    move_into_place(&staging, &opts.pgdata)?;
    rep.initialized = true;
    rep.duration_ms = elapsed_ms(started);
    Ok(rep)
}

fn validate(opts: &InitdbOptions) -> Result<(), MemberError> {
    for (what, pw) in [
        ("superuser", &opts.superuser_password),
        ("replication", &opts.replication_password),
    ] {
        if pw.expose().is_empty() || pw.expose().contains(['\n', '\r']) {
            return Err(MemberError::Config(format!(
                "the {what} password must be non-empty and one line"
            )));
        }
    }
    for (k, _) in &opts.settings {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(MemberError::Config(format!("not a setting name: {k:?}")));
        }
    }
    Ok(())
}

/// Keep the last value of each setting, in first-seen order.
fn last_wins(settings: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in settings {
        let k = k.to_ascii_lowercase();
        match out.iter_mut().find(|(o, _)| *o == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

async fn run_initdb(opts: &InitdbOptions, staging: &Path) -> Result<(), MemberError> {
    // The superuser password goes to initdb in a 0600 file in a private directory, removed after.
    let pwdir = sibling(staging, "pw");
    remove_tree(&pwdir)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&pwdir)
            .map_err(MemberError::io("create password directory", &pwdir))?;
    }
    hand_to_postgres(&pwdir).map_err(MemberError::io("chown password directory", &pwdir))?;
    let pwfile = pwdir.join("pw");
    let result = async {
        write_private(&pwfile, opts.superuser_password.expose().as_bytes())?;
        let mut cmd = server_command("initdb");
        cmd.arg("-D")
            .arg(staging)
            .arg("-U")
            .arg(&opts.superuser)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--data-checksums",
            ])
            .arg("--encoding=UTF8")
            .arg(format!("--locale={}", opts.locale));
        if opts.no_sync {
            cmd.arg("--no-sync");
        }
        run(prepare(cmd), "initdb").await.map(|_| ())
    }
    .await;
    let _ = remove_tree(&pwdir);
    if result.is_err() {
        let _ = remove_tree(staging);
    }
    result
}

/// Quote an SQL identifier.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Create the replication role and the application database on the private server. The
/// replication password is sent as a SCRAM verifier computed here, so the password itself
/// never appears in SQL text (which the server may log).
async fn bootstrap(opts: &InitdbOptions, server: &PrivateServer) -> Result<(), MemberError> {
    let target = server.target(&opts.superuser, &opts.superuser_password, "postgres");
    let client = target.connect(CONNECT_TIMEOUT).await?;
    let sql_err = |step: &'static str| {
        let target = target.describe();
        move |e: tokio_postgres::Error| MemberError::Sql {
            step,
            target,
            message: error_text(&e),
        }
    };
    let verifier =
        postgres_protocol::password::scram_sha_256(opts.replication_password.expose().as_bytes());
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &[&opts.replication_user],
        )
        .await
        .map_err(sql_err("look up the replication role"))?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    client
        .batch_execute(&format!(
            "{verb} ROLE {} WITH LOGIN REPLICATION PASSWORD '{verifier}'",
            ident(&opts.replication_user)
        ))
        .await
        .map_err(sql_err("create the replication role"))?;
    let db_exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&opts.database],
        )
        .await
        .map_err(sql_err("look up the database"))?
        .is_some();
    if !db_exists {
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                ident(&opts.database),
                ident(&opts.superuser)
            ))
            .await
            .map_err(sql_err("create the database"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_wins_and_identifiers() {
        let s = last_wins(vec![
            ("a".into(), "1".into()),
            ("B".into(), "2".into()),
            ("a".into(), "3".into()),
        ]);
        assert_eq!(s, vec![("a".into(), "3".into()), ("b".into(), "2".into())]);
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
