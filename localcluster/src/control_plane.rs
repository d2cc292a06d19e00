//! The control plane's processes and their flags: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kube-proxy (one per node, one in the root namespace for host clients) and
//! CoreDNS, every one built from its Go module by `scripts/install-deps kube`.
//!
//! The flags follow what a kubeadm cluster sets, with these choices for a throwaway cluster on
//! one machine: etcd without fsync, no leader election, the controller manager's own node CIDR
//! allocation off (each node's pod network is fixed by its slot, see [`crate::layout`]).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::daemon::Daemon;
use crate::layout::{
    Layout, NodeSlot, APISERVER_PORT, CLUSTER_CIDR, CLUSTER_DOMAIN, DNS_HEALTH_PORT,
    ETCD_CLIENT_PORT, ETCD_PEER_PORT, GATEWAY, SERVICE_CIDR,
};
use crate::pki::Pki;

/// Where the control plane's programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub bin_dir: PathBuf,
}

impl Programs {
    /// The program `name` in the bin directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Fail with the install command when a program is missing.
    pub fn check(&self) -> Result<()> {
        for p in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
            "coredns",
        ] {
            let path = self.path(p);
            anyhow::ensure!(
                path.exists(),
                "{} is missing: run `scripts/install-deps kube` (it builds the control plane from the Go module proxy)",
                path.display()
            );
        }
        Ok(())
    }
}

/// etcd on loopback. Without fsync: this cluster's data is disposable, and fsync on a shared
/// CI disk makes every write wait.
pub fn etcd(layout: &Layout, p: &Programs) -> Daemon {
    let client = format!("http://127.0.0.1:{ETCD_CLIENT_PORT}");
    let peer = format!("http://127.0.0.1:{ETCD_PEER_PORT}");
    Daemon::new("etcd", p.path("etcd")).args([
        "--name".to_string(),
        "localcluster".into(),
        format!("--data-dir={}", layout.etcd_data().display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=localcluster={peer}"),
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
    ])
}

/// The API server: RBAC and Node authorization, ServiceAccount tokens, and the admission
/// plugins a production cluster enables on top of the defaults (NodeRestriction, and
/// OwnerReferencesPermissionEnforcement, which refuses an ownerReference with
/// `blockOwnerDeletion` unless the writer may delete the owner).
pub fn apiserver(pki: &Pki, p: &Programs) -> Daemon {
    Daemon::new("kube-apiserver", p.path("kube-apiserver")).args([
        format!("--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
        format!("--bind-address={GATEWAY}"),
        format!("--advertise-address={GATEWAY}"),
        format!("--secure-port={APISERVER_PORT}"),
        format!("--tls-cert-file={}", pki.apiserver_cert.display()),
        format!("--tls-private-key-file={}", pki.apiserver_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        format!("--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
        format!("--service-account-key-file={}", pki.sa_pub.display()),
        format!(
            "--service-account-signing-key-file={}",
            pki.sa_key.display()
        ),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ])
}

/// The controller manager with every default controller (StatefulSet, Job, CronJob, garbage
/// collector, EndpointSlice, ServiceAccount, TTL-after-finished, node lifecycle, PV binder,
/// ...), each with its own ServiceAccount's credentials, as in kubeadm.
pub fn controller_manager(layout: &Layout, pki: &Pki, p: &Programs) -> Daemon {
    let kc = layout.kubeconfig("controller-manager");
    let ca_key = layout.pki().join("ca.key");
    Daemon::new("kube-controller-manager", p.path("kube-controller-manager")).args([
        format!("--kubeconfig={}", kc.display()),
        format!("--authentication-kubeconfig={}", kc.display()),
        format!("--authorization-kubeconfig={}", kc.display()),
        "--bind-address=127.0.0.1".into(),
        "--controllers=*".into(),
        "--use-service-account-credentials=true".into(),
        format!(
            "--service-account-private-key-file={}",
            pki.sa_key.display()
        ),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        format!("--cluster-signing-cert-file={}", pki.ca_cert.display()),
        format!("--cluster-signing-key-file={}", ca_key.display()),
        "--cluster-name=receiptdb-local".into(),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allocate-node-cidrs=false".into(),
        "--leader-elect=false".into(),
        "--v=1".into(),
    ])
}

/// The scheduler.
pub fn scheduler(layout: &Layout, p: &Programs) -> Daemon {
    let kc = layout.kubeconfig("scheduler");
    Daemon::new("kube-scheduler", p.path("kube-scheduler")).args([
        format!("--kubeconfig={}", kc.display()),
        format!("--authentication-kubeconfig={}", kc.display()),
        format!("--authorization-kubeconfig={}", kc.display()),
        "--bind-address=127.0.0.1".into(),
        "--leader-elect=false".into(),
        "--v=1".into(),
    ])
}

/// kube-proxy in nftables mode for `node` (its network namespace), or for the root namespace
/// (`None`: host programs such as the scenario's writer reach Services too).
pub fn kube_proxy(layout: &Layout, p: &Programs, node: Option<NodeSlot>) -> Result<Daemon> {
    let (name, host, ip) = match node {
        Some(n) => (n.name(), n.name(), n.ip()),
        None => ("host".to_string(), "localcluster-host".to_string(), GATEWAY),
    };
    let config = layout.config().join(format!("kube-proxy-{name}.yaml"));
    write(
        &config,
        &format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kc}
mode: nftables
hostnameOverride: {host}
bindAddress: {ip}
clusterCIDR: {CLUSTER_CIDR}
detectLocalMode: ClusterCIDR
healthzBindAddress: {ip}:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  # Leave the kernel's conntrack limits and timeouts alone (they are per machine).
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
",
            kc = layout.kubeconfig("kube-proxy").display(),
        ),
    )?;
    let d = Daemon::new(format!("kube-proxy-{name}"), p.path("kube-proxy"))
        .args([format!("--config={}", config.display()), "--v=1".into()]);
    Ok(match node {
        Some(n) => d.in_netns(&n.netns()),
        None => d,
    })
}

/// CoreDNS serving `cluster.local` from the API server, on the gateway address (the `kube-dns`
/// Service's endpoint).
pub fn coredns(layout: &Layout, p: &Programs) -> Result<Daemon> {
    let corefile = layout.config().join("Corefile");
    write(
        &corefile,
        &format!(
            ".:53 {{
    bind {GATEWAY}
    errors
    health {GATEWAY}:{DNS_HEALTH_PORT}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kc} receiptdb-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
}}
",
            kc = layout.kubeconfig("coredns").display(),
        ),
    )?;
    Ok(Daemon::new("coredns", p.path("coredns"))
        .args(["-conf".to_string(), corefile.display().to_string()]))
}

fn write(path: &Path, content: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    fs::write(path, content).with_context(|| format!("write {}", path.display()))
}
