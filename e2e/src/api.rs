//! The in-memory API server: a kube-fake-client `kube::Client` with the ReceiptDbPair resource
//! registered and status subresources for the kinds whose status someone other than the writer
//! of the spec maintains (as a real API server would). One client, cloned, is shared by the
//! controller, the node shim, the proxy and the scenario itself.
//!
//! What it lacks compared with a real API server: watches (everything here polls), set-based
//! label selectors (use equality selectors), admission (CEL rules are not evaluated), and
//! `deletionTimestamp` grace (objects disappear at once; dependents are deleted by
//! ownerReference cascade).

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use receiptdb_operator::crd::ReceiptDbPair;

/// The namespace scenarios run in.
pub const NAMESPACE: &str = "receipts";

/// A fresh in-memory API (namespaces need not be created in it).
pub async fn in_memory_api() -> Result<kube::Client> {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<ReceiptDbPair>()
        .with_status_subresource::<ReceiptDbPair>()
        .with_status_subresource::<StatefulSet>()
        .with_status_subresource::<Job>()
        .with_status_subresource::<Pod>()
        .with_status_subresource::<Service>()
        .build()
        .await
        .context("build the in-memory API (kube-fake-client)")?;
    Ok(client)
}
