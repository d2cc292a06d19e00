//! The leading operator replica dies mid-operation (its pod deleted with grace period 0: the
//! process is killed mid-pass, its Lease not released) and the other replica, once the Lease
//! expires, carries on with nothing but the API's state: during the failover, and during the
//! rejoin Job.

use receiptdb_operator::crd::{Member, OperationKind, OperationStep};

use super::crash::fail_over_and_realign;
use super::steps::manual_failback;
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
                    w.wait_for("the failover to start", |s| {
                        s.status
                            .operation
                            .as_ref()
                            .is_some_and(|o| o.kind == OperationKind::Failover)
                            || s.status.primary.fenced
                    })
                    .await?;
                    w.kill_operator().await?;
                    fail_over_and_realign(w).await
                })
            },
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
