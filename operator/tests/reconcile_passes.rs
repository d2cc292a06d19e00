//! Whole reconcile passes against kube-fake-client's in-memory API, with a fake member client
//! (SQL is tested against real PostgreSQL in the postgres crate). There is no kubelet and no
//! Job controller here: the tests play them, creating member pods and marking Jobs done
//! between passes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as ControllerAction;
use kube::{Client, ResourceExt};
use receiptdb_operator::controller::{
    error_policy, observe::observe, reconcile_once, retry_delay, Context, Error, MemberClient,
    MemberTarget,
};
use receiptdb_operator::crd::{
    condition, BackupLocation, Member, PvcLocation, ReceiptDbPair, ReceiptDbPairSpec, SecretKeyRef,
};
use receiptdb_operator::pair::{
    JobKind, JobState, Reported, ServerProbe, SpecProblem, StandbyObservation,
};
use receiptdb_postgres::job_report::{
    BackupReport, CloneReport, Entrypoint, InitdbReport, JobReport,
};
use receiptdb_postgres::pki;
use serde_json::json;

mod fake_api;

const NS: &str = "clinic";

/// Probes answer from a table the test fills; every other call is recorded.
#[derive(Default)]
struct FakeMembers {
    probes: Mutex<BTreeMap<Member, Result<ServerProbe, String>>>,
    calls: Mutex<Vec<String>>,
}

impl FakeMembers {
    fn set(&self, m: Member, p: Result<ServerProbe, String>) {
        self.probes.lock().unwrap().insert(m, p);
    }
    fn record(&self, what: String) -> BoxFuture<'_, Result<(), String>> {
        self.calls.lock().unwrap().push(what);
        async { Ok(()) }.boxed()
    }
}

impl MemberClient for FakeMembers {
    fn probe<'a>(
        &'a self,
        t: &'a MemberTarget,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<ServerProbe, String>> {
        let r = self
            .probes
            .lock()
            .unwrap()
            .get(&t.member)
            .cloned()
            .unwrap_or_else(|| Err("connection refused".into()));
        async move { r }.boxed()
    }
    fn promote<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        self.record(format!("promote {}", t.member))
    }
    fn fence_writes<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        self.record(format!("fence {}", t.member))
    }
    fn unfence_writes<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        self.record(format!("unfence {}", t.member))
    }
    fn set_synchronous_standby<'a>(
        &'a self,
        t: &'a MemberTarget,
        standby: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.record(format!("sync-standby {} {standby:?}", t.member))
    }
    fn reload_config<'a>(&'a self, t: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>> {
        self.record(format!("reload {}", t.member))
    }
}

fn primary_probe(standby_streaming: bool) -> ServerProbe {
    ServerProbe {
        in_recovery: false,
        lsn: 0x3000000,
        timeline: 1,
        system_identifier: 42,
        standbys: if standby_streaming {
            vec![StandbyObservation {
                application_name: "secondary".into(),
                streaming: true,
                synchronous: true,
                replay_lag_bytes: 0,
            }]
        } else {
            vec![]
        },
        synchronous_standby_names: if standby_streaming {
            "\"secondary\"".into()
        } else {
            String::new()
        },
        ..ServerProbe::default()
    }
}

fn standby_probe() -> ServerProbe {
    ServerProbe {
        in_recovery: true,
        lsn: 0x3000000,
        receive_lsn: Some(0x3000000),
        timeline: 1,
        system_identifier: 42,
        streaming: true,
        ..ServerProbe::default()
    }
}

struct Env {
    client: Client,
    ctx: Arc<Context>,
    members: Arc<FakeMembers>,
}

