//! Node faults on a scenario's world: the node running a member is lost (the machine dies) or
//! cut off (the network fails around it), and later brought back. The local cluster does the
//! work ([`localcluster::faults`]); this records them on the timeline and repairs whatever is
//! left broken when the scenario ends, so that the next scenario finds every node Ready.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use localcluster::faults;
use localcluster::layout::NodeSlot;
use receiptdb_operator::crd::Member;

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

    /// Lose the node of member `m` (the fault's time is recorded).
    pub async fn lose_node_of(&mut self, m: Member) -> Result<NodeSlot> {
        let node = self.node_of(m).await?;
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

    /// Repair every node still broken (end of a scenario, whatever its outcome).
    pub(crate) async fn repair_nodes(&mut self) {
        while let Some(b) = self.broken_nodes.first().copied() {
            if let Err(e) = self.repair_node(b.node).await {
                eprintln!("could not repair {}: {e:#}", b.node.name());
                self.broken_nodes.retain(|x| x.node != b.node);
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
