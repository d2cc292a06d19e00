//! `initdb`, `clone` and `rejoin`: a member's data directory, from the command line (see
//! [`crate::member`] for what they do).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::args::Reporting;
use super::finish::{finish, Done};
use crate::conn::Target;
use crate::job_report::{CloneReport, InitdbReport, JobReport, RejoinMethod, RejoinReport};
use crate::member::{
    self, host_port, replication_password_from_env, slot_name_for, CloneOptions, InitdbOptions,
    MemberError, MemberTls, Secret,
};
use crate::report::elapsed_ms;

/// The member entrypoints' `--report` has always said nothing of the termination log.
const REPORT_HELP: &str = "Also write the report as one line of JSON to this file";

/// `receiptdb-operator initdb`: see `docs/job-interface.md`. Passwords come from
/// `RECEIPTDB_SUPERUSER_PASSWORD` and `RECEIPTDB_REPLICATION_PASSWORD`.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("report", |a| a.help(REPORT_HELP)))]
pub struct InitdbArgs {
    /// The data directory to create.
    #[arg(long, env = "PGDATA")]
    pub pgdata: PathBuf,
    /// The application database to create.
    #[arg(long, default_value = "receipts")]
    pub database: String,
    /// The port the member listens on.
    #[arg(long, default_value_t = 5432)]
    pub port: u16,
    /// The superuser's name.
    #[arg(long, default_value = "postgres")]
    pub superuser: String,
    /// The role standbys stream as.
    #[arg(long, default_value = "replicator")]
    pub replication_user: String,
    /// initdb's locale.
    #[arg(long, default_value = "C.UTF-8")]
    pub locale: String,
    /// A postgresql.conf setting, NAME=VALUE (repeatable; after the operator's defaults).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Turn TLS on: the directory where the member's *server* finds `tls.crt`, `tls.key` and
    /// `ca.crt` (the mounted server Secret). Writes `ssl = on` and the file settings, a
    /// `hostssl`-only pg_hba.conf.
    #[arg(long, env = "RECEIPTDB_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Skip fsync (throwaway clusters only: tests, local scenarios).
    #[arg(long)]
    pub no_sync: bool,
    #[command(flatten)]
    pub reporting: Reporting,
}

/// The arguments of `receiptdb-operator clone` and `rejoin` (see `docs/job-interface.md`):
/// both make a data directory a standby of the authoritative member. The source's password
/// comes from `PGPASSWORD` or the passfile; the replication password from
/// `RECEIPTDB_REPLICATION_PASSWORD` (or a passfile entry for the `replication` database).
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("report", |a| a.help(REPORT_HELP)))]
pub struct StandbyArgs {
    /// The member's data directory: for clone, to create (missing or empty); for rejoin, the
    /// stale member's (its server stopped).
    #[arg(long, env = "PGDATA")]
    pub pgdata: PathBuf,
    /// libpq connection string of the authoritative member, as a superuser (no password in it).
    #[arg(long)]
    pub source: String,
    /// Replication slot on the source (default: derived from --application-name).
    #[arg(long)]
    pub slot: Option<String>,
    /// The port the new member listens on.
    #[arg(long, default_value_t = 5432)]
    pub port: u16,
    #[arg(long, default_value = "replicator")]
    pub replication_user: String,
    /// The standby's application_name (the member name).
    #[arg(long, default_value = "standby")]
    pub application_name: String,
    /// Turn TLS on: the directory where the member's *server* finds `tls.crt`, `tls.key` and
    /// `ca.crt` (the mounted server Secret). Writes `ssl = on` and the file settings, a
    /// `hostssl`-only pg_hba.conf, and a primary_conninfo with
    /// `sslmode=verify-full sslrootcert=<dir>/ca.crt`.
    #[arg(long, env = "RECEIPTDB_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Skip fsync (throwaway clusters only: tests, local scenarios).
    #[arg(long)]
    pub no_sync: bool,
    #[command(flatten)]
    pub reporting: Reporting,
}

/// `receiptdb-operator clone`.
pub type CloneArgs = StandbyArgs;

/// `receiptdb-operator rejoin`: see `docs/job-interface.md`. Passwords as for `clone`.
pub type RejoinArgs = StandbyArgs;

/// Parse `NAME=VALUE`.
pub fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn env_secret(name: &str) -> Result<Secret, MemberError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(MemberError::Config(format!("{name} is not set"))),
    }
}

