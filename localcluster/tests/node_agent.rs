//! The node agent, through the real API server, scheduler and controllers of the running local
//! cluster: pods are created with the API and observed through their status, as a kubelet's
//! work is. Every test uses its own namespace. Images are the project's mapped ones
//! (`postgres:15`: a shell, PostgreSQL's programs and the host's Python).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use localcluster::testing::{client, phase, ready, wait_pod, TestNamespace};
use serde_json::{json, Value};

const IMAGE: &str = "docker.io/library/postgres:15-bookworm";
const T: Duration = Duration::from_secs(60);

async fn create<K>(c: &Client, ns: &str, v: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let obj: K = serde_json::from_value(v).expect("an object");
    Api::<K>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create")
}

fn container_state(p: &Pod, init: bool) -> Value {
    let s = p.status.clone().unwrap_or_default();
    let list = if init {
        s.init_container_statuses
    } else {
        s.container_statuses
    };
    serde_json::to_value(&list.unwrap_or_default()[0].state).unwrap_or_default()
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map(|c| c.restart_count)
        .unwrap_or(0)
}

#[tokio::test]
async fn init_container_env_from_secret_and_field_and_termination_message() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-env").await;
    let _: Secret = create(
        &c,
        &ns.name,
        json!({
            "metadata": {"name": "creds"},
            "stringData": {"password": "hunter2"},
        }),
    )
    .await;
    let _: Pod = create(&c, &ns.name, json!({
        "metadata": {"name": "p"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
            "initContainers": [{
                "name": "first", "image": IMAGE,
                "command": ["sh", "-c", "echo init-ran > /work/order"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "containers": [{
                "name": "main", "image": IMAGE,
                "command": ["sh", "-c", "printf '%s|%s|%s|%s' \"$(cat /work/order)\" \"$PW\" \"$NODE\" \"$(id -u)\" > /dev/termination-log"],
                "env": [
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                ],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "volumes": [{"name": "work", "emptyDir": {}}],
        },
    }))
    .await;
    let p = wait_pod(&c, &ns.name, "p", T, "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let node = p
        .spec
        .clone()
        .unwrap_or_default()
        .node_name
        .unwrap_or_default();
    assert!(node.starts_with("node-"), "scheduled to a node: {node:?}");
    assert_eq!(container_state(&p, true)["terminated"]["exitCode"], 0);
    let main = container_state(&p, false);
    assert_eq!(main["terminated"]["exitCode"], 0);
    assert_eq!(
        main["terminated"]["message"],
        format!("init-ran|hunter2|{node}|999"),
        "the init container ran first, env came from the Secret and the pod's fields, the pod's user"
    );
}

#[tokio::test]
async fn a_failed_container_reports_its_logs_when_the_policy_says_so() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-fail").await;
    let _: Pod = create(
        &c,
        &ns.name,
        json!({
            "metadata": {"name": "p"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main", "image": IMAGE,
                    "command": ["sh", "-c", "echo 'pg_rewind: fatal: something broke' >&2; exit 3"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }],
            },
        }),
    )
    .await;
    let p = wait_pod(&c, &ns.name, "p", T, "Failed", |p| phase(p) == "Failed").await;
    let t = &container_state(&p, false)["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert!(
        t["message"]
            .as_str()
            .unwrap_or_default()
            .contains("something broke"),
        "{t}"
    );
}

#[tokio::test]
async fn readiness_follows_an_exec_probe() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-ready").await;
    let _: Pod = create(&c, &ns.name, json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{
            "name": "main", "image": IMAGE,
            "command": ["sh", "-c", "sleep 4; touch /tmp/ready; sleep 600"],
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
        }]},
    }))
    .await;
    let running = wait_pod(&c, &ns.name, "p", T, "Running", |p| phase(p) == "Running").await;
    assert!(!ready(&running), "not ready before the file exists");
    let p = wait_pod(&c, &ns.name, "p", T, "Ready", ready).await;
    let status = p.status.unwrap_or_default();
    let started = status.container_statuses.unwrap_or_default()[0]
        .state
        .clone()
        .and_then(|s| s.running)
        .and_then(|r| r.started_at)
        .expect("running since");
    let ready_since = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time)
        .expect("ready since");
    let waited = ready_since.0.duration_since(started.0).as_secs();
    assert!(
        (3..30).contains(&waited),
        "ready only once the probe passed, about 4 s after the start: {waited} s"
    );
}

