//! The pods bound to this node: one watch (field selector `spec.nodeName`), one worker task per
//! pod uid ([`super::worker`]) fed with every new version of its pod, and `None` once the pod
//! is gone from the API.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Agent;

struct Worker {
    tx: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

/// The pod workers of this node.
pub struct Pods {
    agent: Arc<Agent>,
    workers: Mutex<HashMap<String, Worker>>,
    /// Pods whose worker finished (deleted and cleaned up): later events about them (a
    /// finalizer removed after the final delete) start nothing.
    done: Mutex<HashSet<String>>,
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

impl Pods {
    /// No pods yet.
    pub fn new(agent: Arc<Agent>) -> Arc<Self> {
        Arc::new(Self {
            agent,
            workers: Mutex::new(HashMap::new()),
            done: Mutex::new(HashSet::new()),
        })
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        match self.workers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn is_done(&self, id: &str) -> bool {
        match self.done.lock() {
            Ok(d) => d.contains(id),
            Err(p) => p.into_inner().contains(id),
        }
    }

    fn upsert(self: &Arc<Self>, pod: Pod) {
        let id = uid(&pod);
        if self.is_done(&id) {
            return;
        }
        let pod = Arc::new(pod);
        let mut workers = self.workers();
        // A worker that ended without finishing (it panicked) is replaced.
        if let Some(w) = workers.get(&id).filter(|w| !w.task.is_finished()) {
            let _ = w.tx.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let me = self.clone();
        let agent = self.agent.clone();
        let key = id.clone();
        let task = tokio::spawn(async move {
            super::worker::run(agent, rx).await;
            me.finished(&key);
        });
        workers.insert(id, Worker { tx, task });
    }

    fn gone(&self, id: &str) {
        if let Some(w) = self.workers().get(id) {
            let _ = w.tx.send(None);
        }
    }

    fn finished(&self, id: &str) {
        match self.done.lock() {
            Ok(mut d) => d.insert(id.to_string()),
            Err(p) => p.into_inner().insert(id.to_string()),
        };
        self.workers().remove(id);
    }

    /// Watch this node's pods until the watch ends.
    pub async fn watch(self: Arc<Self>) -> Result<()> {
        let api: Api<Pod> = Api::all(self.agent.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.agent.name()));
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let mut listing: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) => self.upsert(p),
                Ok(watcher::Event::Delete(p)) => self.gone(&uid(&p)),
                Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(p)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(uid(&p));
                    }
                    self.upsert(p);
                }
                Ok(watcher::Event::InitDone) => {
                    // Pods deleted while the watch was re-listing.
                    if let Some(l) = listing.take() {
                        let stale: Vec<String> = self
                            .workers()
                            .keys()
                            .filter(|k| !l.contains(*k))
                            .cloned()
                            .collect();
                        for k in stale {
                            self.gone(&k);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pod watch"),
            }
        }
        Ok(())
    }

    /// Stop every worker and kill every container of this node at once (agent shutdown).
    pub async fn kill_all(&self) {
        let workers: Vec<Worker> = self.workers().drain().map(|(_, w)| w).collect();
        for w in &workers {
            w.task.abort();
        }
        let node = self.agent.name();
        let _ = tokio::task::spawn_blocking(move || super::cgroup::remove_node(&node)).await;
        for id in self.agent.ipam.reset() {
            crate::net::delete_pod_network(&id);
        }
    }
}
