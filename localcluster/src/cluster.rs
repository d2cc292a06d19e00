//! `up` and `down`: the whole cluster's lifecycle.
//!
//! `up` builds the network, writes certificates, starts etcd and the API server, applies what
//! the components need ([`crate::bootstrap`]), starts the controller manager, the scheduler,
//! CoreDNS, the kube-proxies and one node agent per node, and returns once every node is Ready
//! and Services and DNS work. Everything keeps running after `up` returns; `down` stops it and
//! removes every trace (processes, network namespaces, nftables tables, cgroups, the state
//! directory).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::control_plane::{self, Programs};
use crate::daemon::{self, Daemon};
use crate::layout::{
    absolute, Layout, NodeSlot, DNS_HEALTH_PORT, ETCD_CLIENT_PORT, GATEWAY, KUBERNETES_VERSION,
    MARKER, MAX_NODES,
};
use crate::pki::{self, Identity};
use crate::{agent, bootstrap, net};

/// How to bring a cluster up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// State directory.
    pub layout: Layout,
    /// The control plane's programs.
    pub programs: Programs,
    /// Number of nodes (1 to [`MAX_NODES`]).
    pub nodes: u8,
    /// The program the node agents run as (this binary).
    pub agent_program: PathBuf,
    /// What the agents map images to.
    pub images: agent::images::ImageSources,
    /// Longest wait for the cluster to be ready.
    pub timeout: Duration,
}

/// What `up` records about a running cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub dir: PathBuf,
    pub nodes: u8,
    pub server: String,
    pub kubernetes_version: String,
    pub kubeconfig: PathBuf,
    /// The operator binary the operator image maps to.
    #[serde(default)]
    pub operator_bin: Option<PathBuf>,
    /// Seconds from the start of `up` to ready.
    pub ready_after_s: f64,
}

/// The state directory of the cluster running on this machine, if any.
pub fn running_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(fs::read_to_string(MARKER).ok()?.trim());
    let layout = Layout::new(&dir);
    daemon::running_pid(&layout, "kube-apiserver").map(|_| dir)
}

/// A client with the admin identity of the cluster in `layout`.
pub async fn admin_client(layout: &Layout) -> Result<Client> {
    client_from(&layout.admin_kubeconfig()).await
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("load {}", path.display()))?;
    Client::try_from(cfg).context("build a client")
}

fn identities(nodes: u8) -> Vec<Identity> {
    let mut ids = vec![
        Identity::new("admin", "kubernetes-admin", &["system:masters"]),
        Identity::new("controller-manager", "system:kube-controller-manager", &[]),
        Identity::new("scheduler", "system:kube-scheduler", &[]),
        Identity::new("kube-proxy", "system:kube-proxy", &[]),
        Identity::new("coredns", bootstrap::COREDNS_USER, &[]),
    ];
    for i in 1..=nodes {
        let n = NodeSlot { index: i };
        ids.push(Identity::new(
            &n.name(),
            &format!("system:node:{}", n.name()),
            &[bootstrap::NODES_GROUP],
        ));
    }
    ids
}

/// Bring the cluster up (see the module documentation). Fails when another cluster runs.
pub async fn up(opts: &UpOptions) -> Result<ClusterState> {
    let started = Instant::now();
    let layout = &opts.layout;
    anyhow::ensure!(
        (1..=MAX_NODES).contains(&opts.nodes),
        "--nodes must be 1 to {MAX_NODES}"
    );
    if let Some(dir) = running_dir() {
        bail!(
            "a local cluster is already running from {} (`localcluster down --dir {}` stops it)",
            dir.display(),
            dir.display()
        );
    }
    opts.programs.check()?;
    // Leftovers of a cluster that was not stopped cleanly.
    stop_processes(layout);
    for p in net::teardown() {
        tracing::warn!("cleanup: {p}");
    }
    agent::cgroup::remove_all();
    if layout.dir.exists() {
        fs::remove_dir_all(&layout.dir)
            .with_context(|| format!("remove the old state in {}", layout.dir.display()))?;
    }
    fs::create_dir_all(&layout.dir).with_context(|| format!("create {}", layout.dir.display()))?;
    fs::write(MARKER, layout.dir.display().to_string())
        .with_context(|| format!("write {MARKER}"))?;

    net::create_bridge()?;
    let nodes: Vec<NodeSlot> = (1..=opts.nodes).map(|index| NodeSlot { index }).collect();
    for n in &nodes {
        net::create_node(*n)?;
    }
    let pki = pki::generate(layout, &identities(opts.nodes))?;

    let p = &opts.programs;
    start(layout, &control_plane::etcd(layout, p))?;
    wait_for("etcd", opts.timeout, layout, &["etcd"], || async {
        http_ok(([127, 0, 0, 1], ETCD_CLIENT_PORT).into(), "/health").await
    })
    .await?;
    start(layout, &control_plane::apiserver(&pki, p))?;
    let client = admin_client(layout).await?;
    wait_for(
        "the API server",
        opts.timeout,
        layout,
        &["etcd", "kube-apiserver"],
        || async { readyz(&client).await },
    )
    .await?;
    bootstrap::apply_all(&client).await?;

    start(layout, &control_plane::controller_manager(layout, &pki, p))?;
    start(layout, &control_plane::scheduler(layout, p))?;
    start(layout, &control_plane::coredns(layout, p)?)?;
    start(layout, &control_plane::kube_proxy(layout, p, None)?)?;
    for n in &nodes {
        start(layout, &control_plane::kube_proxy(layout, p, Some(*n))?)?;
        start(layout, &agent_daemon(opts, *n))?;
    }
    let all: Vec<String> = daemon::recorded(layout);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();

    let nodes_api: Api<Node> = Api::all(client.clone());
    let want = usize::from(opts.nodes);
    wait_for("every node Ready", opts.timeout, layout, &all, || async {
        nodes_api
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.iter().filter(|n| node_ready(n)).count() == want)
    })
    .await?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_for(
        "the default ServiceAccount",
        opts.timeout,
        layout,
        &all,
        || async { sa.get_opt("default").await.ok().flatten().is_some() },
    )
    .await?;
    wait_for("CoreDNS", opts.timeout, layout, &all, || async {
        http_ok((GATEWAY, DNS_HEALTH_PORT).into(), "/health").await
    })
    .await?;
    for n in &nodes {
        let addr = (n.ip(), 10256).into();
        wait_for(
            &format!("kube-proxy on {}", n.name()),
            opts.timeout,
            layout,
            &all,
            || async move { http_ok(addr, "/healthz").await },
        )
        .await?;
    }
    let version = client
        .apiserver_version()
        .await
        .context("read the API server's version")?;
    let state = ClusterState {
        dir: absolute(&layout.dir),
        nodes: opts.nodes,
        server: pki::server_url(),
        kubernetes_version: version.git_version,
        kubeconfig: absolute(&layout.admin_kubeconfig()),
        operator_bin: opts.images.operator_bin.clone(),
        ready_after_s: started.elapsed().as_secs_f64(),
    };
    fs::write(layout.state_file(), serde_json::to_string_pretty(&state)?)?;
    if state.kubernetes_version != KUBERNETES_VERSION {
        tracing::warn!(
            "the API server reports {}, this tool expects {KUBERNETES_VERSION}",
            state.kubernetes_version
        );
    }
    Ok(state)
}