async fn env_with(spec: ReceiptDbPairSpec, extra: Vec<Secret>) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = fake_api::client(|b| {
        b.with_resource::<ReceiptDbPair>()
            .with_status_subresource::<ReceiptDbPair>()
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for s in extra {
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let mut pair = ReceiptDbPair::new("orca", spec);
    pair.metadata.namespace = Some(NS.into());
    pairs(&client)
        .create(&PostParams::default(), &pair)
        .await
        .unwrap();
    let members = Arc::new(FakeMembers::default());
    let ctx = Arc::new(Context::for_tests(client.clone(), members.clone()));
    Env {
        client,
        ctx,
        members,
    }
}

async fn env() -> Env {
    env_with(ReceiptDbPairSpec::default(), vec![]).await
}

fn pairs(c: &Client) -> Api<ReceiptDbPair> {
    Api::namespaced(c.clone(), NS)
}

impl Env {
    async fn pair(&self) -> ReceiptDbPair {
        pairs(&self.client).get("orca").await.unwrap()
    }

    async fn pass(&self) -> Result<Option<Duration>, Error> {
        reconcile_once(Arc::new(self.pair().await), self.ctx.clone()).await
    }

    async fn sts(&self, m: Member) -> Option<StatefulSet> {
        Api::<StatefulSet>::namespaced(self.client.clone(), NS)
            .get_opt(&format!("orca-{m}"))
            .await
            .unwrap()
    }

    async fn replicas(&self, m: Member) -> Option<i32> {
        self.sts(m).await.and_then(|s| s.spec?.replicas)
    }

    async fn jobs(&self) -> Vec<Job> {
        Api::<Job>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn job_of(&self, kind: JobKind, m: Member) -> Option<Job> {
        self.jobs().await.into_iter().find(|j| {
            let l = j.labels();
            l.get("receiptdb.io/job").map(String::as_str) == Some(kind.as_str())
                && l.get("receiptdb.io/member").map(String::as_str) == Some(m.as_str())
        })
    }

    async fn secret(&self, name: &str) -> Option<Secret> {
        Api::<Secret>::namespaced(self.client.clone(), NS)
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn client_service(&self) -> Option<Service> {
        Api::<Service>::namespaced(self.client.clone(), NS)
            .get_opt("orca")
            .await
            .unwrap()
    }

    /// Play the Job controller: the Job succeeded, its pod left a report.
    async fn finish_job(&self, job: &Job, report: JobReport) {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), NS);
        let status = json!({"status": {"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}});
        jobs.patch(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
        let labels = job
            .spec
            .clone()
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        let pod = format!("{}-x1", job.name_any());
        self.ended_job_pod(&pod, labels, true, "2025-01-01T00:00:00Z", &report)
            .await;
    }

    /// Play the kubelet: a Job's pod that ended, its report in the termination message.
    async fn ended_job_pod(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        ok: bool,
        at: &str,
        report: &JobReport,
    ) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "job", "image": "pg"}]},
            "status": {"phase": if ok { "Succeeded" } else { "Failed" }, "containerStatuses": [{
                "name": "job", "image": "pg", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": if ok { 0 } else { 2 }, "finishedAt": at,
                    "message": report.to_line()}}}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }

    /// Play the StatefulSet controller and kubelet: a running, ready member pod.
    async fn start_member_pod(&self, m: Member) {
        let sts = self.sts(m).await.unwrap();
        let labels = sts.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("orca-{m}-0"), "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "postgres", "image": "pg"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }

    /// Run passes until `done` holds (at most `max`); returns whether it held.
    async fn passes_until<F, Fut>(&self, max: usize, mut done: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..max {
            self.pass().await.unwrap();
            if done().await {
                return true;
            }
        }
        false
    }
}

fn password(s: &Secret) -> Vec<u8> {
    s.data.as_ref().unwrap()["password"].0.clone()
}

/// A pass triggered by an older copy of the pair (a watch cache behind the operator's last
/// status write) decides from the pair as stored, never from that copy's older status.
#[tokio::test]
async fn a_pass_decides_from_the_stored_status_not_from_a_stale_copy() {
    let e = env().await;
    let stale = e.pair().await;
    e.pass().await.unwrap();
    // What an earlier pass remembered: a check record decide carries over unchanged.
    let check = json!({"time": "2026-11-30T10:00:00Z", "method": "checksums", "equal": true,
        "differingTables": [], "message": "the two databases compare equal"});
    pairs(&e.client)
        .patch_status(
            "orca",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastCheck": check}})),
        )
        .await
        .unwrap();
    reconcile_once(Arc::new(stale), e.ctx.clone())
        .await
        .unwrap();
    let status = e.pair().await.status.unwrap();
    assert!(
        status.last_check.is_some(),
        "the stored status survives a pass triggered by an older copy: {status:?}"
    );
}

#[tokio::test]
async fn first_pass_creates_owned_objects_with_owner_references() {
    let e = env().await;
    e.pass().await.unwrap();
    let pair = e.pair().await;
    let uid = pair.uid().expect("the fake API sets uids");
    for m in Member::ALL {
        let sts = e.sts(m).await.expect("StatefulSet");
        let owner = &sts.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (uid.as_str(), Some(true))
        );
        assert_eq!(sts.labels()["receiptdb.io/pair"], "orca");
        assert_eq!(sts.labels()["receiptdb.io/member"], m.as_str());
        let svc = Api::<Service>::namespaced(e.client.clone(), NS)
            .get(&format!("orca-{m}"))
            .await
            .unwrap();
        assert_eq!(
            svc.spec.clone().unwrap().cluster_ip.as_deref(),
            Some("None")
        );
        assert_eq!(svc.metadata.owner_references.unwrap()[0].uid, uid);
    }
    let client = e.client_service().await.expect("client Service");
    let sel = client.spec.unwrap().selector.unwrap();
    assert_eq!(sel.len(), 2);
    assert_eq!(sel["receiptdb.io/pair"], "orca");
    assert!(["primary", "none"].contains(&sel["receiptdb.io/member"].as_str()));
    assert_eq!(client.metadata.owner_references.unwrap()[0].uid, uid);
}

#[tokio::test]
async fn generated_secrets_are_created_once_and_reused() {
    let e = env().await;
    e.pass().await.unwrap();
    let su = e.secret("orca-superuser").await.expect("superuser Secret");
    let repl = e
        .secret("orca-replication")
        .await
        .expect("replication Secret");
    assert!(password(&su).len() >= 32);
    assert_ne!(password(&su), password(&repl));
    e.pass().await.unwrap();
    e.pass().await.unwrap();
    assert_eq!(
        password(&e.secret("orca-superuser").await.unwrap()),
        password(&su)
    );
    assert_eq!(
        password(&e.secret("orca-replication").await.unwrap()),
        password(&repl)
    );
    // Nothing the operator wrote carries the password.
    let needle = String::from_utf8(password(&su)).unwrap();
    for j in e.jobs().await {
        assert!(!serde_json::to_string(&j).unwrap().contains(&needle));
    }
    for m in Member::ALL {
        assert!(!serde_json::to_string(&e.sts(m).await)
            .unwrap()
            .contains(&needle));
    }
    assert!(!serde_json::to_string(&e.pair().await)
        .unwrap()
        .contains(&needle));
}

#[tokio::test]
async fn an_existing_generated_secret_is_kept() {
    let mut s = Secret::default();
    s.metadata.name = Some("orca-superuser".into());
    s.metadata.namespace = Some(NS.into());
    s.data = Some(BTreeMap::from([(
        "password".into(),
        k8s_openapi::ByteString(b"retained-from-an-earlier-pair".to_vec()),
    )]));
    let e = env_with(ReceiptDbPairSpec::default(), vec![s]).await;
    e.pass().await.unwrap();
    let got = e.secret("orca-superuser").await.unwrap();
    assert_eq!(password(&got), b"retained-from-an-earlier-pair");
    assert!(e.secret("orca-replication").await.is_some());
}

/// The bootstrap contract: initdb Job → primary replicas 1 → clone Job → secondary replicas 1
/// → client Service selects primary → Healthy. Depends on `pair::decide`.
#[tokio::test]
async fn bootstrap_runs_jobs_before_replicas() {
    let e = env().await;
    assert!(
        e.passes_until(3, || async {
            e.job_of(JobKind::Initdb, Member::Primary).await.is_some()
        })
        .await,
        "an initdb Job for the primary"
    );
    assert_eq!(
        e.replicas(Member::Primary).await.unwrap_or(0),
        0,
        "no primary before initdb"
    );
    assert_eq!(e.replicas(Member::Secondary).await.unwrap_or(0), 0);
    assert!(e.job_of(JobKind::Clone, Member::Secondary).await.is_none());
    let status = e.pair().await.status.expect("status written");
    assert!(status.phase.is_some(), "{status:?}");

    let initdb = e.job_of(JobKind::Initdb, Member::Primary).await.unwrap();
    e.pass().await.unwrap();
    assert_eq!(e.jobs().await.len(), 1, "a running Job is not duplicated");
    let initialized = InitdbReport {
        ok: true,
        initialized: true,
        ..Default::default()
    };
    e.finish_job(&initdb, initialized.into()).await;
    assert!(
        e.passes_until(3, || async { e.replicas(Member::Primary).await == Some(1) })
            .await,
        "primary scaled up once initdb succeeded"
    );
    assert_eq!(e.replicas(Member::Secondary).await.unwrap_or(0), 0);

    e.start_member_pod(Member::Primary).await;
    e.members.set(Member::Primary, Ok(primary_probe(false)));
    assert!(
        e.passes_until(3, || async {
            e.job_of(JobKind::Clone, Member::Secondary).await.is_some()
        })
        .await,
        "a clone Job for the secondary once the primary serves: {:#?} jobs {:?}",
        e.pair().await.status,
        e.jobs()
            .await
            .iter()
            .map(|j| j.name_any())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        e.replicas(Member::Secondary).await.unwrap_or(0),
        0,
        "no secondary before clone"
    );

    let clone = e.job_of(JobKind::Clone, Member::Secondary).await.unwrap();
    let cloned = CloneReport {
        ok: true,
        timeline: Some(1),
        ..Default::default()
    };
    e.finish_job(&clone, cloned.into()).await;
    assert!(
        e.passes_until(3, || async {
            e.replicas(Member::Secondary).await == Some(1)
        })
        .await,
        "secondary scaled up once clone succeeded"
    );

    e.start_member_pod(Member::Secondary).await;
    e.members.set(Member::Secondary, Ok(standby_probe()));
    e.members.set(Member::Primary, Ok(primary_probe(true)));
    let selects_primary = || async {
        e.client_service()
            .await
            .and_then(|s| s.spec?.selector)
            .and_then(|s| s.get("receiptdb.io/member").cloned())
            == Some("primary".into())
    };
    assert!(
        e.passes_until(4, selects_primary).await,
        "client Service selects the primary"
    );
    let healthy = || async {
        e.pair()
            .await
            .status
            .and_then(|s| s.phase)
            .map(|p| p.to_string())
            == Some("Healthy".into())
    };
    assert!(
        e.passes_until(4, healthy).await,
        "{:?}",
        e.pair().await.status
    );
    let status = e.pair().await.status.unwrap();
    assert_eq!(status.active_member, Some(Member::Primary));
    assert!(status.primary.ready && status.secondary.ready);
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .unwrap();
    assert_eq!(ready.status, "True");
}

#[tokio::test]
async fn a_missing_referenced_secret_is_a_spec_error_that_changes_nothing() {
    let mut spec = ReceiptDbPairSpec::default();
    spec.postgres.superuser_secret = Some(SecretKeyRef {
        name: "not-there".into(),
        key: "password".into(),
    });
    let e = env_with(spec, vec![]).await;
    let obs = observe(&e.pair().await, &e.ctx).await.unwrap();
    assert_eq!(
        obs.observation.spec_problems,
        [SpecProblem::SecretMissing {
            name: "not-there".into(),
            field: "postgres.superuserSecret"
        }]
    );
    assert!(
        obs.observation.spec_problems[0].awaits_object(),
        "looked for again soon"
    );
    e.pass().await.unwrap();
    assert!(
        e.sts(Member::Primary).await.is_none(),
        "nothing created on a spec error"
    );
    assert!(e.jobs().await.is_empty());
    assert!(e.secret("orca-replication").await.is_none());
    let status = e.pair().await.status.expect("status written");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .expect("Ready condition");
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("not-there"), "{}", ready.message);
}

#[tokio::test]
async fn an_operator_owned_parameter_is_a_spec_error() {
    let mut spec = ReceiptDbPairSpec::default();
    spec.postgres
        .parameters
        .insert("wal_level".into(), "minimal".into());
    let e = env_with(spec, vec![]).await;
    let obs = observe(&e.pair().await, &e.ctx).await.unwrap();
    let problems = obs.observation.spec_problems;
    assert!(
        matches!(&problems[..], [SpecProblem::Parameters(why)] if why.contains("wal_level")),
        "{problems:?}"
    );
    assert!(!problems[0].awaits_object());
}

#[tokio::test]
async fn job_reports_come_from_termination_messages() {
    let e = env().await;
    let pair = e.pair().await;
    let job = receiptdb_operator::resources::jobs::job(
        &pair,
        JobKind::Clone,
        Member::Secondary,
        1,
        &e.ctx.config,
    );
    Api::<Job>::namespaced(e.client.clone(), NS)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let obs = observe(&pair, &e.ctx).await.unwrap();
    let j = obs
        .observation
        .job(JobKind::Clone, Member::Secondary)
        .unwrap();
    assert_eq!((j.state, j.report.clone()), (JobState::Running, None));
    let cloned = JobReport::Clone(CloneReport {
        ok: true,
        system_identifier: Some("7312345678901234567".into()),
        timeline: Some(3),
        ..Default::default()
    });
    e.finish_job(&job, cloned.clone()).await;
    let obs = observe(&pair, &e.ctx).await.unwrap();
    let j = obs
        .observation
        .job(JobKind::Clone, Member::Secondary)
        .unwrap();
    assert_eq!(j.state, JobState::Succeeded);
    assert_eq!(j.report, Some(Reported::Report(Box::new(cloned))));
    assert_eq!(obs.next_attempt(JobKind::Clone, Member::Secondary), 2);
    assert_eq!(obs.next_attempt(JobKind::Initdb, Member::Primary), 1);
}

/// A Job of the backup CronJob, as the CronJob controller would create it, finished with
/// `report` in its pod's termination message (the pod labelled by the Job controller only).
async fn finished_backup_job(e: &Env, name: &str, at: &str, ok: bool, report: JobReport) {
    let mut spec = ReceiptDbPairSpec::default();
    spec.backup.schedule = Some("0 3 * * *".into());
    spec.backup.target = Some(BackupLocation {
        pvc: Some(PvcLocation {
            claim_name: "backups".into(),
            path: "nightly".into(),
        }),
        s3: None,
    });
    let mut pair = e.pair().await;
    pair.spec = spec;
    let cron = receiptdb_operator::resources::cronjob::backup_cronjob(&pair, &e.ctx.config)
        .expect("a CronJob for a scheduled PVC backup");
    let template = cron.spec.job_template;
    let job = Job {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: template.metadata.unwrap().labels,
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    let jobs: Api<Job> = Api::namespaced(e.client.clone(), NS);
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let (cond, count) = if ok {
        ("Complete", json!({"succeeded": 1, "completionTime": at}))
    } else {
        ("Failed", json!({"failed": 1}))
    };
    let mut status = json!({"status": count});
    status["status"]["conditions"] =
        json!([{"type": cond, "status": "True", "lastTransitionTime": at}]);
    jobs.patch(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let mut labels = template
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    labels.insert("batch.kubernetes.io/job-name".into(), name.into());
    e.ended_job_pod(&format!("{name}-x1"), labels, ok, at, &report)
        .await;
}

#[tokio::test]
async fn scheduled_backups_become_last_backup_and_its_condition() {
    let e = env().await;
    e.pass().await.unwrap();
    let report = JobReport::Backup(BackupReport {
        ok: true,
        output: Some("/backup/nightly/backup-20261121T030000Z.rdb".into()),
        file_bytes: 123456,
        snapshot_lsn: Some("0/3000148".parse().unwrap()),
        encrypted: true,
        duration_ms: 900,
        ..Default::default()
    });
    finished_backup_job(
        &e,
        "orca-backup-29400000",
        "2026-11-21T03:00:05Z",
        true,
        report,
    )
    .await;
    e.pass().await.unwrap();
    let status = e.pair().await.status.unwrap();
    let b = status.last_backup.clone().expect("lastBackup recorded");
    assert!(b.succeeded);
    assert_eq!(
        b.file.as_deref(),
        Some("/backup/nightly/backup-20261121T030000Z.rdb")
    );
    assert_eq!(b.size_bytes, Some(123456));
    assert_eq!(b.time.0.to_string(), "2026-11-21T03:00:05Z");
    assert!(
        b.message.contains("LSN 0/3000148") && b.message.contains(", encrypted"),
        "{}",
        b.message
    );
    let cond = |s: &receiptdb_operator::crd::ReceiptDbPairStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == condition::BACKUP_SUCCEEDED)
            .map(|c| c.status.clone())
    };
    assert_eq!(cond(&status).as_deref(), Some("True"));

    // A later failed run: the condition turns False with the Job's error.
    let failure = JobReport::failed(Entrypoint::Backup, "backup failed: cannot connect");
    finished_backup_job(
        &e,
        "orca-backup-29400060",
        "2026-11-22T03:00:02Z",
        false,
        failure,
    )
    .await;
    e.pass().await.unwrap();
    let status = e.pair().await.status.unwrap();
    let b = status.last_backup.clone().unwrap();
    assert!(!b.succeeded);
    assert_eq!((b.file, b.size_bytes), (None, None));
    assert!(b.message.contains("cannot connect"), "{}", b.message);
    assert_eq!(cond(&status).as_deref(), Some("False"));
}

#[tokio::test]
async fn actions_create_jobs_once_clear_annotations_and_call_members() {
    use receiptdb_operator::controller::act::run_actions;
    use receiptdb_operator::pair::Action;
    let e = env().await;
    e.pass().await.unwrap();
    let mut pair = e.pair().await;
    pair.metadata.annotations = Some(BTreeMap::from([(
        "receiptdb.io/switchover-to".to_string(),
        "secondary".to_string(),
    )]));
    let pair = pairs(&e.client)
        .replace("orca", &PostParams::default(), &pair)
        .await
        .unwrap();
    let before = e.jobs().await.len();
    let actions = vec![
        Action::CreateJob {
            kind: JobKind::Check,
            member: Member::Secondary,
        },
        Action::ClearAnnotation {
            key: "receiptdb.io/switchover-to",
        },
        Action::Promote {
            member: Member::Secondary,
        },
        Action::SetSynchronousStandby {
            on: Member::Secondary,
            standby: Some(Member::Primary),
        },
        Action::Event {
            warning: false,
            reason: "Test",
            message: "hello".into(),
        },
    ];
    let obs = observe(&pair, &e.ctx).await.unwrap();
    run_actions(&pair, &actions, &obs, &e.ctx).await.unwrap();
    let obs = observe(&pair, &e.ctx).await.unwrap();
    run_actions(&pair, &actions[..1], &obs, &e.ctx)
        .await
        .unwrap();
    let checks: Vec<_> = e
        .jobs()
        .await
        .into_iter()
        .filter(|j| j.labels().get("receiptdb.io/job").map(String::as_str) == Some("check"))
        .collect();
    assert_eq!(checks.len(), 1, "a running Job is not created twice");
    assert_eq!(checks[0].name_any(), "orca-secondary-check-1");
    assert_eq!(e.jobs().await.len(), before + 1);
    assert!(!e
        .pair()
        .await
        .annotations()
        .contains_key("receiptdb.io/switchover-to"));
    assert_eq!(
        *e.members.calls.lock().unwrap(),
        [
            "promote secondary",
            "sync-standby secondary Some(\"primary\")"
        ]
    );
}

#[tokio::test]
async fn error_policy_waits_on_spec_errors_and_backs_off_otherwise() {
    let e = env().await;
    let pair = Arc::new(e.pair().await);
    let spec = error_policy(pair.clone(), &Error::Spec("bad".into()), e.ctx.clone());
    assert_eq!(spec, ControllerAction::requeue(Duration::from_secs(300)));
    assert_eq!(
        retry_delay(&pair, &Error::Spec("bad".into()), &e.ctx),
        Duration::from_secs(300)
    );
    let transient = || Error::Member {
        action: "promote",
        member: Member::Secondary,
        message: "timeout".into(),
    };
    let first = retry_delay(&pair, &transient(), &e.ctx);
    let mut last = first;
    for _ in 0..5 {
        last = retry_delay(&pair, &transient(), &e.ctx);
    }
    let (a, b) = (first.as_secs_f64(), last.as_secs_f64());
    assert!((0.5..=1.0).contains(&a), "first retry after {a} s");
    assert!((16.0..=32.0).contains(&b), "sixth retry after {b} s");
}

fn text(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

/// TLS is on by default: one pass makes the pair's CA, a server certificate for every name the
/// members are reached by, and the clients' copy of the CA; later passes keep them.
#[tokio::test]
async fn the_first_pass_creates_the_ca_the_server_certificate_and_the_clients_ca() {
    let e = env().await;
    e.pass().await.unwrap();
    let ca = e.secret("orca-tls-ca").await.expect("the CA Secret");
    let server = e.secret("orca-tls").await.expect("the server Secret");
    let client_ca = e.secret("orca-ca").await.expect("the clients' CA Secret");
    let ca_pem = text(&ca, "ca.crt");
    assert!(text(&ca, "ca.key").contains("PRIVATE KEY"));
    assert_eq!(text(&client_ca, "ca.crt"), ca_pem);
    assert_eq!(
        client_ca.data.as_ref().unwrap().len(),
        1,
        "clients get no key"
    );
    assert_eq!(server.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(text(&server, "ca.crt"), ca_pem);
    let cert = text(&server, "tls.crt");
    assert!(pki::signed_by(&cert, &ca_pem));
    let info = pki::inspect(&cert).unwrap();
    for name in [
        "orca.clinic.svc",
        "orca-primary.clinic.svc",
        "orca-secondary.clinic.svc",
    ] {
        assert!(
            info.names.contains(name),
            "{name} missing: {:?}",
            info.names
        );
    }
    let sts = e.sts(Member::Primary).await.unwrap();
    let vols = sts.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    assert!(vols
        .iter()
        .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("orca-tls")));

    e.pass().await.unwrap();
    assert_eq!(text(&e.secret("orca-tls").await.unwrap(), "tls.crt"), cert);
    assert_eq!(
        text(&e.secret("orca-tls-ca").await.unwrap(), "ca.crt"),
        ca_pem
    );
}

/// A certificate within 30 days of expiry is re-issued by the same CA, and the members that
/// answer are asked to reload for a while after (no restart, no failover).
#[tokio::test]
async fn a_certificate_near_expiry_is_reissued_and_the_members_reload() {
    let base = env().await;
    let start = jiff::Timestamp::now();
    let now = Arc::new(Mutex::new(start));
    let clock = now.clone();
    let e = Env {
        ctx: Arc::new(
            Context::for_tests(base.client.clone(), base.members.clone())
                .with_clock(Arc::new(move || *clock.lock().unwrap())),
        ),
        ..base
    };
    let set_time = |secs: i64| {
        *now.lock().unwrap() = jiff::Timestamp::from_second(start.as_second() + secs).unwrap();
    };
    let reloads = |e: &Env| {
        let calls = std::mem::take(&mut *e.members.calls.lock().unwrap());
        calls
            .into_iter()
            .filter(|c| c.starts_with("reload"))
            .collect::<Vec<_>>()
    };
    e.pass().await.unwrap();
    let first = text(&e.secret("orca-tls").await.unwrap(), "tls.crt");
    let ca_pem = text(&e.secret("orca-tls-ca").await.unwrap(), "ca.crt");
    e.start_member_pod(Member::Primary).await;
    e.members.set(Member::Primary, Ok(primary_probe(false)));

    // 400 s after the first issue: outside the reload window, nothing to do.
    set_time(400);
    e.pass().await.unwrap();
    assert_eq!(reloads(&e), Vec::<String>::new());
    assert_eq!(text(&e.secret("orca-tls").await.unwrap(), "tls.crt"), first);

    // 336 days on, 29 days are left: re-issued by the same CA.
    let day = 86_400;
    set_time(336 * day);
    e.pass().await.unwrap();
    let second = text(&e.secret("orca-tls").await.unwrap(), "tls.crt");
    assert_ne!(second, first, "re-issued");
    assert!(pki::signed_by(&second, &ca_pem));
    assert_eq!(
        text(&e.secret("orca-tls-ca").await.unwrap(), "ca.crt"),
        ca_pem
    );

    // The next passes ask the member that answers to reload, until the window ends.
    set_time(336 * day + 10);
    e.pass().await.unwrap();
    assert_eq!(reloads(&e), ["reload primary"]);
    set_time(336 * day + 400);
    e.pass().await.unwrap();
    assert_eq!(reloads(&e), Vec::<String>::new());
    assert_eq!(
        text(&e.secret("orca-tls").await.unwrap(), "tls.crt"),
        second
    );
}

/// A server Secret of the user's own (e.g. renewed by cert-manager): the operator issues
/// nothing, publishes its CA to clients, and asks the members to reload after it changes.
#[tokio::test]
async fn a_user_supplied_certificate_is_used_and_a_renewal_reloads_the_members() {
    let ca = pki::issue_ca("cert-manager CA", std::time::SystemTime::now()).unwrap();
    let leaf = pki::issue_server(
        &ca,
        &["orca.clinic.svc".into()],
        std::time::SystemTime::now(),
    )
    .unwrap();
    let user_secret = |cert: &pki::CertAndKey| -> Secret {
        let bytes = |t: &str| k8s_openapi::ByteString(t.as_bytes().to_vec());
        let mut s = Secret::default();
        s.metadata.name = Some("mine".into());
        s.metadata.namespace = Some(NS.into());
        s.type_ = Some("kubernetes.io/tls".into());
        s.data = Some(BTreeMap::from([
            ("tls.crt".to_string(), bytes(&cert.cert_pem)),
            ("tls.key".to_string(), bytes(&cert.key_pem)),
            ("ca.crt".to_string(), bytes(&ca.cert_pem)),
        ]));
        s
    };
    let mut spec = ReceiptDbPairSpec::default();
    spec.tls.server_secret = Some("mine".into());
    let base = env_with(spec, vec![user_secret(&leaf)]).await;
    let start = jiff::Timestamp::now();
    let now = Arc::new(Mutex::new(start));
    let clock = now.clone();
    let e = Env {
        ctx: Arc::new(
            Context::for_tests(base.client.clone(), base.members.clone())
                .with_clock(Arc::new(move || *clock.lock().unwrap())),
        ),
        ..base
    };
    let reloads = |e: &Env| {
        let calls = std::mem::take(&mut *e.members.calls.lock().unwrap());
        calls
            .into_iter()
            .filter(|c| c.starts_with("reload"))
            .collect::<Vec<_>>()
    };
    e.pass().await.unwrap();
    assert!(e.secret("orca-tls").await.is_none(), "nothing issued");
    assert!(
        e.secret("orca-tls-ca").await.is_none(),
        "no CA of the operator's"
    );
    assert_eq!(
        text(&e.secret("orca-ca").await.unwrap(), "ca.crt"),
        ca.cert_pem
    );
    e.start_member_pod(Member::Primary).await;
    e.members.set(Member::Primary, Ok(primary_probe(false)));
    e.pass().await.unwrap();
    assert_eq!(reloads(&e), Vec::<String>::new(), "nothing changed yet");

    let renewed = pki::issue_server(
        &ca,
        &["orca.clinic.svc".into()],
        std::time::SystemTime::now(),
    )
    .unwrap();
    Api::<Secret>::namespaced(e.client.clone(), NS)
        .replace("mine", &PostParams::default(), &{
            let mut s = user_secret(&renewed);
            s.metadata.resource_version = e.secret("mine").await.unwrap().resource_version();
            s
        })
        .await
        .unwrap();
    *now.lock().unwrap() = jiff::Timestamp::from_second(start.as_second() + 60).unwrap();
    e.pass().await.unwrap();
    assert_eq!(reloads(&e), ["reload primary"]);
    *now.lock().unwrap() = jiff::Timestamp::from_second(start.as_second() + 60 + 400).unwrap();
    e.pass().await.unwrap();
    assert_eq!(reloads(&e), Vec::<String>::new(), "the window ended");
}
