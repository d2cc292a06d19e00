//! One pod's life on this node: sandbox (address, network namespace, volumes, /etc files),
//! init containers in order, then the main containers, each supervised with probes and
//! restarted with back-off under the pod's restart policy; graceful deletion (preStop, stop
//! signal, grace period, then SIGKILL of everything the container started); the final delete
//! of the pod object; the pod's status written throughout.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::container;
use super::env::Lookup;
use super::status::{ContainerRecord, PodRecord, State};
use super::volumes::PodVolumes;
use super::Agent;

/// A kubelet's first restart delay, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long restarts without accumulated back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The pod's sandbox.
pub(super) struct Sandbox {
    pub(super) ip: Ipv4Addr,
    pub(super) volumes: Arc<tokio::sync::Mutex<PodVolumes>>,
}

/// What the pod's tasks share.
pub(super) struct Shared {
    pub(super) agent: Arc<Agent>,
    pub(super) uid: String,
    pub(super) record: Mutex<PodRecord>,
    pub(super) changed: Notify,
    /// The latest version of the pod (`None`: gone from the API).
    pub(super) pod: watch::Receiver<Option<Arc<Pod>>>,
    /// When set, every container stops by this instant.
    pub(super) stop: watch::Receiver<Option<Instant>>,
}

enum Outcome {
    Succeeded,
    Failed,
    Stopped,
}

impl Shared {
    pub(super) fn update(&self, f: impl FnOnce(&mut PodRecord)) {
        {
            let mut r = match self.record.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            f(&mut r);
        }
        self.changed.notify_one();
    }

    pub(super) fn container(&self, init: bool, idx: usize, f: impl FnOnce(&mut ContainerRecord)) {
        self.update(|r| {
            let list = if init { &mut r.init } else { &mut r.main };
            if let Some(c) = list.get_mut(idx) {
                f(c);
            }
        });
    }

    pub(super) fn latest(&self) -> Option<Arc<Pod>> {
        self.pod.borrow().clone()
    }

    pub(super) fn stop_at(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    /// Wait `d`, or less when a stop is asked for; true when stopping.
    pub(super) async fn sleep_or_stop(&self, d: Duration) -> bool {
        if self.stop_at().is_some() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stop_at().is_some(),
            () = stopping(self.stop.clone()) => true,
        }
    }
}

/// Resolves once a stop deadline is set.
pub(super) async fn stopping(mut stop: watch::Receiver<Option<Instant>>) {
    let _ = stop.wait_for(|s| s.is_some()).await;
}

pub(super) fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

/// Run the pod whose versions arrive on `pod` until it is deleted and cleaned up.
pub async fn run(agent: Arc<Agent>, pod: watch::Receiver<Option<Arc<Pod>>>) {
    let Some(first) = pod.borrow().clone() else {
        return;
    };
    let uid = first.metadata.uid.clone().unwrap_or_default();
    let (stop_tx, stop_rx) = watch::channel(None);
    let spec = first.spec.clone().unwrap_or_default();
    let record = PodRecord {
        host_ip: agent.node.ip().to_string(),
        init: spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                ContainerRecord::waiting(
                    &c.name,
                    c.image.as_deref().unwrap_or_default(),
                    "PodInitializing",
                )
            })
            .collect(),
        main: spec
            .containers
            .iter()
            .map(|c| {
                ContainerRecord::waiting(
                    &c.name,
                    c.image.as_deref().unwrap_or_default(),
                    "ContainerCreating",
                )
            })
            .collect(),
        ..PodRecord::default()
    };
    let shared = Arc::new(Shared {
        agent: agent.clone(),
        uid: uid.clone(),
        record: Mutex::new(record),
        changed: Notify::new(),
        pod: pod.clone(),
        stop: stop_rx,
    });
    let deletion = tokio::spawn(watch_deletion(pod.clone(), stop_tx));
    let (writer_stop_tx, writer_stop_rx) = watch::channel(false);
    let writer = tokio::spawn(super::pod_api::write_status(shared.clone(), writer_stop_rx));

    // Finished already, or being deleted when first seen (an agent that restarted): nothing
    // runs again.
    let already_done = first.metadata.deletion_timestamp.is_some()
        || first
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if !already_done {
        run_pod(&shared, &first).await;
    }
    // Terminal or stopping: nothing runs any more. Keep the final status until deleted.
    teardown(&shared).await;
    shared.changed.notify_one();
    stopping(shared.stop.clone()).await;
    let _ = writer_stop_tx.send(true);
    let _ = writer.await;
    deletion.abort();
    if let Some(p) = shared.latest() {
        super::pod_api::finalize(&agent, &p).await;
    }
    keep_logs(&agent, &first, &uid);
}

/// Turn a deletion (deletionTimestamp set, or the object gone) into a stop deadline.
async fn watch_deletion(
    mut pod: watch::Receiver<Option<Arc<Pod>>>,
    stop: watch::Sender<Option<Instant>>,
) {
    loop {
        let deadline = match pod.borrow().as_ref() {
            None => Some(Instant::now()),
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                Some(Instant::now() + grace_of(p))
            }
            Some(_) => None,
        };
        if let Some(d) = deadline {
            let sooner = stop.borrow().is_none_or(|cur| d < cur);
            if sooner {
                let _ = stop.send(Some(d));
            }
        }
        if pod.changed().await.is_err() {
            let _ = stop.send(Some(Instant::now()));
            return;
        }
    }
}

