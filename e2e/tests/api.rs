//! What the in-memory API does that the shim relies on.

use e2e::api::{in_memory_api, NAMESPACE};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn deleting_a_job_deletes_its_pods() {
    let client = in_memory_api().await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.unwrap();
    let uid = job.metadata.uid.clone().expect("uid");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "j-0", "namespace": NAMESPACE, "labels": {"job-name": "j"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": uid, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    jobs.delete("j", &DeleteParams::background()).await.unwrap();
    let left = pods.list(&ListParams::default()).await.unwrap().items;
    assert!(
        left.is_empty(),
        "pods left: {:?}",
        left.iter()
            .map(|p| p.metadata.name.clone())
            .collect::<Vec<_>>()
    );
}
