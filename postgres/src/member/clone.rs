//! `clone`: make an empty data directory a streaming standby of a source member.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;

use super::cmd::{prepare, run, with_password};
use super::conf::{
    configure_standby, conninfo_value, missing_or_empty, move_into_place, remove_tree, sibling,
    StandbyConfig,
};
use super::{slot_name_for, valid_slot_name, ControlData, MemberError, Secret};
use crate::conn::{error_text, Target};
use crate::job_report::{CloneReport, Entrypoint};
use crate::pgbin::server_command;
use crate::report::{self, elapsed_ms};

/// How long SQL on the source may take before a clone or rejoin gives up.
pub(crate) const SOURCE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to clone from and how the standby connects.
#[derive(Debug, Clone)]
pub struct CloneOptions {
    /// The data directory to create (missing or empty).
    pub pgdata: PathBuf,
    /// The authoritative member, as a superuser (its host and port also go into the standby's
    /// `primary_conninfo`).
    pub source: Target,
    /// The physical replication slot for this standby on the source.
    pub slot: String,
    /// The port the new member listens on (pg_basebackup copies the source's).
    pub port: u16,
    pub replication_user: String,
    pub replication_password: Secret,
    /// The standby's `application_name` (the member name, used in `synchronous_standby_names`).
    pub application_name: String,
    /// Skip fsync of the copy (`pg_basebackup --no-sync`, `pg_rewind --no-sync`): only for
    /// throwaway clusters (tests, the local scenario suite).
    pub no_sync: bool,
}

impl CloneOptions {
    /// How the standby reaches the source (`primary_conninfo`, slot, its own port): the same
    /// for a fresh clone and a rejoined member.
    pub(crate) fn standby_config(&self) -> StandbyConfig<'_> {
        let (host, port) = host_port(&self.source);
        StandbyConfig {
            host,
            port,
            user: &self.replication_user,
            password: self.replication_password.expose(),
            application_name: &self.application_name,
            slot: &self.slot,
            member_port: self.port,
        }
    }
}

/// The source's host and port, as the standby will reach it.
pub(crate) fn host_port(target: &Target) -> (String, u16) {
    let host = match target.config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    (
        host,
        target.config.get_ports().first().copied().unwrap_or(5432),
    )
}

pub(crate) fn sql_err<'a>(
    target: &'a Target,
    step: &'static str,
) -> impl Fn(tokio_postgres::Error) -> MemberError + 'a {
    move |e| MemberError::Sql {
        step,
        target: target.describe(),
        message: error_text(&e),
    }
}

