//! Planned work (runbook 002, docs/design.md section 1): a switchover requested by annotation, rolling maintenance
//! (the standby restarted while under maintenance, switch over, then the other one), and a
//! changed image rolled member by member by the operator itself.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use receiptdb_operator::crd::{Member, ReceiptDbPairSpec};
use serde_json::json;

use super::steps::{in_sync_on, manual_failback, switch_to};
use super::Scenario;
use crate::harness::{healthy_on, World, PAIR};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "switchover",
            about: "receiptdb.io/switchover-to=secondary: stop writes, wait for replay, promote, flip, rejoin the old primary",
            spec: manual_failback,
            body: |w| Box::pin(switchover(w)),
        },
        Scenario {
            name: "image-roll",
            about: "spec.postgres.image changed with the writer running: the standby restarted on it first, a switchover, the old primary's new pod with its re-alignment, automatic failback; no failover",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(image_roll(w)),
        },
        Scenario {
            name: "rolling-maintenance",
            about: "maintenance.member=secondary and restart it; switchover; maintenance.member=primary and restart it",
            spec: manual_failback,
            body: |w| Box::pin(rolling(w)),
        },
    ]
}

async fn switchover(w: &mut World) -> Result<()> {
    w.fault("switchover requested (receiptdb.io/switchover-to=secondary)");
    switch_to(w, Member::Secondary).await?;
    let s = w.observer.latest();
    w.check(
        "no_failover",
        s.as_ref().is_some_and(|s| s.status.last_failover.is_none()),
        "a planned switchover is not a failover",
    );
    w.pause(Duration::from_secs(2)).await
}

async fn restart_under_maintenance(w: &mut World, m: Member, active: Member) -> Result<()> {
    w.patch_spec(json!({"maintenance": {"member": m.as_str()}}))
        .await?;
    w.pause(Duration::from_millis(500)).await?;
    let sts = format!("{PAIR}-{m}");
    let old_pid = w.member_pid(&sts).await;
    w.delete_pod(m).await?;
    let what = format!("the {m} restarted");
    w.wait_until(&what, || async {
        let pid = w.member_pid(&sts).await;
        pid.is_some() && pid != old_pid
    })
    .await?;
    // A few probe periods for the operator to see the restarted member before trusting status.
    w.pause(Duration::from_secs(3)).await?;
    let what = format!("the {m} back in sync after its maintenance restart");
    w.wait_for(&what, |s| in_sync_on(s, active) && s.member(m).ready)
        .await?;
    w.patch_spec(json!({"maintenance": {"member": null}}))
        .await?;
    let what = format!("healthy on the {active} after maintenance of the {m}");
    w.wait_for(&what, |s| healthy_on(s, active)).await?;
    Ok(())
}

async fn rolling(w: &mut World) -> Result<()> {
    w.fault("rolling maintenance starts (maintenance.member=secondary)");
    restart_under_maintenance(w, Member::Secondary, Member::Primary).await?;
    switch_to(w, Member::Secondary).await?;
    restart_under_maintenance(w, Member::Primary, Member::Secondary).await?;
    let s = w.observer.latest();
    w.check(
        "no_failover",
        s.as_ref().is_some_and(|s| s.status.last_failover.is_none()),
        "maintenance restarts are not failures",
    );
    w.pause(Duration::from_secs(2)).await
}

/// The image every member pod's `postgres` container runs (None: a pod missing).
async fn member_images(w: &World) -> Result<[Option<String>; 2]> {
    let pods = Api::<Pod>::namespaced(w.client.clone(), &w.namespace);
    let mut out = [None, None];
    for (i, m) in Member::ALL.into_iter().enumerate() {
        let name = format!("{PAIR}-{m}-0");
        out[i] = pods
            .get_opt(&name)
            .await
            .with_context(|| format!("read Pod {name}"))?
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .and_then(|p| {
                p.spec?
                    .containers
                    .into_iter()
                    .find(|c| c.name == "postgres")?
                    .image
            });
    }
    Ok(out)
}

async fn image_roll(w: &mut World) -> Result<()> {
    const NEW: &str = "docker.io/library/postgres:15.10-bookworm";
    w.patch_spec(json!({"postgres": {"image": NEW}})).await?;
    w.fault(&format!("spec.postgres.image changed to {NEW}"));
    w.wait_until("both member pods on the new image", || async {
        member_images(w)
            .await
            .is_ok_and(|imgs| imgs.iter().all(|i| i.as_deref() == Some(NEW)))
    })
    .await?;
    w.wait_for("the automatic failback to the primary", |s| {
        healthy_on(s, Member::Primary)
    })
    .await?;
    let events = w.timeline.events();
    let first = |what: &str| {
        events
            .iter()
            .position(|e| e.kind == "k8s_event" && e.detail.contains(what))
    };
    let (restart, switch) = (first("RollingRestart"), first("SwitchoverStarted"));
    w.check(
        "standby_restarted_before_the_switchover",
        matches!((restart, switch), (Some(r), Some(s)) if r < s),
        format!("timeline positions: RollingRestart {restart:?}, SwitchoverStarted {switch:?}"),
    );
    let s = w.pair().await?.status.unwrap_or_default();
    w.check(
        "no_failover",
        s.last_failover.is_none(),
        format!("lastFailover {:?}", s.last_failover),
    );
    w.pause(Duration::from_secs(2)).await
}
