//! The controller: watches pairs and what they own, and reconciles each pair with observe,
//! decide (the pure [`crate::pair::decide`]), act.
//!
//! - [`context`]: the [`Context`] built once, and the member seam ([`MemberClient`]).
//! - [`observe`], [`act`], [`status`]: the steps that talk to the cluster or the members.
//! - [`reconcile`]: the pipeline; [`reconcile_once`] runs one pass (the reconcile tests' entry).
//! - [`error`]: the error type and the retry policy.
//! - [`leader`]: leader election on a Lease; only the leading replica runs the controller.

pub mod act;
pub mod context;
pub mod error;
pub mod leader;
pub mod observe;
mod postgres_members;
pub mod reconcile;
pub mod status;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Client, ResourceExt};

pub use context::{Context, MemberClient, MemberTarget};
pub use error::{error_policy, retry_delay, Error};
pub use postgres_members::{server_probe, PostgresMembers};
pub use reconcile::{reconcile, reconcile_once};

use crate::crd::ReceiptDbPair;
use crate::resources::labels;

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The pair a labelled object (member pod, Job pod, password Secret) belongs to.
fn pair_of<K: kube::Resource>(obj: K) -> Option<ObjectRef<ReceiptDbPair>> {
    let name = obj.labels().get(labels::PAIR)?.clone();
    let ns = obj.namespace()?;
    Some(ObjectRef::new(&name).within(&ns))
}

/// Run the controller until `shutdown` resolves (then finish the passes in flight).
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let ns = ctx.config.namespace.as_deref();
    let owned =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=receiptdb-operator");
    let by_pair = watcher::Config::default().labels(labels::PAIR);
    Controller::new(
        api::<ReceiptDbPair>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, ns), owned.clone())
    .owns(api::<Service>(&client, ns), owned.clone())
    .owns(api::<Job>(&client, ns), owned.clone())
    .owns(api::<CronJob>(&client, ns), owned)
    // Password Secrets may be unowned (kept with retained volumes): map them by label.
    .watches(api::<Secret>(&client, ns), by_pair.clone(), pair_of)
    .watches(api::<Pod>(&client, ns), by_pair, pair_of)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((obj, _)) => tracing::debug!(pair = %obj, "reconciled"),
            Err(e) => tracing::warn!(error = %e, "controller"),
        }
    })
    .await;
}