#[tokio::test]
async fn readiness_by_http_get_and_a_service_reached_by_its_dns_name() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-http").await;
    let _: Pod = create(&c, &ns.name, json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "main", "image": IMAGE,
            "command": ["python3", "-m", "http.server", "8080", "--directory", "/etc"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/hostname", "port": "http"}, "periodSeconds": 1},
        }]},
    }))
    .await;
    let _: Service = create(
        &c,
        &ns.name,
        json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }),
    )
    .await;
    wait_pod(&c, &ns.name, "web", T, "Ready", ready).await;
    // Another pod: the Service's name through CoreDNS, its ClusterIP through kube-proxy, the
    // pod's /etc/hostname (the pod's name) through the web server.
    let _: Pod = create(&c, &ns.name, json!({
        "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": IMAGE,
            // Retried for a while, as a client would: the new Service reaches every node's
            // kube-proxy within its sync period.
            "command": ["python3", "-c", concat!(
                "import time, urllib.request\n",
                "for _ in range(100):\n",
                "    try:\n",
                "        body = urllib.request.urlopen('http://web/hostname', timeout=5).read()\n",
                "        break\n",
                "    except OSError:\n",
                "        time.sleep(0.2)\n",
                "open('/dev/termination-log', 'w').write(body.decode().strip())\n",
            )],
        }]},
    }))
    .await;
    let p = wait_pod(&c, &ns.name, "client", T, "finished", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(
        container_state(&p, false)["terminated"]["message"],
        "web",
        "{:?}",
        p.status
    );
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-live").await;
    let _: Pod = create(&c, &ns.name, json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{
            "name": "main", "image": IMAGE,
            "command": ["sleep", "600"],
            "livenessProbe": {"tcpSocket": {"port": 5999}, "periodSeconds": 1, "failureThreshold": 2},
        }]},
    }))
    .await;
    let p = wait_pod(&c, &ns.name, "p", T, "restarted", |p| restarts(p) >= 1).await;
    let last = serde_json::to_value(
        &p.status
            .unwrap_or_default()
            .container_statuses
            .unwrap_or_default()[0]
            .last_state,
    )
    .unwrap_or_default();
    assert!(
        last["terminated"].is_object(),
        "the killed instance is the last state: {last}"
    );
}

async fn deletion_time(c: &Client, ns: &str, name: &str) -> Duration {
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let start = Instant::now();
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    while api.get_opt(name).await.expect("read").is_some() {
        assert!(start.elapsed() < T, "pod {name} not gone after {T:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn deletion_sends_the_stop_signal_then_kills_after_the_grace_period() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-del").await;
    // The postgres image's stop signal is SIGINT (its STOPSIGNAL): one container leaves on
    // it, one ignores it and is killed when its 3 s grace period ends.
    for (name, trap, grace) in [
        ("polite", "trap 'exit 0' INT", 30),
        ("stubborn", "trap '' INT TERM", 3),
    ] {
        let _: Pod = create(
            &c,
            &ns.name,
            json!({
                "metadata": {"name": name},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [{
                        "name": "main", "image": IMAGE,
                        "command": ["sh", "-c", format!("{trap}; while :; do sleep 0.2; done")],
                    }],
                },
            }),
        )
        .await;
    }
    for name in ["polite", "stubborn"] {
        wait_pod(&c, &ns.name, name, T, "Running", |p| phase(p) == "Running").await;
    }
    let polite = deletion_time(&c, &ns.name, "polite").await;
    assert!(
        polite < Duration::from_secs(10),
        "stopped by its signal: {polite:?}"
    );
    let stubborn = deletion_time(&c, &ns.name, "stubborn").await;
    assert!(
        stubborn >= Duration::from_secs(3) && stubborn < Duration::from_secs(15),
        "killed once the grace period ended: {stubborn:?}"
    );
}

#[tokio::test]
async fn a_claim_gets_a_volume_on_its_node_that_outlives_the_pod() {
    let c = client().await;
    let ns = TestNamespace::new(&c, "agent-pvc").await;
    let _: PersistentVolumeClaim = create(&c, &ns.name, json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .await;
    let pod = |name: &str, cmd: &str| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsUser": 999, "fsGroup": 999},
                "containers": [{
                    "name": "main", "image": IMAGE,
                    "command": ["sh", "-c", cmd],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        })
    };
    let _: Pod = create(
        &c,
        &ns.name,
        pod("writer", "echo kept > /var/lib/postgresql/data/f"),
    )
    .await;
    let w = wait_pod(&c, &ns.name, "writer", T, "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let _: Pod = create(
        &c,
        &ns.name,
        pod(
            "reader",
            "cat /var/lib/postgresql/data/f > /dev/termination-log",
        ),
    )
    .await;
    let r = wait_pod(&c, &ns.name, "reader", T, "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(
        container_state(&r, false)["terminated"]["message"],
        "kept\n"
    );
    let node = |p: &Pod| p.spec.clone().unwrap_or_default().node_name;
    assert_eq!(
        node(&w),
        node(&r),
        "the volume pins the claim's pods to its node"
    );
    let claim = Api::<PersistentVolumeClaim>::namespaced(c.clone(), &ns.name)
        .get("data")
        .await
        .expect("the claim");
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
}
