//! `scenario <name>|all|list [--report FILE.json] [--runs N]`: run the end-to-end scenarios
//! on the local Kubernetes cluster (started here when none runs, reused when one does) with
//! the operator installed by its Helm chart, and report recovery time, acknowledged commits
//! lost and time to re-align, as JSON plus an SVG timeline beside it; the timeline goes to
//! stdout.
//!
//! It needs the workspace built (`cargo build --workspace --tests --bins`, as scripts/demo and
//! scripts/test do): the operator binary and `localcluster` beside this program, and the
//! control plane in `.tools/bin` (`scripts/install-deps kube`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use e2e::cluster::{self, Cluster};
use e2e::harness::Options;
use e2e::report::{self, MultiReport, ScenarioReport};
use e2e::scenarios;

#[derive(Parser, Debug)]
#[command(about = "End-to-end scenarios of receiptdb-operator on a local Kubernetes cluster")]
struct Cli {
    /// A scenario name, `all`, or `list`.
    scenario: String,
    /// Write the JSON report here (an SVG timeline is written beside it).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run each scenario this many times and report p50/max.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Keep every scenario's namespace (a failed scenario's is always kept).
    #[arg(long)]
    keep: bool,
    /// Leave the cluster running at the end when this program started it (prints how to use
    /// it and how to stop it).
    #[arg(long)]
    keep_cluster: bool,
    /// The namespace of the (single) run; default: a fresh `e2e-<scenario>-...` per run. An
    /// existing one is deleted first.
    #[arg(long)]
    namespace: Option<String>,
    /// Nodes of a cluster started here.
    #[arg(long, default_value_t = 3)]
    nodes: u8,
    /// The cluster's state directory (default: target/localcluster in the repository).
    #[arg(long, env = "LOCALCLUSTER_DIR")]
    cluster_dir: Option<PathBuf>,
    /// The operator binary the operator image maps to (default: the one beside this program).
    #[arg(long, env = "RECEIPTDB_OPERATOR_BIN")]
    operator_bin: Option<PathBuf>,
    /// Longest wait for any one expected state.
    #[arg(long, default_value_t = 180)]
    wait_timeout_s: u64,
    /// Make the pairs without TLS (`spec.tls.enabled: false`; the writer connects in plain
    /// text), to measure what TLS costs.
    #[arg(long)]
    no_tls: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run_with_cluster(&cli) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted (the cluster and the scenario's namespace are left as they are)");
                Ok(false)
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_with_cluster(cli: &Cli) -> Result<bool> {
    if cli.scenario == "list" {
        for s in scenarios::all() {
            println!("{:<32} {}", s.name, s.about);
        }
        return Ok(true);
    }
    let chosen: Vec<scenarios::Scenario> = if cli.scenario == "all" {
        scenarios::all()
    } else {
        match scenarios::find(&cli.scenario) {
            Some(s) => vec![s],
            None => bail!(
                "unknown scenario {:?}; `scenario list` shows them",
                cli.scenario
            ),
        }
    };
    if cli.namespace.is_some() && (chosen.len() > 1 || cli.runs > 1) {
        bail!("--namespace is for a single run of a single scenario");
    }
    let programs = cluster::programs(cli.operator_bin.clone(), cli.cluster_dir.clone())?;
    let cluster = Arc::new(Cluster::ensure(&programs, cli.nodes).await?);
    let outcome = async {
        cluster.install_operator().await.with_context(|| {
            format!(
                "install the operator (cluster logs in {})",
                cluster.logs().display()
            )
        })?;
        eprintln!(
            "Kubernetes {} (local cluster), operator installed by charts/receiptdb-operator",
            cluster.server_version
        );
        let opts = Options {
            keep: cli.keep,
            wait_timeout: Duration::from_secs(cli.wait_timeout_s),
            cluster: cluster.clone(),
            namespace: cli.namespace.clone(),
            tls: !cli.no_tls,
        };
        run(cli, &chosen, &opts).await
    }
    .await;
    let cluster =
        Arc::try_unwrap(cluster).map_err(|_| anyhow::anyhow!("the cluster is still in use"))?;
    let failed = !matches!(outcome, Ok(true));
    cluster.finish(cli.keep_cluster, failed)?;
    outcome
}

async fn run(cli: &Cli, chosen: &[scenarios::Scenario], opts: &Options) -> Result<bool> {
    let mut all_passed = true;
    let mut summaries = Vec::new();
    for s in chosen {
        let mut reports: Vec<ScenarioReport> = Vec::new();
        for i in 0..cli.runs {
            if cli.runs > 1 {
                eprintln!("-- {} run {}/{}", s.name, i + 1, cli.runs);
            }
            let r = scenarios::run(s, opts).await;
            if cli.runs == 1 {
                print!("{}", report::timeline_text(&r));
            } else {
                print!("{}", report::summary_text(&r));
            }
            reports.push(r);
        }
        let multi = MultiReport::of(s.name, reports);
        all_passed &= multi.passed;
        if cli.runs > 1 {
            println!(
                "{}: {}/{} passed | recovery p50 {:?} ms max {:?} ms | in sync p50 {:?} ms max {:?} ms | lost acknowledged {} | rejoin {:?}",
                multi.scenario,
                multi.passed_runs,
                multi.runs,
                multi.recovery_ms.p50,
                multi.recovery_ms.max,
                multi.in_sync_ms.p50,
                multi.in_sync_ms.max,
                multi.lost_acknowledged_total,
                multi.rejoin_methods
            );
        }
        if let Some(path) = &cli.report {
            let svg_path = if chosen.len() > 1 {
                sibling(path, &format!("-{}.svg", s.name))
            } else {
                path.with_extension("svg")
            };
            let shown = multi
                .reports
                .iter()
                .find(|r| !r.passed)
                .or(multi.reports.last());
            if let Some(r) = shown {
                if let Some(dir) = svg_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("create {}", dir.display()))?;
                }
                std::fs::write(&svg_path, e2e::svg::render(r))
                    .with_context(|| format!("write {}", svg_path.display()))?;
            }
        }
        summaries.push(multi);
    }
    if let Some(path) = &cli.report {
        if summaries.len() == 1 && cli.runs == 1 {
            report::write_json(path, &summaries[0].reports[0])?;
        } else if summaries.len() == 1 {
            report::write_json(path, &summaries[0])?;
        } else {
            report::write_json(
                path,
                &serde_json::json!({"passed": all_passed, "scenarios": summaries}),
            )?;
        }
        eprintln!("report: {}", path.display());
    }
    Ok(all_passed)
}

/// `<dir>/<stem><suffix>`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    path.with_file_name(format!("{stem}{suffix}"))
}
