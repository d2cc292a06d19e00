//! What a node writes about a pod: its status while it runs (JSON merge patch on the status
//! subresource, only when it changed), and the final delete once its containers are gone.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::worker::Shared;
use super::Agent;

/// Write the status whenever the record changes (and every 30 s), until told to stop.
pub(super) async fn write_status(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut last: Option<Value> = None;
    loop {
        let stopping = *stop.borrow();
        if let Some(pod) = shared.latest() {
            let status = {
                let mut r = match shared.record.lock() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                r.status(&pod, Timestamp::now())
            };
            if last.as_ref() != Some(&status) {
                match patch_status(&shared.agent, &pod, &status).await {
                    Ok(()) => last = Some(status),
                    Err(e) if e.contains("404") => return,
                    Err(e) => {
                        tracing::warn!(pod = %shared.uid, error = %e, "status");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = shared.changed.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(30)) => {},
            _ = stop.changed() => {},
        }
    }
}

async fn patch_status(agent: &Agent, pod: &Pod, status: &Value) -> Result<(), String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"uid": pod.metadata.uid}, "status": status})),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Delete the pod object for good (grace 0, only this uid): the last step of a deletion, as a
/// kubelet does it once the containers are gone.
pub(super) async fn finalize(agent: &Agent, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "final delete"),
    }
}
