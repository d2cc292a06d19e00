//! `receiptdb-operator`: the controller, the CRD printer and the Job entrypoints in one binary.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use futures::FutureExt;
use receiptdb_operator::cli::{copy_binary, Cli, Command, LogFormat, RunArgs};
use receiptdb_operator::controller::{self, Context, PostgresMembers};
use receiptdb_operator::{crd, http, metrics::Metrics};
use receiptdb_postgres::cli as entrypoint;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[tokio::main]
async fn main() -> ExitCode {
    // kube-fake-client pulls aws-lc into test builds; name the provider so rustls never has
    // to guess between two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Crd) {
        init_logging(cli.log_format);
    }
    match cli.command {
        Command::Crd => match crd::crd_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot render the CRD: {e}");
                ExitCode::from(2)
            }
        },
        Command::CopyBinary { dir } => match copy_binary(&dir) {
            Ok(path) => {
                eprintln!("copied to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("copy-binary {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
        Command::Run(args) => run(args).await,
        Command::Initdb(a) => entrypoint::initdb(a).await,
        Command::Clone(a) => entrypoint::clone(a).await,
        Command::Rejoin(a) => entrypoint::rejoin(a).await,
        Command::Check(a) => entrypoint::check(a).await,
        Command::Sync(a) => entrypoint::sync(a).await,
        Command::Backup(a) => entrypoint::backup(a).await,
        Command::Restore(a) => entrypoint::restore(a).await,
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}

async fn run(args: RunArgs) -> ExitCode {
    let config = args.config();
    tracing::info!(image = %config.operator_image, namespace = ?config.namespace, "starting");
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes configuration (kubeconfig or in-cluster)");
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::shared();
    let ctx = Arc::new(
        Context::new(client, config, Arc::new(PostgresMembers::default()))
            .with_metrics(metrics.clone()),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stop_http, http_rx) = futures::channel::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop_tx.send_replace(true);
        let _ = stop_http.send(());
    });
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        metrics,
        ready.clone(),
        http_rx.map(|_| ()),
    ));
    // Ready as soon as serving: a follower is ready too (it is a healthy standby for the
    // leader's job, and a rolling update must be able to proceed past it).
    ready.store(true, Ordering::Relaxed);
    let (lead_tx, lead_rx) = tokio::sync::watch::channel(false);
    let (stop_elect, stop_elect_rx) = tokio::sync::watch::channel(false);
    let elector = match args.lease() {
        Some(cfg) => {
            tracing::info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "leader election on");
            Some(tokio::spawn(controller::leader::elect(
                ctx.client.clone(),
                cfg,
                lead_tx,
                stop_elect_rx,
            )))
        }
        None => {
            tracing::info!("no leader election Lease configured: this replica always reconciles");
            lead_tx.send_replace(true);
            None
        }
    };
    // Reconcile only while leading; after losing the Lease, wait to lead again.
    loop {
        let (mut lead, mut stop) = (lead_rx.clone(), stop_rx.clone());
        tokio::select! {
            _ = lead.wait_for(|l| *l) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if *stop_rx.borrow() {
            break;
        }
        let (mut lead, mut stop) = (lead_rx.clone(), stop_rx.clone());
        controller::run(ctx.clone(), async move {
            tokio::select! {
                _ = lead.wait_for(|l| !*l) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        })
        .await;
        if *stop_rx.borrow() {
            break;
        }
        tracing::warn!("lost the leader Lease: stopped reconciling");
    }
    // The controller's passes are finished: only now may another replica take over.
    stop_elect.send_replace(true);
    if let Some(e) = elector {
        let _ = e.await;
    }
    match server.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "metrics server failed");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics server task failed");
            ExitCode::from(2)
        }
    }
}
