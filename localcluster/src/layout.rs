//! Where everything of the local cluster lives: addresses, names, ports and directories.
//!
//! ```text
//!  root network namespace                         node-i network namespace (i = 1..=N)
//!  bridge rdb0 10.88.0.1/24 ─── veth rdbn<i> ──── eth0 10.88.0.(10+i)/24
//!    kube-apiserver :6443, CoreDNS :53              node agent, kube-proxy
//!    etcd 127.0.0.1, controller manager,            pod veths ── pod eth0 10.244.i.x/32
//!    scheduler, kube-proxy (for host clients)
//!  route 10.244.i.0/24 via 10.88.0.(10+i)
//! ```
//!
//! The network names (bridge, namespaces, nftables tables) are global to the machine, so one
//! local cluster runs per machine; [`MARKER`] records which state directory owns it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The bridge in the root network namespace that every node's veth joins.
pub const BRIDGE: &str = "rdb0";
/// The root namespace's address on [`BRIDGE`]: the API server and CoreDNS listen here.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// Prefix length of the bridge network.
pub const BRIDGE_PREFIX: u8 = 24;
/// Service ClusterIPs.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP (the first address of [`SERVICE_CIDR`]).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The `kube-dns` Service's ClusterIP, the pods' nameserver.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Pod addresses: node i owns 10.244.i.0/24.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The API server's secure port on [`GATEWAY`].
pub const APISERVER_PORT: u16 = 6443;
/// etcd's client port on 127.0.0.1 (off the default, so a peer's etcd can run beside it).
pub const ETCD_CLIENT_PORT: u16 = 23790;
/// etcd's peer port on 127.0.0.1.
pub const ETCD_PEER_PORT: u16 = 23800;
/// CoreDNS's health endpoint on [`GATEWAY`].
pub const DNS_HEALTH_PORT: u16 = 18080;
/// The Kubernetes release the control plane is built at (`tools/kube/go.mod`).
pub const KUBERNETES_VERSION: &str = "v1.36.3";
/// The file naming the state directory of the cluster running on this machine.
pub const MARKER: &str = "/run/receiptdb-localcluster";
/// Prefix of the pods' network namespaces (`ip netns list`).
pub const POD_NETNS_PREFIX: &str = "rdbp-";
/// Most nodes a cluster may have (addresses 10.88.0.11.. and pod networks 10.244.1..).
pub const MAX_NODES: u8 = 9;

/// One node's names and addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSlot {
    /// 1-based index.
    pub index: u8,
}

impl NodeSlot {
    /// The node's name (`node-1`, ...).
    pub fn name(self) -> String {
        format!("node-{}", self.index)
    }
    /// Its network namespace.
    pub fn netns(self) -> String {
        format!("rdb-node-{}", self.index)
    }
    /// The root-side end of its veth (on the bridge).
    pub fn host_veth(self) -> String {
        format!("rdbn{}", self.index)
    }
    /// The node's address on the bridge network.
    pub fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, 0, 10 + self.index)
    }
    /// The first address of its pod network (10.244.i.0/24).
    pub fn pod_network(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, 0)
    }
    /// Its pod network in CIDR notation.
    pub fn pod_cidr(self) -> String {
        format!("{}/24", self.pod_network())
    }
    /// The slot of a node name, if it is one of ours.
    pub fn of_name(name: &str) -> Option<Self> {
        let index: u8 = name.strip_prefix("node-")?.parse().ok()?;
        (1..=MAX_NODES).contains(&index).then_some(Self { index })
    }
}

/// The state directory of one cluster.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Its root.
    pub dir: PathBuf,
}

impl Layout {
    /// The layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// Certificates and keys.
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }
    /// The admin kubeconfig written for the user (`export KUBECONFIG=...`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    /// The kubeconfig of a component (`controller-manager`, `node-1`, ...).
    pub fn kubeconfig(&self, component: &str) -> PathBuf {
        self.dir
            .join("kubeconfigs")
            .join(format!("{component}.yaml"))
    }
    /// Log files of the control plane's processes.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// Pid files of the cluster's processes.
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// etcd's data.
    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    /// Configuration files (CoreDNS's Corefile, kube-proxy's configuration).
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    /// A node's own directory: its pods, their logs and volumes, its provisioned volumes.
    pub fn node_dir(&self, node: NodeSlot) -> PathBuf {
        self.dir.join("nodes").join(node.name())
    }
    /// The file describing the running cluster (nodes, program paths), written by `up`.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }
}

/// The absolute form of `p` (relative to the current directory).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_addresses() {
        let n = NodeSlot { index: 2 };
        assert_eq!(n.name(), "node-2");
        assert_eq!(n.ip(), Ipv4Addr::new(10, 88, 0, 12));
        assert_eq!(n.pod_cidr(), "10.244.2.0/24");
        assert_eq!(NodeSlot::of_name("node-2"), Some(n));
        assert_eq!(NodeSlot::of_name("node-0"), None);
        assert_eq!(NodeSlot::of_name("worker-1"), None);
    }
}
