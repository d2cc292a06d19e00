//! Pod objects in the API for the processes the shim runs: created with the template's labels
//! and an ownerReference, status patched as the container starts, becomes ready, exits.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// Now, as an API timestamp (seconds precision).
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string())
}

/// What a container is doing, for `containerStatuses`.
#[derive(Debug, Clone)]
pub enum ContainerState {
    Running {
        started: String,
    },
    Waiting {
        reason: String,
    },
    Terminated {
        code: i32,
        reason: String,
        message: String,
    },
}

impl ContainerState {
    fn json(&self) -> Value {
        match self {
            ContainerState::Running { started } => json!({"running": {"startedAt": started}}),
            ContainerState::Waiting { reason } => json!({"waiting": {"reason": reason}}),
            ContainerState::Terminated {
                code,
                reason,
                message,
            } => json!({"terminated": {
                "exitCode": code, "reason": reason, "message": message,
                "finishedAt": now(),
            }}),
        }
    }
}

/// A pod's observable status.
#[derive(Debug, Clone)]
pub struct PodStatus {
    pub phase: &'static str,
    pub ready: bool,
    pub container: String,
    pub image: String,
    pub restarts: i32,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
}

impl PodStatus {
    /// The `status` object.
    pub fn json(&self) -> Value {
        let ready = if self.ready { "True" } else { "False" };
        let t = now();
        json!({
            "phase": self.phase,
            "podIP": crate::mapping::LOOPBACK,
            "hostIP": crate::mapping::LOOPBACK,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": t},
                {"type": "Ready", "status": ready, "lastTransitionTime": t},
            ],
            "containerStatuses": [{
                "name": self.container,
                "image": self.image,
                "imageID": "",
                "ready": self.ready,
                "started": matches!(self.state, ContainerState::Running { .. }),
                "restartCount": self.restarts,
                "state": self.state.json(),
                "lastState": self.last_state.as_ref().map(|s| s.json()).unwrap_or(json!({})),
            }],
        })
    }
}

/// Create a Pod from a template, owned by `owner`. Returns its uid.
pub async fn create(
    pods: &Api<Pod>,
    name: &str,
    template: &PodTemplateSpec,
    extra_labels: BTreeMap<String, String>,
    owner: OwnerReference,
    status: &PodStatus,
) -> Result<String> {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.extend(extra_labels);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            annotations: template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone().map(|mut s| {
            s.node_name = Some("e2e-node".to_string());
            s
        }),
        status: serde_json::from_value(status.json()).ok(),
    };
    // A leftover with the same name (a Pod deleted and recreated quickly) is replaced.
    let _ = pods.delete(name, &DeleteParams::default()).await;
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("create Pod {name}"))?;
    Ok(created.metadata.uid.unwrap_or_default())
}

/// Replace a Pod's status.
pub async fn set_status(pods: &Api<Pod>, name: &str, status: &PodStatus) -> Result<()> {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status.json()})),
    )
    .await
    .with_context(|| format!("update the status of Pod {name}"))?;
    Ok(())
}

/// Delete a Pod (gone already is fine).
pub async fn delete(pods: &Api<Pod>, name: &str) -> Result<()> {
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("delete Pod {name}")),
    }
}

/// An ownerReference to a controller object.
pub fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
