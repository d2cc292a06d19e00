//! Where the members of a pair run, on the real scheduler of the local cluster (three nodes):
//! pods built from the operator's own member pod template (`spec.scheduling` and the generated
//! anti-affinity) land on different nodes, and with a single node to choose from the second
//! one stays Pending with the scheduler's reason, unless the spec only prefers spreading.
//!
//! The pods run a sleep instead of PostgreSQL: what is tested is the scheduler's decision, not
//! the server. "A single node" is made with `spec.scheduling.nodeSelector` (the pass-through)
//! rather than by cordoning nodes, so tests running beside this one on the same cluster keep
//! their three nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, Pod, PodAffinity, PodAffinityTerm, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::Client;
use localcluster::testing::{client, TestNamespace};
use receiptdb_operator::crd::{AntiAffinityMode, Member, ReceiptDbPair, ReceiptDbPairSpec};
use receiptdb_operator::resources::statefulset::statefulset;
use receiptdb_operator::resources::OperatorConfig;

fn pair(name: &str, ns: &str, spec: ReceiptDbPairSpec) -> ReceiptDbPair {
    ReceiptDbPair {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The member's pod as its StatefulSet would make it (labels, affinity, node selector,
/// tolerations, security), with a sleeping container and no volume.
fn member_pod(pair: &ReceiptDbPair, member: Member) -> Pod {
    let tmpl = statefulset(pair, member, 1, &OperatorConfig::default())
        .spec
        .expect("a StatefulSet spec")
        .template;
    let mut spec = tmpl.spec.expect("a pod spec");
    spec.containers = vec![Container {
        name: "postgres".into(),
        image: Some(pair.spec.postgres.image.clone()),
        command: Some(vec!["sleep".into(), "600".into()]),
        ..Container::default()
    }];
    spec.termination_grace_period_seconds = Some(0);
    Pod {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{member}-0",
                pair.metadata.name.as_deref().unwrap_or_default()
            )),
            labels: tmpl.metadata.and_then(|m| m.labels),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Create both member pods of `pair` and wait until the scheduler has decided about each
/// (bound to a node, or marked unschedulable). Returns them as last read.
async fn schedule_both(c: &Client, ns: &str, pair: &ReceiptDbPair) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    for member in Member::ALL {
        pods.create(&PostParams::default(), &member_pod(pair, member))
            .await
            .expect("create a member pod");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut decided = Vec::new();
        for member in Member::ALL {
            let name = member_pod(pair, member).metadata.name.unwrap_or_default();
            let p = pods.get(&name).await.expect("read a member pod");
            if node_of(&p).is_some() || unschedulable(&p).is_some() {
                decided.push(p);
            }
        }
        if decided.len() == 2 {
            return decided;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler decided about {} of 2 pods in 30 s",
            decided.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

/// The scheduler's message when it could not place the pod.
fn unschedulable(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

#[tokio::test]
async fn the_members_of_a_pair_are_scheduled_on_different_nodes() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "topology-spread").await;
    let nodes = Api::<Node>::all(c.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    assert!(
        nodes.items.len() >= 2,
        "the local cluster has several nodes"
    );
    // The scheduler spreads pods over nodes by itself when nothing else counts (its resource
    // scores). So each pair also asks, through the affinity passed through, to be placed
    // *together* (a preferred pod affinity to its own pods, the strongest weight): only the
    // operator's required anti-affinity keeps the members apart then. Several pairs, so that
    // landing apart by chance cannot pass the test.
    for i in 0..4 {
        let name = format!("orca{i}");
        let mut spec = ReceiptDbPairSpec::default();
        spec.scheduling.affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some(BTreeMap::from([(
                                    "receiptdb.io/pair".to_string(),
                                    name.clone(),
                                )])),
                                ..LabelSelector::default()
                            }),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        });
        let p = pair(&name, &ns.name, spec);
        let pods = schedule_both(&c, &ns.name, &p).await;
        let (a, b) = (node_of(&pods[0]), node_of(&pods[1]));
        assert!(a.is_some() && b.is_some(), "both scheduled: {a:?} {b:?}");
        assert_ne!(a, b, "pair orca{i}: both members on one node");
    }
}

#[tokio::test]
async fn with_one_node_to_choose_from_the_second_member_stays_pending() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "topology-one-node").await;
    let nodes = Api::<Node>::all(c.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    let node = nodes
        .items
        .iter()
        .find_map(|n| {
            n.metadata
                .labels
                .as_ref()?
                .get("kubernetes.io/hostname")
                .cloned()
        })
        .expect("nodes carry kubernetes.io/hostname, as a kubelet sets it");

    let mut spec = ReceiptDbPairSpec::default();
    spec.scheduling
        .node_selector
        .insert("kubernetes.io/hostname".into(), node.clone());
    let p = pair("orca", &ns.name, spec.clone());
    let pods = schedule_both(&c, &ns.name, &p).await;
    let placed: Vec<_> = pods.iter().filter_map(node_of).collect();
    assert_eq!(
        placed,
        vec![node.clone()],
        "exactly one member runs, on {node}"
    );
    let pending = pods
        .iter()
        .find(|p| node_of(p).is_none())
        .expect("one member is pending");
    assert_eq!(
        pending.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let why = unschedulable(pending).unwrap_or_default();
    assert!(
        why.contains("anti-affinity"),
        "the scheduler names the anti-affinity: {why}"
    );

    // preferred: the scheduler spreads when it can, and shares the node when it cannot.
    spec.scheduling.anti_affinity = AntiAffinityMode::Preferred;
    let p = pair("lynx", &ns.name, spec);
    let pods = schedule_both(&c, &ns.name, &p).await;
    let placed: Vec<_> = pods.iter().filter_map(node_of).collect();
    assert_eq!(placed, vec![node.clone(), node.clone()], "both on {node}");
}
