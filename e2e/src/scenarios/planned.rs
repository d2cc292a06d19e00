//! Planned work (runbook 002, docs/design.md section 1): a switchover requested by annotation, and rolling maintenance
//! (the standby restarted while under maintenance, switch over, then the other one).

use std::time::Duration;

use anyhow::Result;
use receiptdb_operator::crd::Member;
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