fn agent_daemon(opts: &UpOptions, n: NodeSlot) -> Daemon {
    let layout = &opts.layout;
    let mut d = Daemon::new(format!("agent-{}", n.name()), &opts.agent_program).args([
        "--dir".to_string(),
        layout.dir.display().to_string(),
        "node-agent".into(),
        "--node".into(),
        n.name(),
        "--kubeconfig".into(),
        layout.kubeconfig(&n.name()).display().to_string(),
        "--pg-bindir".into(),
        opts.images.pg_bindir.display().to_string(),
    ]);
    if let Some(op) = &opts.images.operator_bin {
        d = d.args(["--operator-bin".to_string(), op.display().to_string()]);
    }
    d.env(
        "RUST_LOG",
        &std::env::var("LOCALCLUSTER_AGENT_LOG").unwrap_or_else(|_| "info".into()),
    )
}

fn start(layout: &Layout, d: &Daemon) -> Result<()> {
    let pid = d.start(layout)?;
    tracing::info!(name = %d.name, pid, "started");
    Ok(())
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn readyz(client: &Client) -> bool {
    let req = match http::Request::get("/readyz").body(Vec::new()) {
        Ok(r) => r,
        Err(_) => return false,
    };
    client
        .request_text(req)
        .await
        .is_ok_and(|t| t.trim() == "ok")
}

async fn http_ok(addr: std::net::SocketAddr, path: &str) -> bool {
    crate::httpget::get_status(addr, path, &[], Duration::from_secs(2))
        .await
        .is_ok_and(|c| (200..300).contains(&c))
}

/// Poll `ok` until it holds; fail early, with the log's end, when one of `daemons` exits.
async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    layout: &Layout,
    daemons: &[&str],
    mut ok: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if ok().await {
            tracing::info!("{what}: ready after {:.1} s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        for d in daemons {
            daemon::ensure_running(layout, d).with_context(|| format!("waiting for {what}"))?;
        }
        if start.elapsed() > timeout {
            bail!(
                "timed out after {timeout:?} waiting for {what} (logs in {})",
                layout.logs().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stop every recorded process: the node agents first (they stop their pods), then the rest in
/// reverse start order.
fn stop_processes(layout: &Layout) {
    let mut names = daemon::recorded(layout);
    let rank = |n: &str| match n {
        n if n.starts_with("agent-") => 0,
        n if n.starts_with("kube-proxy") => 1,
        "coredns" => 2,
        "kube-scheduler" => 3,
        "kube-controller-manager" => 4,
        "kube-apiserver" => 5,
        "etcd" => 6,
        _ => 1,
    };
    names.sort_by_key(|n| rank(n));
    for n in names {
        let grace = if n.starts_with("agent-") {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(10)
        };
        daemon::stop(layout, &n, grace);
    }
}

/// Stop the cluster and remove every trace of it. `keep_dir` keeps the state directory (logs,
/// volumes) for a post-mortem.
pub fn down(layout: &Layout, keep_dir: bool) -> Result<()> {
    stop_processes(layout);
    let mut problems = net::teardown();
    agent::cgroup::remove_all();
    let _ = fs::remove_file(MARKER);
    if !keep_dir && layout.dir.exists() {
        if let Err(e) = fs::remove_dir_all(&layout.dir) {
            problems.push(format!("remove {}: {e}", layout.dir.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "the cluster stopped, with problems:\n{}",
            problems.join("\n")
        )
    }
}
