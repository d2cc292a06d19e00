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
    let to_json = |s: &ReceiptDbPairStatus| {
        serde_json::to_value(s).map_err(|source| Error::Json {
            what: "serializing status".into(),
            source,
        })
    };
    let mut new = to_json(status)?;
    null_removed(&to_json(&current)?, &mut new);
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

/// Mark fields that `old` has and `new` lacks as explicit nulls. Server-side apply already
/// drops fields this manager stops applying; explicit nulls say the same to API
/// implementations that treat an apply body as a merge patch (the in-memory test API), so a
/// finished `operation` or a cleared `message` never lingers in status.
pub fn null_removed(old: &serde_json::Value, new: &mut serde_json::Value) {
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object_mut()) {
        for (k, ov) in o {
            match n.get_mut(k) {
                None => {
                    n.insert(k.clone(), serde_json::Value::Null);
                }
                Some(nv) => null_removed(ov, nv),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removed_fields_become_nulls() {
        let old = json!({"operation": {"kind": "Initdb"}, "primary": {"ready": true, "message": "x"}, "conditions": [1]});
        let mut new = json!({"primary": {"ready": false}, "conditions": []});
        null_removed(&old, &mut new);
        assert_eq!(
            new,
            json!({"operation": null, "primary": {"ready": false, "message": null}, "conditions": []})
        );
    }
}
