//! What every scenario shares: the world (in-memory API, node shim, proxy, observer, the
//! operator's loop, the writer), its setup until the pair is healthy and in sync with receipts
//! flowing, fault helpers, waits, and the closing verdict.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use receiptdb_operator::crd::{Member, ReceiptDbPair, ReceiptDbPairSpec};
use receiptdb_operator::resources::secrets::{password_in, password_ref, PasswordRole};
use receiptdb_postgres::compare::{compare, CompareOptions};
use receiptdb_postgres::conn::Target;
use serde_json::json;

use crate::api::{in_memory_api, NAMESPACE};
use crate::clock::Timeline;
use crate::controller::{ControllerLoop, LoopConfig};
use crate::observer::{Observer, Sample};
use crate::ports::Ports;
use crate::proxy::Proxy;
use crate::report::ScenarioReport;
use crate::shim::{ShimConfig, ShimHandle};
use crate::verdict::{self, Check};
use crate::workdir::WorkDir;
use crate::writer::{Writer, WriterConfig};

/// The pair every scenario creates.
pub const PAIR: &str = "orca";

/// How scenarios run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep the work directory.
    pub keep: bool,
    /// The operator binary Jobs run.
    pub operator_bin: PathBuf,
    /// PostgreSQL's programs.
    pub pg_bindir: PathBuf,
    /// First restart delay of a crashed member container (a kubelet's is 10 s).
    pub crash_backoff: Duration,
    /// Longest wait for any one expected state.
    pub wait_timeout: Duration,
    /// Longest pause between reconcile passes.
    pub max_requeue: Duration,
}

/// Spec changes a scenario starts from (everything else: the defaults).
pub fn spec_with(f: impl FnOnce(&mut ReceiptDbPairSpec)) -> ReceiptDbPairSpec {
    let mut spec = ReceiptDbPairSpec::default();
    f(&mut spec);
    spec
}

/// A running scenario world.
pub struct World {
    pub client: kube::Client,
    pub ports: Ports,
    pub timeline: Timeline,
    pub work: WorkDir,
    pub shim: Option<ShimHandle>,
    pub proxy: Proxy,
    pub observer: Observer,
    pub controller: ControllerLoop,
    pub writer: Option<Writer>,
    pub fault_ms: Option<u64>,
    pub spec: ReceiptDbPairSpec,
    pub password: String,
    pub extra_checks: Vec<Check>,
    opts: Options,
}

impl World {
    /// Build everything and create the pair (then [`World::bootstrap`]).
    pub async fn create(name: &str, spec: ReceiptDbPairSpec, opts: &Options) -> Result<Self> {
        let timeline = Timeline::new();
        let work = WorkDir::create(name, opts.keep)?;
        let client = in_memory_api().await?;
        let ports = Ports::default();
        for m in Member::ALL {
            ports.port_for(&format!("{PAIR}-{m}"))?;
        }
        let shim = ShimHandle::start(
            client.clone(),
            ShimConfig {
                namespace: NAMESPACE.into(),
                work: work.path().to_path_buf(),
                ports: ports.clone(),
                operator_bin: opts.operator_bin.clone(),
                pg_bindir: opts.pg_bindir.clone(),
                poll: Duration::from_millis(75),
                crash_backoff: opts.crash_backoff,
                max_backoff: Duration::from_secs(60),
                readiness_period: Duration::from_millis(250),
                timeline: timeline.clone(),
            },
        )?;
        let mut pair = ReceiptDbPair::new(PAIR, spec.clone());
        pair.metadata.namespace = Some(NAMESPACE.into());
        let pairs: Api<ReceiptDbPair> = Api::namespaced(client.clone(), NAMESPACE);
        pairs
            .create(&PostParams::default(), &pair)
            .await
            .context("create the ReceiptDbPair")?;
        let service = pair.client_service_name();
        let proxy = Proxy::start(
            client.clone(),
            NAMESPACE,
            &service,
            ports.clone(),
            timeline.clone(),
            Duration::from_millis(50),
        )
        .await?;
        ports.set(&service, proxy.port);
        let observer = Observer::start(
            client.clone(),
            NAMESPACE,
            PAIR,
            &service,
            timeline.clone(),
            Duration::from_millis(50),
        );
        let controller = ControllerLoop::start(
            client.clone(),
            ports.clone(),
            LoopConfig {
                namespace: NAMESPACE.into(),
                pair: PAIR.into(),
                max_requeue: opts.max_requeue,
            },
            timeline.clone(),
        );
        timeline.record("pair_created", format!("ReceiptDbPair {PAIR} created"));
        Ok(Self {
            client,
            ports,
            timeline,
            work,
            shim: Some(shim),
            proxy,
            observer,
            controller,
            writer: None,
            fault_ms: None,
            spec,
            password: String::new(),
            extra_checks: Vec::new(),
            opts: opts.clone(),
        })
    }

