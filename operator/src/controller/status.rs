//! Writing status: server-side apply on the status subresource with the operator's field
//! manager, and only when it changed (a write per pass would wake every watcher per pass).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;

use super::context::Context;
use super::error::Error;
use crate::crd::{condition, ReceiptDbPair, ReceiptDbPairStatus};

/// Apply `status` when it differs from the pair's current one. Returns whether it wrote.
pub async fn write_if_changed(
    pair: &ReceiptDbPair,
    status: &ReceiptDbPairStatus,
    ctx: &Context,
) -> Result<bool, Error> {
    let current = pair.status.clone().unwrap_or_default();
    if &current == status {
        return Ok(false);
    }
    let api: Api<ReceiptDbPair> =
        Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    // Fields the operator stops applying (a finished `operation`, a cleared message) are
    // removed by server-side apply itself: this manager owns them and no longer sets them.
    let new = serde_json::to_value(status).map_err(|source| Error::Json {
        what: "serializing status".into(),
        source,
    })?;
    let body = serde_json::json!({
        "apiVersion": "receiptdb.io/v1alpha1",
        "kind": "ReceiptDbPair",
        "status": new,
    });
    api.patch_status(
        &pair.name_any(),
        &PatchParams::apply(&ctx.config.field_manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube("writing status"))?;
    Ok(true)
}

/// `status` with the Ready condition set to False for `reason` and `message`, keeping its
/// transition time when it already said so. Used to surface a reconcile error; decide
/// rewrites Ready on the next successful pass.
pub fn with_not_ready(
    status: &ReceiptDbPairStatus,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> ReceiptDbPairStatus {
    let mut s = status.clone();
    let old = s.conditions.iter().find(|c| c.type_ == condition::READY);
    let transition = match old {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => Time(now),
    };
    s.conditions.retain(|c| c.type_ != condition::READY);
    s.conditions.push(Condition {
        type_: condition::READY.into(),
        status: "False".into(),
        reason: reason.into(),
        message: message.chars().take(1000).collect(),
        observed_generation: generation,
        last_transition_time: transition,
    });
    s
}
