//! For tests that need a real API server: the running local cluster's admin client, throwaway
//! namespaces, and waits. `scripts/test` starts the cluster (or reuses the running one) before
//! the tests; run alone, start it with `scripts/cluster up`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;

use crate::cluster;
use crate::layout::Layout;

/// The running local cluster's state directory; panics with what to do when none runs.
pub fn cluster_dir() -> std::path::PathBuf {
    cluster::running_dir().unwrap_or_else(|| {
        panic!("this test needs the local Kubernetes cluster: start it with `scripts/cluster up` (scripts/test starts it by itself)")
    })
}

/// An admin client of the running local cluster.
pub async fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    cluster::admin_client(&Layout::new(cluster_dir()))
        .await
        .expect("a client for the local cluster")
}

/// A fresh namespace `<prefix>-<random>`, deleted when the guard drops.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Create it.
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let suffix: String = format!(
            "{:x}",
            jiff::Timestamp::now().as_nanosecond() & 0xff_ffff_ffff
        );
        let name = format!("{prefix}-{suffix}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create the test namespace");
        Self {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNamespace {
    /// Delete the namespace (everything in it goes with it). On a thread of its own with its own
    /// client: the test's runtime is ending when this runs.
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = &self.client;
        let deleted = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = cluster::admin_client(&Layout::new(cluster::running_dir()?))
                    .await
                    .ok()?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(_))) {
            eprintln!("could not delete test namespace {}", self.name);
        }
    }
}

/// Wait until pod `name` satisfies `pred` (or panic after `timeout` with its last status).
pub async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Pod) -> bool,
) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let p = api.get_opt(name).await.expect("read the pod");
        if let Some(p) = &p {
            if pred(p) {
                return p.clone();
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "pod {ns}/{name}: not {what} after {timeout:?}; last status: {}",
                p.and_then(|p| p.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                    .unwrap_or_else(|| "(gone)".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's phase.
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod is Ready.
pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
