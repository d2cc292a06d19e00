//! The local cluster the scenarios run on, and the operator installed into it by its own chart.
//!
//! A cluster already running on this machine (`localcluster up`) is reused when it maps the
//! operator image to this build's operator binary; otherwise one is started (and stopped at the
//! end unless asked to keep it). The operator is installed with `helm upgrade --install` of
//! `charts/receiptdb-operator`, its CRD applied server-side first (Helm never upgrades CRDs), and
//! its pod restarted when the cluster was reused, so it always runs this build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use localcluster::cluster::{self, ClusterState};
use localcluster::layout::Layout;

/// The operator's pods.
fn operator_pods() -> ListParams {
    ListParams::default().labels("app.kubernetes.io/name=receiptdb-operator")
}

/// The namespace and release name of the operator.
pub const OPERATOR_NAMESPACE: &str = "receiptdb-system";
pub const RELEASE: &str = "receiptdb-operator";

/// Where the programs and the chart are.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The repository (charts, CRDs).
    pub repo: PathBuf,
    /// `localcluster`, built beside this program.
    pub localcluster: PathBuf,
    /// The operator binary the operator image maps to.
    pub operator_bin: PathBuf,
    /// helm, kubectl and the control plane (`scripts/install-deps kube`).
    pub bin_dir: PathBuf,
    /// The cluster's state directory.
    pub state_dir: PathBuf,
}

