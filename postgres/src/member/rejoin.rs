//! `rejoin`: re-align a stale member (typically a former primary after a failover) as a standby
//! of the authoritative member: pg_rewind when it can work, a fresh clone when not, and first a
//! report of what the stale member had that the authoritative one lacks.

use std::path::Path;
use std::time::Instant;

use tokio_postgres::Client;

use super::clone::{clone, host_port, sql_err, CloneOptions, SOURCE_TIMEOUT};
use super::cmd::{prepare, run_any, tail, with_password};
use super::conf::{
    configure_standby, conninfo_value, missing_or_empty, move_into_place, remove_tree, sibling,
};
use super::controldata::{end_of_wal, walfile_name};
use super::server::is_running;
use super::timeline::{ancestry, diverge, parse_history, Divergence};
use super::{valid_slot_name, ControlData, MemberError};
use crate::actions::Lsn;
use crate::conn::Target;
use crate::job_report::{Lost, RejoinMethod, RejoinReport};
use crate::pgbin::server_command;
use crate::report::elapsed_ms;

/// Rejoin takes the same options as [`clone()`] (it may fall back to one).
pub type RejoinOptions = CloneOptions;

/// The authoritative member as seen over SQL, after a CHECKPOINT.
struct SourceState {
    system_identifier: String,
    timeline: u32,
    lsn: Lsn,
    segment_size: u64,
    history: Vec<(u32, Lsn)>,
}

/// The plan after analysis.
enum Plan {
    Rewind,
    Reconfigure,
    Clone,
}

/// Re-align the stopped member at `opts.pgdata` as a standby of `opts.source`.
///
/// 1. Refuses if a server runs on the data directory.
/// 2. `CHECKPOINT` on the source, so its control file shows its current timeline (else pg_rewind
///    wrongly finds "no rewind required" right after a promotion).
/// 3. Analysis, before anything is changed: the stale member's timeline and end of WAL
///    (pg_controldata, pg_waldump), the fork point from both timeline histories, and the WAL
///    past the fork that re-alignment discards ([`Lost`]).
/// 4. No divergence: write the standby settings only ([`RejoinMethod::None`]). Divergence:
///    pg_rewind (the source must still hold WAL from the fork point; the standby's slot is
///    created on the source first), then the standby settings (pg_rewind copied the source's
///    port and replication settings; they are replaced).
/// 5. When rewind cannot work (different system, no common history, ahead on the same
///    timeline, source WAL since the fork gone, pg_rewind failed): move the directory to
///    `<pgdata>.stale`, clone, and delete the old directory only after the clone succeeded
///    (it is moved back if the clone fails).
pub async fn rejoin(opts: &RejoinOptions) -> Result<RejoinReport, MemberError> {
    let started = Instant::now();
    if !valid_slot_name(&opts.slot) {
        return Err(MemberError::Config(format!(
            "invalid slot name {:?}",
            opts.slot
        )));
    }
    let pgdata = &opts.pgdata;
    let stale_dir = sibling(pgdata, "stale");
    let have_pgdata = pgdata.join("PG_VERSION").exists();
    if !have_pgdata && !missing_or_empty(pgdata)? {
        return Err(MemberError::Refused(format!(
            "{} is neither a data directory nor empty; refusing to touch it",
            pgdata.display()
        )));
    }
    if have_pgdata && is_running(pgdata).await? {
        return Err(MemberError::Refused(format!(
            "a server is running on {}; stop the member before rejoining it",
            pgdata.display()
        )));
    }
    // An interrupted clone fallback leaves the old directory at <pgdata>.stale and none at pgdata.
    let analyzed: Option<&Path> = if have_pgdata {
        Some(pgdata)
    } else if stale_dir.join("PG_VERSION").exists() {
        Some(&stale_dir)
    } else {
        None
    };

    let mut rep = RejoinReport {
        ok: true,
        pgdata: pgdata.display().to_string(),
        source: opts.source.describe(),
        slot: opts.slot.clone(),
        application_name: opts.application_name.clone(),
        ..Default::default()
    };
    let client = opts.source.connect(SOURCE_TIMEOUT).await?;
    let src = read_source(&client, &opts.source).await?;
    rep.source_system_identifier = Some(src.system_identifier.clone());
    rep.source_timeline = Some(src.timeline);
    rep.source_lsn = Some(src.lsn);

    let (mut plan, reason) = match analyzed {
        None => (Plan::Clone, "no data directory to rewind".to_string()),
        Some(dir) => analyze(dir, &src, &client, &opts.source, &mut rep).await?,
    };
    if !have_pgdata {
        plan = Plan::Clone;
    }
    rep.reason = reason;
    tracing::info!(
        reason = %rep.reason,
        lost_bytes = rep.lost.bytes,
        fork = ?rep.fork_point.map(|l| l.to_string()),
        "rejoin analysis"
    );

    if matches!(plan, Plan::Rewind | Plan::Reconfigure) {
        ensure_slot(&client, &opts.source, &opts.slot).await?;
    }
    if let Plan::Rewind = plan {
        match rewind(opts).await {
            Ok(said) => {
                rep.rewind_says = said.diverged;
                if said.no_rewind_required {
                    plan = Plan::Clone;
                    rep.reason = format!(
                        "{}; but pg_rewind found no rewind required, which contradicts the analysis: cloning instead",
                        rep.reason
                    );
                }
            }
            Err(e) => {
                plan = Plan::Clone;
                rep.reason = format!("pg_rewind failed, cloning instead: {e}");
            }
        }
    }
    drop(client);
    match plan {
        Plan::Rewind | Plan::Reconfigure => {
            configure_standby(pgdata, pgdata, &opts.standby_config())?;
            rep.method = Some(if matches!(plan, Plan::Rewind) {
                RejoinMethod::Rewind
            } else {
                RejoinMethod::None
            });
            remove_tree(&stale_dir)?;
        }
        Plan::Clone => {
            clone_fallback(opts, have_pgdata, &stale_dir).await?;
            rep.method = Some(RejoinMethod::Clone);
        }
    }
    rep.duration_ms = elapsed_ms(started);
    Ok(rep)
}

