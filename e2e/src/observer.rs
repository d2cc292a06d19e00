//! Watches the pair, its client Service and that Service's EndpointSlices, the namespace's pods
//! and Events, and turns their changes into timeline events (failing detected, fenced,
//! promoted, rejoined, in sync, failback...), keeping what the verdict needs:
//! - a [`Sample`] per change of the pair's status or of the Service's selector. On every
//!   change the Service is read afresh after the pair, and the operator applies the Service
//!   before it writes status, so a sample never pairs a new status with an older Service (no
//!   false "stale member selected");
//! - a [`Selection`] per change of the client Service's endpoints (which member pods the
//!   EndpointSlices list, which of them ready);
//! - a violation whenever two running pods use one member's data claim at once (a Job writing
//!   a running member's data directory).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use receiptdb_operator::crd::{
    Member, MemberStatus, OperationKind, ReceiptDbPair, ReceiptDbPairStatus,
};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::clock::Timeline;

/// The label naming a member.
pub const MEMBER_LABEL: &str = "receiptdb.io/member";

/// One observation of the pair and its client Service.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_ms: u64,
    /// The pair's status (default when it has none).
    #[serde(skip)]
    pub status: ReceiptDbPairStatus,
    /// The member value in the client Service's selector (`None`: no Service or no value).
    pub selects: Option<String>,
    /// The pair's annotations.
    #[serde(skip)]
    pub annotations: BTreeMap<String, String>,
}

impl Sample {
    /// A condition's status (`True`, `False`, `Unknown`), when set.
    pub fn condition(&self, type_: &str) -> Option<&str> {
        self.status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.as_str())
    }

    /// One member's status.
    pub fn member(&self, m: Member) -> &MemberStatus {
        match m {
            Member::Primary => &self.status.primary,
            Member::Secondary => &self.status.secondary,
        }
    }
}

/// One state of the client Service's EndpointSlices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// When it was first seen (ms since the scenario's start).
    pub t_ms: u64,
    /// The member value in the Service's selector then.
    pub selects: Option<String>,
    /// Pods the EndpointSlices list (any readiness): more than one is a violation.
    pub matched: Vec<String>,
    /// The ready ones: where new connections go.
    pub ready: Vec<String>,
}

/// Whether a pod is Ready.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[derive(Default)]
struct Store {
    samples: Vec<Sample>,
    selections: Vec<Selection>,
    violations: Vec<String>,
}

/// The running observer.
pub struct Observer {
    store: Arc<Mutex<Store>>,
    task: JoinHandle<()>,
}

enum Change {
    Pair(Box<ReceiptDbPair>),
    Service,
    Slices(Box<EndpointSlice>, bool),
    Pod(Box<Pod>, bool),
    Event(Box<K8sEvent>),
}

fn changes<K, F>(
    api: Api<K>,
    cfg: watcher::Config,
    f: F,
) -> std::pin::Pin<Box<dyn Stream<Item = Change> + Send>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    F: Fn(watcher::Event<K>) -> Vec<Change> + Send + 'static,
{
    watcher(api, cfg)
        .default_backoff()
        .filter_map(|e| async move { e.ok() })
        .flat_map(move |e| futures::stream::iter(f(e)))
        .boxed()
}

fn applied<K>(e: watcher::Event<K>) -> Vec<(K, bool)> {
    match e {
        watcher::Event::Apply(k) | watcher::Event::InitApply(k) => vec![(k, true)],
        watcher::Event::Delete(k) => vec![(k, false)],
        _ => Vec::new(),
    }
}

