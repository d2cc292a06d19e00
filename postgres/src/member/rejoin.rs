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
use super::controldata::end_of_wal;
use super::rejoin_plan::{
    fork_segment, plan, resume_segment, RejoinFacts, SourceFacts, StaleFacts,
};
use super::server::is_running;
use super::timeline::parse_history;
use super::{valid_slot_name, ControlData, MemberError};
use crate::conn::Target;
use crate::job_report::{RejoinMethod, RejoinReport};
use crate::pgbin::server_command;
use crate::report::elapsed_ms;

/// Rejoin takes the same options as [`clone()`] (it may fall back to one).
pub type RejoinOptions = CloneOptions;

/// Re-align the stopped member at `opts.pgdata` as a standby of `opts.source`.
///
/// 1. Refuses if a server runs on the data directory.
/// 2. `CHECKPOINT` on the source, so its control file shows its current timeline (else pg_rewind
///    wrongly finds "no rewind required" right after a promotion).
/// 3. Analysis, before anything is changed: the facts (the stale member's timeline and end of
///    WAL from pg_controldata and pg_waldump, both timeline histories, whether the source still
///    has WAL from the fork point), then the plan decided from them alone
///    (`member/rejoin_plan.rs`): the method, the fork point, and the WAL past the fork that
///    re-alignment discards ([`Lost`](crate::job_report::Lost)).
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
    let facts = gather(analyzed, have_pgdata, &client, &opts.source).await?;
    let mut method = record_analysis(&mut rep, facts);
    tracing::info!(
        reason = %rep.reason,
        lost_bytes = rep.lost.bytes,
        fork = ?rep.fork_point.map(|l| l.to_string()),
        "rejoin analysis"
    );

    if matches!(method, RejoinMethod::Rewind | RejoinMethod::None) {
        ensure_slot(&client, &opts.source, &opts.slot).await?;
    }
    if method == RejoinMethod::Rewind {
        match rewind(opts).await {
            Ok(said) => {
                rep.rewind_says = said.diverged;
                if said.no_rewind_required {
                    method = RejoinMethod::Clone;
                    rep.reason = format!(
                        "{}; but pg_rewind found no rewind required, which contradicts the analysis: cloning instead",
                        rep.reason
                    );
                }
            }
            Err(e) => {
                method = RejoinMethod::Clone;
                rep.reason = format!("pg_rewind failed, cloning instead: {e}");
            }
        }
    }
    drop(client);
    match method {
        RejoinMethod::Rewind | RejoinMethod::None => {
            configure_standby(pgdata, pgdata, &opts.standby_config())?;
            remove_tree(&stale_dir)?;
        }
        RejoinMethod::Clone => clone_fallback(opts, have_pgdata, &stale_dir).await?,
    }
    rep.method = Some(method);
    rep.duration_ms = elapsed_ms(started);
    Ok(rep)
}

/// Decide from `facts`; the facts and the plan go into the report, the method is returned.
fn record_analysis(rep: &mut RejoinReport, facts: RejoinFacts) -> RejoinMethod {
    let decided = plan(&facts);
    rep.source_system_identifier = Some(facts.source.system_identifier);
    rep.source_timeline = Some(facts.source.timeline);
    rep.source_lsn = Some(facts.source.lsn);
    if let Some(stale) = facts.stale {
        rep.stale_system_identifier = Some(stale.system_identifier);
        rep.stale_state = Some(stale.state);
        rep.stale_timeline = Some(stale.timeline);
        rep.stale_end_of_wal = Some(stale.end_of_wal);
    }
    rep.reason = decided.reason;
    rep.fork_timeline = decided.fork_timeline;
    rep.fork_point = decided.fork_point;
    rep.lost = decided.lost;
    decided.method
}

/// The facts the plan rests on: the source over SQL, the directory `dir` (the data directory,
/// else `<pgdata>.stale`) on disk, and, when they forked, whether the source still has WAL from
/// the fork point.
async fn gather(
    dir: Option<&Path>,
    in_place: bool,
    client: &Client,
    source: &Target,
) -> Result<RejoinFacts, MemberError> {
    let src = read_source(client, source).await?;
    let stale = match dir {
        Some(dir) => Some(read_stale(dir).await?),
        None => None,
    };
    let source_has_fork_wal = match stale.as_ref().and_then(|s| fork_segment(s, &src)) {
        Some(segment) => has_wal_segment(client, source, &segment).await?,
        None => true,
    };
    let source_has_resume_wal = match stale.as_ref().and_then(|s| resume_segment(s, &src)) {
        Some(segment) => has_wal_segment(client, source, &segment).await?,
        None => true,
    };
    Ok(RejoinFacts {
        in_place,
        stale,
        source: src,
        source_has_fork_wal,
        source_has_resume_wal,
    })
}

/// The authoritative member after a `CHECKPOINT` (so its control file shows its timeline).
async fn read_source(client: &Client, source: &Target) -> Result<SourceFacts, MemberError> {
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
    Ok(SourceFacts {
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

/// What the stopped directory `dir` says about itself: control data, timeline history, and the
/// true end of its WAL.
async fn read_stale(dir: &Path) -> Result<StaleFacts, MemberError> {
    let cd = ControlData::read(dir).await?;
    let tli = cd.timeline();
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
    Ok(StaleFacts {
        system_identifier: cd.system_identifier,
        state: cd.state,
        timeline: tli,
        history,
        end_of_wal: end,
    })
}

/// Whether the source's `pg_wal` still holds `segment`.
async fn has_wal_segment(
    client: &Client,
    source: &Target,
    segment: &str,
) -> Result<bool, MemberError> {
    let present: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_ls_waldir() WHERE name = $1",
            &[&segment],
        )
        .await
        .map_err(sql_err(source, "list the source's WAL"))?
        .get(0);
    Ok(present > 0)
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
        "host={} port={port} user={} dbname={}{}",
        conninfo_value(&host),
        conninfo_value(cfg.get_user().unwrap_or("postgres")),
        conninfo_value(cfg.get_dbname().unwrap_or("postgres")),
        opts.source.tls.libpq_params()
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
