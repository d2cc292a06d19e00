//! The operator's control loop, in-process: one reconcile pass for the pair at a time
//! (`reconcile_once`, the controller's own pipeline), against the in-memory API, with member
//! addresses mapped to `127.0.0.1:<member port>`. There is no watch to trigger passes, so the
//! loop re-runs a pass after the `requeue_after` the pass asked for, capped (by default at
//! 200 ms, so a change is noticed within a fraction of a second, as a watch would).
//!
//! "Operator restart" aborts the loop wherever it is (mid-pass, as a crash would) and starts a
//! new one with a new Context: nothing survives but what the API holds.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use receiptdb_operator::controller::{reconcile_once, Context, PostgresMembers};
use receiptdb_operator::crd::{Member, ReceiptDbPair};
use receiptdb_operator::resources::OperatorConfig;
use tokio::task::JoinHandle;

use crate::clock::Timeline;
use crate::ports::Ports;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub namespace: String,
    pub pair: String,
    /// Longest pause between passes.
    pub max_requeue: Duration,
}

/// The running controller.
pub struct ControllerLoop {
    client: kube::Client,
    ports: Ports,
    cfg: LoopConfig,
    timeline: Timeline,
    task: Option<JoinHandle<()>>,
    generation: u32,
}

impl ControllerLoop {
    /// Build a Context and start passing.
    pub fn start(client: kube::Client, ports: Ports, cfg: LoopConfig, timeline: Timeline) -> Self {
        let mut me = Self {
            client,
            ports,
            cfg,
            timeline,
            task: None,
            generation: 0,
        };
        me.spawn();
        me
    }

    fn context(&self) -> Arc<Context> {
        let mut config = OperatorConfig::new("receiptdb-operator:e2e");
        config.namespace = Some(self.cfg.namespace.clone());
        let ports = self.ports.clone();
        let resolver = move |pair: &ReceiptDbPair, member: Member| {
            let port = ports.port_for(&pair.member_name(member)).unwrap_or(0);
            (crate::mapping::LOOPBACK.to_string(), port)
        };
        Arc::new(
            Context::new(
                self.client.clone(),
                config,
                Arc::new(PostgresMembers::default()),
            )
            .with_addresses(Arc::new(resolver)),
        )
    }

    fn spawn(&mut self) {
        self.generation += 1;
        let ctx = self.context();
        let api: Api<ReceiptDbPair> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let cfg = self.cfg.clone();
        let timeline = self.timeline.clone();
        let generation = self.generation;
        self.task = Some(tokio::spawn(async move {
            let mut last_error: Option<String> = None;
            loop {
                let pause = match api.get_opt(&cfg.pair).await {
                    Ok(Some(pair)) => match reconcile_once(Arc::new(pair), ctx.clone()).await {
                        Ok(requeue) => {
                            last_error = None;
                            requeue.unwrap_or(cfg.max_requeue)
                        }
                        Err(e) => {
                            let text = e.to_string();
                            if last_error.as_deref() != Some(text.as_str()) {
                                timeline.record(
                                    "reconcile_error",
                                    format!("operator #{generation}: {text}"),
                                );
                                last_error = Some(text);
                            }
                            cfg.max_requeue
                        }
                    },
                    Ok(None) => cfg.max_requeue,
                    Err(e) => {
                        tracing::warn!("controller: read the pair: {e}");
                        cfg.max_requeue
                    }
                };
                tokio::time::sleep(pause.min(cfg.max_requeue)).await;
            }
        }));
    }

    /// Kill the operator wherever it is and start a new one (a fresh Context).
    pub fn restart(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.timeline.record(
            "operator_restarted",
            format!(
                "operator #{} killed mid-operation; #{} starts with a new Context",
                self.generation,
                self.generation + 1
            ),
        );
        self.spawn();
    }

    /// Stop the loop.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for ControllerLoop {
    fn drop(&mut self) {
        self.stop();
    }
}
