//! The production [`MemberClient`]: SQL through `receiptdb_postgres::actions`, each with a
//! hard timeout so a hung server never hangs the control loop.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use receiptdb_postgres::actions::{self, MemberProbe};
use receiptdb_postgres::conn::Target;

use super::context::{MemberClient, MemberTarget};
use crate::pair::{ServerProbe, StandbyObservation};

/// SQL on members with tokio-postgres.
#[derive(Debug, Clone)]
pub struct PostgresMembers {
    /// Budget of a promotion (pg_promote, then a checkpoint).
    pub promote_timeout: Duration,
    /// Budget of the other actions.
    pub action_timeout: Duration,
}

impl Default for PostgresMembers {
    fn default() -> Self {
        Self {
            promote_timeout: Duration::from_secs(60),
            action_timeout: Duration::from_secs(20),
        }
    }
}

fn target(t: &MemberTarget) -> Target {
    let mut c = tokio_postgres::Config::new();
    c.host(&t.host)
        .port(t.port)
        .user(&t.user)
        .dbname("postgres")
        .password(t.password.expose())
        .application_name("receiptdb-operator");
    Target::from_config(c).with_tls(t.tls.clone())
}

/// The operator's view of a probe: `Err` unless the server answered.
pub fn server_probe(p: MemberProbe) -> Result<ServerProbe, String> {
    if !p.reachable {
        return Err(p.error.unwrap_or_else(|| "unreachable".into()));
    }
    let in_recovery = p.in_recovery.unwrap_or(false);
    let lsn = if in_recovery {
        p.replay_lsn
    } else {
        p.current_lsn
    };
    Ok(ServerProbe {
        in_recovery,
        lsn: lsn.map_or(0, |l| l.0),
        receive_lsn: p.receive_lsn.map(|l| l.0),
        timeline: p.timeline.unwrap_or(0),
        system_identifier: p
            .system_identifier
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        streaming: p.is_streaming_standby(),
        standbys: p
            .replicas
            .iter()
            .map(|r| StandbyObservation {
                application_name: r.application_name.clone(),
                streaming: r.state.as_deref() == Some("streaming"),
                synchronous: r.sync_state.as_deref() == Some("sync"),
                replay_lag_bytes: r.replay_lag_bytes.unwrap_or(u64::MAX),
            })
            .collect(),
        synchronous_standby_names: p.synchronous_standby_names.unwrap_or_default(),
        read_only: p.default_transaction_read_only.unwrap_or(false),
    })
}

impl MemberClient for PostgresMembers {
    fn probe<'a>(
        &'a self,
        t: &'a MemberTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ServerProbe, String>> {
        async move { server_probe(actions::probe(&target(t), timeout).await) }.boxed()
    }

    fn promote<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        async move {
            actions::promote(&target(t), self.promote_timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn fence_writes<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        async move {
            actions::fence(&target(t), self.action_timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn unfence_writes<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        async move {
            actions::unfence(&target(t), self.action_timeout)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn set_synchronous_standby<'a>(
        &'a self,
        t: &'a MemberTarget,
        standby: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            actions::set_synchronous_standby(&target(t), standby, self.action_timeout)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn reload_config<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        async move {
            actions::reload_config(&target(t), self.action_timeout)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use receiptdb_postgres::actions::{Lsn, ReplicaState, WalReceiver};

    #[test]
    fn probes_map_to_observations() {
        assert_eq!(
            server_probe(MemberProbe {
                error: Some("refused".into()),
                ..Default::default()
            }),
            Err("refused".into())
        );
        let standby = MemberProbe {
            reachable: true,
            in_recovery: Some(true),
            replay_lsn: Some(Lsn(100)),
            receive_lsn: Some(Lsn(120)),
            timeline: Some(2),
            system_identifier: Some("7300000000000000001".into()),
            wal_receiver: Some(WalReceiver {
                status: "streaming".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = server_probe(standby).unwrap();
        assert!(s.in_recovery && s.streaming);
        assert_eq!((s.lsn, s.receive_lsn, s.timeline), (100, Some(120), 2));
        assert_eq!(s.system_identifier, 7300000000000000001);
        let primary = MemberProbe {
            reachable: true,
            in_recovery: Some(false),
            current_lsn: Some(Lsn(500)),
            replicas: vec![ReplicaState {
                application_name: "secondary".into(),
                state: Some("streaming".into()),
                sync_state: Some("sync".into()),
                replay_lag_bytes: Some(0),
                ..Default::default()
            }],
            synchronous_standby_names: Some("\"secondary\"".into()),
            ..Default::default()
        };
        let p = server_probe(primary).unwrap();
        assert_eq!(p.lsn, 500);
        assert_eq!(
            p.standbys,
            [StandbyObservation {
                application_name: "secondary".into(),
                streaming: true,
                synchronous: true,
                replay_lag_bytes: 0
            }]
        );
    }
}
