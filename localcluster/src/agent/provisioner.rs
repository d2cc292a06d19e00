//! The default StorageClass's provisioner, one per node (like Rancher's local-path
//! provisioner): the class binds on first consumer, so the scheduler picks the node and
//! annotates the claim (`volume.kubernetes.io/selected-node`); that node's agent makes a
//! directory under `<node>/volumes/` and a `local` PersistentVolume pinned to the node; the
//! PV controller binds them. A released volume of the class's `Delete` policy is removed with
//! its directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;

use super::Agent;
use crate::bootstrap::PROVISIONER;

const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node a volume's directory is on.
const NODE_ANNOTATION: &str = "localcluster.receiptdb.io/node";

enum Item {
    Claim(Box<PersistentVolumeClaim>),
    Volume(Box<PersistentVolume>),
}

/// Watch claims and volumes for as long as the agent runs.
pub async fn run(agent: Arc<Agent>) -> Result<()> {
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(agent.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .map(|r| r.map(|c| Item::Claim(Box::new(c))));
    let volumes = watcher(
        Api::<PersistentVolume>::all(agent.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .map(|r| r.map(|v| Item::Volume(Box::new(v))));
    let mut both = futures::stream::select(claims.boxed(), volumes.boxed());
    while let Some(item) = both.next().await {
        let r = match item {
            Ok(Item::Claim(c)) => provision(&agent, &c).await,
            Ok(Item::Volume(v)) => reclaim(&agent, &v).await,
            Err(e) => {
                tracing::warn!(error = %e, "provisioner watch");
                continue;
            }
        };
        if let Err(e) = r {
            tracing::warn!(error = %format!("{e:#}"), "provisioner");
        }
    }
    Ok(())
}

async fn provision(agent: &Agent, pvc: &PersistentVolumeClaim) -> Result<()> {
    let ann = pvc.annotations();
    let node = agent.name();
    let wanted = ann.get(SELECTED_NODE) == Some(&node)
        && ann.get(STORAGE_PROVISIONER).map(String::as_str) == Some(PROVISIONER)
        && pvc.metadata.deletion_timestamp.is_none()
        && pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_ref())
            .is_none_or(|v| v.is_empty());
    if !wanted {
        return Ok(());
    }
    let spec = pvc.spec.clone().unwrap_or_default();
    let uid = pvc.uid().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let pvs: Api<PersistentVolume> = Api::all(agent.client.clone());
    if pvs.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let class_name = spec.storage_class_name.clone().unwrap_or_default();
    let class = Api::<StorageClass>::all(agent.client.clone())
        .get_opt(&class_name)
        .await?;
    let reclaim = class
        .and_then(|c| c.reclaim_policy)
        .unwrap_or_else(|| "Delete".into());
    let dir = agent.dir.join("volumes").join(&name);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned())
        .map(|q| q.0)
        .unwrap_or_else(|| "1Gi".into());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": BTreeMap::from([
                (PROVISIONED_BY, PROVISIONER.to_string()),
                (NODE_ANNOTATION, node.clone()),
            ]),
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": class_name,
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": pvc.namespace(), "name": pvc.name_any(), "uid": uid,
            },
            "local": {"path": dir.display().to_string()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In", "values": [node],
            }]}]}},
        },
    }))?;
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(volume = %name, claim = %pvc.name_any(), "provisioned");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn reclaim(agent: &Agent, pv: &PersistentVolume) -> Result<()> {
    let ann = pv.annotations();
    let ours = ann.get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER)
        && ann.get(NODE_ANNOTATION) == Some(&agent.name());
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if !(ours && released && delete) || pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = pv.name_any();
    let dir = agent.dir.join("volumes").join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    match Api::<PersistentVolume>::all(agent.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(volume = %name, "deleted");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
