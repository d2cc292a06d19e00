//! The node shim and the proxy against a real PostgreSQL, with hand-made objects (no operator):
//! a Job initialises a volume, a StatefulSet runs the server on it, a crash is restarted after
//! the backoff, a Job on a running member's volume is a violation, scaling to 0 stops it, and
//! the proxy follows the Service's selector.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::api::{in_memory_api, NAMESPACE};
use e2e::clock::Timeline;
use e2e::ports::Ports;
use e2e::proxy::Proxy;
use e2e::shim::{ShimConfig, ShimHandle};
use e2e::workdir::WorkDir;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const PG: &str = "/usr/lib/postgresql/15/bin";

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("receiptdb.io/pair".to_string(), "t".to_string()),
        ("receiptdb.io/member".to_string(), "primary".to_string()),
    ])
}

fn job(name: &str, command: Vec<&str>, claim: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"receiptdb.io/pair": "t", "receiptdb.io/job": name}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "x", "command": command,
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
            }}}
    }))
    .expect("job json")
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn job_done(api: &Api<Job>, name: &str) -> Option<String> {
    let j = api.get(name).await.ok()?;
    j.status?.conditions?.into_iter().find_map(|c| {
        (c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")).then_some(c.type_)
    })
}

async fn pod_ready(pods: &Api<Pod>, name: &str) -> Option<bool> {
    let p = pods.get_opt(name).await.ok()??;
    Some(e2e::proxy::pod_ready(&p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shim_runs_jobs_and_members_and_proxy_follows_the_selector() {
    e2e::procs::install_panic_hook();
    let client = in_memory_api().await.expect("api");
    let work = WorkDir::create("shim-test", false).expect("work dir");
    let ports = Ports::default();
    let timeline = Timeline::new();
    let shim = ShimHandle::start(
        client.clone(),
        ShimConfig {
            namespace: NAMESPACE.into(),
            work: work.path().to_path_buf(),
            ports: ports.clone(),
            operator_bin: "/bin/false".into(),
            pg_bindir: PG.into(),
            poll: Duration::from_millis(50),
            crash_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
            readiness_period: Duration::from_millis(200),
            timeline: timeline.clone(),
        },
    )
    .expect("shim");
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);

    // 1. A Job initialises the member's volume; its report becomes the termination message.
    let initdb = format!("{PG}/initdb");
    jobs.create(
        &PostParams::default(),
        &job(
            "init",
            vec![
                "sh",
                "-c",
                &format!("runuser -u postgres -- {initdb} -D /var/lib/postgresql/data/pgdata --auth=trust -U postgres >/dev/null && echo '{{\"ok\":true}}' > /dev/termination-log"),
            ],
            "data-t-primary-0",
        ),
    )
    .await
    .expect("create job");
    wait_for("initdb job", 60, || async {
        job_done(&jobs, "init").await.is_some()
    })
    .await;
    assert_eq!(job_done(&jobs, "init").await.as_deref(), Some("Complete"));
    let job_pod = pods.get("init-0").await.expect("job pod");
    let msg = job_pod.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap()
        .message;
    assert_eq!(msg.as_deref(), Some("{\"ok\":true}"));

    // 2. A StatefulSet runs the server on that volume; its Pod becomes Ready.
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "t-primary", "namespace": NAMESPACE},
        "spec": {
            "replicas": 1, "serviceName": "t-primary",
            "selector": {"matchLabels": labels()},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}],
            "template": {"metadata": {"labels": labels()}, "spec": {
                "terminationGracePeriodSeconds": 10,
                "containers": [{"name": "postgres", "image": "postgres:15",
                    "command": ["postgres", "-D", "/var/lib/postgresql/data/pgdata",
                                "-c", "port=5432", "-c", "listen_addresses=*", "-c", "restart_after_crash=off"],
                    "ports": [{"containerPort": 5432}],
                    "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", "5432"]}},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]
            }}
        }
    }))
    .unwrap();
    sts_api
        .create(&PostParams::default(), &sts)
        .await
        .expect("create sts");
    wait_for("pod ready", 60, || async {
        pod_ready(&pods, "t-primary-0").await == Some(true)
    })
    .await;
    let port = ports.get("t-primary").expect("member port");
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the member");
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE t(x int)").await.unwrap();
    drop(c);

    // 3. The proxy follows the client Service.
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "t", "namespace": NAMESPACE},
        "spec": {"selector": labels(), "ports": [{"port": 5432}]}
    }))
    .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let proxy = Proxy::start(
        client.clone(),
        NAMESPACE,
        "t",
        ports.clone(),
        timeline.clone(),
        Duration::from_millis(50),
    )
    .await
    .expect("proxy");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            proxy.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect through the proxy");
    tokio::spawn(conn);
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    drop(c);
    svcs.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"receiptdb.io/member": "none"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let r = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            proxy.port
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(
        r.is_err(),
        "a selector matching nothing must refuse clients"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "fail fast");
    let history = proxy.history();
    assert!(history
        .iter()
        .any(|s| s.endpoint.as_deref() == Some("primary")));
    assert_eq!(history.last().unwrap().endpoint, None);

    // 4. A crash: not ready, restarted after the backoff, ready again with a restart counted.
    let pid = shim.crash("t-primary").await.expect("crash");
    assert!(pid > 0);
    wait_for("pod not ready", 10, || async {
        pod_ready(&pods, "t-primary-0").await == Some(false)
    })
    .await;
    wait_for("pod ready after restart", 30, || async {
        pod_ready(&pods, "t-primary-0").await == Some(true)
    })
    .await;
    let p = pods.get("t-primary-0").await.unwrap();
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        1
    );

    // 5. A Job on the running member's volume is a violation, and does not run.
    jobs.create(
        &PostParams::default(),
        &job("bad", vec!["true"], "data-t-primary-0"),
    )
    .await
    .unwrap();
    wait_for("violation", 10, || async { !shim.violations().is_empty() }).await;
    assert!(shim.violations()[0].contains("data-t-primary-0"));

    // 6. Scale to 0: stopped (fast shutdown) and the Pod is gone.
    sts_api
        .patch(
            "t-primary",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    wait_for("pod deleted", 20, || async {
        pods.get_opt("t-primary-0").await.ok().flatten().is_none()
    })
    .await;
    assert!(shim.pids().await.is_empty());
    let kinds: Vec<String> = timeline.events().into_iter().map(|e| e.kind).collect();
    for k in [
        "job_started",
        "job_succeeded",
        "process_started",
        "process_exited",
        "process_stopped",
        "service_switched",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    shim.shutdown().await;
}