async fn read_source(client: &Client, source: &Target) -> Result<SourceState, MemberError> {
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(sql_err(source, "CHECKPOINT on the source"))?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text
                         ELSE pg_current_wal_lsn()::text END,
                    CASE WHEN pg_is_in_recovery() THEN NULL
                         ELSE pg_walfile_name(pg_current_wal_lsn()) END,
                    (SELECT timeline_id FROM pg_control_checkpoint()),
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(sql_err(source, "read the source's state"))?;
    let walfile: Option<String> = row.get(2);
    let checkpoint_tli: i32 = row.get(3);
    let timeline = walfile
        .as_deref()
        .and_then(|w| w.get(..8))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(u32::try_from(checkpoint_tli).unwrap_or(1));
    let history = if timeline > 1 {
        let row = client
            .query_one(
                "SELECT pg_read_file($1)",
                &[&format!("pg_wal/{timeline:08X}.history")],
            )
            .await
            .map_err(sql_err(source, "read the source's timeline history"))?;
        parse_history(&row.get::<_, String>(0))
    } else {
        Vec::new()
    };
    Ok(SourceState {
        system_identifier: row.get(0),
        lsn: row
            .get::<_, Option<String>>(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        timeline,
        segment_size: u64::try_from(row.get::<_, i64>(4)).unwrap_or(16 << 20),
        history,
    })
}

/// Analyze the stale directory against the source; fills the report's stale/fork/lost fields.
async fn analyze(
    dir: &Path,
    src: &SourceState,
    client: &Client,
    source: &Target,
    rep: &mut RejoinReport,
) -> Result<(Plan, String), MemberError> {
    let cd = ControlData::read(dir).await?;
    let tli = cd.timeline();
    rep.stale_system_identifier = Some(cd.system_identifier.clone());
    rep.stale_state = Some(cd.state.clone());
    rep.stale_timeline = Some(tli);
    let history = if tli > 1 {
        let file = dir.join("pg_wal").join(format!("{tli:08X}.history"));
        std::fs::read_to_string(&file)
            .map(|t| parse_history(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let start = if cd.checkpoint_timeline == tli {
        cd.checkpoint
    } else {
        history
            .last()
            .map(|h| h.1)
            .unwrap_or(cd.checkpoint)
            .max(cd.checkpoint)
    };
    let end = end_of_wal(dir, tli, start, cd.wal_segment_size)
        .await?
        .unwrap_or(cd.checkpoint.max(cd.min_recovery_end));
    rep.stale_end_of_wal = Some(end);

    if cd.system_identifier != src.system_identifier {
        return Ok((
            Plan::Clone,
            format!(
                "different system identifier ({} here, {} on the source): not a copy of it",
                cd.system_identifier, src.system_identifier
            ),
        ));
    }
    let divergence = diverge(
        &ancestry(&history, tli),
        &ancestry(&src.history, src.timeline),
    );
    match divergence {
        Divergence::NoCommonHistory => Ok((
            Plan::Clone,
            format!(
                "no timeline in common (here {tli}, source {})",
                src.timeline
            ),
        )),
        Divergence::SameTimeline => {
            if end > src.lsn {
                rep.lost = Lost {
                    from: Some(src.lsn),
                    to: Some(end),
                    bytes: end.bytes_since(src.lsn),
                };
                Ok((
                    Plan::Clone,
                    format!(
                        "ahead of the source on the same timeline {tli} ({end} > {})",
                        src.lsn
                    ),
                ))
            } else {
                Ok((
                    Plan::Reconfigure,
                    format!("same timeline {tli}, at or behind the source"),
                ))
            }
        }
        Divergence::Forked {
            tli: common,
            at,
            source_next,
        } => {
            rep.fork_timeline = Some(common);
            rep.fork_point = Some(at);
            if end > at {
                rep.lost = Lost {
                    from: Some(at),
                    to: Some(end),
                    bytes: end.bytes_since(at),
                };
            }
            // The re-aligned standby needs the source's WAL from the fork point on.
            let needed = walfile_name(source_next.unwrap_or(common), at, src.segment_size);
            let present: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_ls_waldir() WHERE name = $1",
                    &[&needed],
                )
                .await
                .map_err(sql_err(source, "list the source's WAL"))?
                .get(0);
            if present == 0 {
                return Ok((
                    Plan::Clone,
                    format!("the source no longer has WAL from the fork point {at} (segment {needed} is gone)"),
                ));
            }
            if end > at {
                Ok((
                    Plan::Rewind,
                    format!("diverged from timeline {common} at {at}; WAL here ends at {end}"),
                ))
            } else {
                Ok((
                    Plan::Reconfigure,
                    format!(
                        "WAL here ends at {end}, not past the fork point {at}: nothing to rewind"
                    ),
                ))
            }
        }
    }
}

/// Create the standby's slot on the source when missing (pg_rewind does not copy slots); an
/// invalidated one (`wal_status = lost`) is recreated, an active one refused.
async fn ensure_slot(client: &Client, source: &Target, slot: &str) -> Result<(), MemberError> {
    let row = client
        .query_opt(
            "SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(sql_err(source, "look up the replication slot"))?;
    match row.map(|r| (r.get::<_, bool>(0), r.get::<_, Option<String>>(1))) {
        Some((true, _)) => Err(MemberError::Refused(format!(
            "replication slot {slot:?} on {} is in use by another standby",
            source.describe()
        ))),
        Some((false, Some(status))) if status == "lost" => {
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .await
                .map_err(sql_err(source, "drop the invalidated slot"))?;
            create_slot(client, source, slot).await
        }
        Some(_) => Ok(()),
        None => create_slot(client, source, slot).await,
    }
}

async fn create_slot(client: &Client, source: &Target, slot: &str) -> Result<(), MemberError> {
    client
        .execute(
            "SELECT pg_create_physical_replication_slot($1, true)",
            &[&slot],
        )
        .await
        .map_err(sql_err(source, "create the replication slot"))?;
    Ok(())
}

struct RewindOutput {
    diverged: Option<String>,
    no_rewind_required: bool,
}

/// Run pg_rewind from the source (as the superuser, password through the environment).
async fn rewind(opts: &RejoinOptions) -> Result<RewindOutput, MemberError> {
    let cfg = &opts.source.config;
    let (host, port) = host_port(&opts.source);
    let conninfo = format!(
        "host={} port={port} user={} dbname={}",
        conninfo_value(&host),
        conninfo_value(cfg.get_user().unwrap_or("postgres")),
        conninfo_value(cfg.get_dbname().unwrap_or("postgres"))
    );
    let mut cmd = server_command("pg_rewind");
    cmd.arg(format!("--target-pgdata={}", opts.pgdata.display()))
        .arg(format!("--source-server={conninfo}"));
    if opts.no_sync {
        cmd.arg("--no-sync");
    }
    let mut cmd = prepare(cmd);
    if let Some(pw) = cfg.get_password() {
        cmd = with_password(cmd, &String::from_utf8_lossy(pw));
    }
    tracing::info!(pgdata = %opts.pgdata.display(), source = %opts.source.describe(), "pg_rewind");
    let ran = run_any(cmd, "pg_rewind").await?;
    let text = ran.text();
    if !ran.success {
        return Err(MemberError::Command {
            step: "pg_rewind",
            program: "pg_rewind".into(),
            status: ran.status,
            output: tail(&text, 1200),
        });
    }
    Ok(RewindOutput {
        diverged: text
            .lines()
            .find(|l| l.contains("servers diverged at"))
            .map(|l| l.trim_start_matches("pg_rewind: ").to_string()),
        no_rewind_required: text.contains("no rewind required"),
    })
}

/// Move the old directory aside, clone, delete the old one only once the clone succeeded.
async fn clone_fallback(
    opts: &RejoinOptions,
    have_pgdata: bool,
    stale_dir: &Path,
) -> Result<(), MemberError> {
    if have_pgdata {
        remove_tree(stale_dir)?;
        move_into_place(&opts.pgdata, stale_dir)?;
    }
    match clone(opts).await {
        Ok(_) => remove_tree(stale_dir),
        Err(e) => {
            if stale_dir.exists() && missing_or_empty(&opts.pgdata).unwrap_or(false) {
                let _ = std::fs::remove_dir(&opts.pgdata);
                let _ = move_into_place(stale_dir, &opts.pgdata);
            }
            Err(e)
        }
    }
}
