//! What every scenario shares: the world (the local cluster with the operator installed by its
//! chart, a fresh namespace with the pair, the observer, the writer), its setup until the pair
//! is healthy and in sync with receipts flowing, fault helpers, waits, and the closing verdict.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use receiptdb_operator::crd::{Member, ReceiptDbPair, ReceiptDbPairSpec};
use receiptdb_operator::resources::secrets::{password_in, password_ref, PasswordRole};
use receiptdb_operator::resources::tls;
use receiptdb_postgres::compare::{compare, CompareOptions};
use receiptdb_postgres::conn::{tls_connector, RootCerts, Target, TlsSettings};
use serde_json::json;

use crate::clock::Timeline;
use crate::cluster::{Cluster, OPERATOR_NAMESPACE};
use crate::observer::{Observer, Sample};
use crate::report::ScenarioReport;
use crate::verdict::{self, Check};
use crate::writer::{Writer, WriterConfig, WriterTls};

/// The pair every scenario creates.
pub const PAIR: &str = "orca";

/// How scenarios run.
#[derive(Clone)]
pub struct Options {
    /// Keep each scenario's namespace (the pair, its pods and volumes) after it ends.
    pub keep: bool,
    /// Longest wait for any one expected state.
    pub wait_timeout: Duration,
    /// The cluster, with the operator installed.
    pub cluster: Arc<Cluster>,
    /// The namespace to use instead of a fresh one (deleted first when it exists).
    pub namespace: Option<String>,
    /// Pairs with TLS (the default); without, `spec.tls.enabled: false` whatever the scenario's
    /// spec says.
    pub tls: bool,
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
    /// The scenario's own namespace.
    pub namespace: String,
    pub timeline: Timeline,
    pub observer: Observer,
    pub writer: Option<Writer>,
    pub fault_ms: Option<u64>,
    pub spec: ReceiptDbPairSpec,
    pub password: String,
    pub extra_checks: Vec<Check>,
    /// Nodes a fault left lost or cut off, repaired at the end whatever happens.
    pub(crate) broken_nodes: Vec<crate::node_faults::BrokenNode>,
    opts: Options,
}

static RUN: AtomicU32 = AtomicU32::new(0);

/// A pod's first container's process id, from its `localcluster://<node>/<pid>` container ID,
/// while it runs.
pub fn container_pid(p: &Pod) -> Option<i32> {
    let c = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    c.state.as_ref()?.running.as_ref()?;
    c.container_id.as_deref()?.rsplit('/').next()?.parse().ok()
}

