//! `localcluster`: bring a local Kubernetes cluster up or down, print its environment, and (as
//! the cluster's own processes) run a node agent or a container's first process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use localcluster::agent::images::ImageSources;
use localcluster::agent::{self, AgentOptions};
use localcluster::cluster::{self, UpOptions};
use localcluster::control_plane::Programs;
use localcluster::layout::{Layout, NodeSlot};

#[derive(Debug, Parser)]
#[command(
    name = "localcluster",
    version,
    about = "A real Kubernetes control plane on this machine, pods as host processes"
)]
struct Cli {
    /// The cluster's state directory (certificates, logs, etcd, nodes' pods and volumes).
    #[arg(
        long,
        global = true,
        env = "LOCALCLUSTER_DIR",
        default_value = "target/localcluster"
    )]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the cluster and wait until it is ready (nodes Ready, DNS and Services working).
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Where etcd, kube-apiserver, ... are (`scripts/install-deps kube` builds them there).
        #[arg(long, env = "LOCALCLUSTER_BIN_DIR", default_value = ".tools/bin")]
        bin_dir: PathBuf,
        /// The operator binary the operator image maps to.
        #[arg(long, env = "RECEIPTDB_OPERATOR_BIN")]
        operator_bin: Option<PathBuf>,
        /// PostgreSQL 15's programs (the member image).
        #[arg(long, env = "PG_BINDIR", default_value = "/usr/lib/postgresql/15/bin")]
        pg_bindir: PathBuf,
        /// Longest wait for readiness, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop the cluster and remove everything it made.
    Down {
        /// Keep the state directory (logs, volumes) for a post-mortem.
        #[arg(long)]
        keep_dir: bool,
    },
    /// Print `export KUBECONFIG=...` for the running cluster.
    Env,
    /// Inject a fault into a node of the running cluster, or repair it.
    Node {
        #[arg(value_enum)]
        fault: NodeFault,
        /// The node (`node-1`, ...).
        node: String,
    },
    /// Run a node agent (started by `up`).
    #[command(hide = true)]
    NodeAgent {
        #[arg(long)]
        node: String,
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        operator_bin: Option<PathBuf>,
        #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
        pg_bindir: PathBuf,
    },
    /// Become a container's process (started by a node agent; reads its spec on stdin).
    #[command(hide = true)]
    ContainerInit,
}

/// What `localcluster node` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NodeFault {
    /// Lose the node: cut it off, kill its agent, kube-proxy and containers.
    Lose,
    /// Bring a lost node back (as after a reboot).
    Restore,
    /// Cut the node off the network (its processes keep running).
    Cut,
    /// Repair the cut.
    Reconnect,
}

fn main() -> ExitCode {
    // Before anything else: a container's first process must stay single-threaded.
    if std::env::args().nth(1).as_deref() == Some("container-init") {
        let code = agent::launch::container_init();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let layout = Layout::new(localcluster::layout::absolute(&cli.dir));
    if let Command::NodeAgent { node, .. } = &cli.command {
        // Into the node's network namespace while this process has one thread.
        let Some(slot) = NodeSlot::of_name(node) else {
            eprintln!("not a node of the local cluster: {node}");
            return ExitCode::from(2);
        };
        if let Err(e) = enter_netns(&slot.netns()) {
            eprintln!("enter the network namespace of {node}: {e:#}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli.command, layout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn enter_netns(name: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let f = std::fs::File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("open /run/netns/{name}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    Ok(())
}

async fn run(command: Command, layout: Layout) -> anyhow::Result<()> {
    match command {
        Command::Up {
            nodes,
            bin_dir,
            operator_bin,
            pg_bindir,
            timeout,
        } => {
            let opts = UpOptions {
                layout: layout.clone(),
                programs: Programs {
                    bin_dir: localcluster::layout::absolute(&bin_dir),
                },
                nodes,
                agent_program: std::env::current_exe()?,
                images: ImageSources {
                    operator_bin: operator_bin.map(|p| localcluster::layout::absolute(&p)),
                    pg_bindir,
                },
                timeout: Duration::from_secs(timeout),
            };
            let state = match cluster::up(&opts).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "up failed; stopping what was started (logs kept in {})",
                        layout.logs().display()
                    );
                    let _ = cluster::down(&layout, true);
                    return Err(e);
                }
            };
            println!(
                "local cluster ready in {:.1} s: Kubernetes {}, {} nodes, API server {}",
                state.ready_after_s, state.kubernetes_version, state.nodes, state.server
            );
            println!("export KUBECONFIG={}", state.kubeconfig.display());
            Ok(())
        }
        Command::Down { keep_dir } => cluster::down(&layout, keep_dir),
        Command::Env => {
            let dir = cluster::running_dir()
                .ok_or_else(|| anyhow::anyhow!("no local cluster is running"))?;
            println!(
                "export KUBECONFIG={}",
                Layout::new(dir).admin_kubeconfig().display()
            );
            Ok(())
        }
        Command::Node { fault, node } => {
            let dir = cluster::running_dir()
                .ok_or_else(|| anyhow::anyhow!("no local cluster is running"))?;
            let layout = Layout::new(dir);
            let slot =
                NodeSlot::of_name(&node).ok_or_else(|| anyhow::anyhow!("bad node name {node}"))?;
            use localcluster::faults;
            match fault {
                NodeFault::Lose => faults::lose(&layout, slot),
                NodeFault::Restore => faults::restore(&layout, slot),
                NodeFault::Cut => faults::cut(slot),
                NodeFault::Reconnect => faults::reconnect(slot),
            }
        }
        Command::NodeAgent {
            node,
            kubeconfig,
            operator_bin,
            pg_bindir,
        } => {
            let slot =
                NodeSlot::of_name(&node).ok_or_else(|| anyhow::anyhow!("bad node name {node}"))?;
            agent::run(AgentOptions {
                node: slot,
                kubeconfig,
                dir: layout.node_dir(slot),
                images: ImageSources {
                    operator_bin,
                    pg_bindir,
                },
            })
            .await
        }
        Command::ContainerInit => anyhow::bail!("container-init runs before the runtime starts"),
    }
}
