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
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::container::{self, Prepared};
use super::env::Lookup;
use super::probes::{self, Counter, Target, Timing, Verdict};
use super::status::{ContainerRecord, PodRecord, State};
use super::volumes::PodVolumes;
use super::Agent;

/// A kubelet's first restart delay, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long restarts without accumulated back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// The least time a container gets to stop after its preStop hook (as a kubelet gives).
const MIN_STOP: Duration = Duration::from_secs(2);

/// The pod's sandbox.
struct Sandbox {
    ip: Ipv4Addr,
    volumes: Arc<tokio::sync::Mutex<PodVolumes>>,
}

/// What the pod's tasks share.
struct Shared {
    agent: Arc<Agent>,
    uid: String,
    record: Mutex<PodRecord>,
    changed: Notify,
    /// The latest version of the pod (`None`: gone from the API).
    pod: watch::Receiver<Option<Arc<Pod>>>,
    /// When set, every container stops by this instant.
    stop: watch::Receiver<Option<Instant>>,
}

enum Outcome {
    Succeeded,
    Failed,
    Stopped,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut PodRecord)) {
        {
            let mut r = match self.record.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            f(&mut r);
        }
        self.changed.notify_one();
    }

    fn container(&self, init: bool, idx: usize, f: impl FnOnce(&mut ContainerRecord)) {
        self.update(|r| {
            let list = if init { &mut r.init } else { &mut r.main };
            if let Some(c) = list.get_mut(idx) {
                f(c);
            }
        });
    }

    fn latest(&self) -> Option<Arc<Pod>> {
        self.pod.borrow().clone()
    }

    fn stop_at(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    /// Wait `d`, or less when a stop is asked for; true when stopping.
    async fn sleep_or_stop(&self, d: Duration) -> bool {
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
async fn stopping(mut stop: watch::Receiver<Option<Instant>>) {
    let _ = stop.wait_for(|s| s.is_some()).await;
}

fn grace_of(pod: &Pod) -> Duration {
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
    let writer = tokio::spawn(write_status(shared.clone(), writer_stop_rx));

    let already_done = first
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
        finalize(&agent, &p).await;
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
            run_instance(shared, sandbox, c, idx, init, &prepared, &mut running).await;
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

/// Wait for the instance to end: by itself, killed after a failed liveness or startup probe,
/// or stopped because the pod is being deleted. Returns its exit and whether it was stopped.
async fn run_instance(
    shared: &Arc<Shared>,
    sandbox: &Sandbox,
    c: &Container,
    idx: usize,
    init: bool,
    prepared: &Prepared,
    running: &mut container::Running,
) -> (container::Exit, bool) {
    let pid = running.pid;
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<String>(1);
    let probes = (!init).then(|| {
        let shared = shared.clone();
        let c = c.clone();
        let identity = prepared.identity.clone();
        let ip = sandbox.ip;
        tokio::spawn(async move { probe_loop(&shared, &c, idx, ip, pid, &identity, kill_tx).await })
    });
    let wait = running.wait(prepared);
    tokio::pin!(wait);
    let result = tokio::select! {
        exit = &mut wait => (exit, false),
        Some(why) = kill_rx.recv() => {
            if let Some(pod) = shared.latest() {
                shared.agent.event(&pod, Some(&c.name), false, "Killing", format!("Container {} {why}, will be restarted", c.name)).await;
            }
            let deadline = Instant::now() + shared.latest().map(|p| grace_of(&p)).unwrap_or(Duration::from_secs(30));
            let exit = graceful_stop(shared, sandbox, c, prepared, pid, deadline, &mut wait).await;
            (exit, false)
        }
        () = stopping(shared.stop.clone()) => {
            let deadline = shared.stop_at().unwrap_or_else(Instant::now);
            if let Some(pod) = shared.latest() {
                shared.agent.event(&pod, Some(&c.name), false, "Killing", format!("Stopping container {}", c.name)).await;
            }
            let exit = graceful_stop(shared, sandbox, c, prepared, pid, deadline, &mut wait).await;
            (exit, true)
        }
    };
    if let Some(p) = probes {
        p.abort();
    }
    result
}

/// preStop, then the image's stop signal, then SIGKILL of the whole container at `deadline`.
async fn graceful_stop(
    shared: &Arc<Shared>,
    sandbox: &Sandbox,
    c: &Container,
    prepared: &Prepared,
    pid: i32,
    deadline: Instant,
    wait: &mut std::pin::Pin<&mut impl std::future::Future<Output = container::Exit>>,
) -> container::Exit {
    let budget = deadline.saturating_duration_since(Instant::now());
    if !budget.is_zero() {
        let hostname = shared
            .latest()
            .map(|p| container::hostname(&p))
            .unwrap_or_default();
        let target = Target {
            agent: &shared.agent,
            container: c,
            pod_ip: sandbox.ip,
            pid,
            hostname: &hostname,
            identity: &prepared.identity,
        };
        let hook = probes::pre_stop(&target, budget);
        tokio::pin!(hook);
        // The hook runs while the container may exit by itself.
        tokio::select! {
            exit = &mut *wait => return exit,
            r = &mut hook => {
                if let (Some(Err(m)), Some(pod)) = (r, shared.latest()) {
                    shared.agent.event(&pod, Some(&c.name), true, "FailedPreStopHook", format!("PreStopHook failed: {m}")).await;
                }
            }
        }
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), prepared.stop_signal);
    let until = deadline.max(
        Instant::now()
            + if budget.is_zero() {
                Duration::ZERO
            } else {
                MIN_STOP
            },
    );
    tokio::select! {
        exit = &mut *wait => exit,
        _ = tokio::time::sleep_until(until) => {
            container::kill_all(prepared);
            (&mut *wait).await
        }
    }
}

/// Startup probe first; then liveness and readiness side by side. A failed startup or liveness
/// probe asks `kill` to restart the container.
async fn probe_loop(
    shared: &Arc<Shared>,
    c: &Container,
    idx: usize,
    pod_ip: Ipv4Addr,
    pid: i32,
    identity: &container::Identity,
    kill: tokio::sync::mpsc::Sender<String>,
) {
    let hostname = shared
        .latest()
        .map(|p| container::hostname(&p))
        .unwrap_or_default();
    let target = Target {
        agent: &shared.agent,
        container: c,
        pod_ip,
        pid,
        hostname: &hostname,
        identity,
    };
    let unhealthy = |what: &'static str, msg: String| async move {
        if let Some(pod) = shared.latest() {
            shared
                .agent
                .event(
                    &pod,
                    Some(&c.name),
                    true,
                    "Unhealthy",
                    format!("{what} probe failed: {msg}"),
                )
                .await;
        }
    };
    if let Some(p) = &c.startup_probe {
        let t = Timing::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut n = Counter::default();
        loop {
            let r = probes::check(&target, p, t.timeout).await;
            match n.record(r.is_ok(), &t) {
                Verdict::Passed => break,
                Verdict::Failed => {
                    unhealthy("Startup", r.err().unwrap_or_default()).await;
                    let _ = kill.send("failed startup probe".into()).await;
                    return;
                }
                Verdict::Undecided => {}
            }
            tokio::time::sleep(t.period).await;
        }
    }
    let ready_without_probe = c.readiness_probe.is_none();
    shared.container(false, idx, |r| {
        r.started = true;
        if ready_without_probe {
            r.ready = true;
        }
    });
    let liveness = async {
        let Some(p) = &c.liveness_probe else {
            return std::future::pending::<()>().await;
        };
        let t = Timing::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut n = Counter::default();
        loop {
            let r = probes::check(&target, p, t.timeout).await;
            if n.record(r.is_ok(), &t) == Verdict::Failed {
                unhealthy("Liveness", r.err().unwrap_or_default()).await;
                let _ = kill.send("failed liveness probe".into()).await;
                return;
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let readiness = async {
        let Some(p) = &c.readiness_probe else {
            return std::future::pending::<()>().await;
        };
        let t = Timing::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut n = Counter::default();
        let mut ready = false;
        loop {
            let r = probes::check(&target, p, t.timeout).await;
            match n.record(r.is_ok(), &t) {
                Verdict::Passed if !ready => {
                    ready = true;
                    shared.container(false, idx, |r| r.ready = true);
                }
                Verdict::Failed if ready => {
                    ready = false;
                    shared.container(false, idx, |r| r.ready = false);
                    unhealthy("Readiness", r.err().unwrap_or_default()).await;
                }
                _ => {}
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::select! {
        () = liveness => {},
        () = readiness => {},
    }
}

/// Write the status whenever the record changes (and every 30 s), until told to stop.
async fn write_status(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut last: Option<Value> = None;
    loop {
        let stopping = *stop.borrow();
        if let Some(pod) = shared.latest() {
            let status = {
                let mut r = match shared.record.lock() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                r.status(&pod, Timestamp::now())
            };
            if last.as_ref() != Some(&status) {
                match patch_status(&shared.agent, &pod, &status).await {
                    Ok(()) => last = Some(status),
                    Err(e) if e.contains("404") => return,
                    Err(e) => {
                        tracing::warn!(pod = %shared.uid, error = %e, "status");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = shared.changed.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(30)) => {},
            _ = stop.changed() => {},
        }
    }
}

async fn patch_status(agent: &Agent, pod: &Pod, status: &Value) -> Result<(), String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"uid": pod.metadata.uid}, "status": status})),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
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

/// Delete the pod object for good (grace 0, only this uid): the last step of a deletion, as a
/// kubelet does it once the containers are gone.
async fn finalize(agent: &Agent, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "final delete"),
    }
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
