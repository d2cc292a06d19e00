//! Member pods: StatefulSets with replicas 1 run as local processes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container as K8sContainer, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::env::{resolve_env, PodFacts};
use super::pods::{self, ContainerState, PodStatus};
use super::volumes::{resolve_mounts, statefulset_claims};
use super::ShimConfig;
use crate::mapping::Mapping;
use crate::procs::{Container, Spec};

/// One StatefulSet's pod-0 as the shim runs it.
#[derive(Default)]
struct Member {
    container: Option<Container>,
    /// A stop was requested (scale to 0, Pod deleted): the exit is not a crash.
    stopping: bool,
    /// The Pod object we made: name and uid.
    pod: Option<(String, String)>,
    restarts: i32,
    backoff_until: Option<Instant>,
    next_backoff: Option<Duration>,
    started: Option<Instant>,
    ready: Arc<AtomicBool>,
    reported_ready: Option<bool>,
    readiness: Option<tokio::task::JoinHandle<()>>,
    last_exit: Option<ContainerState>,
    claims: Vec<String>,
    container_name: String,
    image: String,
    reported_sts_status: Option<serde_json::Value>,
}

/// All member pods.
pub struct Members {
    client: kube::Client,
    cfg: ShimConfig,
    members: BTreeMap<String, Member>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Members {
    pub fn new(client: kube::Client, cfg: ShimConfig, violations: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            client,
            cfg,
            members: BTreeMap::new(),
            violations,
        }
    }

