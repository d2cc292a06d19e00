//! The leading operator replica dies mid-operation (its pod deleted with grace period 0: the
//! process is killed mid-pass, its Lease not released) and the other replica, once the Lease
//! expires, carries on with nothing but the API's state: during the failover, and during the
//! rejoin Job.

use receiptdb_operator::crd::{Member, OperationKind, OperationStep};

use super::crash::fail_over_and_realign;
use super::steps::{failover_started, manual_failback};
use super::Scenario;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "operator-restart-failover",
            about: "the operator is killed as soon as the failover starts; the new one finishes it from status",
            spec: manual_failback,
            body: |w| {
                Box::pin(async move {
                    w.crash(Member::Primary).await?;
                    failover_started(w).await?;
                    w.kill_operator().await?;
                    fail_over_and_realign(w).await
                })
            },
        },
        Scenario {
            name: "helm-upgrade-failover",
            about: "helm upgrade of the operator (its pods replaced one by one) while a failover is under way: the next leader finishes it",
            spec: manual_failback,
            body: |w| Box::pin(helm_upgrade_during_failover(w)),
        },
        Scenario {
            name: "operator-restart-rejoin",
            about: "the operator is killed while the rejoin Job runs; the new one waits for it and finishes the re-alignment",
            spec: manual_failback,
            body: |w| {
                Box::pin(async move {
                    w.crash(Member::Primary).await?;
                    w.wait_for("the rejoin Job to run", rejoin_running).await?;
                    w.kill_operator().await?;
                    fail_over_and_realign(w).await
                })
            },
        },
    ]
}

fn rejoin_running(s: &crate::observer::Sample) -> bool {
    s.status.operation.as_ref().is_some_and(|o| {
        o.member == Member::Primary
            && (o.kind == OperationKind::Rejoin || o.kind == OperationKind::Failover)
            && o.step == OperationStep::RunningJob
    })
}

/// `helm upgrade` of the operator (a changed pod template: its Deployment rolls both replicas,
/// one new pod at a time) while a failover is under way: a replica that stops releases the
/// Lease, and the next leader finishes the failover from status.
pub async fn helm_upgrade_during_failover(w: &mut crate::harness::World) -> anyhow::Result<()> {
    w.crash(Member::Primary).await?;
    failover_started(w).await?;
    let stamp = format!(
        "podAnnotations.receiptdb\\.io/upgraded-by=scenario-{}",
        std::process::id()
    );
    let cluster = w.cluster_handle();
    w.timeline
        .record("helm_upgrade", format!("helm upgrade --set {stamp}"));
    tokio::task::spawn_blocking(move || cluster.helm_upgrade(&[&stamp])).await??;
    w.timeline
        .record("helm_upgraded", "the operator's Deployment rolled out");
    fail_over_and_realign(w).await
}
