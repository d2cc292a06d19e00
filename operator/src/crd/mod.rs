//! The `ReceiptDbPair` custom resource (`receiptdb.io/v1alpha1`), generated into `crds/`.

mod spec;
mod status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use kube::{CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use spec::*;
pub use status::*;

/// One of the two members of a pair. Identities are fixed, as in the runbooks: which one serves
/// clients is the *active* member, recorded in status.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Member {
    Primary,
    Secondary,
}

impl Member {
    /// Both members, primary first.
    pub const ALL: [Member; 2] = [Member::Primary, Member::Secondary];

    /// The other member of the pair.
    pub fn other(self) -> Member {
        match self {
            Member::Primary => Member::Secondary,
            Member::Secondary => Member::Primary,
        }
    }

    /// `primary` or `secondary`: label value, name suffix, application_name.
    pub fn as_str(self) -> &'static str {
        match self {
            Member::Primary => "primary",
            Member::Secondary => "secondary",
        }
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Member {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "primary" => Ok(Member::Primary),
            "secondary" => Ok(Member::Secondary),
            other => Err(format!(
                "unknown member {other:?}: expected primary or secondary"
            )),
        }
    }
}

/// Condition types written in status.
pub mod condition {
    /// The client Service points at a member that serves.
    pub const READY: &str = "Ready";
    /// The standby holds the same data as the active member.
    pub const IN_SYNC: &str = "InSync";
    /// Only one member serves; the pair has no redundancy.
    pub const DEGRADED: &str = "Degraded";
    /// The most recent backup succeeded.
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    /// The most recent consistency check found both databases equal.
    pub const CONSISTENCY_VERIFIED: &str = "ConsistencyVerified";
}

/// One-shot requests by annotation, removed by the operator when done.
pub mod annotation {
    /// `primary` or `secondary`: a planned switchover to that member.
    pub const SWITCHOVER_TO: &str = "receiptdb.io/switchover-to";
    /// `now`: compare and re-align what differs; `force`: re-align everything (`-allsync`).
    pub const SYNC: &str = "receiptdb.io/sync";
}

impl ReceiptDbPair {
    /// Name of the client Service.
    pub fn client_service_name(&self) -> String {
        self.spec
            .client_service
            .name
            .clone()
            .unwrap_or_else(|| self.name_any())
    }

    /// Name of a member's StatefulSet and headless Service: `<pair>-<member>`.
    pub fn member_name(&self, member: Member) -> String {
        format!("{}-{}", self.name_any(), member)
    }
}

/// The CRD, as generated from the types, with two corrections the real API server asked for:
/// - an optional enum's schema lists `null` among its `enum` values beside `nullable`. The API
///   server refuses an explicit null in such a field all the same ("Unsupported value: null":
///   it checks a null against the allowed values), so the list names only what it admits; such
///   a field is unset by leaving it out, and the operator never writes a null;
/// - unsigned integers carry `format: uint32`, which the API server does not know and warns
///   about on every apply (`unrecognized format "uint32"`); a minimum and maximum say it.
pub fn crd() -> apiext::CustomResourceDefinition {
    let mut crd = ReceiptDbPair::crd();
    for v in &mut crd.spec.versions {
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            correct_schema(schema);
        }
    }
    crd
}

fn correct_schema(s: &mut apiext::JSONSchemaProps) {
    if let Some(values) = s.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    if let Some(max) = match s.format.as_deref() {
        Some("uint8") => Some(f64::from(u8::MAX)),
        Some("uint16") => Some(f64::from(u16::MAX)),
        Some("uint32" | "uint") => Some(f64::from(u32::MAX)),
        Some("uint64") => Some(u64::MAX as f64),
        _ => None,
    } {
        s.format = None;
        s.minimum.get_or_insert(0.0);
        s.maximum.get_or_insert(max);
    }
    for p in s.properties.iter_mut().flat_map(|m| m.values_mut()) {
        correct_schema(p);
    }
    if let Some(apiext::JSONSchemaPropsOrArray::Schema(i)) = s.items.as_mut() {
        correct_schema(i);
    }
    if let Some(apiext::JSONSchemaPropsOrBool::Schema(a)) = s.additional_properties.as_mut() {
        correct_schema(a);
    }
    for list in [&mut s.all_of, &mut s.any_of, &mut s.one_of]
        .into_iter()
        .flatten()
    {
        for x in list {
            correct_schema(x);
        }
    }
}

/// The CRD as YAML, exactly as committed under `crds/` and in the chart.
pub fn crd_yaml() -> Result<String, yaml_serde::Error> {
    let body = yaml_serde::to_string(&crd())?;
    Ok(format!(
        "# Generated from operator/src/crd by `receiptdb-operator crd` (scripts/gen-crds).\n\
         # Do not edit: change the Rust types and run scripts/gen-crds.\n{body}"
    ))
}
