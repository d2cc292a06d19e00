//! The node agent: a kubelet that runs containers as host processes.
//!
//! One agent per node, in the node's network namespace, with the node's client certificate
//! (`system:node:<name>`, so the API server's Node authorizer and NodeRestriction admission
//! limit it to its own Node, Lease and pods, as they limit a kubelet). It
//! - registers its Node and renews its Lease ([`node`]);
//! - runs the pods the scheduler binds to it ([`pods`], [`worker`]): a network namespace per
//!   pod ([`ipam`], [`crate::net`]), volumes as directories ([`volumes`]), each container as a
//!   process in its own mount namespace and cgroup ([`container`], [`launch`], [`cgroup`]),
//!   env from values, Secrets, ConfigMaps and fields ([`env`]), probes ([`probes`]), restart
//!   with back-off, graceful deletion (`instance`), and the pod's status ([`status`], written
//!   by `pod_api`);
//! - provisions PersistentVolumes for claims placed on it ([`provisioner`]).
//!
//! What a kubelet does that this agent does not: image pulls (images are mapped to local
//! programs, [`images`]), the kubelet API (`kubectl logs` and `exec`: the logs are files under
//! the node's directory), resource limits, service-link environment variables other than the
//! `kubernetes` Service's, PID namespaces. An agent that restarts kills the containers of its
//! predecessor and starts the pods again, as a rebooted node would.

pub mod cgroup;
pub mod container;
pub mod env;
pub mod images;
mod instance;
pub mod ipam;
pub mod launch;
pub mod node;
mod pod_api;
pub mod pods;
pub mod probes;
pub mod provisioner;
pub mod status;
pub mod volumes;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::layout::NodeSlot;

/// How the agent was started.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node: NodeSlot,
    pub kubeconfig: PathBuf,
    pub dir: PathBuf,
    pub images: images::ImageSources,
}

/// What every part of the agent shares.
pub struct Agent {
    pub client: Client,
    pub node: NodeSlot,
    /// The node's directory: `pods/` (per-pod state and logs) and `volumes/` (provisioned).
    pub dir: PathBuf,
    pub images: images::ImageSources,
    pub ipam: ipam::Ipam,
    /// This program, for `container-init`.
    pub program: PathBuf,
    recorder: Recorder,
}

impl Agent {
    /// The node's name.
    pub fn name(&self) -> String {
        self.node.name()
    }

    /// A pod's directory.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.dir.join("pods").join(uid)
    }

    /// Publish an Event about a pod, or one of its containers (as a kubelet does: Started,
    /// Killing, Unhealthy, BackOff, Failed). Failures are logged only.
    pub async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let mut reference: ObjectReference = pod.object_ref(&());
        // Events of different containers are different series.
        reference.field_path = container.map(|c| format!("spec.containers{{{c}}}"));
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, reason, "event not published");
        }
    }
}

/// Run the agent until SIGTERM or SIGINT; then kill every container and leave.
pub async fn run(opts: AgentOptions) -> Result<()> {
    let client = crate::cluster::client_from(&opts.kubeconfig).await?;
    let name = opts.node.name();
    // A previous agent's containers and pod networks: this node starts afresh.
    cgroup::remove_node(&name);
    let ipam = ipam::Ipam::new(opts.node, opts.dir.join("ipam"));
    for uid in ipam.reset() {
        crate::net::delete_pod_network(&uid);
    }
    let pods_dir = opts.dir.join("pods");
    if pods_dir.exists() {
        std::fs::remove_dir_all(&pods_dir)
            .with_context(|| format!("remove {}", pods_dir.display()))?;
    }
    std::fs::create_dir_all(&pods_dir)?;
    let agent = Arc::new(Agent {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubelet".into(),
                instance: Some(name.clone()),
            },
        ),
        client,
        node: opts.node,
        dir: opts.dir.clone(),
        images: opts.images.clone(),
        ipam,
        program: std::env::current_exe().context("locate this program")?,
    });
    node::register(&agent).await?;
    tracing::info!(node = %name, "registered");
    let pods = pods::Pods::new(agent.clone());
    let stop = shutdown_signal();
    tokio::select! {
        r = node::heartbeat(agent.clone()) => r.context("node heartbeat")?,
        r = pods.clone().watch() => r.context("pod watch")?,
        r = provisioner::run(agent.clone()) => r.context("volume provisioner")?,
        () = stop => tracing::info!("stopping: killing every container"),
    }
    pods.kill_all().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