/// Build [`CloneOptions`] from arguments and the environment.
fn options_from_args(args: &StandbyArgs) -> Result<CloneOptions, MemberError> {
    let source = Target::parse(&args.source)?;
    let (host, src_port) = host_port(&source);
    Ok(CloneOptions {
        pgdata: args.pgdata.clone(),
        slot: args
            .slot
            .clone()
            .unwrap_or_else(|| slot_name_for(&args.application_name)),
        port: args.port,
        replication_user: args.replication_user.clone(),
        replication_password: replication_password_from_env(
            &host,
            src_port,
            &args.replication_user,
        )?,
        application_name: args.application_name.clone(),
        no_sync: args.no_sync,
        tls: args.tls_dir.as_deref().map(MemberTls::in_dir),
        source,
    })
}

/// Run `initdb` from the command line: exit 0 on success (also when already initialized), 2 on
/// error.
pub async fn initdb(args: InitdbArgs) -> ExitCode {
    let started = Instant::now();
    let result = async {
        let opts = InitdbOptions {
            pgdata: args.pgdata.clone(),
            database: args.database.clone(),
            port: args.port,
            superuser: args.superuser.clone(),
            superuser_password: env_secret("RECEIPTDB_SUPERUSER_PASSWORD")?,
            replication_user: args.replication_user.clone(),
            replication_password: env_secret("RECEIPTDB_REPLICATION_PASSWORD")?,
            locale: args.locale.clone(),
            settings: args.settings.clone(),
            no_sync: args.no_sync,
            tls: args.tls_dir.as_deref().map(MemberTls::in_dir),
        };
        member::initdb(&opts).await
    }
    .await;
    let outcome = match result {
        Ok(rep) => {
            let text = if rep.initialized {
                format!(
                    "initdb: initialized {} (system {}, database {:?}) in {} ms",
                    rep.pgdata,
                    rep.system_identifier.as_deref().unwrap_or("?"),
                    args.database,
                    rep.duration_ms
                )
            } else {
                format!("initdb: {} is already initialized; left alone", rep.pgdata)
            };
            Ok(Done::report_line(rep, text))
        }
        Err(e) => Err(JobReport::from(InitdbReport {
            ok: false,
            initialized: false,
            pgdata: args.pgdata.display().to_string(),
            system_identifier: None,
            database: None,
            error: Some(e.to_string()),
            duration_ms: elapsed_ms(started),
        })),
    };
    finish(&args.reporting, outcome)
}

/// Run `clone` from the command line: exit 0 on success, 2 on error.
pub async fn clone(args: CloneArgs) -> ExitCode {
    let started = Instant::now();
    let result = async { member::clone(&options_from_args(&args)?).await }.await;
    let outcome = match result {
        Ok(rep) => {
            let text = format!(
                "clone: {} is now a standby of {} (slot {}, application_name {}) in {} ms",
                rep.pgdata, rep.source, rep.slot, rep.application_name, rep.duration_ms
            );
            Ok(Done::report_line(rep, text))
        }
        Err(e) => Err(JobReport::from(CloneReport {
            ok: false,
            pgdata: args.pgdata.display().to_string(),
            application_name: args.application_name.clone(),
            error: Some(e.to_string()),
            duration_ms: elapsed_ms(started),
            ..Default::default()
        })),
    };
    finish(&args.reporting, outcome)
}

/// Run `rejoin` from the command line: exit 0 on success, 2 on error.
pub async fn rejoin(args: RejoinArgs) -> ExitCode {
    let started = Instant::now();
    let result = async { member::rejoin(&options_from_args(&args)?).await }.await;
    let outcome = match result {
        Ok(rep) => {
            let text = rejoin_text(&rep);
            Ok(Done::report_line(rep, text))
        }
        Err(e) => Err(JobReport::from(RejoinReport {
            ok: false,
            pgdata: args.pgdata.display().to_string(),
            application_name: args.application_name.clone(),
            error: Some(e.to_string()),
            duration_ms: elapsed_ms(started),
            ..Default::default()
        })),
    };
    finish(&args.reporting, outcome)
}

/// What a rejoin did, and what it discarded, for a person.
fn rejoin_text(rep: &RejoinReport) -> String {
    let method = rep.method.unwrap_or(RejoinMethod::None).as_str();
    let did = format!(
        "rejoin: {} is a standby of {} (method {method}: {})",
        rep.pgdata, rep.source, rep.reason
    );
    let lost = match (rep.lost.from, rep.lost.to) {
        (Some(from), Some(to)) if rep.lost.bytes > 0 => format!(
            "rejoin: discarded {} bytes of WAL the source never had: {from} .. {to} on timeline {}",
            rep.lost.bytes,
            rep.stale_timeline.unwrap_or(0)
        ),
        _ => "rejoin: nothing was lost (no WAL past the fork point)".to_string(),
    };
    format!("{did}\n{lost}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(
            parse_setting("fsync=off").unwrap(),
            ("fsync".into(), "off".into())
        );
        assert!(parse_setting("fsync").is_err());
    }
}