/// Clone `opts.source` into `opts.pgdata` and configure it as a standby streaming from it
/// through the slot `opts.slot`.
///
/// The target must be missing or empty: anything else is refused, because the operator only
/// clones into a new directory, or (rejoin fallback) after moving the old one aside itself.
/// An inactive slot of the same name on the source is dropped and created afresh (`-C -S`),
/// so its WAL reservation starts at this backup; an active one (someone streams through it)
/// is refused. The copy is made in `<pgdata>.clone` and renamed into place when configured, so
/// an interrupted clone leaves no half-made data directory and can just run again.
pub async fn clone(opts: &CloneOptions) -> Result<CloneReport, MemberError> {
    let started = Instant::now();
    if !valid_slot_name(&opts.slot) {
        return Err(MemberError::Config(format!(
            "invalid slot name {:?}: lower-case letters, digits and _ only",
            opts.slot
        )));
    }
    if !missing_or_empty(&opts.pgdata)? {
        return Err(MemberError::Refused(format!(
            "{} is not empty; clone only writes a new or empty directory (move the old one aside first)",
            opts.pgdata.display()
        )));
    }
    let source = &opts.source;
    let client = source.connect(SOURCE_TIMEOUT).await?;
    let row = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(sql_err(source, "read the source's system identifier"))?;
    let system_identifier: String = row.get(0);
    let slot = client
        .query_opt(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&opts.slot],
        )
        .await
        .map_err(sql_err(source, "look up the replication slot"))?;
    match slot.map(|r| r.get::<_, bool>(0)) {
        Some(true) => {
            return Err(MemberError::Refused(format!(
                "replication slot {:?} on {} is in use by another standby",
                opts.slot,
                source.describe()
            )))
        }
        Some(false) => {
            tracing::info!(slot = %opts.slot, "dropping the old inactive slot to create it afresh");
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[&opts.slot])
                .await
                .map_err(sql_err(source, "drop the old replication slot"))?;
        }
        None => {}
    }
    drop(client);

    let staging = sibling(&opts.pgdata, "clone");
    remove_tree(&staging)?;
    let (host, port) = host_port(source);
    let conninfo = format!(
        "host={} port={port} user={} application_name=receiptdb-clone",
        conninfo_value(&host),
        conninfo_value(&opts.replication_user)
    );
    let mut cmd = server_command("pg_basebackup");
    cmd.arg("-d").arg(&conninfo).arg("-D").arg(&staging).args([
        "-X",
        "stream",
        "-C",
        "-S",
        &opts.slot,
        "--checkpoint=fast",
        "-w",
    ]);
    if opts.no_sync {
        cmd.arg("--no-sync");
    }
    tracing::info!(source = %source.describe(), slot = %opts.slot, "pg_basebackup");
    let copied = run(
        with_password(prepare(cmd), opts.replication_password.expose()),
        "pg_basebackup",
    )
    .await;
    if let Err(e) = copied {
        let _ = remove_tree(&staging);
        return Err(e);
    }
    let configured = async {
        configure_standby(&staging, &opts.pgdata, &opts.standby_config())?;
        ControlData::read(&staging).await
    }
    .await;
    let control = match configured {
        Ok(c) => c,
        Err(e) => {
            let _ = remove_tree(&staging);
            return Err(e);
        }
    };
    move_into_place(&staging, &opts.pgdata)?;
    Ok(CloneReport {
        ok: true,
        pgdata: opts.pgdata.display().to_string(),
        source: source.describe(),
        slot: opts.slot.clone(),
        application_name: opts.application_name.clone(),
        system_identifier: Some(system_identifier),
        timeline: Some(control.timeline()),
        error: None,
        duration_ms: elapsed_ms(started),
    })
}

/// The arguments of `receiptdb-operator clone` and `rejoin` (see `docs/job-interface.md`):
/// both make a data directory a standby of the authoritative member. The source's password
/// comes from `PGPASSWORD` or the passfile; the replication password from
/// `RECEIPTDB_REPLICATION_PASSWORD` (or a passfile entry for the `replication` database).
#[derive(Debug, Clone, clap::Args)]
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
    /// Skip fsync (throwaway clusters only: tests, local scenarios).
    #[arg(long)]
    pub no_sync: bool,
    /// Also write the report as one line of JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `receiptdb-operator clone`.
pub type CloneArgs = StandbyArgs;

/// Build [`CloneOptions`] from arguments and the environment.
pub(crate) fn options_from_args(args: &StandbyArgs) -> Result<CloneOptions, MemberError> {
    let StandbyArgs {
        pgdata,
        slot,
        port,
        replication_user,
        application_name,
        no_sync,
        ..
    } = args;
    let (port, no_sync) = (*port, *no_sync);
    let source = Target::parse(&args.source)?;
    let (host, src_port) = host_port(&source);
    Ok(CloneOptions {
        pgdata: pgdata.to_path_buf(),
        slot: slot
            .clone()
            .unwrap_or_else(|| slot_name_for(application_name)),
        port,
        replication_user: replication_user.to_string(),
        replication_password: super::replication_password_from_env(
            &host,
            src_port,
            replication_user,
        )?,
        application_name: application_name.to_string(),
        no_sync,
        source,
    })
}

/// Run `clone` from the command line: exit 0 on success, 2 on error.
pub async fn main(args: CloneArgs) -> ExitCode {
    let started = Instant::now();
    let result = async {
        let opts = options_from_args(&args)?;
        clone(&opts).await
    }
    .await;
    report::finish(
        Entrypoint::Clone,
        result,
        |error| CloneReport {
            ok: false,
            pgdata: args.pgdata.display().to_string(),
            application_name: args.application_name.clone(),
            error: Some(error),
            duration_ms: elapsed_ms(started),
            ..Default::default()
        },
        args.report.as_deref(),
        args.json,
        |rep| {
            println!(
                "clone: {} is now a standby of {} (slot {}, application_name {}) in {} ms",
                rep.pgdata, rep.source, rep.slot, rep.application_name, rep.duration_ms
            )
        },
    )
}