async fn run_pod(shared: &Arc<Shared>, pod: &Arc<Pod>) {
    let Some(sandbox) = make_sandbox(shared, pod).await else {
        return;
    };
    let sandbox = Arc::new(sandbox);
    let refresher = tokio::spawn(refresh_tokens(shared.clone(), sandbox.clone()));
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    for (i, c) in spec
        .init_containers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match supervise(shared, &sandbox, &c, i, true, &policy).await {
            Outcome::Succeeded => {}
            Outcome::Failed => {
                shared.update(|r| r.init_failed = true);
                refresher.abort();
                return;
            }
            Outcome::Stopped => {
                refresher.abort();
                return;
            }
        }
    }
    shared.update(|r| {
        r.initialized = true;
        for c in &mut r.main {
            c.state = State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            };
        }
    });
    let runs = spec.containers.iter().enumerate().map(|(i, c)| {
        let shared = shared.clone();
        let sandbox = sandbox.clone();
        let c = c.clone();
        let policy = policy.clone();
        async move { supervise(&shared, &sandbox, &c, i, false, &policy).await }
    });
    futures::future::join_all(runs).await;
    refresher.abort();
}

async fn make_sandbox(shared: &Arc<Shared>, pod: &Arc<Pod>) -> Option<Sandbox> {
    let agent = &shared.agent;
    let uid = shared.uid.clone();
    let pod_dir = agent.pod_dir(&uid);
    let mut warned = false;
    loop {
        if shared.stop_at().is_some() {
            return None;
        }
        let attempt: Result<Sandbox, (String, String)> = async {
            let ip = agent
                .ipam
                .allocate(&uid)
                .map_err(|e| ("FailedCreatePodSandBox".to_string(), format!("{e:#}")))?;
            let u = uid.clone();
            tokio::task::spawn_blocking(move || crate::net::create_pod_network(&u, ip))
                .await
                .map_err(|e| ("FailedCreatePodSandBox".to_string(), e.to_string()))?
                .map_err(|e| ("FailedCreatePodSandBox".to_string(), format!("{e:#}")))?;
            container::write_pod_files(pod, &pod_dir, ip)
                .map_err(|e| ("FailedCreatePodSandBox".to_string(), format!("{e:#}")))?;
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let mut lookup = Lookup::new(agent.client.clone(), &ns);
            let volumes = PodVolumes::prepare(agent, pod, &pod_dir, &mut lookup, &ip.to_string())
                .await
                .map_err(|f| {
                    (
                        "FailedMount".to_string(),
                        format!(
                            "MountVolume.SetUp failed for volume {:?}: {}",
                            f.volume, f.message
                        ),
                    )
                })?;
            Ok(Sandbox {
                ip,
                volumes: Arc::new(tokio::sync::Mutex::new(volumes)),
            })
        }
        .await;
        match attempt {
            Ok(s) => {
                let ip = s.ip.to_string();
                shared.update(|r| {
                    r.pod_ip = Some(ip);
                    r.sandbox_ready = true;
                    r.start_time = Some(Timestamp::now());
                });
                return Some(s);
            }
            Err((reason, message)) => {
                tracing::warn!(pod = %shared.uid, %reason, %message, "sandbox");
                if !warned {
                    agent.event(pod, None, true, &reason, message.clone()).await;
                    warned = true;
                }
                if shared.sleep_or_stop(Duration::from_secs(2)).await {
                    return None;
                }
            }
        }
    }
}

async fn refresh_tokens(shared: Arc<Shared>, sandbox: Arc<Sandbox>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let Some(pod) = shared.latest() else { return };
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group);
        sandbox
            .volumes
            .lock()
            .await
            .refresh_tokens(&shared.agent, &pod, fs_group)
            .await;
    }
}

fn waiting(reason: &str, message: impl Into<String>) -> State {
    State::Waiting {
        reason: reason.into(),
        message: Some(message.into()),
    }
}

