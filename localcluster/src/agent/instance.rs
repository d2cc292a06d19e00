//! One running container instance: it ends by itself, is killed after a failed liveness or
//! startup probe, or is stopped because its pod is deleted (preStop hook, the image's stop
//! signal, the grace period, then SIGKILL of every process it started); its probes meanwhile.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::time::Instant;

use super::container::{self, Prepared};
use super::probes::{self, Counter, Target, Timing, Verdict};
use super::worker::{grace_of, stopping, Sandbox, Shared};

/// The least time a container gets to stop after its preStop hook (as a kubelet gives).
const MIN_STOP: Duration = Duration::from_secs(2);

/// Wait for the instance to end: by itself, killed after a failed liveness or startup probe,
/// or stopped because the pod is being deleted. Returns its exit and whether it was stopped.
pub(super) async fn run_instance(
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