    /// Wait until the pair is healthy and in sync, start the writer, let it write a while.
    pub async fn bootstrap(&mut self) -> Result<()> {
        self.wait_for("the pair to become healthy and in sync", healthy)
            .await?;
        self.timeline.record("pair_ready", "healthy and in sync");
        self.password = self.superuser_password().await?;
        self.start_writer().await?;
        self.pause(Duration::from_secs(2)).await
    }

    /// The superuser's password, from the pair's Secret.
    async fn superuser_password(&self) -> Result<String> {
        let pair = self.pair().await?;
        let r = password_ref(&pair, PasswordRole::Superuser);
        let secret = Api::<Secret>::namespaced(self.client.clone(), NAMESPACE)
            .get(&r.name)
            .await
            .with_context(|| format!("read the superuser Secret {}", r.name))?;
        password_in(&secret, &r.key)
            .with_context(|| format!("Secret {} has no key {}", r.name, r.key))
    }

    /// The pair as stored.
    pub async fn pair(&self) -> Result<ReceiptDbPair> {
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), NAMESPACE)
            .get(PAIR)
            .await
            .context("read the ReceiptDbPair")
    }

    /// Start the receipt writer through the proxy.
    pub async fn start_writer(&mut self) -> Result<()> {
        let external =
            self.spec.replication.mode == receiptdb_operator::crd::ReplicationMode::External;
        let mirror_port = if external {
            let active = self
                .observer
                .latest()
                .and_then(|s| s.status.active_member)
                .unwrap_or(Member::Primary);
            self.ports.get(&format!("{PAIR}-{}", active.other()))
        } else {
            None
        };
        let w = Writer::start(
            WriterConfig {
                port: self.proxy.port,
                user: self.spec.postgres.superuser.clone(),
                password: self.password.clone(),
                dbname: self.spec.postgres.database.clone(),
                interval: Duration::from_millis(20),
                mirror_port,
            },
            self.timeline.clone(),
        )
        .await?;
        self.writer = Some(w);
        self.timeline.record(
            "writer_started",
            "one receipt every 20 ms through the proxy",
        );
        Ok(())
    }

    /// Let time pass (the writer keeps writing), failing early on a safety violation.
    pub async fn pause(&self, d: Duration) -> Result<()> {
        let end = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < end {
            self.check_violations()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    fn check_violations(&self) -> Result<()> {
        if let Some(shim) = &self.shim {
            let v = shim.violations();
            if !v.is_empty() {
                bail!("safety violation in the node shim: {}", v.join("; "));
            }
        }
        Ok(())
    }

    /// Wait until the latest observation satisfies `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Sample) -> bool) -> Result<Sample> {
        let deadline = tokio::time::Instant::now() + self.opts.wait_timeout;
        loop {
            self.check_violations()?;
            if let Some(s) = self.observer.latest() {
                if pred(&s) {
                    return Ok(s);
                }
            }
            if tokio::time::Instant::now() > deadline {
                let last = self
                    .observer
                    .latest()
                    .map(|s| {
                        format!(
                            "phase {:?}, active {:?}, operation {:?}, conditions {:?}",
                            s.status.phase,
                            s.status.active_member,
                            s.status
                                .operation
                                .as_ref()
                                .map(|o| (o.kind, o.member, o.step)),
                            s.status
                                .conditions
                                .iter()
                                .map(|c| format!("{}={}: {}", c.type_, c.status, c.message))
                                .collect::<Vec<_>>()
                        )
                    })
                    .unwrap_or_default();
                bail!(
                    "timed out after {:?} waiting for {what}; last status: {last}",
                    self.opts.wait_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pid of a member's running process (by StatefulSet name).
    pub async fn member_pid(&self, statefulset: &str) -> Option<i32> {
        self.shim.as_ref()?.pids().await.get(statefulset).copied()
    }

    /// Wait until an async condition holds.
    pub async fn wait_until<F, Fut>(&self, what: &str, mut f: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + self.opts.wait_timeout;
        while !f().await {
            self.check_violations()?;
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "timed out after {:?} waiting for {what}",
                    self.opts.wait_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Mark the fault time (the reference of recovery_ms and in_sync_ms).
    pub fn fault(&mut self, detail: &str) {
        let t = self.timeline.record("fault_injected", detail);
        if self.fault_ms.is_none() {
            self.fault_ms = Some(t);
        }
    }

    /// SIGKILL a member's postmaster.
    pub async fn crash(&mut self, m: Member) -> Result<()> {
        let shim = self.shim.as_ref().context("the node shim has stopped")?;
        let pid = shim.crash(&format!("{PAIR}-{m}")).await?;
        self.fault(&format!("SIGKILL of the {m} postmaster (pid {pid})"));
        Ok(())
    }

    /// `kubectl delete pod <pair>-<member>-0` (a restart: the StatefulSet brings it back).
    pub async fn delete_pod(&self, m: Member) -> Result<()> {
        let name = format!("{PAIR}-{m}-0");
        Api::<Pod>::namespaced(self.client.clone(), NAMESPACE)
            .delete(&name, &DeleteParams::default())
            .await
            .with_context(|| format!("delete Pod {name}"))?;
        self.timeline
            .record("pod_deleted", format!("kubectl delete pod {name}"));
        Ok(())
    }

    /// Set (or remove, with `None`) an annotation on the pair.
    pub async fn annotate(&self, key: &str, value: Option<&str>) -> Result<()> {
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), NAMESPACE)
            .patch(
                PAIR,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .with_context(|| format!("annotate the pair with {key}"))?;
        self.timeline.record(
            "annotated",
            format!("{key}={}", value.unwrap_or("(removed)")),
        );
        Ok(())
    }

    /// Merge-patch the pair's spec.
    pub async fn patch_spec(&self, patch: serde_json::Value) -> Result<()> {
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), NAMESPACE)
            .patch(
                PAIR,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": patch })),
            )
            .await
            .context("patch the pair's spec")?;
        self.timeline.record("spec_changed", patch.to_string());
        Ok(())
    }

    /// A superuser target on a member's database, directly (not through the proxy).
    pub fn member_target(&self, m: Member) -> Result<Target> {
        let port = self
            .ports
            .get(&format!("{PAIR}-{m}"))
            .context("member port")?;
        let mut c = tokio_postgres::Config::new();
        c.host(crate::mapping::LOOPBACK)
            .port(port)
            .user(&self.spec.postgres.superuser)
            .password(&self.password)
            .dbname(&self.spec.postgres.database);
        Ok(Target::from_config(c))
    }

    /// Add a scenario-specific check.
    pub fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.extra_checks.push(Check::new(name, passed, detail));
    }

    /// Stop the writer, check everything, tear the world down, and report.
    pub async fn finish(mut self, scenario: &str, failure: Option<String>) -> ScenarioReport {
        let mut checks = Vec::new();
        let mut failure = failure;
        let acks = match self.writer.as_mut() {
            Some(w) => {
                w.stop().await;
                w.acks()
            }
            None => Vec::new(),
        };
        let errors = self.writer.as_ref().map(|w| w.errors()).unwrap_or_default();
        let latest = self.observer.latest();
        if let Ok(pair) = self.pair().await {
            self.timeline.record(
                "final_status",
                serde_json::to_string(&pair.status).unwrap_or_default(),
            );
        }
        let active = latest.as_ref().and_then(|s| s.status.active_member);
        let synchronous = self.spec.replication.synchronous();
        // Every acknowledged commit on the active member.
        let mut lost_count = acks.len();
        if let Some(active) = active {
            match self.ids_on(active).await {
                Ok(ids) => {
                    let lost = verdict::lost(&acks, &ids);
                    lost_count = lost.len();
                    checks.push(Check::new(
                        "no_acknowledged_commit_lost",
                        lost.is_empty() || !synchronous,
                        format!(
                            "{} acknowledged, {} missing on {active}{}",
                            acks.len(),
                            lost.len(),
                            if lost.is_empty() {
                                String::new()
                            } else {
                                format!(" (first: {:?})", &lost[..lost.len().min(10)])
                            }
                        ),
                    ));
                }
                Err(e) => checks.push(Check::new(
                    "no_acknowledged_commit_lost",
                    false,
                    format!("cannot read receipts from {active}: {e:#}"),
                )),
            }
            checks.push(self.compare_members(active).await);
        } else {
            checks.push(Check::new(
                "active_member",
                false,
                "no active member at the end",
            ));
        }
        let samples = self.observer.samples();
        checks.extend(verdict::service_checks(&samples, &self.proxy.history()));
        let violations = self
            .shim
            .as_ref()
            .map(|s| s.violations())
            .unwrap_or_default();
        checks.push(Check::new(
            "volumes_exclusive",
            violations.is_empty(),
            if violations.is_empty() {
                "no Job used a running member's volume".to_string()
            } else {
                violations.join("; ")
            },
        ));
        checks.append(&mut self.extra_checks);
        if failure.is_none() {
            if let Some(c) = checks.iter().find(|c| !c.passed) {
                failure = Some(format!("{}: {}", c.name, c.detail));
            }
        }
        let events = self.timeline.events();
        let fault = self.fault_ms;
        let mut by_code = std::collections::BTreeMap::new();
        for e in &errors {
            *by_code.entry(e.code.clone()).or_insert(0usize) += 1;
        }
        let report = ScenarioReport {
            scenario: scenario.to_string(),
            passed: failure.is_none(),
            recovery_ms: fault.and_then(|f| {
                let first_error = errors.iter().map(|e| e.t_ms).filter(|t| *t >= f).min();
                verdict::recovery_ms(&acks, f, first_error)
            }),
            lost_acknowledged: lost_count,
            in_sync_ms: fault.and_then(|f| verdict::in_sync_ms(&events, f)),
            fault_ms: fault,
            acknowledged: acks.len(),
            longest_write_gap_ms: verdict::longest_gap_ms(&acks, fault.unwrap_or(0)),
            rejoin_method: latest
                .as_ref()
                .and_then(|s| s.status.last_sync.as_ref())
                .map(|s| s.method.clone()),
            synchronous,
            active_member: active.map(|m| m.to_string()),
            checks,
            failure,
            write_errors: by_code,
            unexpected_write_errors: errors.into_iter().filter(|e| !e.expected).collect(),
            duration_ms: self.timeline.now_ms(),
            timeline: events,
            service_history: self.proxy.history(),
            acks,
        };
        self.teardown().await;
        report
    }

    async fn ids_on(&self, m: Member) -> Result<Vec<i64>> {
        let c = self
            .member_target(m)?
            .connect(Duration::from_secs(10))
            .await
            .context("connect")?;
        let rows = c
            .query("SELECT id FROM receipts", &[])
            .await
            .context("SELECT id FROM receipts")?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
    }

    /// Compare the members (the standby may need a moment to replay the last commits).
    async fn compare_members(&self, active: Member) -> Check {
        let mut last = String::new();
        for _ in 0..20 {
            let (src, tgt) = match (
                self.member_target(active),
                self.member_target(active.other()),
            ) {
                (Ok(s), Ok(t)) => (s, t),
                _ => return Check::new("members_equal", false, "no member ports"),
            };
            match compare(&src, &tgt, CompareOptions::default()).await {
                Ok(r) if r.equal => {
                    return Check::new(
                        "members_equal",
                        true,
                        format!(
                            "{} tables compared by checksums ({active} vs {})",
                            r.summary.tables_compared,
                            active.other()
                        ),
                    )
                }
                Ok(r) => {
                    last = format!(
                        "differ: tables {:?}, missing {:?}/{:?}, schema {}",
                        r.differing_tables(),
                        r.only_in_source,
                        r.only_in_target,
                        r.schema_differences.len()
                    )
                }
                Err(e) => last = format!("compare failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Check::new("members_equal", false, last)
    }

    async fn teardown(&mut self) {
        self.controller.stop();
        if let Some(shim) = self.shim.take() {
            shim.shutdown().await;
        }
        crate::procs::kill_postmasters_under(self.work.path());
    }

    /// Keep the work directory (after a failure).
    pub fn keep_work(&mut self) {
        self.work.keep();
    }
}

/// Healthy, in sync, serving, and the Service selecting the active member.
pub fn healthy(s: &Sample) -> bool {
    s.status.phase.map(|p| p.to_string()).as_deref() == Some("Healthy")
        && s.condition("InSync") == Some("True")
        && s.status.active_member.is_some()
        && s.selects.as_deref() == s.status.active_member.map(|m| m.as_str())
        && s.status.operation.is_none()
}

/// Healthy with `m` active.
pub fn healthy_on(s: &Sample, m: Member) -> bool {
    healthy(s) && s.status.active_member == Some(m)
}
