//! The node shim: a kubelet, a StatefulSet controller and a Job controller in miniature, polling
//! the in-memory API (there is no watch).
//!
//! - [`members`]: each StatefulSet with replicas 1 runs its container command as a local process
//!   (PostgreSQL as the `postgres` user), with a Pod object whose Ready condition follows a
//!   readiness check; a crashed container restarts after a kubelet-like backoff unless the
//!   StatefulSet is scaled to 0; scaling to 0 stops it (stop signal, SIGKILL after the grace
//!   period) and deletes the Pod.
//! - [`jobs`]: each Job's main container runs as a local process (the operator binary), its
//!   `--report /dev/termination-log` file becomes the Pod's termination message, and the Job's
//!   status says Complete or Failed.
//! - A member's volume is used by a Job only while the member's process is stopped: the shim
//!   checks it and records a violation (the scenario fails) otherwise.

mod env;
mod jobs;
mod members;
mod pods;
mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Timeline;
use crate::ports::Ports;

pub use volumes::claim_dir;

/// How the shim behaves.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// The namespace watched.
    pub namespace: String,
    /// The scenario's work directory (volumes under `pvc/`, Job scratch under `jobs/`, logs).
    pub work: PathBuf,
    /// Ports of members (by StatefulSet name) and Services (by name).
    pub ports: Ports,
    /// The operator binary standing in for `/rdb/bin/receiptdb-operator`.
    pub operator_bin: PathBuf,
    /// PostgreSQL's programs.
    pub pg_bindir: PathBuf,
    /// How often the API is polled.
    pub poll: Duration,
    /// First restart delay after a crash (doubles up to `max_backoff`), like CrashLoopBackOff.
    pub crash_backoff: Duration,
    /// Longest restart delay.
    pub max_backoff: Duration,
    /// How often a running member's readiness is checked.
    pub readiness_period: Duration,
    /// Events go here.
    pub timeline: Timeline,
}

/// A request to the running shim.
enum Request {
    /// SIGKILL a member's main process.
    Crash(String, oneshot::Sender<Result<i32>>),
    /// Pids of running member processes, by StatefulSet name.
    Pids(oneshot::Sender<BTreeMap<String, i32>>),
}

/// The running shim.
pub struct ShimHandle {
    requests: mpsc::Sender<Request>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl ShimHandle {
    /// Start the shim on `client`.
    pub fn start(client: kube::Client, cfg: ShimConfig) -> Result<Self> {
        std::fs::create_dir_all(cfg.work.join("logs"))?;
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (req_tx, req_rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = oneshot::channel();
        let state = State {
            members: members::Members::new(client.clone(), cfg.clone(), violations.clone()),
            jobs: jobs::Jobs::new(client, cfg.clone(), violations.clone()),
            cfg,
        };
        let task = tokio::spawn(state.run(req_rx, stop_rx));
        Ok(Self {
            requests: req_tx,
            stop: Some(stop_tx),
            task: Some(task),
            violations,
        })
    }

    /// Crash a member: SIGKILL its postmaster. Returns the pid killed.
    pub async fn crash(&self, statefulset: &str) -> Result<i32> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Crash(statefulset.to_string(), tx))
            .await
            .map_err(|_| anyhow::anyhow!("the node shim has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the node shim has stopped"))?
    }

    /// Pids of the running member processes.
    pub async fn pids(&self) -> BTreeMap<String, i32> {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Pids(tx)).await.is_err() {
            return BTreeMap::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Safety violations seen so far (a Job on a running member's volume, ...).
    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Stop every process (members fast, Jobs killed) and the shim.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }
}

impl Drop for ShimHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct State {
    cfg: ShimConfig,
    members: members::Members,
    jobs: jobs::Jobs,
}

impl State {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(req) = requests.recv() => match req {
                    Request::Crash(name, reply) => {
                        let _ = reply.send(self.members.crash(&name));
                    }
                    Request::Pids(reply) => {
                        let _ = reply.send(self.members.pids());
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = self.members.tick(&self.jobs.claims_in_use()).await {
                        tracing::warn!("node shim (members): {e:#}");
                    }
                    let busy = self.members.claims_in_use();
                    if let Err(e) = self.jobs.tick(&busy).await {
                        tracing::warn!("node shim (jobs): {e:#}");
                    }
                }
            }
        }
        self.jobs.shutdown().await;
        self.members.shutdown().await;
    }
}
