//! `probe`: one observation of a member, as the controller's decide() needs it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{lsn_col, query_err, with_timeout, ActionError, Lsn};
use crate::conn::Target;
use crate::report::elapsed_ms;

/// What a probe saw on one member. An unreachable member is a normal observation
/// (`reachable: false` with `error` saying why), not an error, because the controller decides
/// on it (failover) rather than failing the reconcile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberProbe {
    /// `user@host:port/db` that was probed.
    pub target: String,
    /// The server accepted a connection and answered every query in time.
    pub reachable: bool,
    /// Why it was not reachable (connection refused, authentication, timeout, query error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `pg_is_in_recovery()`: a standby (or a server still recovering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_recovery: Option<bool>,
    /// `server_version_num`, e.g. 150010.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version_num: Option<i32>,
    /// Database system identifier (`pg_control_system()`), as a string: it does not fit a JSON
    /// number. Two members with different identifiers can never stream from each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// Timeline: on a primary the one WAL is written on (from `pg_walfile_name`, right even
    /// before the end-of-recovery checkpoint); on a standby the one last received, else the
    /// latest checkpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Primary: `pg_current_wal_lsn()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_lsn: Option<Lsn>,
    /// Standby: `pg_last_wal_receive_lsn()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<Lsn>,
    /// Standby: `pg_last_wal_replay_lsn()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<Lsn>,
    /// Standby: its WAL receiver (`pg_stat_wal_receiver`), when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_receiver: Option<WalReceiver>,
    /// Primary: one entry per connected standby (`pg_stat_replication`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaState>,
    /// Physical replication slots on this server (`pg_replication_slots`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotState>,
    /// `synchronous_standby_names` in effect ('' = asynchronous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_standby_names: Option<String>,
    /// `default_transaction_read_only` in effect (on = fenced by [`super::fence`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_transaction_read_only: Option<bool>,
    /// How long the probe took.
    pub duration_ms: u64,
}

impl MemberProbe {
    /// A reachable primary (not in recovery).
    pub fn is_primary(&self) -> bool {
        self.reachable && self.in_recovery == Some(false)
    }

    /// A reachable standby whose WAL receiver is streaming.
    pub fn is_streaming_standby(&self) -> bool {
        self.reachable
            && self.in_recovery == Some(true)
            && self
                .wal_receiver
                .as_ref()
                .is_some_and(|w| w.status == "streaming")
    }

    /// The standby named `application_name` as this primary sees it.
    pub fn replica(&self, application_name: &str) -> Option<&ReplicaState> {
        self.replicas
            .iter()
            .find(|r| r.application_name == application_name)
    }
}

/// A standby's WAL receiver (`pg_stat_wal_receiver`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalReceiver {
    /// `streaming`, `starting`, `waiting`, `restarting`, `stopping`.
    pub status: String,
    pub sender_host: Option<String>,
    pub sender_port: Option<i32>,
    pub slot_name: Option<String>,
    pub received_tli: Option<u32>,
    pub flushed_lsn: Option<Lsn>,
}

/// One standby connected to a primary (`pg_stat_replication`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaState {
    pub application_name: String,
    pub client_addr: Option<String>,
    /// `startup`, `catchup`, `streaming`, `backup`, `stopping`.
    pub state: Option<String>,
    /// `async`, `potential`, `sync`, `quorum`.
    pub sync_state: Option<String>,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// Bytes of WAL the primary has written that this standby has not replayed yet.
    pub replay_lag_bytes: Option<u64>,
}

