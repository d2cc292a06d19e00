//! `scenario <name>|all|list [--report FILE.json] [--runs N]`: run the local end-to-end
//! scenarios (no cluster needed) and report recovery time, acknowledged commits lost and time
//! to re-align, as JSON plus an SVG timeline beside it; the timeline goes to stdout.
//!
//! Jobs run the operator binary: `--operator-bin`, else `$RECEIPTDB_OPERATOR_BIN`, else
//! `receiptdb-operator` beside this program (same target directory and profile). Launched by
//! `cargo run`, this program first runs `cargo build -p receiptdb-operator` with its own
//! profile, so the binary is always fresh.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use e2e::harness::Options;
use e2e::report::{self, MultiReport, ScenarioReport};
use e2e::scenarios;

#[derive(Parser, Debug)]
#[command(about = "Local end-to-end scenarios of receiptdb-operator (no cluster needed)")]
struct Cli {
    /// A scenario name, `all`, or `list`.
    scenario: String,
    /// Write the JSON report here (an SVG timeline is written beside it).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run each scenario this many times and report p50/max.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Keep work directories (member volumes, logs) for post-mortems.
    #[arg(long)]
    keep: bool,
    /// The operator binary Jobs run.
    #[arg(long, env = "RECEIPTDB_OPERATOR_BIN")]
    operator_bin: Option<PathBuf>,
    /// PostgreSQL's programs.
    #[arg(long, env = "PG_BINDIR", default_value = "/usr/lib/postgresql/15/bin")]
    pg_bindir: PathBuf,
    /// First restart delay of a crashed member container, like a kubelet's CrashLoopBackOff.
    #[arg(long, default_value_t = 10_000)]
    crash_backoff_ms: u64,
    /// Longest wait for any one expected state.
    #[arg(long, default_value_t = 180)]
    wait_timeout_s: u64,
    /// Do not build the operator binary first.
    #[arg(long)]
    no_build: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    e2e::procs::install_panic_hook();
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
            r = run(&cli) => r,
            _ = tokio::signal::ctrl_c() => {
                e2e::procs::kill_all();
                e2e::workdir::cleanup_all();
                eprintln!("interrupted: child processes killed");
                Ok(false)
            }
        }
    });
    e2e::procs::kill_all();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli) -> Result<bool> {
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
    let opts = Options {
        keep: cli.keep,
        operator_bin: operator_binary(cli)?,
        pg_bindir: cli.pg_bindir.clone(),
        crash_backoff: Duration::from_millis(cli.crash_backoff_ms),
        wait_timeout: Duration::from_secs(cli.wait_timeout_s),
        max_requeue: Duration::from_millis(200),
    };
    if !opts.pg_bindir.join("postgres").exists() {
        bail!(
            "no PostgreSQL server in {} (apt-get install -y postgresql-15, or --pg-bindir)",
            opts.pg_bindir.display()
        );
    }
    let mut all_passed = true;
    let mut summaries = Vec::new();
    for s in &chosen {
        let mut reports: Vec<ScenarioReport> = Vec::new();
        for i in 0..cli.runs {
            if cli.runs > 1 {
                eprintln!("-- {} run {}/{}", s.name, i + 1, cli.runs);
            }
            let r = scenarios::run(s, &opts).await;
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

/// The operator binary for Jobs (built first when launched by cargo).
fn operator_binary(cli: &Cli) -> Result<PathBuf> {
    if let Some(p) = &cli.operator_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("locate this program")?;
    let dir = exe.parent().context("this program's directory")?;
    if !cli.no_build {
        if let (Ok(cargo), Ok(manifest_dir)) =
            (std::env::var("CARGO"), std::env::var("CARGO_MANIFEST_DIR"))
        {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = std::process::Command::new(cargo);
            cmd.args([
                "build",
                "-q",
                "-p",
                "receiptdb-operator",
                "--bin",
                "receiptdb-operator",
            ])
            .current_dir(manifest_dir);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().context("build the operator binary")?;
            if !status.success() {
                bail!("building the operator binary failed");
            }
        }
    }
    let bin = dir.join("receiptdb-operator");
    if !bin.exists() {
        bail!(
            "no operator binary at {}: build it (cargo build --release -p receiptdb-operator), or pass --operator-bin / RECEIPTDB_OPERATOR_BIN",
            bin.display()
        );
    }
    Ok(bin)
}