    /// Claims whose member process runs (or is still stopping), with the StatefulSet name.
    pub fn claims_in_use(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, m) in &self.members {
            if m.container.is_some() {
                for c in &m.claims {
                    out.insert(c.clone(), name.clone());
                }
            }
        }
        out
    }

    /// Pids of running members.
    pub fn pids(&self) -> BTreeMap<String, i32> {
        self.members
            .iter()
            .filter_map(|(n, m)| m.container.as_ref().map(|c| (n.clone(), c.pid)))
            .collect()
    }

    /// SIGKILL a member's main process (a crash).
    pub fn crash(&mut self, name: &str) -> Result<i32> {
        let m = self
            .members
            .get(name)
            .with_context(|| format!("no member process for StatefulSet {name}"))?;
        let c = m
            .container
            .as_ref()
            .with_context(|| format!("StatefulSet {name} has no running process to crash"))?;
        c.crash();
        Ok(c.pid)
    }

    /// One pass: bring processes in line with the StatefulSets.
    pub async fn tick(&mut self, job_claims: &BTreeMap<String, String>) -> Result<()> {
        let ns = self.cfg.namespace.clone();
        let sts_api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let list = sts_api
            .list(&ListParams::default())
            .await
            .context("list StatefulSets")?;
        let pod_names: Vec<(String, String)> = pods_api
            .list(&ListParams::default())
            .await
            .context("list Pods")?
            .items
            .into_iter()
            .map(|p| (p.name_any(), p.metadata.uid.unwrap_or_default()))
            .collect();
        let mut seen = Vec::new();
        for sts in &list.items {
            let name = sts.name_any();
            seen.push(name.clone());
            if let Err(e) = self.reconcile(sts, &pods_api, &pod_names, job_claims).await {
                tracing::warn!("member {name}: {e:#}");
            }
            self.report_statefulset_status(sts, &sts_api).await;
        }
        // StatefulSets deleted: stop their processes.
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(m) = self.members.get_mut(&name) {
                if let Some(c) = m.container.as_mut() {
                    if !m.stopping {
                        c.stop(Duration::from_secs(10));
                        m.stopping = true;
                    }
                }
                if m.container.as_ref().and_then(|c| c.exited()).is_some() || m.container.is_none()
                {
                    if let Some((pod, _)) = m.pod.take() {
                        pods::delete(&pods_api, &pod).await?;
                    }
                    self.members.remove(&name);
                }
            }
        }
        Ok(())
    }

    async fn reconcile(
        &mut self,
        sts: &StatefulSet,
        pods_api: &Api<Pod>,
        pod_names: &[(String, String)],
        job_claims: &BTreeMap<String, String>,
    ) -> Result<()> {
        let name = sts.name_any();
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let grace = Duration::from_secs(
            sts.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .clamp(1, 60) as u64,
        );
        let timeline = self.cfg.timeline.clone();
        let m = self.members.entry(name.clone()).or_default();

        // 1. Reap an exited process.
        if let Some(exit) = m.container.as_ref().and_then(|c| c.exited()) {
            m.container = None;
            if let Some(h) = m.readiness.take() {
                h.abort();
            }
            m.ready.store(false, Ordering::SeqCst);
            let what = match exit.signal {
                Some(s) => format!("killed by signal {s}"),
                None => format!("exit code {}", exit.code.unwrap_or(-1)),
            };
            m.last_exit = Some(ContainerState::Terminated {
                code: exit.k8s_code(),
                reason: if exit.success() { "Completed" } else { "Error" }.to_string(),
                message: String::new(),
            });
            if m.stopping {
                m.stopping = false;
                timeline.record("process_stopped", format!("{name}: stopped ({what})"));
                if let Some((pod, _)) = m.pod.take() {
                    pods::delete(pods_api, &pod).await?;
                }
                m.reported_ready = None;
            } else {
                let backoff = m.next_backoff.unwrap_or(self.cfg.crash_backoff);
                // A container that ran for a while starts its backoff over, like a kubelet.
                let backoff = if m
                    .started
                    .is_some_and(|s| s.elapsed() > Duration::from_secs(120))
                {
                    self.cfg.crash_backoff
                } else {
                    backoff
                };
                m.next_backoff = Some((backoff * 2).min(self.cfg.max_backoff));
                m.backoff_until = Some(Instant::now() + backoff);
                m.restarts += 1;
                timeline.record(
                    "process_exited",
                    format!(
                        "{name}: container exited ({what}); restart in {} ms unless scaled to 0",
                        backoff.as_millis()
                    ),
                );
                if let Some((pod, _)) = &m.pod {
                    let st = PodStatus {
                        phase: "Running",
                        ready: false,
                        container: m.container_name.clone(),
                        image: m.image.clone(),
                        restarts: m.restarts,
                        state: ContainerState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                        },
                        last_state: m.last_exit.clone(),
                    };
                    pods::set_status(pods_api, pod, &st).await?;
                    m.reported_ready = Some(false);
                }
            }
        }

        // 2. Scaled to 0: stop, and remove the Pod once stopped.
        if replicas < 1 {
            m.backoff_until = None;
            m.next_backoff = None;
            if let Some(c) = m.container.as_mut() {
                if !m.stopping {
                    c.stop(grace);
                    m.stopping = true;
                    timeline.record("process_stopping", format!("{name}: scaled to 0, stopping"));
                }
            } else if let Some((pod, _)) = m.pod.take() {
                pods::delete(pods_api, &pod).await?;
                m.restarts = 0;
                m.reported_ready = None;
            }
            return Ok(());
        }

        // 3. The Pod object was deleted by someone (kubectl delete pod): restart the container.
        if let (Some((pod, uid)), Some(c)) = (&m.pod, m.container.as_mut()) {
            let still_there = pod_names.iter().any(|(n, u)| n == pod && u == uid);
            if !still_there && !m.stopping {
                c.stop(grace);
                m.stopping = true;
                timeline.record(
                    "process_stopping",
                    format!("{name}: Pod {pod} deleted, stopping"),
                );
            }
        }
        if m.stopping || m.container.is_some() {
            // Running: report readiness changes.
            if let (Some((pod, _)), false) = (&m.pod, m.stopping) {
                let ready = m.ready.load(Ordering::SeqCst);
                if m.reported_ready != Some(ready) {
                    let st = PodStatus {
                        phase: "Running",
                        ready,
                        container: m.container_name.clone(),
                        image: m.image.clone(),
                        restarts: m.restarts,
                        state: ContainerState::Running {
                            started: pods::now(),
                        },
                        last_state: m.last_exit.clone(),
                    };
                    pods::set_status(pods_api, pod, &st).await?;
                    m.reported_ready = Some(ready);
                    timeline.record(
                        if ready { "pod_ready" } else { "pod_not_ready" },
                        format!("{name}: Pod {pod} Ready={ready}"),
                    );
                }
            }
            return Ok(());
        }

        // 4. Not running: start, after the backoff.
        if m.backoff_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        m.backoff_until = None;
        let claims: Vec<String> = statefulset_claims(sts)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        if let Some((claim, job)) = claims
            .iter()
            .find_map(|c| job_claims.get(c).map(|j| (c.clone(), j.clone())))
        {
            let v = format!(
                "StatefulSet {name} has replicas {replicas} while Job {job} uses its volume {claim}"
            );
            push_violation(&self.violations, &v);
            return Ok(());
        }
        self.start(sts, pods_api, pod_names).await
    }

    async fn start(
        &mut self,
        sts: &StatefulSet,
        pods_api: &Api<Pod>,
        pod_names: &[(String, String)],
    ) -> Result<()> {
        let name = sts.name_any();
        let ns = self.cfg.namespace.clone();
        let spec = sts.spec.as_ref().context("StatefulSet without spec")?;
        let template = &spec.template;
        let pod_spec = template
            .spec
            .as_ref()
            .context("pod template without spec")?;
        let container = pod_spec
            .containers
            .first()
            .context("pod template without containers")?
            .clone();
        let pod_name = format!("{name}-0");
        let port = self.cfg.ports.port_for(&name)?;
        let sts_claims = statefulset_claims(sts);
        let scratch = self.cfg.work.join("pods").join(&pod_name);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("create {}", scratch.display()))?;
        let mounts = resolve_mounts(
            &self.client,
            &ns,
            &self.cfg.work,
            pod_spec,
            &container,
            &sts_claims,
            &scratch,
        )
        .await?;
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(
            "statefulset.kubernetes.io/pod-name".to_string(),
            pod_name.clone(),
        );
        labels.insert("apps.kubernetes.io/pod-index".to_string(), "0".to_string());
        let env = resolve_env(
            &self.client,
            &container,
            &PodFacts {
                namespace: &ns,
                pod_name: &pod_name,
                labels: &labels,
            },
        )
        .await?;
        let mapping = self.mapping(&container, Some(port), mounts.paths.clone());
        let sock = self.cfg.work.join("sock").join(&name);
        std::fs::create_dir_all(&sock).with_context(|| format!("create {}", sock.display()))?;
        receiptdb_postgres::pgbin::hand_to_postgres(&sock)?;
        let (program, mut args) = command_line(&container)?;
        let is_pg = Mapping::is_postgres(&program);
        let mut args = mapping.args(&std::mem::take(&mut args));
        if is_pg {
            // Loopback only, a private socket directory, and the member's port even when the
            // template relies on the image's defaults.
            args.extend([
                "-c".to_string(),
                format!("listen_addresses={}", crate::mapping::LOOPBACK),
                "-c".to_string(),
                format!("port={port}"),
                "-c".to_string(),
                format!("unix_socket_directories={}", sock.display()),
            ]);
        }
        let spec = Spec {
            program: mapping.program(&program),
            args,
            env: mapping.env(&env),
            as_postgres: is_pg,
            log: self.cfg.work.join("logs").join(format!("{pod_name}.log")),
            stop_signal: if is_pg {
                nix::sys::signal::Signal::SIGINT
            } else {
                nix::sys::signal::Signal::SIGTERM
            },
        };
        let c = Container::start(&spec)
            .with_context(|| format!("start the container of {pod_name}"))?;
        let m = self.members.entry(name.clone()).or_default();
        m.claims = mounts.claims;
        m.container_name = container.name.clone();
        m.image = container.image.clone().unwrap_or_default();
        m.started = Some(Instant::now());
        m.ready = Arc::new(AtomicBool::new(false));
        m.readiness = Some(spawn_readiness(
            m.ready.clone(),
            self.cfg.readiness_period,
            readiness_command(&container, &mapping, port, &sock, &self.cfg.pg_bindir),
        ));
        self.cfg.timeline.record(
            "process_started",
            format!("{name}: started pid {} on port {port}", c.pid),
        );
        m.container = Some(c);
        let status = PodStatus {
            phase: "Running",
            ready: false,
            container: m.container_name.clone(),
            image: m.image.clone(),
            restarts: m.restarts,
            state: ContainerState::Running {
                started: pods::now(),
            },
            last_state: m.last_exit.clone(),
        };
        let ours_still_there = m
            .pod
            .as_ref()
            .is_some_and(|(n, u)| pod_names.iter().any(|(pn, pu)| pn == n && pu == u));
        if ours_still_there {
            pods::set_status(pods_api, &pod_name, &status).await?;
        } else {
            m.restarts = 0;
            let uid = sts.metadata.uid.clone().unwrap_or_default();
            let mut extra = BTreeMap::new();
            extra.insert(
                "statefulset.kubernetes.io/pod-name".to_string(),
                pod_name.clone(),
            );
            extra.insert("apps.kubernetes.io/pod-index".to_string(), "0".to_string());
            let pod_uid = pods::create(
                pods_api,
                &pod_name,
                template,
                extra,
                pods::owner("apps/v1", "StatefulSet", &name, &uid),
                &status,
            )
            .await?;
            m.pod = Some((pod_name, pod_uid));
        }
        m.reported_ready = Some(false);
        Ok(())
    }

    fn mapping(
        &self,
        container: &K8sContainer,
        own_port: Option<u16>,
        paths: Vec<(String, std::path::PathBuf)>,
    ) -> Mapping {
        build_mapping(&self.cfg, container, own_port, paths)
    }

    async fn report_statefulset_status(&mut self, sts: &StatefulSet, api: &Api<StatefulSet>) {
        let name = sts.name_any();
        let Some(m) = self.members.get_mut(&name) else {
            return;
        };
        let running = i32::from(m.container.is_some() || m.pod.is_some());
        let ready = i32::from(m.container.is_some() && m.ready.load(Ordering::SeqCst));
        let status = json!({
            "replicas": running,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": running,
            "updatedReplicas": running,
            "observedGeneration": sts.metadata.generation.unwrap_or(0),
        });
        if m.reported_sts_status.as_ref() != Some(&status) {
            let r = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await;
            if r.is_ok() {
                m.reported_sts_status = Some(status);
            }
        }
    }

    /// Stop every member process (fast shutdown, SIGKILL after 10 s).
    pub async fn shutdown(&mut self) {
        for m in self.members.values_mut() {
            if let Some(h) = m.readiness.take() {
                h.abort();
            }
            if let Some(c) = m.container.as_mut() {
                c.stop(Duration::from_secs(10));
            }
        }
        for m in self.members.values_mut() {
            if let Some(c) = m.container.as_mut() {
                c.wait().await;
            }
        }
    }
}

