//! Faults a test injects into a running cluster's nodes, as a machine or a network fails:
//! - [`lose`]: the node is gone. Its link goes down first (nothing answers at its addresses,
//!   not even a reset), then its agent, its kube-proxy and every process of every container on
//!   it are SIGKILLed. Its Node stops heartbeating; its pods' status stays as last written.
//! - [`restore`]: the machine comes back as after a reboot: the link up, the agent and
//!   kube-proxy started again. The agent starts the node afresh (it kills what is left and runs
//!   the pods still bound to it; volumes are kept).
//! - [`cut`]: the node is cut off. Its processes keep running, nothing reaches them and nothing
//!   they send gets out (the agent cannot reach the API server either).
//! - [`reconnect`]: the cut is repaired; everything on the node carries on.
//!
//! They act on the root namespace's side of the node's veth: every packet of the node and of its
//! pods passes it ([`crate::net`]).

use anyhow::{Context, Result};

use crate::agent::cgroup;
use crate::daemon;
use crate::layout::{Layout, NodeSlot};
use crate::net;

fn agent(node: NodeSlot) -> String {
    format!("agent-{}", node.name())
}

fn kube_proxy(node: NodeSlot) -> String {
    format!("kube-proxy-{}", node.name())
}

/// Cut the node off the network.
pub fn cut(node: NodeSlot) -> Result<()> {
    net::ip(&["link", "set", &node.host_veth(), "down"])
        .with_context(|| format!("cut {} off", node.name()))
}

/// Connect the node again (the veth stays a port of the bridge while down).
pub fn reconnect(node: NodeSlot) -> Result<()> {
    net::ip(&["link", "set", &node.host_veth(), "up"])
        .with_context(|| format!("reconnect {}", node.name()))
}

/// Lose the node: cut it off, then kill its agent, its kube-proxy and all its containers.
pub fn lose(layout: &Layout, node: NodeSlot) -> Result<()> {
    cut(node)?;
    daemon::kill_now(layout, &agent(node));
    daemon::kill_now(layout, &kube_proxy(node));
    cgroup::kill_node(&node.name());
    Ok(())
}

/// Bring a lost node back: reconnect it, start its kube-proxy and its agent again.
pub fn restore(layout: &Layout, node: NodeSlot) -> Result<()> {
    reconnect(node)?;
    daemon::restart(layout, &kube_proxy(node))?;
    daemon::restart(layout, &agent(node))?;
    Ok(())
}