impl Observer {
    /// Watch pair `name` and Service `service` in `namespace`.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        service: &str,
        timeline: Timeline,
    ) -> Self {
        let store: Arc<Mutex<Store>> = Arc::new(Mutex::new(Store::default()));
        let pairs: Api<ReceiptDbPair> = Api::namespaced(client.clone(), namespace);
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let events: Api<K8sEvent> = Api::namespaced(client, namespace);
        let by_name = |n: &str| watcher::Config::default().fields(&format!("metadata.name={n}"));
        let streams = vec![
            changes(pairs.clone(), by_name(name), |e| {
                applied(e)
                    .into_iter()
                    .filter(|(_, live)| *live)
                    .map(|(p, _)| Change::Pair(Box::new(p)))
                    .collect()
            }),
            changes(services.clone(), by_name(service), |e| {
                applied(e).into_iter().map(|_| Change::Service).collect()
            }),
            changes(
                slices,
                watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}")),
                |e| {
                    applied(e)
                        .into_iter()
                        .map(|(s, live)| Change::Slices(Box::new(s), live))
                        .collect()
                },
            ),
            changes(pods, watcher::Config::default(), |e| {
                applied(e)
                    .into_iter()
                    .map(|(p, live)| Change::Pod(Box::new(p), live))
                    .collect()
            }),
            changes(events, watcher::Config::default(), |e| {
                applied(e)
                    .into_iter()
                    .filter(|(_, live)| *live)
                    .map(|(ev, _)| Change::Event(Box::new(ev)))
                    .collect()
            }),
        ];
        let (service, st) = (service.to_string(), store.clone());
        let task = tokio::spawn(async move {
            let mut all = futures::stream::select_all(streams);
            let mut pair: Option<ReceiptDbPair> = None;
            let mut last: Option<Sample> = None;
            let mut endpoint_slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
            let mut claims_in_use: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut pod_claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut seen_events = BTreeSet::new();
            while let Some(change) = all.next().await {
                match change {
                    Change::Pair(p) => pair = Some(*p),
                    Change::Service => {}
                    Change::Slices(s, live) => {
                        let key = s.name_any();
                        if live {
                            endpoint_slices.insert(key, *s);
                        } else {
                            endpoint_slices.remove(&key);
                        }
                    }
                    Change::Pod(p, live) => {
                        track_claims(
                            &p,
                            live,
                            &mut pod_claims,
                            &mut claims_in_use,
                            &timeline,
                            &st,
                        );
                        continue;
                    }
                    Change::Event(e) => {
                        if seen_events.insert(e.name_any()) {
                            timeline.record(
                                "k8s_event",
                                format!(
                                    "{} {} {}: {}",
                                    e.type_.clone().unwrap_or_default(),
                                    e.regarding
                                        .as_ref()
                                        .and_then(|r| r.name.clone())
                                        .unwrap_or_default(),
                                    e.reason.clone().unwrap_or_default(),
                                    e.note.clone().unwrap_or_default()
                                ),
                            );
                        }
                        continue;
                    }
                }
                let Some(p) = &pair else { continue };
                // The Service afresh, after the pair (see the module documentation).
                let selects = services
                    .get_opt(&service)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| s.spec?.selector?.get(MEMBER_LABEL).cloned());
                let sample = Sample {
                    t_ms: timeline.now_ms(),
                    status: p.status.clone().unwrap_or_default(),
                    selects,
                    annotations: p.metadata.annotations.clone().unwrap_or_default(),
                };
                let changed = last.as_ref().is_none_or(|l| {
                    l.status != sample.status
                        || l.selects != sample.selects
                        || l.annotations != sample.annotations
                });
                if changed {
                    narrate(&timeline, last.as_ref(), &sample);
                    if let Ok(mut s) = st.lock() {
                        s.samples.push(sample.clone());
                    }
                    last = Some(sample.clone());
                }
                let selection =
                    endpoints(&endpoint_slices, sample.selects.clone(), timeline.now_ms());
                if let Ok(mut s) = st.lock() {
                    let new = s.selections.last().is_none_or(|l| {
                        l.matched != selection.matched
                            || l.ready != selection.ready
                            || l.selects != selection.selects
                    });
                    if new {
                        let before = s
                            .selections
                            .last()
                            .map(|l| l.ready.clone())
                            .unwrap_or_default();
                        if before != selection.ready {
                            timeline.record(
                                "service_switched",
                                format!(
                                    "client Service endpoints: {before:?} -> {:?}",
                                    selection.ready
                                ),
                            );
                        }
                        s.selections.push(selection);
                    }
                }
            }
        });
        Self { store, task }
    }

    /// Every distinct sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.store
            .lock()
            .map(|s| s.samples.clone())
            .unwrap_or_default()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.store.lock().ok()?.samples.last().cloned()
    }

    /// Every state of the client Service's endpoints.
    pub fn selections(&self) -> Vec<Selection> {
        self.store
            .lock()
            .map(|s| s.selections.clone())
            .unwrap_or_default()
    }

    /// Claims used by two running pods at once, as seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.store
            .lock()
            .map(|s| s.violations.clone())
            .unwrap_or_default()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The endpoints the slices list (pods, any readiness) and the ready ones.