/// Start, watch and restart one container until it is done for good or the pod stops.
async fn supervise(
    shared: &Arc<Shared>,
    sandbox: &Sandbox,
    c: &Container,
    idx: usize,
    init: bool,
    policy: &str,
) -> Outcome {
    let agent = &shared.agent;
    let mut backoff = FIRST_BACKOFF;
    let mut restart = 0i32;
    loop {
        let Some(pod) = shared.latest() else {
            return Outcome::Stopped;
        };
        if shared.stop_at().is_some() {
            return Outcome::Stopped;
        }
        let image_ref = c.image.clone().unwrap_or_default();
        let image = match agent.images.resolve(&image_ref) {
            Ok(i) => i,
            Err(m) => {
                shared.container(init, idx, |r| r.state = waiting("ErrImagePull", m.clone()));
                agent
                    .event(
                        &pod,
                        Some(&c.name),
                        true,
                        "Failed",
                        format!("Failed to pull image {image_ref:?}: {m}"),
                    )
                    .await;
                if shared.sleep_or_stop(backoff).await {
                    return Outcome::Stopped;
                }
                shared.container(init, idx, |r| {
                    r.state = waiting("ImagePullBackOff", m.clone())
                });
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut lookup = Lookup::new(agent.client.clone(), &ns);
        let prepared = {
            let volumes = sandbox.volumes.lock().await;
            container::prepare(
                agent,
                &pod,
                c,
                &image,
                &volumes,
                &mut lookup,
                sandbox.ip,
                restart,
            )
            .await
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(m) => {
                shared.container(init, idx, |r| {
                    r.state = waiting("CreateContainerConfigError", m.clone())
                });
                agent
                    .event(&pod, Some(&c.name), true, "Failed", format!("Error: {m}"))
                    .await;
                if shared.sleep_or_stop(backoff).await {
                    return Outcome::Stopped;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut running = match container::start(agent, &prepared).await {
            Ok(r) => r,
            Err(e) => {
                let m = format!("{e:#}");
                shared.container(init, idx, |r| {
                    r.state = waiting("CreateContainerError", m.clone())
                });
                if shared.sleep_or_stop(backoff).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        let started_at = running.started_at;
        let pid = running.pid;
        let has_startup = c.startup_probe.is_some() && !init;
        let has_readiness = c.readiness_probe.is_some() && !init;
        shared.container(init, idx, |r| {
            r.state = State::Running { started_at };
            r.container_id = Some(format!("localcluster://{}/{pid}", agent.name()));
            r.started = !has_startup;
            r.ready = !has_startup && !has_readiness;
        });
        agent
            .event(
                &pod,
                Some(&c.name),
                false,
                "Started",
                format!(
                    "Started container {} (pid {pid} on {})",
                    c.name,
                    agent.name()
                ),
            )
            .await;
        let (exit, stopped) =
            super::instance::run_instance(shared, sandbox, c, idx, init, &prepared, &mut running)
                .await;
        let prepared_cg = prepared.identity.cgroup.clone();
        tokio::task::spawn_blocking(move || super::cgroup::kill(&prepared_cg))
            .await
            .ok();
        let ran = exit.finished_at.duration_since(started_at).unsigned_abs();
        let reason = if exit.start_error {
            "StartError"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let terminated = State::Terminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason: reason.into(),
            message: exit.message.clone(),
            started_at,
            finished_at: exit.finished_at,
        };
        let success = exit.code == 0;
        let again = !stopped
            && match (init, policy) {
                (_, "Never") => false,
                (true, _) => !success,
                (false, "OnFailure") => !success,
                (false, _) => true,
            };
        shared.container(init, idx, |r| {
            r.state = terminated.clone();
            r.ready = false;
            r.started = false;
            r.done = !again;
        });
        if stopped {
            return Outcome::Stopped;
        }
        if !again {
            return if success {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
        }
        if ran >= BACKOFF_RESET {
            backoff = FIRST_BACKOFF;
        }
        let wait = backoff;
        restart += 1;
        shared.container(init, idx, |r| {
            r.last = Some(terminated.clone());
            r.restart_count = restart;
            r.state = waiting(
                "CrashLoopBackOff",
                format!(
                    "back-off {}s restarting failed container={} pod={}",
                    wait.as_secs(),
                    c.name,
                    pod.metadata.name.clone().unwrap_or_default()
                ),
            );
        });
        agent
            .event(
                &pod,
                Some(&c.name),
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} ({}s)",
                    c.name,
                    wait.as_secs()
                ),
            )
            .await;
        if shared.sleep_or_stop(wait).await {
            return Outcome::Stopped;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Remove the sandbox: every container's processes, the pod's network and address.
async fn teardown(shared: &Arc<Shared>) {
    let agent = shared.agent.clone();
    let uid = shared.uid.clone();
    shared.update(|r| r.sandbox_ready = false);
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(root) = super::cgroup::hierarchy() {
            let pod_cg = root
                .join("receiptdb-localcluster")
                .join(agent.name())
                .join(&uid);
            if let Ok(entries) = std::fs::read_dir(&pod_cg) {
                for e in entries.flatten() {
                    super::cgroup::remove(&e.path());
                }
            }
            let _ = std::fs::remove_dir(&pod_cg);
        }
        crate::net::delete_pod_network(&uid);
        agent.ipam.release(&uid);
    })
    .await;
}

/// Move the pod's logs to `<node>/pod-logs/<namespace>_<name>_<uid>` and remove the rest of
/// its directory.
fn keep_logs(agent: &Agent, pod: &Pod, uid: &str) {
    let dir = agent.pod_dir(uid);
    let logs = dir.join("logs");
    let keep = agent.dir.join("pod-logs").join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        uid
    ));
    if logs.exists() {
        let _ = std::fs::create_dir_all(agent.dir.join("pod-logs"));
        let _ = std::fs::rename(&logs, &keep);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
