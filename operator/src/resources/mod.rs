//! Pure builders of the objects a pair owns: StatefulSets, Services, Secrets (passwords and
//! TLS), Jobs, the backup CronJob, the PodDisruptionBudget.
//!
//! Each builder is a function of the pair, what `decide` wants and the [`OperatorConfig`], and
//! returns a k8s-openapi object ready for server-side apply (or create, for Jobs and Secrets).
//! Nothing here holds a client or reads the clock, so every object is tested by tables, and
//! nothing secret is ever inside an object except the generated Secret's own data.

pub mod config;
pub mod cronjob;
pub mod jobs;
pub mod labels;
pub mod params;
pub mod pdb;
pub mod pod;
pub mod quantity;
pub mod scheduling;
pub mod secrets;
pub mod services;
pub mod statefulset;
pub mod tls;

pub use config::OperatorConfig;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

use crate::crd::ReceiptDbPair;

/// Where a member's PVC is mounted, in member pods and in the Jobs that write its data.
pub const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// The data directory inside the PVC (a subdirectory, so the volume's root and its
/// `lost+found` are never the data directory).
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// Name of the StatefulSets' volume claim template: PVCs are `data-<pair>-<member>-0`.
pub const DATA_VOLUME: &str = "data";

/// Metadata for an object owned by `pair`: its namespace, the controller owner reference
/// (deleting the pair deletes the object) and labels.
pub(crate) fn owned_meta(
    pair: &ReceiptDbPair,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pair.namespace(),
        labels: Some(labels),
        owner_references: pair.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The name of a member's PVC, as the StatefulSet controller names it.
pub fn data_claim_name(pair: &ReceiptDbPair, member: crate::crd::Member) -> String {
    format!("{DATA_VOLUME}-{}-0", pair.member_name(member))
}

/// `<pair>-<member>.<ns>.svc`: a member's address through its headless Service, reachable even
/// while the member is not ready (`publishNotReadyAddresses`).
pub fn member_host(pair: &ReceiptDbPair, member: crate::crd::Member) -> String {
    format!(
        "{}.{}.svc",
        pair.member_name(member),
        pair.namespace().unwrap_or_else(|| "default".into())
    )
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::crd::{ReceiptDbPair, ReceiptDbPairSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A pair as read from the API server (uid set), with the default spec.
    pub fn pair() -> ReceiptDbPair {
        pair_with(ReceiptDbPairSpec::default())
    }

    pub fn pair_with(spec: ReceiptDbPairSpec) -> ReceiptDbPair {
        ReceiptDbPair {
            metadata: ObjectMeta {
                name: Some("orca".into()),
                namespace: Some("clinic".into()),
                uid: Some("uid-1".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}
