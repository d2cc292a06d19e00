//! A kube-proxy for the client Service: a TCP listener on 127.0.0.1; every new connection goes
//! to the ready member pod the Service's selector picks, read from the API every ~50 ms. A
//! selector that matches no ready pod closes the connection at once, so clients fail fast
//! (the design's "selects nothing" while no member may serve). Established connections are left
//! alone when the selector changes, as with kube-proxy.
//!
//! Every change of the selector and of the endpoint it resolves to is recorded with its time,
//! for the verdict (never two members, never a stale one).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::clock::Timeline;
use crate::ports::Ports;

/// The label naming a member.
pub const MEMBER_LABEL: &str = "receiptdb.io/member";

/// One observed state of the client Service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// When it was first seen (ms since the scenario's start).
    pub t_ms: u64,
    /// The Service's selector (`None`: the Service does not exist).
    pub selector: Option<BTreeMap<String, String>>,
    /// Member pods (any readiness) the selector matches: more than one is a violation.
    pub matched: Vec<String>,
    /// The member receiving new connections (matched and ready).
    pub endpoint: Option<String>,
    /// Its local port.
    #[serde(skip)]
    pub port: Option<u16>,
}

/// The running proxy.
pub struct Proxy {
    /// The listening port on 127.0.0.1.
    pub port: u16,
    history: Arc<Mutex<Vec<Selection>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free loopback port and follow Service `service` in `namespace`. Member pods
    /// are `<statefulset>-0`; their ports come from `ports` by StatefulSet name.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        service: &str,
        ports: Ports,
        timeline: Timeline,
        refresh: Duration,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the client proxy on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let history: Arc<Mutex<Vec<Selection>>> = Arc::new(Mutex::new(Vec::new()));
        let current: Arc<Mutex<Option<u16>>> = Arc::new(Mutex::new(None));
        let follower = {
            let (history, current) = (history.clone(), current.clone());
            let (ns, svc) = (namespace.to_string(), service.to_string());
            tokio::spawn(async move {
                loop {
                    match resolve(&client, &ns, &svc, &ports).await {
                        Ok(sel) => {
                            let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
                            let changed = h.last().is_none_or(|last| {
                                last.selector != sel.selector
                                    || last.matched != sel.matched
                                    || last.endpoint != sel.endpoint
                            });
                            if changed {
                                let t = timeline.now_ms();
                                let s = Selection { t_ms: t, ..sel };
                                let prev = h.last().and_then(|l| l.endpoint.clone());
                                if prev != s.endpoint {
                                    timeline.record(
                                        "service_switched",
                                        format!(
                                            "client Service endpoint: {} -> {}",
                                            prev.as_deref().unwrap_or("none"),
                                            s.endpoint.as_deref().unwrap_or("none")
                                        ),
                                    );
                                }
                                if let Ok(mut c) = current.lock() {
                                    *c = s.port;
                                }
                                h.push(s);
                            }
                        }
                        Err(e) => tracing::debug!("proxy: {e:#}"),
                    }
                    tokio::time::sleep(refresh).await;
                }
            })
        };
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = current.lock().ok().and_then(|c| *c);
                match target {
                    None => drop(inbound),
                    Some(port) => {
                        tokio::spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await
                            {
                                let mut inbound = inbound;
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                }
            }
        });
        Ok(Self {
            port,
            history,
            tasks: vec![follower, acceptor],
        })
    }

    /// Every selection seen, in order.
    pub fn history(&self) -> Vec<Selection> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Read the Service and the pods it selects.
async fn resolve(
    client: &kube::Client,
    ns: &str,
    service: &str,
    ports: &Ports,
) -> Result<Selection> {
    let svc = match Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(service)
        .await?
    {
        Some(s) => s,
        None => {
            return Ok(Selection {
                t_ms: 0,
                selector: None,
                matched: vec![],
                endpoint: None,
                port: None,
            })
        }
    };
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    // A Service without a selector selects nothing through the proxy (it would need manual
    // Endpoints); an empty selector map is the same.
    let matching: Vec<&Pod> = if selector.is_empty() {
        vec![]
    } else {
        pods.iter()
            .filter(|p| {
                let labels = p.labels();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .filter(|p| p.labels().contains_key(MEMBER_LABEL))
            .collect()
    };
    let matched: Vec<String> = matching.iter().map(|p| p.name_any()).collect();
    let ready: Vec<&&Pod> = matching.iter().filter(|p| pod_ready(p)).collect();
    let (endpoint, port) = match ready.as_slice() {
        [one] => {
            let pod = one.name_any();
            let sts = pod.strip_suffix("-0").unwrap_or(&pod).to_string();
            (Some(member_of(one).unwrap_or(pod)), ports.get(&sts))
        }
        // Several ready members: a real kube-proxy would spread connections over them, which
        // is exactly the split brain the verdict rejects; the proxy refuses to pick one.
        _ => (None, None),
    };
    Ok(Selection {
        t_ms: 0,
        selector: Some(selector),
        matched,
        endpoint,
        port,
    })
}

fn member_of(p: &Pod) -> Option<String> {
    p.labels().get(MEMBER_LABEL).cloned()
}

/// The pod's Ready condition.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