/// A cluster the scenarios use.
pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
    /// The API server's `/version` gitVersion.
    pub server_version: String,
    state_dir: PathBuf,
    started_here: bool,
    programs: Programs,
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// Use the running cluster, or start one with `nodes` nodes.
    pub async fn ensure(p: &Programs, nodes: u8) -> Result<Self> {
        let (dir, started_here) = match cluster::running_dir() {
            Some(dir) => {
                let state: ClusterState = serde_json::from_slice(
                    &std::fs::read(Layout::new(&dir).state_file()).with_context(|| {
                        format!("read the running cluster's state in {}", dir.display())
                    })?,
                )?;
                if state.operator_bin.as_deref() != Some(p.operator_bin.as_path()) {
                    bail!(
                        "the local cluster running from {} maps the operator image to {:?}, not to this build's {}: stop it (`localcluster down --dir {}`) or run this build's scenario program",
                        dir.display(),
                        state.operator_bin,
                        p.operator_bin.display(),
                        dir.display()
                    );
                }
                eprintln!("using the local cluster running from {}", dir.display());
                (dir, false)
            }
            None => {
                eprintln!("starting a local cluster in {} ...", p.state_dir.display());
                let out = run(
                    Command::new(&p.localcluster)
                        .arg("--dir")
                        .arg(&p.state_dir)
                        .arg("up")
                        .arg("--nodes")
                        .arg(nodes.to_string())
                        .arg("--bin-dir")
                        .arg(&p.bin_dir)
                        .arg("--operator-bin")
                        .arg(&p.operator_bin)
                        .env("RUST_LOG", "warn"),
                    "localcluster up",
                )?;
                eprint!("{out}");
                (p.state_dir.clone(), true)
            }
        };
        let layout = Layout::new(&dir);
        let client = cluster::admin_client(&layout).await?;
        let server_version = client
            .apiserver_version()
            .await
            .context("read the API server's version")?
            .git_version;
        Ok(Self {
            client,
            kubeconfig: layout.admin_kubeconfig(),
            server_version,
            state_dir: dir,
            started_here,
            programs: p.clone(),
        })
    }

    /// `kubectl` against this cluster.
    pub fn kubectl(&self) -> Command {
        self.tool("kubectl")
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.programs.bin_dir.join(name));
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Install (or upgrade) the operator with its chart and wait until its pod is ready.
    pub async fn install_operator(&self) -> Result<()> {
        let repo = &self.programs.repo;
        run(
            self.tool("kubectl")
                .args(["apply", "--server-side", "--force-conflicts", "-f"])
                .arg(repo.join("crds")),
            "kubectl apply the CRD",
        )?;
        run(
            self.tool("helm")
                .args(["upgrade", "--install", RELEASE])
                .arg(repo.join("charts/receiptdb-operator"))
                .args([
                    "--namespace",
                    OPERATOR_NAMESPACE,
                    "--create-namespace",
                    // The chart's defaults (two replicas on different nodes, one leading),
                    // whatever an earlier installation of the running cluster set.
                    "--reset-values",
                    "--wait",
                    "--timeout",
                    "120s",
                ]),
            "helm upgrade --install",
        )?;
        if !self.started_here {
            self.restart_operator().await?;
        }
        self.wait_operator_ready(Duration::from_secs(120)).await
    }

    /// Roll the operator's Deployment (a new pod runs the current binary).
    pub async fn restart_operator(&self) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let now = jiff::Timestamp::now().to_string();
        api.patch(
            RELEASE,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"receiptdb.io/restarted-at": now}}}}})),
        )
        .await
        .context("restart the operator's Deployment")?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// Wait until the operator's Deployment has all its replicas running and ready (none left
    /// over from an earlier version) and one of them holds the leader Lease.
    pub async fn wait_operator_ready(&self, timeout: Duration) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let want = deployments
                .get_opt(RELEASE)
                .await
                .context("read the operator's Deployment")?
                .and_then(|d| d.spec?.replicas)
                .unwrap_or(1);
            let list = pods
                .list(&operator_pods())
                .await
                .context("list the operator's pods")?;
            let all_ready = list
                .items
                .iter()
                .all(|p| p.metadata.deletion_timestamp.is_none() && crate::observer::pod_ready(p));
            if all_ready && list.items.len() == usize::try_from(want).unwrap_or(1) {
                if let Some(leader) = self.leader().await? {
                    if list
                        .items
                        .iter()
                        .any(|p| p.metadata.name.as_ref() == Some(&leader))
                    {
                        return Ok(());
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the operator's pods are not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The operator pod holding the leader Lease, if any.
    pub async fn leader(&self) -> Result<Option<String>> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        Ok(leases
            .get_opt(RELEASE)
            .await
            .context("read the operator's leader Lease")?
            .and_then(|l| l.spec?.holder_identity))
    }

    /// The leading operator pod: its name and node.
    pub async fn leader_pod(&self) -> Result<(String, Option<String>)> {
        let name = self.leader().await?.context("no operator replica leads")?;
        let pod = Api::<Pod>::namespaced(self.client.clone(), OPERATOR_NAMESPACE)
            .get(&name)
            .await
            .with_context(|| format!("read the leading operator pod {name}"))?;
        Ok((name, pod.spec.and_then(|s| s.node_name)))
    }

    /// Wait until a replica other than `old` holds the leader Lease; its name.
    pub async fn wait_new_leader(&self, old: &str, timeout: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await? {
                if l != old {
                    return Ok(l);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no replica took over from {old} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The cluster's state directory and names.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.state_dir)
    }

    /// Where the cluster keeps its logs (for failure messages).
    pub fn logs(&self) -> PathBuf {
        Layout::new(&self.state_dir).logs()
    }

    /// Stop the cluster when this program started it, unless `keep`. After a failure its state
    /// directory (every process's and pod's log) is kept for the post-mortem.
    pub fn finish(self, keep: bool, failed: bool) -> Result<()> {
        if !self.started_here {
            return Ok(());
        }
        if keep {
            eprintln!(
                "the local cluster keeps running: export KUBECONFIG={}\n  stop it with: {} --dir {} down",
                self.kubeconfig.display(),
                self.programs.localcluster.display(),
                self.state_dir.display()
            );
            return Ok(());
        }
        let mut down = Command::new(&self.programs.localcluster);
        down.arg("--dir").arg(&self.state_dir).arg("down");
        if failed {
            down.arg("--keep-dir");
            eprintln!(
                "the cluster's logs are kept in {} (each pod's under nodes/<node>/pods and pod-logs)",
                self.logs().display()
            );
        }
        run(&mut down, "localcluster down").map(|_| ())
    }
}

/// The programs and paths of this build: binaries beside this program, the repository from
/// where the crate was built.
pub fn programs(operator_bin: Option<PathBuf>, state_dir: Option<PathBuf>) -> Result<Programs> {
    let exe = std::env::current_exe().context("locate this program")?;
    let dir = exe
        .parent()
        .context("this program's directory")?
        .to_path_buf();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository")?
        .to_path_buf();
    let operator_bin = operator_bin.unwrap_or_else(|| dir.join("receiptdb-operator"));
    let localcluster = dir.join("localcluster");
    for (what, p) in [
        ("the operator binary", &operator_bin),
        ("localcluster", &localcluster),
    ] {
        if !p.exists() {
            bail!(
                "{what} is not built at {}: build the workspace first (scripts/demo and scripts/test do: cargo build --workspace --tests --bins)",
                p.display()
            );
        }
    }
    Ok(Programs {
        state_dir: state_dir.unwrap_or_else(|| repo.join("target/localcluster")),
        bin_dir: repo.join(".tools/bin"),
        repo,
        localcluster,
        operator_bin,
    })
}
