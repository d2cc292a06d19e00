//! A member's node fails as a machine or a network does (issue: survive the loss of a node):
//! - the primary's node is lost: nothing answers at its addresses and its processes are dead;
//!   the pod cannot be deleted (its node does not confirm) so the operator must not wait for
//!   that; after the node comes back the old primary is re-aligned and the pair fails back;
//! - the primary's node is cut off: the old primary keeps running but nothing reaches it; in
//!   synchronous mode it cannot acknowledge a commit without its standby, so the operator
//!   promotes the standby at once; after the cut is repaired the old primary is fenced and
//!   re-aligned, never selected before;
//! - the secondary's node is cut off: commits degrade to asynchronous and continue; no failover;
//! - the leading operator replica's node is lost while a failover is under way: the other
//!   replica takes over once the Lease expires and finishes it from status.

use std::time::Duration;

use anyhow::{Context, Result};
use localcluster::layout::NodeSlot;
use receiptdb_operator::crd::{Member, ReceiptDbPairSpec};

use super::crash::fail_over_and_realign;
use super::steps::{
    failed_back, failover_started, manual_failback, secondary_back_without_failover,
};
use super::Scenario;
use crate::harness::{World, PAIR};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "node-loss-primary",
            about: "the primary's node is lost (cut off, its agent and processes killed): fail over without waiting for the pod's deletion; the node returns, the old primary is re-aligned, automatic failback",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(node_loss_primary(w)),
        },
        Scenario {
            name: "partition-primary",
            about: "the primary's node is cut off (its processes keep running): fail over; the cut is repaired, the old primary is fenced and re-aligned before it is selected again",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(partition_primary(w)),
        },
        Scenario {
            name: "operator-node-loss",
            about: "the primary crashes; once the failover has started, the leading operator replica's node is lost: the other replica takes over when the Lease expires and finishes the failover",
            spec: manual_failback,
            body: |w| Box::pin(operator_node_loss(w)),
        },
        Scenario {
            name: "partition-secondary",
            about: "the secondary's node is cut off: commits degrade to asynchronous and continue on the primary; the cut is repaired and the secondary catches up",
            spec: ReceiptDbPairSpec::default,
            body: |w| Box::pin(partition_secondary(w)),
        },
    ]
}

/// The Service selects the secondary: the failover is done for clients.
async fn failed_over(w: &mut World) -> Result<()> {
    w.wait_for("the client Service to select the secondary", |s| {
        s.status.active_member == Some(Member::Secondary)
            && s.selects.as_deref() == Some("secondary")
    })
    .await?;
    // Clients write on the secondary for a while before the node comes back.
    w.pause(Duration::from_secs(3)).await
}

async fn node_loss_primary(w: &mut World) -> Result<()> {
    let node = w.lose_node_of(Member::Primary).await?;
    failed_over(w).await?;
    w.repair_node(node).await?;
    fail_over_and_realign(w).await?;
    failed_back(w).await
}

async fn partition_primary(w: &mut World) -> Result<()> {
    let pid = w.member_pid(&format!("{PAIR}-primary")).await;
    let node = w.cut_node_of(Member::Primary).await?;
    failed_over(w).await?;
    // The cut-off primary still runs: what follows is the return of a live old primary.
    let alive = pid.is_some_and(localcluster::daemon::alive);
    w.check(
        "old_primary_ran_through_the_cut",
        alive,
        format!("postmaster pid {pid:?} alive at the repair: {alive}"),
    );
    w.repair_node(node).await?;
    fail_over_and_realign(w).await?;
    failed_back(w).await
}

async fn partition_secondary(w: &mut World) -> Result<()> {
    let node = w.cut_node_of(Member::Secondary).await?;
    w.wait_for("InSync to drop", |s| s.condition("InSync") != Some("True"))
        .await?;
    // Commits continue on the primary, asynchronously, while the secondary is cut off.
    w.pause(Duration::from_secs(3)).await?;
    w.repair_node(node).await?;
    secondary_back_without_failover(w).await
}

async fn operator_node_loss(w: &mut World) -> Result<()> {
    // Losing the survivor's node too would be a double fault (nothing to fail over to): the
    // leader must not share the secondary's node.
    let secondary_node = w.node_of(Member::Secondary).await?;
    w.lead_from_elsewhere(secondary_node).await?;
    w.crash(Member::Primary).await?;
    failover_started(w).await?;
    let (leader, node) = w.cluster().leader_pod().await?;
    let node = node
        .as_deref()
        .and_then(NodeSlot::of_name)
        .with_context(|| format!("the leading operator pod {leader} has no local cluster node"))?;
    w.lose_node(node, &format!("the leading operator {leader}'s node"))
        .await?;
    let new = w
        .cluster()
        .wait_new_leader(&leader, Duration::from_secs(60))
        .await?;
    w.timeline
        .record("operator_leader", format!("operator pod {new} leads"));
    failed_over(w).await?;
    w.repair_node(node).await?;
    fail_over_and_realign(w).await
}