impl World {
    /// Make the scenario's namespace, create the pair in it, start observing (then
    /// [`World::bootstrap`]).
    pub async fn create(name: &str, spec: ReceiptDbPairSpec, opts: &Options) -> Result<Self> {
        let timeline = Timeline::new();
        let client = opts.cluster.client.clone();
        let namespace = match &opts.namespace {
            Some(n) => {
                delete_namespace(&client, n).await;
                n.clone()
            }
            None => format!(
                "e2e-{name}-{}-{}",
                std::process::id(),
                RUN.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": namespace, "labels": {"receiptdb.io/e2e": name}},
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {namespace}"))?;
        let mut pair = ReceiptDbPair::new(PAIR, spec.clone());
        pair.metadata.namespace = Some(namespace.clone());
        let service = pair.client_service_name();
        let observer =
            Observer::start(client.clone(), &namespace, PAIR, &service, timeline.clone());
        Api::<ReceiptDbPair>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &pair)
            .await
            .context("create the ReceiptDbPair")?;
        timeline.record(
            "pair_created",
            format!("ReceiptDbPair {PAIR} created in namespace {namespace}"),
        );
        Ok(Self {
            client,
            namespace,
            timeline,
            observer,
            writer: None,
            fault_ms: None,
            spec,
            password: String::new(),
            extra_checks: Vec::new(),
            broken_nodes: Vec::new(),
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
    /// How the writer verifies the pair, as its clients should: `verify-full` against the CA
    /// in `<pair>-ca`, for the client Service's DNS name (and, in external mode, the other
    /// member's). None when the pair has TLS off.
    async fn writer_tls(&self, pair: &ReceiptDbPair, external: bool) -> Result<Option<WriterTls>> {
        if !tls::enabled(pair) {
            return Ok(None);
        }
        let name = tls::client_ca_secret_name(pair);
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get(&name)
            .await
            .with_context(|| format!("read the clients' CA Secret {name}"))?;
        let ca = tls::text_in(&secret, "ca.crt")
            .with_context(|| format!("Secret {name} has no ca.crt"))?;
        let settings = TlsSettings::verify_full(RootCerts::Pem {
            label: format!("Secret {name}"),
            pem: Arc::new(ca.into_bytes()),
        });
        let active = self
            .observer
            .latest()
            .and_then(|s| s.status.active_member)
            .unwrap_or(Member::Primary);
        Ok(Some(WriterTls {
            server_name: format!("{}.{}.svc", pair.client_service_name(), self.namespace),
            mirror_name: external.then(|| {
                format!(
                    "{}.{}.svc",
                    pair.member_name(active.other()),
                    self.namespace
                )
            }),
            connector: tls_connector(&settings).context("the writer's TLS settings")?,
        }))
    }

    async fn superuser_password(&self) -> Result<String> {
        let pair = self.pair().await?;
        let r = password_ref(&pair, PasswordRole::Superuser);
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get(&r.name)
            .await
            .with_context(|| format!("read the superuser Secret {}", r.name))?;
        password_in(&secret, &r.key)
            .with_context(|| format!("Secret {} has no key {}", r.name, r.key))
    }

    /// The pair as stored.
    pub async fn pair(&self) -> Result<ReceiptDbPair> {
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), &self.namespace)
            .get(PAIR)
            .await
            .context("read the ReceiptDbPair")
    }

    /// The cluster the scenario runs on.
    pub(crate) fn cluster(&self) -> &Cluster {
        &self.opts.cluster
    }

    /// The cluster, shared (for blocking work on another thread).
    pub(crate) fn cluster_handle(&self) -> Arc<Cluster> {
        self.opts.cluster.clone()
    }

    pub(crate) async fn member_pod(&self, m: Member) -> Result<Pod> {
        let name = format!("{PAIR}-{m}-0");
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .get(&name)
            .await
            .with_context(|| format!("read Pod {name}"))
    }

    /// Start the receipt writer through the client Service.
    pub async fn start_writer(&mut self) -> Result<()> {
        let pair = self.pair().await?;
        let name = pair.client_service_name();
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(&name)
            .await
            .with_context(|| format!("read the client Service {name}"))?;
        let host = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| ip != "None")
            .context("the client Service has no ClusterIP")?;
        let port = u16::try_from(self.spec.postgres.port).unwrap_or(5432);
        let external =
            self.spec.replication.mode == receiptdb_operator::crd::ReplicationMode::External;
        let mirror = if external {
            let active = self
                .observer
                .latest()
                .and_then(|s| s.status.active_member)
                .unwrap_or(Member::Primary);
            Some((self.pod_ip(active.other()).await?, port))
        } else {
            None
        };
        let w = Writer::start(
            WriterConfig {
                host: host.clone(),
                port,
                user: self.spec.postgres.superuser.clone(),
                password: self.password.clone(),
                dbname: self.spec.postgres.database.clone(),
                interval: Duration::from_millis(20),
                mirror,
                tls: self.writer_tls(&pair, external).await?,
            },
            self.timeline.clone(),
        )
        .await?;
        self.writer = Some(w);
        self.timeline.record(
            "writer_started",
            format!("one receipt every 20 ms through the client Service {name} ({host}:{port})"),
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
        let v = self.observer.violations();
        if !v.is_empty() {
            bail!("safety violation: {}", v.join("; "));
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

    /// The pid of a member's running postmaster (by StatefulSet name), from its pod's status.
    pub async fn member_pid(&self, statefulset: &str) -> Option<i32> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(&format!("{statefulset}-0"))
            .await
            .ok()
            .flatten()?;
        container_pid(&pod)
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

    /// SIGKILL a member's postmaster (its container's first process, found through the pod's
    /// container ID; the node agent runs it as a host process).
    pub async fn crash(&mut self, m: Member) -> Result<()> {
        let pod = self.member_pod(m).await?;
        let pid = container_pid(&pod)
            .with_context(|| format!("the {m} member's container is not running"))?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .with_context(|| format!("SIGKILL pid {pid}"))?;
        self.fault(&format!("SIGKILL of the {m} postmaster (pid {pid})"));
        Ok(())
    }

    /// `kubectl delete pod <pair>-<member>-0` (a restart: the StatefulSet brings it back).
    pub async fn delete_pod(&self, m: Member) -> Result<()> {
        let name = format!("{PAIR}-{m}-0");
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .delete(&name, &DeleteParams::default())
            .await
            .with_context(|| format!("delete Pod {name}"))?;
        self.timeline
            .record("pod_deleted", format!("kubectl delete pod {name}"));
        Ok(())
    }

    /// Kill the leading operator replica at once (`kubectl delete pod --grace-period=0
    /// --force`: its process is SIGKILLed, mid-pass, without releasing its Lease) and wait until
    /// the other replica leads (once the Lease expires).
    pub async fn kill_operator(&self) -> Result<()> {
        let cluster = &self.opts.cluster;
        let (pod, _) = cluster.leader_pod().await?;
        Api::<Pod>::namespaced(self.client.clone(), OPERATOR_NAMESPACE)
            .delete(
                &pod,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await
            .with_context(|| format!("delete the operator pod {pod}"))?;
        self.timeline.record(
            "operator_killed",
            format!("leading operator pod {pod} deleted with grace period 0"),
        );
        let new = cluster
            .wait_new_leader(&pod, self.opts.wait_timeout)
            .await?;
        self.timeline
            .record("operator_leader", format!("operator pod {new} leads"));
        Ok(())
    }

    /// Set (or remove, with `None`) an annotation on the pair.
    pub async fn annotate(&self, key: &str, value: Option<&str>) -> Result<()> {
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), &self.namespace)
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
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), &self.namespace)
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

    /// Apply the pair's manifest (the spec it was created with) by server-side apply as field
    /// manager `manager`, taking over conflicting fields as GitOps tools do
    /// (`kubectl apply --server-side --force-conflicts`).
    pub async fn apply_pair_as(&self, manager: &str) -> Result<()> {
        let mut pair = ReceiptDbPair::new(PAIR, self.spec.clone());
        pair.metadata.namespace = Some(self.namespace.clone());
        let mut manifest = serde_json::to_value(&pair)?;
        if let Some(o) = manifest.as_object_mut() {
            o.remove("status");
        }
        Api::<ReceiptDbPair>::namespaced(self.client.clone(), &self.namespace)
            .patch(
                PAIR,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(manifest),
            )
            .await
            .with_context(|| format!("server-side apply of the pair as {manager}"))?;
        Ok(())
    }

    async fn pod_ip(&self, m: Member) -> Result<String> {
        self.member_pod(m)
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .with_context(|| format!("the {m} member's pod has no address"))
    }

    /// A superuser target on a member's database, directly at its pod's address (this host
    /// routes to every pod), not through the client Service.
    pub async fn member_target(&self, m: Member) -> Result<Target> {
        let mut c = tokio_postgres::Config::new();
        c.host(self.pod_ip(m).await?)
            .port(u16::try_from(self.spec.postgres.port).unwrap_or(5432))
            .user(&self.spec.postgres.superuser)
            .password(&self.password)
            .dbname(&self.spec.postgres.database);
        Ok(Target::from_config(c))
    }

    /// Add a scenario-specific check.
    pub fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.extra_checks.push(Check::new(name, passed, detail));
    }

    /// Stop the writer, check everything, remove the namespace (unless kept), and report.
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
        let selections = self.observer.selections();
        checks.extend(verdict::service_checks(&samples, &selections));
        let violations = self.observer.violations();
        checks.push(Check::new(
            "volumes_exclusive",
            violations.is_empty(),
            if violations.is_empty() {
                "no Job ran on a running member's data claim".to_string()
            } else {
                violations.join("; ")
            },
        ));
        checks.push(verdict::retryable_errors_check(&errors));
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
            server_version: self.opts.cluster.server_version.clone(),
            namespace: self.namespace.clone(),
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
            write_errors_after_fault: errors
                .iter()
                .filter(|e| fault.is_some_and(|f| e.t_ms >= f))
                .take(200)
                .cloned()
                .collect(),
            unexpected_write_errors: errors.into_iter().filter(|e| !e.expected).collect(),
            duration_ms: self.timeline.now_ms(),
            timeline: events,
            service_history: selections,
            acks,
        };
        let keep = self.opts.keep || !report.passed;
        self.repair_nodes().await;
        self.teardown(keep).await;
        report
    }

    async fn ids_on(&self, m: Member) -> Result<Vec<i64>> {
        let c = self
            .member_target(m)
            .await?
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
                self.member_target(active).await,
                self.member_target(active.other()).await,
            ) {
                (Ok(s), Ok(t)) => (s, t),
                (Err(e), _) | (_, Err(e)) => {
                    last = format!("no member address: {e:#}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
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

    /// Delete the scenario's namespace (everything in it goes with it) and wait until it is
    /// gone, so runs do not overlap; or keep it and say so.
    async fn teardown(&mut self, keep: bool) {
        if keep {
            eprintln!(
                "kept namespace {} (kubectl -n {} get rdbp,pods,jobs,events)",
                self.namespace, self.namespace
            );
            return;
        }
        delete_namespace(&self.client, &self.namespace).await;
    }
}

/// Delete a namespace and wait (up to 2 minutes) until it is gone.
async fn delete_namespace(client: &kube::Client, name: &str) {
    let api = Api::<Namespace>::all(client.clone());
    if api.delete(name, &DeleteParams::default()).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        if api.get_opt(name).await.ok().flatten().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("namespace {name} is still being deleted");
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
