//! The Node object and its heartbeat: a Lease in `kube-node-lease` renewed every 10 s (what
//! the node lifecycle controller watches), the Node's status posted every minute.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::Agent;
use crate::layout::KUBERNETES_VERSION;

/// How long a Lease holds without renewal (a kubelet's default).
const LEASE_SECONDS: i32 = 40;
/// How often the Lease is renewed (a kubelet's default).
const RENEW: Duration = Duration::from_secs(10);
/// How often the Node's status is posted when nothing changed.
const STATUS_EVERY: Duration = Duration::from_secs(60);

fn capacity() -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(4 * 1024 * 1024);
    json!({
        "cpu": cpus.to_string(),
        "memory": format!("{mem_kib}Ki"),
        "pods": "110",
        "ephemeral-storage": "50Gi",
    })
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// When this agent started: the conditions' transition time (they never change while it runs).
static STARTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn node_status(agent: &Agent, now: &str) -> Value {
    let since = STARTED.get_or_init(now_rfc3339).clone();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    json!({
        "capacity": capacity(),
        "allocatable": capacity(),
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "node agent has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "node agent is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": agent.node.ip().to_string()},
            {"type": "Hostname", "address": agent.name()},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": first_line("/etc/machine-id"),
            "systemUUID": agent.name(),
            "bootID": first_line("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": kernel,
            "osImage": "receiptdb localcluster (host processes)",
            "containerRuntimeVersion": concat!("localcluster://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBERNETES_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Create the Node (or take over an existing one), post its status, create its Lease.
pub async fn register(agent: &Agent) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let name = agent.name();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
        },
        "spec": {
            "podCIDR": agent.node.pod_cidr(),
            "podCIDRs": [agent.node.pod_cidr()],
        },
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("create Node {name}")),
    }
    post_status(agent).await?;
    renew_lease(agent).await
}

async fn post_status(agent: &Agent) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let now = now_rfc3339();
    nodes
        .patch_status(
            &agent.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": node_status(agent, &now) })),
        )
        .await
        .context("post the Node's status")?;
    Ok(())
}

async fn renew_lease(agent: &Agent) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), "kube-node-lease");
    let name = agent.name();
    let now = Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string();
    let patch = json!({
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
    });
    match leases
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let node = Api::<Node>::all(agent.client.clone())
                .get(&name)
                .await
                .context("read the Node for its Lease's owner")?;
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Node", "name": name,
                        "uid": node.metadata.uid,
                    }],
                },
                "spec": patch["spec"],
            }))?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .context("create the node Lease")?;
            Ok(())
        }
        Err(e) => Err(e).context("renew the node Lease"),
    }
}

/// Renew the Lease and post the status for as long as the agent runs. Errors are logged and
/// retried (an API server that is away is no reason to stop the node).
pub async fn heartbeat(agent: Arc<Agent>) -> Result<()> {
    let mut since_status = Duration::ZERO;
    loop {
        tokio::time::sleep(RENEW).await;
        if let Err(e) = renew_lease(&agent).await {
            tracing::warn!(error = %format!("{e:#}"), "lease");
        }
        since_status += RENEW;
        if since_status >= STATUS_EVERY {
            since_status = Duration::ZERO;
            if let Err(e) = post_status(&agent).await {
                tracing::warn!(error = %format!("{e:#}"), "node status");
            }
        }
    }
}
