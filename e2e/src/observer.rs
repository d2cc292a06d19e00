//! Watches the pair's status (by polling: the in-memory API has no watch) and turns its changes
//! into timeline events (failing detected, fenced, promoted, rejoined, in sync, failback...),
//! keeping every sample for the verdict. Each sample reads the pair first and the client
//! Service second: the controller writes status only after it has applied the Service, so
//! this order never pairs a new status with an older Service (no false "stale member
//! selected").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::Api;
use receiptdb_operator::crd::{
    Member, MemberStatus, OperationKind, ReceiptDbPair, ReceiptDbPairStatus,
};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::clock::Timeline;
use crate::proxy::MEMBER_LABEL;

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

/// The running observer.
pub struct Observer {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Poll pair `name` and Service `service` every `period`.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        service: &str,
        timeline: Timeline,
        period: Duration,
    ) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
        let pairs: Api<ReceiptDbPair> = Api::namespaced(client.clone(), namespace);
        let services: Api<Service> = Api::namespaced(client, namespace);
        let (name, service) = (name.to_string(), service.to_string());
        let store = samples.clone();
        let events: Api<K8sEvent> = Api::namespaced(pairs.clone().into_client(), namespace);
        let task = tokio::spawn(async move {
            let mut last: Option<Sample> = None;
            let mut seen_events = std::collections::BTreeSet::new();
            loop {
                if let Ok(list) = events.list(&Default::default()).await {
                    for e in list.items {
                        let key = e.metadata.name.clone().unwrap_or_default();
                        if seen_events.insert(key) {
                            timeline.record(
                                "k8s_event",
                                format!(
                                    "{} {}: {}",
                                    e.type_.unwrap_or_default(),
                                    e.reason.unwrap_or_default(),
                                    e.note.unwrap_or_default()
                                ),
                            );
                        }
                    }
                }
                if let Ok(Some(pair)) = pairs.get_opt(&name).await {
                    let selects = services
                        .get_opt(&service)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|s| s.spec?.selector?.get(MEMBER_LABEL).cloned());
                    let sample = Sample {
                        t_ms: timeline.now_ms(),
                        status: pair.status.clone().unwrap_or_default(),
                        selects,
                        annotations: pair.metadata.annotations.clone().unwrap_or_default(),
                    };
                    let changed = last.as_ref().is_none_or(|l| {
                        l.status != sample.status
                            || l.selects != sample.selects
                            || l.annotations != sample.annotations
                    });
                    if changed {
                        narrate(&timeline, last.as_ref(), &sample);
                        if let Ok(mut s) = store.lock() {
                            s.push(sample.clone());
                        }
                        last = Some(sample);
                    }
                }
                tokio::time::sleep(period).await;
            }
        });
        Self { samples, task }
    }

    /// Every distinct sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.samples.lock().ok()?.last().cloned()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
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
                    c.method, c.equal, c.differing_tables
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