/// A replication slot (`pg_replication_slots`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotState {
    pub slot_name: String,
    pub slot_type: String,
    pub active: bool,
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved`, `lost` (lost = the standby must be re-cloned).
    pub wal_status: Option<String>,
}

/// Observe a member within `timeout` (connect included). Never fails: an unreachable or
/// misbehaving member yields `reachable: false` and the reason.
pub async fn probe(target: &Target, timeout: Duration) -> MemberProbe {
    let started = Instant::now();
    let mut out = MemberProbe {
        target: target.describe(),
        ..Default::default()
    };
    let result = with_timeout(target, "probe", timeout, async {
        let client = target.connect(timeout).await?;
        observe(&client, target, &mut out).await
    })
    .await;
    match result {
        Ok(()) => out.reachable = true,
        Err(e) => {
            out.reachable = false;
            out.error = Some(e.to_string());
        }
    }
    out.duration_ms = elapsed_ms(started);
    out
}

const GENERAL: &str = "SELECT pg_is_in_recovery(),
    (SELECT system_identifier::text FROM pg_control_system()),
    (SELECT timeline_id FROM pg_control_checkpoint()),
    current_setting('synchronous_standby_names'),
    current_setting('default_transaction_read_only')::bool,
    current_setting('server_version_num')::int,
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
    pg_last_wal_receive_lsn()::text,
    pg_last_wal_replay_lsn()::text";

const RECEIVER: &str = "SELECT status, sender_host, sender_port, slot_name, received_tli,
    flushed_lsn::text FROM pg_stat_wal_receiver";

const REPLICATION: &str = "SELECT application_name, client_addr::text, state, sync_state,
    sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
    CASE WHEN pg_is_in_recovery() THEN NULL
         ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END
    FROM pg_stat_replication ORDER BY application_name";

const SLOTS: &str = "SELECT slot_name::text, slot_type, active, restart_lsn::text, wal_status
    FROM pg_replication_slots ORDER BY slot_name";

async fn observe(
    client: &Client,
    target: &Target,
    out: &mut MemberProbe,
) -> Result<(), ActionError> {
    let row = client
        .query_one(GENERAL, &[])
        .await
        .map_err(query_err(target, "probe: status"))?;
    let in_recovery: bool = row.get(0);
    out.in_recovery = Some(in_recovery);
    out.system_identifier = row.get(1);
    let checkpoint_tli: Option<i32> = row.get(2);
    out.synchronous_standby_names = row.get(3);
    out.default_transaction_read_only = row.get(4);
    out.server_version_num = row.get(5);
    out.current_lsn = lsn_col(&row, 6);
    let walfile: Option<String> = row.get(7);
    out.receive_lsn = lsn_col(&row, 8);
    out.replay_lsn = lsn_col(&row, 9);

    out.wal_receiver = client
        .query_opt(RECEIVER, &[])
        .await
        .map_err(query_err(target, "probe: pg_stat_wal_receiver"))?
        .map(|r| WalReceiver {
            status: r.get(0),
            sender_host: r.get(1),
            sender_port: r.get(2),
            slot_name: r.get(3),
            received_tli: r
                .get::<_, Option<i32>>(4)
                .and_then(|t| u32::try_from(t).ok()),
            flushed_lsn: lsn_col(&r, 5),
        });

    out.replicas = client
        .query(REPLICATION, &[])
        .await
        .map_err(query_err(target, "probe: pg_stat_replication"))?
        .iter()
        .map(|r| ReplicaState {
            application_name: r.get(0),
            client_addr: r.get(1),
            state: r.get(2),
            sync_state: r.get(3),
            sent_lsn: lsn_col(r, 4),
            write_lsn: lsn_col(r, 5),
            flush_lsn: lsn_col(r, 6),
            replay_lsn: lsn_col(r, 7),
            replay_lag_bytes: r
                .get::<_, Option<i64>>(8)
                .map(|b| u64::try_from(b).unwrap_or(0)),
        })
        .collect();

    out.slots = client
        .query(SLOTS, &[])
        .await
        .map_err(query_err(target, "probe: pg_replication_slots"))?
        .iter()
        .map(|r| SlotState {
            slot_name: r.get(0),
            slot_type: r.get(1),
            active: r.get(2),
            restart_lsn: lsn_col(r, 3),
            wal_status: r.get(4),
        })
        .collect();

    let walfile_tli = walfile.as_deref().and_then(timeline_of_walfile);
    let receiver_tli = out.wal_receiver.as_ref().and_then(|w| w.received_tli);
    let checkpoint_tli = checkpoint_tli.and_then(|t| u32::try_from(t).ok());
    out.timeline = if in_recovery {
        receiver_tli.or(checkpoint_tli)
    } else {
        walfile_tli.or(checkpoint_tli)
    };
    Ok(())
}

/// The timeline of a WAL file name (its first 8 hex digits).
pub(crate) fn timeline_of_walfile(name: &str) -> Option<u32> {
    name.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walfile_timeline() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of_walfile("xyz"), None);
    }

    #[test]
    fn probe_serializes_lsns_as_strings() {
        let p = MemberProbe {
            current_lsn: Some(Lsn(0x3000060)),
            ..Default::default()
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["currentLsn"], "0/3000060");
        assert_eq!(serde_json::from_value::<MemberProbe>(v).unwrap(), p);
    }
}
