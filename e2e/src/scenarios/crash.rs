//! The runbook's three failures (runbook 000, docs/design.md section 1): primary down, secondary down, both down; and the
//! primary down with failback left to a person.

use std::time::Duration;

use anyhow::Result;
use receiptdb_operator::crd::{Member, ReceiptDbPairSpec};

use super::steps::{in_sync_on, manual_failback, secondary_back_without_failover, switch_to};
use super::Scenario;
use crate::harness::{healthy, healthy_on, World};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "primary-crash",
            about: "SIGKILL the primary: fail over to the secondary, rejoin the primary by rewind, in sync, automatic failback",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(primary_crash(w)),
        },
        Scenario {
            name: "secondary-crash",
            about: "SIGKILL the secondary: clients stay on the primary (commits degrade to async), the secondary returns and catches up",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(secondary_crash(w)),
        },
        Scenario {
            name: "both-crash",
            about: "SIGKILL both members: clients fail fast, both return, the pair serves again in sync with nothing acknowledged lost",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(both_crash(w)),
        },
        Scenario {
            name: "primary-crash-manual-failback",
            about: "failback manual: after the failover the pair stays on the secondary until a switchover is requested by annotation",
            spec: manual_failback,
            body: |w| Box::pin(primary_crash_manual_failback(w)),
        },
    ]
}

/// The failover away from the primary and its re-alignment; records what the checks need.
pub async fn fail_over_and_realign(w: &mut World) -> Result<()> {
    w.wait_for("the client Service to select the secondary", |s| {
        s.status.active_member == Some(Member::Secondary)
            && s.selects.as_deref() == Some("secondary")
    })
    .await?;
    let s = w
        .wait_for("the primary re-aligned and in sync", |s| {
            in_sync_on(s, Member::Secondary)
        })
        .await?;
    let failover = s.status.last_failover.clone();
    w.check(
        "failover_recorded",
        failover
            .as_ref()
            .is_some_and(|f| f.from == Member::Primary && f.to == Member::Secondary),
        format!("{failover:?}"),
    );
    let sync = s.status.last_sync.clone();
    // `rewind`, or `none` when the old primary had nothing past the fork (synchronous mode: the
    // standby had every commit) and rejoined as it was; never a re-clone while the WAL is there.
    w.check(
        "rejoined_without_reclone",
        sync.as_ref().is_some_and(|r| {
            r.member == Member::Primary
                && r.succeeded
                && (r.method == "rewind" || r.method == "none")
        }),
        format!("{sync:?}"),
    );
    Ok(())
}

async fn primary_crash(w: &mut World) -> Result<()> {
    w.crash(Member::Primary).await?;
    fail_over_and_realign(w).await?;
    w.wait_for("automatic failback to the primary", |s| {
        healthy_on(s, Member::Primary)
    })
    .await?;
    w.pause(Duration::from_secs(2)).await
}

async fn secondary_crash(w: &mut World) -> Result<()> {
    w.crash(Member::Secondary).await?;
    w.wait_for("InSync to drop", |s| s.condition("InSync") != Some("True"))
        .await?;
    secondary_back_without_failover(w).await
}

async fn both_crash(w: &mut World) -> Result<()> {
    w.crash(Member::Primary).await?;
    w.crash(Member::Secondary).await?;
    w.wait_for("InSync to drop", |s| s.condition("InSync") != Some("True"))
        .await?;
    w.wait_for("the pair healthy and in sync again", healthy)
        .await?;
    w.pause(Duration::from_secs(2)).await
}

async fn primary_crash_manual_failback(w: &mut World) -> Result<()> {
    w.crash(Member::Primary).await?;
    fail_over_and_realign(w).await?;
    // A person asks for the switchback once both members are healthy: a re-aligned standby
    // accepts connections (and its pod is ready) only once it has replayed to a consistent
    // point, which can take a few seconds after it streams in sync.
    w.wait_for("both members healthy on the secondary", |s| {
        healthy_on(s, Member::Secondary)
    })
    .await?;
    w.pause(Duration::from_secs(3)).await?;
    let still = w.observer.latest().and_then(|s| s.status.active_member);
    w.check(
        "no_automatic_failback",
        still == Some(Member::Secondary),
        format!("active after 3 s in sync: {still:?}"),
    );
    switch_to(w, Member::Primary).await?;
    w.pause(Duration::from_secs(2)).await
}
