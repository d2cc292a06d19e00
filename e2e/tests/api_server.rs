//! The CRD and the chart on the real API server of the running local cluster: each CEL rule
//! refuses a bad pair with its documented message (server-side apply, dry run), both examples
//! are admitted, and the chart installs and its operator pod becomes ready under the chart's
//! RBAC and makes a pair's objects (Secrets, PodDisruptionBudget).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use localcluster::layout::Layout;
use localcluster::testing::{client, cluster_dir, TestNamespace};
use receiptdb_operator::controller::leader::LEASE_DURATION;
use receiptdb_operator::crd::ReceiptDbPair;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The CRD as the code generates it (the committed files are checked to be the same), applied
/// server-side and established.
async fn with_crd() -> Client {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let c = client().await;
    let crd = receiptdb_operator::crd::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api: Api<CustomResourceDefinition> = Api::all(c.clone());
    api.patch(
        &name,
        &PatchParams::apply("api-server-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the CRD");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let established = api
            .get(&name)
            .await
            .expect("read the CRD")
            .status
            .is_some_and(|s| {
                s.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CRD is not established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pair(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "receiptdb.io/v1alpha1",
        "kind": "ReceiptDbPair",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Server-side apply of `obj`, as `kubectl apply --server-side --dry-run=server` does.
async fn apply(
    c: &Client,
    ns: &str,
    obj: &Value,
    dry_run: bool,
) -> Result<ReceiptDbPair, kube::Error> {
    let api: Api<ReceiptDbPair> = Api::namespaced(c.clone(), ns);
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut pp = PatchParams::apply("api-server-test").force();
    pp.dry_run = dry_run;
    api.patch(&name, &pp, &Patch::Apply(obj)).await
}

fn refused_with(r: Result<ReceiptDbPair, kube::Error>, message: &str) {
    match r {
        Ok(_) => panic!("the API server admitted a pair its rule should refuse ({message})"),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(
                e.message.contains(message),
                "expected {message:?} in {:?}",
                e.message
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn each_cel_rule_refuses_a_bad_pair_with_its_message() {
    let c = with_crd().await;
    let ns = TestNamespace::new(&c, "crd-rules").await;
    let cases = [
        (
            "a".repeat(41),
            json!({}),
            "the pair's name must be at most 40 characters",
        ),
        (
            "orca".into(),
            json!({"replication": {"mode": "external", "synchronous": true}}),
            "synchronous replication needs mode: streaming",
        ),
        (
            "orca".into(),
            json!({"backup": {"schedule": "0 3 * * *"}}),
            "backup.schedule needs backup.target",
        ),
        (
            "orca".into(),
            json!({"backup": {"schedule": "0 3 * * *", "target": {
                "pvc": {"claimName": "b"},
                "s3": {"endpoint": "https://s3.example", "bucket": "b", "credentialsSecret": "c"}}}}),
            "set exactly one of pvc or s3",
        ),
    ];
    for (name, spec, message) in cases {
        refused_with(apply(&c, &ns.name, &pair(&name, spec), true).await, message);
    }
    // The same names and shapes pass when the rule holds.
    apply(&c, &ns.name, &pair(&"a".repeat(40), json!({})), true)
        .await
        .expect("a 40-character name");
}

#[tokio::test]
async fn transition_rules_refuse_changes_after_creation() {
    let c = with_crd().await;
    let ns = TestNamespace::new(&c, "crd-transitions").await;
    let spec = json!({"storage": {"size": "1Gi"}, "clientService": {"name": "receipts"}});
    apply(&c, &ns.name, &pair("orca", spec), false)
        .await
        .expect("create the pair");
    for (spec, message) in [
        (
            json!({"storage": {"size": "2Gi"}, "clientService": {"name": "receipts"}}),
            "storage.size and storage.storageClassName cannot change after creation",
        ),
        (
            json!({"storage": {"size": "1Gi"}, "clientService": {"name": "clinic"}}),
            "clientService.name cannot change",
        ),
        (
            // The mode was defaulted to streaming at creation.
            json!({"storage": {"size": "1Gi"}, "clientService": {"name": "receipts"},
                   "replication": {"mode": "external", "synchronous": false}}),
            "replication.mode cannot change after creation",
        ),
        (
            // Created with the default image, postgres:15-bookworm.
            json!({"storage": {"size": "1Gi"}, "clientService": {"name": "receipts"},
                   "postgres": {"image": "registry.example:5000/library/postgres:16.4-bookworm"}}),
            "the image's PostgreSQL major version",
        ),
    ] {
        refused_with(
            apply(&c, &ns.name, &pair("orca", spec), true).await,
            message,
        );
    }
    apply(&c, &ns.name, &pair("orca", json!({"storage": {"size": "1Gi"}, "clientService": {"name": "receipts"}, "failover": {"delaySeconds": 5}})), true)
        .await
        .expect("other fields may change");
    // The same major version from another registry, a digest alone (nothing to compare), and
    // back to a tag of the same major version: admitted.
    for image in [
        "registry.example:5000/library/postgres:15.8",
        "registry.example/postgres@sha256:4f2a0c8b5e6d7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708",
        "docker.io/library/postgres:15-bookworm",
    ] {
        let spec = json!({"storage": {"size": "1Gi"}, "clientService": {"name": "receipts"},
                          "postgres": {"image": image}});
        apply(&c, &ns.name, &pair("orca", spec), true)
            .await
            .unwrap_or_else(|e| panic!("{image} refused: {e:?}"));
    }
}

#[tokio::test]
async fn both_examples_are_admitted() {
    let c = with_crd().await;
    let ns = TestNamespace::new(&c, "examples").await;
    for file in ["examples/pair.yaml", "examples/pair-full.yaml"] {
        let text = std::fs::read_to_string(repo().join(file)).expect("the example");
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("YAML");
            if v["kind"] != "ReceiptDbPair" {
                continue;
            }
            let admitted = apply(&c, &ns.name, &v, true).await;
            assert!(admitted.is_ok(), "{file} refused: {admitted:?}");
        }
    }
}

#[tokio::test]
async fn the_chart_installs_and_its_operator_runs_under_its_rbac() {
    let c = with_crd().await;
    let ns = TestNamespace::new(&c, "chart").await;
    let kubeconfig = Layout::new(cluster_dir()).admin_kubeconfig();
    let helm = repo().join(".tools/bin/helm");
    let release = format!("chart-{}", &ns.name[ns.name.len() - 6..]);
    let out = Command::new(&helm)
        .env("KUBECONFIG", &kubeconfig)
        .args(["install", &release])
        .arg(repo().join("charts/receiptdb-operator"))
        .args([
            "--namespace",
            &ns.name,
            "--set",
            &format!("watchNamespace={}", ns.name),
        ])
        .args(["--wait", "--timeout", "120s"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=receiptdb-operator"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 2, "the chart's default: two replicas");
    for p in &list.items {
        assert!(localcluster::testing::ready(p), "{:?}", p.status);
        assert_eq!(
            p.spec.clone().unwrap_or_default().service_account_name,
            Some(format!("{release}-receiptdb-operator")),
            "it runs as the chart's ServiceAccount"
        );
    }
    // With watchNamespace, the operator's rights are a Role in that namespace: a pair there is
    // reconciled (its Secrets and Services appear), proving the Role lets it work.
    let p: ReceiptDbPair = serde_json::from_value(pair("orca", json!({}))).expect("pair");
    Api::<ReceiptDbPair>::namespaced(c.clone(), &ns.name)
        .create(&PostParams::default(), &p)
        .await
        .expect("create a pair");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), &ns.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while secrets
        .get_opt("orca-superuser")
        .await
        .expect("read")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator made no Secret in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and its PodDisruptionBudget (policy/poddisruptionbudgets in the Role): no eviction of
    // the member it protects (the active one; no pod before there is one), owned by the pair.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), &ns.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pdb = loop {
        if let Some(pdb) = pdbs.get_opt("orca").await.expect("read") {
            break pdb;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator made no PodDisruptionBudget in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        pdb.spec.clone().and_then(|s| s.max_unavailable),
        Some(IntOrString::Int(0))
    );
    let selector = pdb
        .spec
        .clone()
        .and_then(|s| s.selector?.match_labels)
        .unwrap_or_default();
    assert!(
        selector.contains_key("receiptdb.io/member"),
        "the budget selects one member: {selector:?}"
    );
    let owners = pdb.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].name.as_str()),
        ("ReceiptDbPair", "orca")
    );
    let out = Command::new(&helm)
        .env("KUBECONFIG", &kubeconfig)
        .args(["uninstall", &release, "--namespace", &ns.name, "--wait"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The holder of the operator's Lease, once it is one that `accept`s (pod names).
async fn lease_holder(c: &Client, ns: &str, lease: &str, accept: impl Fn(&str) -> bool) -> String {
    let api: Api<Lease> = Api::namespaced(c.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let holder = api
            .get_opt(lease)
            .await
            .expect("read the Lease")
            .and_then(|l| l.spec?.holder_identity)
            .unwrap_or_default();
        if !holder.is_empty() && accept(&holder) {
            return holder;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no expected replica holds Lease {lease} (holder {holder:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn operator_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=receiptdb-operator"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Deletes `victim` (with `grace` seconds) and returns how long until another operator pod
/// (the other replica, or the Deployment's replacement) holds the Lease, and which.
async fn take_over(
    c: &Client,
    ns: &str,
    lease: &str,
    victim: &str,
    grace: u32,
) -> (Duration, String) {
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let start = tokio::time::Instant::now();
    pods.delete(
        victim,
        &kube::api::DeleteParams {
            grace_period_seconds: Some(grace),
            ..kube::api::DeleteParams::default()
        },
    )
    .await
    .expect("delete the leader's pod");
    let holder = lease_holder(c, ns, lease, |h| h != victim && h.starts_with(lease)).await;
    (start.elapsed(), holder)
}

#[tokio::test]
async fn two_operator_replicas_elect_one_leader_which_alone_writes_and_the_other_takes_over() {
    let c = with_crd().await;
    let ns = TestNamespace::new(&c, "leader").await;
    let kubeconfig = Layout::new(cluster_dir()).admin_kubeconfig();
    let helm = repo().join(".tools/bin/helm");
    let release = format!("ha-{}", &ns.name[ns.name.len() - 6..]);
    let lease = format!("{release}-receiptdb-operator");
    let out = Command::new(&helm)
        .env("KUBECONFIG", &kubeconfig)
        .args(["install", &release])
        .arg(repo().join("charts/receiptdb-operator"))
        .args(["--namespace", &ns.name])
        .args(["--set", &format!("watchNamespace={}", ns.name)])
        .args(["--wait", "--timeout", "120s"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns.name);
    let running = operator_pods(&pods).await;
    assert_eq!(running.len(), 2);
    let nodes: std::collections::BTreeSet<_> = running
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(
        nodes.len(),
        2,
        "the replicas are spread over nodes: {nodes:?}"
    );
    let names: Vec<String> = running
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let leader = lease_holder(&c, &ns.name, &lease, |h| names.iter().any(|n| n == h)).await;

    // Only the leader writes: every Event the operator publishes on a pair names it.
    let p: ReceiptDbPair = serde_json::from_value(pair("orca", json!({}))).expect("pair");
    Api::<ReceiptDbPair>::namespaced(c.clone(), &ns.name)
        .create(&PostParams::default(), &p)
        .await
        .expect("create a pair");
    let events: Api<Event> = Api::namespaced(c.clone(), &ns.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let reporters = loop {
        let reporters: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("list Events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ReceiptDbPair")
            })
            .map(|e| e.reporting_instance.unwrap_or_default())
            // This installation's replicas only (another installation watching every
            // namespace, such as the scenario suite's, may reconcile the pair too).
            .filter(|r| r.starts_with(&format!("{lease}-")))
            .collect();
        if !reporters.is_empty() {
            break reporters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator published no Event on the pair in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reporters.iter().all(|r| *r == leader),
        "Events from {reporters:?}, the leader is {leader}"
    );

    // The leader's pod is deleted (graceful: it releases the Lease), then the next leader's
    // pod is killed (grace 0: the Lease must expire).
    let (took, next) = take_over(&c, &ns.name, &lease, &leader, 30).await;
    eprintln!("graceful deletion of the leader {leader}: {next} leads after {took:?}");
    assert!(took < LEASE_DURATION, "{took:?}");
    let (took, last) = take_over(&c, &ns.name, &lease, &next, 0).await;
    eprintln!("leader {next} killed: {last} leads after {took:?}");
    assert!(took < LEASE_DURATION + Duration::from_secs(3), "{took:?}");

    let out = Command::new(&helm)
        .env("KUBECONFIG", &kubeconfig)
        .args(["uninstall", &release, "--namespace", &ns.name, "--wait"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
