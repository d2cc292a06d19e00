//! The CRD's CEL rules, evaluated locally with kube's CEL interpreter: the same expressions the
//! API server runs at apply time (`x-kubernetes-validations`).

use receiptdb_operator::crd::{ReceiptDbPair, ReceiptDbPairSpec};

fn pair(name: &str, spec: serde_json::Value) -> ReceiptDbPair {
    let spec: ReceiptDbPairSpec = serde_json::from_value(spec).expect("spec parses");
    ReceiptDbPair::new(name, spec)
}

fn rejected_with(result: Result<(), impl std::fmt::Debug>, needle: &str) {
    let err = format!("{:?}", result.expect_err("the rule must reject this"));
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn minimal_and_full_specs_pass() {
    pair("orca", serde_json::json!({}))
        .validate_cel()
        .expect("minimal");
    pair(
        "orca",
        serde_json::json!({
            "replication": {"mode": "external", "synchronous": false},
            "backup": {"schedule": "0 3 * * *", "target": {"pvc": {"claimName": "backups"}}},
            "clientService": {"name": "receipts"}
        }),
    )
    .validate_cel()
    .expect("full");
}

#[test]
fn long_names_are_rejected() {
    rejected_with(
        pair(&"a".repeat(41), serde_json::json!({})).validate_cel(),
        "at most 40",
    );
    pair(&"a".repeat(40), serde_json::json!({}))
        .validate_cel()
        .expect("40 is fine");
}

#[test]
fn synchronous_needs_streaming() {
    let p = pair(
        "orca",
        serde_json::json!({"replication": {"mode": "external", "synchronous": true}}),
    );
    rejected_with(p.validate_cel(), "needs mode: streaming");
}

#[test]
fn backup_schedule_needs_exactly_one_target() {
    let p = pair(
        "orca",
        serde_json::json!({"backup": {"schedule": "0 3 * * *"}}),
    );
    rejected_with(p.validate_cel(), "needs backup.target");
    let both = serde_json::json!({"backup": {"schedule": "0 3 * * *", "target": {
        "pvc": {"claimName": "b"},
        "s3": {"endpoint": "https://s3.example", "bucket": "b", "credentialsSecret": "c"}
    }}});
    rejected_with(
        pair("orca", both).validate_cel(),
        "exactly one of pvc or s3",
    );
}

#[test]
fn replication_mode_is_fixed_after_creation() {
    let old = pair(
        "orca",
        serde_json::json!({"replication": {"mode": "streaming"}}),
    );
    let same = pair(
        "orca",
        serde_json::json!({"replication": {"mode": "streaming", "synchronous": false}}),
    );
    same.validate_cel_update(&old).expect("the same mode");
    let external = pair(
        "orca",
        serde_json::json!({"replication": {"mode": "external"}}),
    );
    rejected_with(
        external.validate_cel_update(&old),
        "replication.mode cannot change after creation",
    );
}

#[test]
fn storage_is_fixed_after_creation() {
    let old = pair("orca", serde_json::json!({"storage": {"size": "10Gi"}}));
    let same = pair("orca", serde_json::json!({"storage": {"size": "10Gi"}}));
    same.validate_cel_update(&old).expect("unchanged storage");
    let grown = pair("orca", serde_json::json!({"storage": {"size": "20Gi"}}));
    rejected_with(
        grown.validate_cel_update(&old),
        "cannot change after creation",
    );
    let classed = pair(
        "orca",
        serde_json::json!({"storage": {"size": "10Gi", "storageClassName": "fast"}}),
    );
    rejected_with(
        classed.validate_cel_update(&old),
        "cannot change after creation",
    );
}

#[test]
fn client_service_name_is_fixed_after_creation() {
    let old = pair("orca", serde_json::json!({}));
    let renamed = pair(
        "orca",
        serde_json::json!({"clientService": {"name": "other"}}),
    );
    rejected_with(
        renamed.validate_cel_update(&old),
        "clientService.name cannot change",
    );
    let typed = pair(
        "orca",
        serde_json::json!({"clientService": {"type": "NodePort"}}),
    );
    typed
        .validate_cel_update(&old)
        .expect("other client Service fields may change");
}

#[test]
fn tls_on_or_off_is_fixed_after_creation() {
    let old = pair("orca", serde_json::json!({}));
    let same = pair(
        "orca",
        serde_json::json!({"tls": {"enabled": true, "serverSecret": "mine"}}),
    );
    same.validate_cel_update(&old)
        .expect("TLS stays on; the server Secret may change");
    let off = pair("orca", serde_json::json!({"tls": {"enabled": false}}));
    rejected_with(
        off.validate_cel_update(&old),
        "tls.enabled cannot change after creation",
    );
    off.validate_cel().expect("a new pair may have TLS off");
}
