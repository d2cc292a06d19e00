//! The pair's manifest applied again and again by a GitOps tool (server-side apply, its own
//! field manager, conflicts forced) while the operator fails over and re-aligns: the operator
//! owns no field of the pair's spec, so nothing changes and no member restarts.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use receiptdb_operator::crd::Member;

use super::crash::fail_over_and_realign;
use super::steps::{in_sync_on, manual_failback};
use super::Scenario;
use crate::harness::{container_pid, World, PAIR};

pub fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "gitops-reapply",
        about: "the pair's manifest re-applied by server-side apply with another field manager every 300 ms through a failover and re-alignment: no change to the pair, no member restarted",
        spec: manual_failback,
        body: |w| Box::pin(gitops_reapply(w)),
    }]
}

/// The secondary's pod identity: uid and its container's process.
async fn secondary_identity(w: &World) -> Result<(Option<String>, Option<i32>)> {
    let name = format!("{PAIR}-secondary-0");
    let pod = Api::<Pod>::namespaced(w.client.clone(), &w.namespace)
        .get(&name)
        .await
        .with_context(|| format!("read Pod {name}"))?;
    Ok((pod.metadata.uid.clone(), container_pid(&pod)))
}

async fn gitops_reapply(w: &mut World) -> Result<()> {
    const MANAGER: &str = "gitops-tool";
    w.apply_pair_as(MANAGER).await?;
    let generation = w.pair().await?.metadata.generation;
    let secondary = secondary_identity(w).await?;
    w.crash(Member::Primary).await?;
    let mut applies = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        w.apply_pair_as(MANAGER).await?;
        applies += 1;
        let done = w
            .observer
            .latest()
            .is_some_and(|s| in_sync_on(&s, Member::Secondary));
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    w.timeline.record(
        "gitops_applies",
        format!("the manifest applied {applies} times as {MANAGER}"),
    );
    fail_over_and_realign(w).await?;
    let after = w.pair().await?.metadata.generation;
    w.check(
        "reapply_changed_nothing",
        after == generation,
        format!("{applies} applies; generation {generation:?} before, {after:?} after"),
    );
    let now = secondary_identity(w).await?;
    w.check(
        "no_member_restarted",
        now == secondary && now.1.is_some(),
        format!("secondary pod (uid, pid) before {secondary:?}, after {now:?}"),
    );
    w.pause(Duration::from_secs(2)).await
}