fn endpoints(
    slices: &BTreeMap<String, EndpointSlice>,
    selects: Option<String>,
    t_ms: u64,
) -> Selection {
    let mut matched = BTreeSet::new();
    let mut ready = BTreeSet::new();
    for s in slices.values() {
        for e in s.endpoints.iter().flatten() {
            let name = e
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| e.addresses.join(","));
            if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false) {
                ready.insert(name.clone());
            }
            matched.insert(name);
        }
    }
    Selection {
        t_ms,
        selects,
        matched: matched.into_iter().collect(),
        ready: ready.into_iter().collect(),
    }
}

/// Keep, per member data claim, the pods with a running container using it; two at once is a
/// violation.
fn track_claims(
    p: &Pod,
    live: bool,
    pod_claims: &mut BTreeMap<String, Vec<String>>,
    in_use: &mut BTreeMap<String, BTreeSet<String>>,
    timeline: &Timeline,
    store: &Arc<Mutex<Store>>,
) {
    let name = p.name_any();
    for c in pod_claims.remove(&name).unwrap_or_default() {
        if let Some(set) = in_use.get_mut(&c) {
            set.remove(&name);
        }
    }
    let status = p.status.clone().unwrap_or_default();
    let running = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    if !live || !running {
        return;
    }
    let claims: Vec<String> = p
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .filter(|c| c.starts_with("data-"))
        .collect();
    for c in &claims {
        let set = in_use.entry(c.clone()).or_default();
        set.insert(name.clone());
        if set.len() > 1 {
            let v = format!(
                "at {} ms pods {:?} ran on claim {c} at once",
                timeline.now_ms(),
                set
            );
            timeline.record("violation", v.clone());
            if let Ok(mut s) = store.lock() {
                s.violations.push(v);
            }
        }
    }
    pod_claims.insert(name, claims);
}