/// Record a safety violation, loudly.
pub fn push_violation(v: &Arc<Mutex<Vec<String>>>, what: &str) {
    tracing::error!("SAFETY VIOLATION: {what}");
    if let Ok(mut v) = v.lock() {
        if !v.iter().any(|x| x == what) {
            v.push(what.to_string());
        }
    }
}

/// The mapping for a container of this scenario.
pub fn build_mapping(
    cfg: &ShimConfig,
    container: &K8sContainer,
    own_port: Option<u16>,
    mut paths: Vec<(String, std::path::PathBuf)>,
) -> Mapping {
    let mut programs = BTreeMap::new();
    programs.insert(
        "/rdb/bin/receiptdb-operator".to_string(),
        cfg.operator_bin.clone(),
    );
    programs.insert("receiptdb-operator".to_string(), cfg.operator_bin.clone());
    let container_port = container
        .ports
        .iter()
        .flatten()
        .next()
        .map(|p| p.container_port as u16)
        .unwrap_or(5432);
    paths.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    Mapping {
        namespace: cfg.namespace.clone(),
        hosts: cfg.ports.all(),
        paths,
        own_port,
        container_port,
        programs,
        pg_bindir: Some(cfg.pg_bindir.clone()),
    }
}

/// `command` + `args` of a container (the image's entrypoint is not known here: a template
/// must say what it runs).
pub fn command_line(c: &K8sContainer) -> Result<(String, Vec<String>)> {
    let mut all: Vec<String> = c.command.clone().unwrap_or_default();
    all.extend(c.args.clone().unwrap_or_default());
    let Some(program) = all.first().cloned() else {
        anyhow::bail!(
            "container {} has no command: the node shim cannot know the image's entrypoint",
            c.name
        );
    };
    Ok((program, all[1..].to_vec()))
}

/// What readiness runs: the template's exec probe, mapped, else `pg_isready` on the port.
fn readiness_command(
    c: &K8sContainer,
    mapping: &Mapping,
    port: u16,
    sock: &std::path::Path,
    bindir: &std::path::Path,
) -> (std::path::PathBuf, Vec<String>) {
    if let Some(cmd) = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .filter(|c| !c.is_empty())
    {
        return (mapping.program(&cmd[0]), mapping.args(&cmd[1..]));
    }
    let _ = sock;
    (
        bindir.join("pg_isready"),
        vec![
            "-q".into(),
            "-h".into(),
            crate::mapping::LOOPBACK.into(),
            "-p".into(),
            port.to_string(),
            "-t".into(),
            "1".into(),
        ],
    )
}

fn spawn_readiness(
    ready: Arc<AtomicBool>,
    period: Duration,
    (program, args): (std::path::PathBuf, Vec<String>),
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let ok = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::process::Command::new(&program)
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status(),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|s| s.success());
            ready.store(ok, Ordering::SeqCst);
        }
    })
}
