//! Node faults on a scenario's world: the node running a member is lost (the machine dies) or
//! cut off (the network fails around it), and later brought back. The local cluster does the
//! work ([`localcluster::faults`]); this records them on the timeline and repairs whatever is
//! left broken when the scenario ends, so that the next scenario finds every node Ready.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use localcluster::faults;
use localcluster::layout::NodeSlot;
use receiptdb_operator::crd::Member;

use crate::cluster::OPERATOR_NAMESPACE;
use crate::harness::World;

/// A node a fault left broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenNode {
    pub node: NodeSlot,
    /// Lost (processes killed) rather than only cut off.
    pub lost: bool,
}

impl World {
    /// The node a member's pod runs on.
    pub async fn node_of(&self, m: Member) -> Result<NodeSlot> {
        let pod = self.member_pod(m).await?;
        let name = pod
            .spec
            .and_then(|s| s.node_name)
            .with_context(|| format!("the {m} member's pod is not scheduled"))?;
        NodeSlot::of_name(&name).with_context(|| format!("{name} is not a local cluster node"))
    }

    /// Make sure the leading operator replica does not run on `node`: if it does, delete its
    /// pod gracefully (a stopping leader releases its Lease) and wait until another replica
    /// leads. The node faults of the pair's members measure the pair's path; losing the leader
    /// with them is `operator-node-loss`.
    pub async fn lead_from_elsewhere(&mut self, node: NodeSlot) -> Result<()> {
        let (leader, on) = self.cluster().leader_pod().await?;
        if on.as_deref() != Some(node.name().as_str()) {
            return Ok(());
        }
        Api::<Pod>::namespaced(self.client.clone(), OPERATOR_NAMESPACE)
            .delete(&leader, &DeleteParams::default())
            .await
            .with_context(|| format!("delete the operator pod {leader}"))?;
        let new = self
            .cluster()
            .wait_new_leader(&leader, Duration::from_secs(60))
            .await?;
        self.timeline.record(
            "operator_leader",
            format!("{new} leads (its predecessor ran on {})", node.name()),
        );
        Ok(())
    }

    /// Lose the node of member `m` (the fault's time is recorded).
    pub async fn lose_node_of(&mut self, m: Member) -> Result<NodeSlot> {
        let node = self.node_of(m).await?;
        self.lead_from_elsewhere(node).await?;
        self.lose_node(node, &format!("the {m} member's node"))
            .await?;
        Ok(node)
    }

    /// Lose `node` (`what` it is, for the timeline; the fault's time is recorded).
    pub async fn lose_node(&mut self, node: NodeSlot, what: &str) -> Result<()> {
        let layout = self.cluster().layout();
        tokio::task::spawn_blocking(move || faults::lose(&layout, node)).await??;
        self.broken_nodes.push(BrokenNode { node, lost: true });
        self.fault(&format!(
            "{} ({what}) lost: cut off, its agent, kube-proxy and containers killed",
            node.name()
        ));
        Ok(())
    }

    /// Cut the node of member `m` off the network (the fault's time is recorded).
    pub async fn cut_node_of(&mut self, m: Member) -> Result<NodeSlot> {
        let node = self.node_of(m).await?;
        self.lead_from_elsewhere(node).await?;
        tokio::task::spawn_blocking(move || faults::cut(node)).await??;
        self.broken_nodes.push(BrokenNode { node, lost: false });
        self.fault(&format!(
            "{} (the {m} member's node) cut off the network",
            node.name()
        ));
        Ok(node)
    }

    /// Repair a broken node (restore a lost one, reconnect a cut one) and wait until its Node
    /// is Ready again.
    pub async fn repair_node(&mut self, node: NodeSlot) -> Result<()> {
        let Some(i) = self.broken_nodes.iter().position(|b| b.node == node) else {
            return Ok(());
        };
        let broken = self.broken_nodes.remove(i);
        let layout = self.cluster().layout();
        tokio::task::spawn_blocking(move || {
            if broken.lost {
                faults::restore(&layout, node)
            } else {
                faults::reconnect(node)
            }
        })
        .await??;
        self.timeline.record(
            "node_repaired",
            format!(
                "{} {}",
                node.name(),
                if broken.lost {
                    "restored (link up, agent and kube-proxy started again)"
                } else {
                    "reconnected"
                }
            ),
        );
        let nodes = Api::<Node>::all(self.client.clone());
        let name = node.name();
        self.wait_until(&format!("{name} Ready again"), || async {
            nodes.get(&name).await.is_ok_and(|n| node_ready(&n))
        })
        .await?;
        self.timeline
            .record("node_ready", format!("{name} is Ready again"));
        Ok(())
    }

    /// Repair every node still broken and uncordon every cordoned node (end of a scenario,
    /// whatever its outcome: a drain that failed half-way leaves its node cordoned).
    pub(crate) async fn repair_nodes(&mut self) {
        while let Some(b) = self.broken_nodes.first().copied() {
            if let Err(e) = self.repair_node(b.node).await {
                eprintln!("could not repair {}: {e:#}", b.node.name());
                self.broken_nodes.retain(|x| x.node != b.node);
            }
        }
        let nodes = Api::<Node>::all(self.client.clone());
        let Ok(list) = nodes.list(&Default::default()).await else {
            return;
        };
        for n in list.items {
            if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
                let name = n.metadata.name.unwrap_or_default();
                let uncordon = serde_json::json!({"spec": {"unschedulable": null}});
                match nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(uncordon))
                    .await
                {
                    Ok(_) => {
                        self.timeline
                            .record("uncordoned", format!("{name} left cordoned: uncordoned"));
                    }
                    Err(e) => eprintln!("could not uncordon {name}: {e}"),
                }
            }
        }
    }
}

/// Whether a Node's Ready condition is True.
fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
