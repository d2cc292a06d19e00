//! Steps several scenarios share: the failback policy left to a person, "in sync on a member",
//! and a switchover requested by annotation.

use std::time::Duration;

use anyhow::{bail, Result};
use kube::ResourceExt;
use receiptdb_operator::crd::{
    annotation, FailbackPolicy, Member, OperationKind, ReceiptDbPairSpec,
};

use crate::harness::{healthy_on, spec_with, World};
use crate::observer::Sample;

/// Failback left to a person.
pub fn manual_failback() -> ReceiptDbPairSpec {
    spec_with(|s| s.failover.failback = FailbackPolicy::Manual)
}

/// In sync with `active` serving, the other member re-aligned, nothing in progress.
pub fn in_sync_on(s: &Sample, active: Member) -> bool {
    s.status.active_member == Some(active)
        && s.selects.as_deref() == Some(active.as_str())
        && s.condition("InSync") == Some("True")
        && !s.member(active.other()).stale
        && s.status.operation.is_none()
}

/// Request a switchover to `m` and wait until the pair is healthy on it. A request the
/// operator clears without switching (refused: see the `k8s_event` entries) fails at once.
pub async fn switch_to(w: &mut World, m: Member) -> Result<()> {
    w.annotate(annotation::SWITCHOVER_TO, Some(m.as_str()))
        .await?;
    // Read the pair itself (not the observer's last sample, which may predate the request).
    w.wait_until("the switchover request to be taken", || async {
        w.pair()
            .await
            .is_ok_and(|p| !p.annotations().contains_key(annotation::SWITCHOVER_TO))
    })
    .await?;
    let status = w.pair().await?.status.unwrap_or_default();
    if status.active_member != Some(m) && status.operation.is_none() {
        bail!("the operator cleared the switchover request to {m} without switching (refused?)");
    }
    let what = format!("the switchover to the {m}");
    w.wait_for(&what, |s| healthy_on(s, m)).await?;
    Ok(())
}

/// Wait until a failover has started (its operation, or the old primary already fenced).
pub async fn failover_started(w: &mut World) -> Result<()> {
    w.wait_for("the failover to start", |s| {
        s.status
            .operation
            .as_ref()
            .is_some_and(|o| o.kind == OperationKind::Failover)
            || s.status.primary.fenced
    })
    .await?;
    Ok(())
}

/// The secondary is back in sync with the primary serving, and there was no failover.
pub async fn secondary_back_without_failover(w: &mut World) -> Result<()> {
    let s = w
        .wait_for("the secondary back in sync", |s| {
            healthy_on(s, Member::Primary)
        })
        .await?;
    w.check(
        "no_failover",
        s.status.last_failover.is_none(),
        format!("lastFailover {:?}", s.status.last_failover),
    );
    w.pause(Duration::from_secs(2)).await
}

/// The automatic failback to the primary, then a little more writing.
pub async fn failed_back(w: &mut World) -> Result<()> {
    w.wait_for("automatic failback to the primary", |s| {
        healthy_on(s, Member::Primary)
    })
    .await?;
    w.pause(Duration::from_secs(2)).await
}