/// Timeline events for what changed between two samples.
fn narrate(t: &Timeline, old: Option<&Sample>, new: &Sample) {
    let o = old.map(|s| s.status.clone()).unwrap_or_default();
    let n = &new.status;
    if o.phase != n.phase {
        t.record(
            "phase",
            format!(
                "phase {} -> {}",
                o.phase.map(|p| p.to_string()).unwrap_or("-".into()),
                n.phase.map(|p| p.to_string()).unwrap_or("-".into())
            ),
        );
    }
    for m in Member::ALL {
        let (om, nm) = (member(&o, m), member(n, m));
        if om.failing_since.is_none() && nm.failing_since.is_some() {
            t.record(
                "failing_detected",
                format!("{m} failing (failingSince set)"),
            );
        }
        if om.message != nm.message {
            if let Some(msg) = &nm.message {
                t.record("member_message", format!("{m}: {msg}"));
            }
        }
        if !om.fenced && nm.fenced {
            t.record("fenced", format!("{m} fenced"));
        }
        if om.fenced && !nm.fenced {
            t.record("unfenced", format!("{m} no longer fenced"));
        }
        if !om.stale && nm.stale {
            t.record("stale", format!("{m} marked stale"));
        }
        if om.stale && !nm.stale {
            t.record("realigned", format!("{m} no longer stale"));
        }
        if om.role != nm.role {
            if let Some(r) = nm.role {
                if old.is_some() && format!("{r:?}") == "Primary" {
                    t.record("promoted", format!("{m} is a primary"));
                }
            }
        }
    }
    if o.active_member != n.active_member {
        let kind = if o.active_member == Some(Member::Secondary)
            && n.active_member == Some(Member::Primary)
        {
            "failback"
        } else {
            "active_changed"
        };
        t.record(
            kind,
            format!(
                "active member {} -> {}",
                opt(o.active_member),
                opt(n.active_member)
            ),
        );
    }
    let kind_of = |s: &ReceiptDbPairStatus| s.operation.as_ref().map(|op| (op.kind, op.member));
    if kind_of(&o) != kind_of(n) {
        if let Some(op) = &n.operation {
            let kind = match op.kind {
                OperationKind::Rejoin => "rejoin_started",
                OperationKind::Sync => "sync_started",
                OperationKind::Failover => "failover_started",
                OperationKind::Switchover => "switchover_started",
                OperationKind::Restore => "restore_started",
                OperationKind::Clone => "clone_started",
                _ => "operation_started",
            };
            t.record(
                kind,
                format!("{:?} of {}: {}", op.kind, op.member, op.reason),
            );
        }
    }
    if o.operation != n.operation {
        match &n.operation {
            Some(op) => t.record(
                "operation",
                format!(
                    "{:?} of {} at step {:?}: {}",
                    op.kind, op.member, op.step, op.reason
                ),
            ),
            None => t.record("operation", "operation finished".to_string()),
        };
    }
    if o.synchronous_standby != n.synchronous_standby {
        t.record(
            "synchronous_standby",
            format!(
                "synchronous standby {} -> {}",
                opt(o.synchronous_standby),
                opt(n.synchronous_standby)
            ),
        );
    }
    for c in &n.conditions {
        let before = o.conditions.iter().find(|x| x.type_ == c.type_);
        if before.map(|b| &b.status) != Some(&c.status) {
            let kind = match (c.type_.as_str(), c.status.as_str()) {
                ("InSync", "True") => "in_sync".to_string(),
                ("InSync", _) => "out_of_sync".to_string(),
                (ty, st) => format!("condition_{}_{}", ty.to_lowercase(), st.to_lowercase()),
            };
            t.record(&kind, format!("{}={} ({})", c.type_, c.status, c.message));
        }
    }
    if o.last_failover != n.last_failover {
        if let Some(f) = &n.last_failover {
            t.record(
                "failover_recorded",
                format!(
                    "failover {} -> {}: {} (detection {} ms, total {} ms, lag {:?})",
                    f.from, f.to, f.reason, f.detection_millis, f.total_millis, f.lag_bytes
                ),
            );
        }
    }
    if o.last_sync != n.last_sync {
        if let Some(s) = &n.last_sync {
            t.record(
                if s.method == "sync" {
                    "sync_finished"
                } else {
                    "rejoin_finished"
                },
                format!(
                    "{} re-aligned by {} (succeeded {}): {}",
                    s.member, s.method, s.succeeded, s.message
                ),
            );
        }
    }
    if o.last_check != n.last_check {
        if let Some(c) = &n.last_check {
            t.record(
                "check_recorded",
                format!(
                    "consistency check ({}) equal={} {:?}",
                    c.method.as_str(),
                    c.equal,
                    c.differing_tables
                ),
            );
        }
    }
    let (os, ns) = (old.and_then(|s| s.selects.clone()), new.selects.clone());
    if os != ns {
        t.record(
            "selector_changed",
            format!(
                "client Service selects {} -> {}",
                os.as_deref().unwrap_or("-"),
                ns.as_deref().unwrap_or("-")
            ),
        );
    }
}

fn member(s: &ReceiptDbPairStatus, m: Member) -> &MemberStatus {
    match m {
        Member::Primary => &s.primary,
        Member::Secondary => &s.secondary,
    }
}

fn opt(m: Option<Member>) -> String {
    m.map(|m| m.to_string()).unwrap_or_else(|| "none".into())
}
