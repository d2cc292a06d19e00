//! The cluster's network, made with iproute2: the bridge, one network namespace per node, and
//! one per pod (a veth routed through its node, Calico-style: every packet of a pod passes its
//! node's netfilter, so the node's kube-proxy sees all Service traffic without bridge
//! netfilter).

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::layout::{NodeSlot, BRIDGE, BRIDGE_PREFIX, GATEWAY, MAX_NODES, POD_NETNS_PREFIX};

/// The link-local next hop every pod routes through; its node's veth answers ARP for it.
const POD_GATEWAY: &str = "169.254.1.1";

/// Run `program args...`; a failure carries the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip args...`.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// `ip -n NETNS args...`: the command in another network namespace.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Set a sysctl of the network namespace `netns` (`None`: the caller's).
pub fn sysctl(netns: Option<&str>, key: &str, value: &str) -> Result<()> {
    let kv = format!("{key}={value}");
    match netns {
        Some(ns) => run("ip", &["netns", "exec", ns, "sysctl", "-qw", &kv]),
        None => run("sysctl", &["-qw", &kv]),
    }
}

/// Whether a link exists in the caller's network namespace (asked of the kernel: `/sys/class/net`
/// shows the namespace that mounted sysfs, not necessarily the caller's).
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The names in `ip netns list`.
pub fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The bridge and forwarding in the root namespace.
pub fn create_bridge() -> Result<()> {
    ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &format!("{GATEWAY}/{BRIDGE_PREFIX}"),
        "dev",
        BRIDGE,
    ])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    sysctl(None, "net.ipv4.ip_forward", "1")
}

/// A node's namespace: a veth on the bridge with the node's address, forwarding on, and the
/// root namespace's route to the node's pod network.
pub fn create_node(node: NodeSlot) -> Result<()> {
    let ns = node.netns();
    ip(&["netns", "add", &ns])?;
    ip(&[
        "link",
        "add",
        &node.host_veth(),
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &ns,
    ])?;
    ip(&["link", "set", &node.host_veth(), "master", BRIDGE, "up"])?;
    ip_in(&ns, &["link", "set", "lo", "up"])?;
    ip_in(
        &ns,
        &[
            "addr",
            "add",
            &format!("{}/{BRIDGE_PREFIX}", node.ip()),
            "dev",
            "eth0",
        ],
    )?;
    ip_in(&ns, &["link", "set", "eth0", "up"])?;
    ip_in(
        &ns,
        &["route", "add", "default", "via", &GATEWAY.to_string()],
    )?;
    sysctl(Some(&ns), "net.ipv4.ip_forward", "1")?;
    ip(&[
        "route",
        "add",
        &node.pod_cidr(),
        "via",
        &node.ip().to_string(),
    ])
}

/// The host end of a pod's veth, in its node's namespace (15 characters at most).
pub fn pod_veth(pod_uid: &str) -> String {
    let short: String = pod_uid.chars().filter(|c| *c != '-').take(12).collect();
    format!("rp{short}")
}

/// A pod's network namespace name.
pub fn pod_netns(pod_uid: &str) -> String {
    format!("{POD_NETNS_PREFIX}{pod_uid}")
}

/// A pod's namespace with `addr`, called from its node's namespace (the node agent's).
pub fn create_pod_network(pod_uid: &str, addr: Ipv4Addr) -> Result<()> {
    let ns = pod_netns(pod_uid);
    let veth = pod_veth(pod_uid);
    // Leftovers of an earlier attempt for the same pod.
    delete_pod_network(pod_uid);
    ip(&["netns", "add", &ns])?;
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&["link", "set", &veth, "up"])?;
    sysctl(None, &format!("net.ipv4.conf.{veth}.proxy_arp"), "1")?;
    ip(&["route", "add", &format!("{addr}/32"), "dev", &veth])?;
    ip_in(&ns, &["link", "set", "lo", "up"])?;
    ip_in(&ns, &["addr", "add", &format!("{addr}/32"), "dev", "eth0"])?;
    ip_in(&ns, &["link", "set", "eth0", "up"])?;
    ip_in(
        &ns,
        &["route", "add", POD_GATEWAY, "dev", "eth0", "scope", "link"],
    )?;
    ip_in(
        &ns,
        &["route", "add", "default", "via", POD_GATEWAY, "dev", "eth0"],
    )
}

/// Remove a pod's namespace and veth (its route goes with the veth). Idempotent.
pub fn delete_pod_network(pod_uid: &str) {
    let veth = pod_veth(pod_uid);
    if link_exists(&veth) {
        let _ = ip(&["link", "del", &veth]);
    }
    let ns = pod_netns(pod_uid);
    if netns_list().contains(&ns) {
        let _ = ip(&["netns", "del", &ns]);
    }
}

/// Remove every namespace and link of the cluster, and kube-proxy's nftables tables in the
/// root namespace. Idempotent; errors are reported, not fatal.
pub fn teardown() -> Vec<String> {
    let mut problems = Vec::new();
    for ns in netns_list() {
        if ns.starts_with("rdb-node-") || ns.starts_with(POD_NETNS_PREFIX) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                problems.push(format!("{e:#}"));
            }
        }
    }
    // A node's veth outlives its namespace's name while the kernel still holds the namespace
    // (lingering sockets): delete the pair from the root side.
    for index in 1..=MAX_NODES {
        let veth = NodeSlot { index }.host_veth();
        if link_exists(&veth) {
            if let Err(e) = ip(&["link", "del", &veth]) {
                problems.push(format!("{e:#}"));
            }
        }
    }
    if link_exists(BRIDGE) {
        if let Err(e) = ip(&["link", "del", BRIDGE]) {
            problems.push(format!("{e:#}"));
        }
    }
    for family in ["ip", "ip6"] {
        // Absent when kube-proxy cleaned up after itself.
        let _ = run("nft", &["delete", "table", family, "kube-proxy"]);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_link_names_fit_the_kernel_limit() {
        let v = pod_veth("3f1dce6b-e0eb-56be-e76f-0b0c69122064");
        assert_eq!(v, "rp3f1dce6be0eb");
        assert!(v.len() <= 15);
        assert_eq!(
            pod_netns("3f1dce6b-e0eb"),
            format!("{POD_NETNS_PREFIX}3f1dce6b-e0eb")
        );
    }
}
