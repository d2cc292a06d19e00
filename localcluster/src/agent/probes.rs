//! Probes and lifecycle hooks: exec (inside the container), tcpSocket and httpGet (from the
//! node to the pod's address), with the kubelet's timing rules (initial delay, period,
//! timeout, success and failure thresholds).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::{exec, Identity};
use super::Agent;

/// Where a probe or hook acts.
pub struct Target<'a> {
    pub agent: &'a Agent,
    pub container: &'a Container,
    pub pod_ip: Ipv4Addr,
    pub pid: i32,
    pub hostname: &'a str,
    pub identity: &'a Identity,
}

/// A probe's timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    /// The probe's timing with the API's defaults.
    pub fn of(p: &Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Self {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

fn port(t: &Target<'_>, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => t
            .container
            .ports
            .clone()
            .unwrap_or_default()
            .iter()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("the container has no port named {name:?}")),
    }
}

fn host(t: &Target<'_>, h: &Option<String>) -> Result<Ipv4Addr, String> {
    match h.as_deref().filter(|h| !h.is_empty()) {
        None => Ok(t.pod_ip),
        Some(h) => h
            .parse()
            .map_err(|_| format!("host {h:?} is not an IPv4 address")),
    }
}

async fn tcp(t: &Target<'_>, a: &TCPSocketAction, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((host(t, &a.host)?, port(t, &a.port)?));
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: timed out")),
    }
}

async fn http_get(t: &Target<'_>, a: &HTTPGetAction, timeout: Duration) -> Result<(), String> {
    if a.scheme
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
    {
        return Err("only the HTTP scheme is supported by the local node agent".into());
    }
    let addr = SocketAddr::from((host(t, &a.host)?, port(t, &a.port)?));
    let path = a
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = a
        .http_headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
    match crate::httpget::get_status(addr, &path, &headers, timeout).await {
        Ok(code) if (200..400).contains(&code) => Ok(()),
        Ok(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Err(format!("{e:#}")),
    }
}

async fn exec_action(t: &Target<'_>, a: &ExecAction, timeout: Duration) -> Result<(), String> {
    let argv = a.command.clone().unwrap_or_default();
    match exec(t.agent, t.pid, t.hostname, t.identity, &argv, timeout).await {
        Ok((0, _)) => Ok(()),
        Ok((code, out)) => Err(format!(
            "command {argv:?} exited with {code}: {}",
            out.trim()
        )),
        Err(e) => Err(format!("command {argv:?}: {e:#}")),
    }
}

/// Run a probe once.
pub async fn check(t: &Target<'_>, p: &Probe, timeout: Duration) -> Result<(), String> {
    if let Some(a) = &p.exec {
        exec_action(t, a, timeout).await
    } else if let Some(a) = &p.tcp_socket {
        tcp(t, a, timeout).await
    } else if let Some(a) = &p.http_get {
        http_get(t, a, timeout).await
    } else {
        Err("this probe type is not supported by the local node agent".into())
    }
}

/// Run the container's preStop hook, within `budget`.
pub async fn pre_stop(t: &Target<'_>, budget: Duration) -> Option<Result<(), String>> {
    let h = t.container.lifecycle.as_ref()?.pre_stop.as_ref()?;
    Some(if let Some(a) = &h.exec {
        exec_action(t, a, budget).await
    } else if let Some(a) = &h.http_get {
        http_get(t, a, budget).await
    } else if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(budget)).await;
        Ok(())
    } else {
        Err("this preStop handler is not supported by the local node agent".into())
    })
}

/// Counts consecutive results against a probe's thresholds.
#[derive(Debug, Default)]
pub struct Counter {
    successes: u32,
    failures: u32,
}

/// What a result means for the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Reached the success threshold.
    Passed,
    /// Reached the failure threshold.
    Failed,
    /// Neither yet.
    Undecided,
}

impl Counter {
    /// Record one result.
    pub fn record(&mut self, ok: bool, t: &Timing) -> Verdict {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= t.success_threshold {
                return Verdict::Passed;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= t.failure_threshold {
                return Verdict::Failed;
            }
        }
        Verdict::Undecided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let t = Timing::of(&Probe {
            success_threshold: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        });
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        let mut c = Counter::default();
        assert_eq!(c.record(true, &t), Verdict::Undecided);
        assert_eq!(c.record(true, &t), Verdict::Passed);
        assert_eq!(c.record(false, &t), Verdict::Undecided);
        assert_eq!(c.record(false, &t), Verdict::Undecided);
        assert_eq!(c.record(true, &t), Verdict::Undecided);
        for _ in 0..2 {
            assert_eq!(c.record(false, &t), Verdict::Undecided);
        }
        assert_eq!(c.record(false, &t), Verdict::Failed);
    }
}
