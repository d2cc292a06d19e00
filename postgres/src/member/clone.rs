//! `clone`: make an empty data directory a streaming standby of a source member.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;

use super::cmd::{prepare, run, with_password};
use super::conf::{
    configure_standby, conninfo_value, missing_or_empty, move_into_place, remove_tree, sibling,
    StandbyConfig,
};
use super::{valid_slot_name, ControlData, MemberError, MemberTls, Secret};
use crate::conn::{error_text, Target};
use crate::job_report::CloneReport;
use crate::pgbin::server_command;
use crate::report::elapsed_ms;

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
    /// The member's TLS files (paths as its server sees them): TLS on, `hostssl` only, and the
    /// standby verifies its primary against the CA.
    pub tls: Option<MemberTls>,
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
            tls: self.tls.as_ref(),
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
        "host={} port={port} user={} application_name=receiptdb-clone{}",
        conninfo_value(&host),
        conninfo_value(&opts.replication_user),
        source.tls.libpq_params()
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
