//! Observe: read everything decide needs about one pair, without changing anything. Two steps:
//! [`read`] (I/O: the objects; then the members' probes) and [`assemble`] (pure: decide's input
//! from what was read). [`validate`], part of assemble, finds the spec problems the schema could
//! not catch (a referenced Secret missing, an operator-owned parameter): typed
//! [`SpecProblem`]s, which decide turns into `Ready=False` while touching nothing.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use receiptdb_postgres::member::Secret as Password;

use super::context::{Context, MemberTarget};
use super::error::Error;
use super::tls::{self, TlsObjects};
use crate::crd::{annotation, Member, ReceiptDbPair};
use crate::pair::{
    FinishedBackup, JobKind, JobObservation, JobState, Observation, PodObservation, Reported,
    Requests, SpecProblem, SyncRequest,
};
use crate::resources::secrets::{generated, password_in, password_ref, PasswordRole};
use crate::resources::{labels, member_host, params, services};
use receiptdb_postgres::conn::TlsSettings;

/// What observe found: decide's input plus what act needs to carry out the decision.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// decide's input.
    pub observation: Observation,
    /// The superuser password, when its Secret exists (for SQL on members).
    pub superuser_password: Option<Password>,
    /// Generated password Secrets that do not exist yet (act creates them).
    pub missing_generated: Vec<PasswordRole>,
    /// Attempt numbers of the observed Jobs, parallel to `observation.jobs`.
    pub job_attempts: Vec<u32>,
    /// The pair's TLS Secrets (act keeps them).
    pub tls: TlsObjects,
    /// How SQL on members verifies them (from the pair's CA).
    pub member_tls: TlsSettings,
}

impl Observed {
    /// The next attempt number for a Job of `kind` on `member`.
    pub fn next_attempt(&self, kind: JobKind, member: Member) -> u32 {
        self.observation
            .jobs
            .iter()
            .zip(&self.job_attempts)
            .filter(|(j, _)| j.kind == kind && j.member == member)
            .map(|(_, a)| *a)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Whether a Job of `kind` on `member` is running now.
    pub fn job_running(&self, kind: JobKind, member: Member) -> bool {
        self.observation
            .jobs
            .iter()
            .any(|j| j.kind == kind && j.member == member && j.state == JobState::Running)
    }

    /// The SQL target of a member, when the superuser password is known.
    pub fn target(&self, pair: &ReceiptDbPair, member: Member) -> Option<MemberTarget> {
        let password = self.superuser_password.clone()?;
        Some(MemberTarget {
            member,
            // The member's headless Service (it publishes not-ready addresses).
            host: member_host(pair, member),
            port: u16::try_from(pair.spec.postgres.port).unwrap_or(5432),
            user: pair.spec.postgres.superuser.clone(),
            password,
            tls: self.member_tls.clone(),
        })
    }
}

/// What one pass reads from the API server, before anything is made of it.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Each password's Secret (the referenced or the generated one), when it exists.
    pub secrets: Vec<(PasswordRole, Option<Secret>)>,
    /// Each member StatefulSet's `spec.replicas` (None: no StatefulSet, or unset).
    pub replicas: [Option<i32>; 2],
    /// The pair's pods: members' and Jobs'.
    pub pods: Vec<Pod>,
    /// The client Service, when it exists.
    pub service: Option<Service>,
    /// The pair's Jobs (the operator's and the backup CronJob's).
    pub jobs: Vec<Job>,
    /// The TLS Secrets.
    pub tls: TlsObjects,
    /// Whether each member pod's node is cordoned (None: unknown).
    pub node_cordoned: [Option<bool>; 2],
    /// Each member StatefulSet's `status.updateRevision`, once its controller has observed the
    /// current template (None: unknown, or not observed yet).
    pub update_revision: [Option<String>; 2],
}

/// Observe one pair: read its objects, probe its members, then assemble decide's input.
pub async fn observe(pair: &ReceiptDbPair, ctx: &Context) -> Result<Observed, Error> {
    let objects = read(pair, ctx).await?;
    let mut out = assemble(pair, &objects);
    // Probe every member with a running pod, in parallel, each under the spec's timeout.
    let timeout = Duration::from_secs(u64::from(pair.spec.failover.probe_timeout_seconds.max(1)));
    out.observation.probed_at = Some(ctx.now());
    let probes = Member::ALL.map(|member| {
        let running = member_pod(pair, member, &objects.pods).is_some_and(pod_running);
        let target = running.then(|| out.target(pair, member)).flatten();
        async move {
            match target {
                Some(t) => Some(ctx.members.probe(&t, timeout).await),
                None => None,
            }
        }
    });
    let [p, s]: [Option<Result<_, String>>; 2] =
        join_all(probes).await.try_into().unwrap_or_default();
    out.observation.primary.probe = p;
    out.observation.secondary.probe = s;
    Ok(out)
}

/// Read everything observe needs from the API server (the I/O step).
pub async fn read(pair: &ReceiptDbPair, ctx: &Context) -> Result<Objects, Error> {
    let ns = pair
        .namespace()
        .ok_or_else(|| Error::Spec("the pair has no namespace".into()))?;
    let client = ctx.client.clone();
    let mut objects = Objects::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for role in PasswordRole::ALL {
        let r = password_ref(pair, role);
        let found = secrets
            .get_opt(&r.name)
            .await
            .map_err(Error::kube(format!("reading Secret {}", r.name)))?;
        objects.secrets.push((role, found));
    }
    objects.tls = tls::read(pair, &secrets).await?;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    for (i, member) in Member::ALL.into_iter().enumerate() {
        let found = sts
            .get_opt(&pair.member_name(member))
            .await
            .map_err(Error::kube(format!(
                "reading StatefulSet {}",
                pair.member_name(member)
            )))?;
        objects.replicas[i] = found.as_ref().and_then(|s| s.spec.as_ref()?.replicas);
        objects.update_revision[i] = found.as_ref().and_then(update_revision);
    }
    let selector = ListParams::default().labels(&labels::pair_selector(pair));
    objects.pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&selector)
        .await
        .map_err(Error::kube("listing pods"))?
        .items;
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, member) in Member::ALL.into_iter().enumerate() {
        let node = member_pod(pair, member, &objects.pods)
            .and_then(|p| p.spec.as_ref()?.node_name.clone());
        if let Some(node) = node {
            objects.node_cordoned[i] = node_cordoned(&nodes, &node).await;
        }
    }
    objects.service = Api::<Service>::namespaced(client.clone(), &ns)
        .get_opt(&pair.client_service_name())
        .await
        .map_err(Error::kube("reading the client Service"))?;
    objects.jobs = Api::<Job>::namespaced(client, &ns)
        .list(&selector)
        .await
        .map_err(Error::kube("listing Jobs"))?
        .items;
    Ok(objects)
}

/// The StatefulSet's `updateRevision`, when its controller has seen its current generation.
fn update_revision(s: &StatefulSet) -> Option<String> {
    let st = s.status.as_ref()?;
    (st.observed_generation? >= s.metadata.generation?).then(|| st.update_revision.clone())?
}

/// Whether a Node is cordoned; `None` when it cannot be read. Not an error: the operator then
/// only loses the planned switchover ahead of a drain (the chart grants `get` on nodes).
async fn node_cordoned(nodes: &Api<Node>, name: &str) -> Option<bool> {
    match nodes.get_opt(name).await {
        Ok(n) => n.map(|n| n.spec.and_then(|s| s.unschedulable).unwrap_or(false)),
        Err(e) => {
            tracing::debug!(node = name, error = %e, "cannot read the member's node");
            None
        }
    }
}

/// The spec problems the schema could not catch, given the Secrets that exist (pure).
pub fn validate(
    pair: &ReceiptDbPair,
    secrets: &[(PasswordRole, Option<Secret>)],
) -> Vec<SpecProblem> {
    let mut problems: Vec<SpecProblem> = params::parameters_error(pair)
        .map(SpecProblem::Parameters)
        .into_iter()
        .collect();
    problems.extend(backup_target_error(pair));
    for (role, found) in secrets {
        // Generated Secrets that do not exist yet are created by act.
        if generated(pair, *role) && found.is_none() {
            continue;
        }
        let r = password_ref(pair, *role);
        match found {
            None => problems.push(SpecProblem::SecretMissing {
                name: r.name,
                field: field(*role),
            }),
            Some(s) if password_in(s, &r.key).is_none() => {
                problems.push(SpecProblem::SecretKeyMissing {
                    name: r.name,
                    key: r.key,
                    field: field(*role),
                })
            }
            Some(_) => {}
        }
    }
    problems
}

/// Decide's input from the objects read (pure; the members' probes are added by observe).
pub fn assemble(pair: &ReceiptDbPair, objects: &Objects) -> Observed {
    let mut out = Observed::default();
    for (role, found) in &objects.secrets {
        if found.is_none() && generated(pair, *role) {
            out.missing_generated.push(*role);
        }
        if *role == PasswordRole::Superuser {
            let r = password_ref(pair, *role);
            out.superuser_password = found
                .as_ref()
                .and_then(|s| password_in(s, &r.key))
                .map(Password::new);
        }
    }
    out.tls = objects.tls.clone();
    out.member_tls = tls::client_settings(pair, &objects.tls);
    let mut spec_problems = validate(pair, &objects.secrets);
    spec_problems.extend(tls::validate(pair, &objects.tls));
    let mut obs = Observation {
        generation: pair.metadata.generation.unwrap_or(0),
        spec_problems,
        requests: requests(pair),
        ..Observation::default()
    };
    for (i, member) in Member::ALL.into_iter().enumerate() {
        let m = obs.member_mut(member);
        m.replicas = objects.replicas[i];
        m.pod = member_pod(pair, member, &objects.pods)
            .map(|p| pod_observation(p, objects.update_revision[i].as_deref()));
        m.node_cordoned = objects.node_cordoned[i];
    }
    obs.service_selects = objects.service.as_ref().map(services::selected_member);
    obs.last_backup_job = last_scheduled_backup(&objects.jobs, &objects.pods);
    let mut found: Vec<(JobObservation, u32)> = objects
        .jobs
        .iter()
        .filter_map(|j| job_observation(j, &objects.pods))
        .collect();
    // Newest first, so `Observation::job` finds the latest attempt.
    found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    out.job_attempts = found.iter().map(|(_, a)| *a).collect();
    obs.jobs = found.into_iter().map(|(j, _)| j).collect();
    out.observation = obs;
    out
}

fn field(role: PasswordRole) -> &'static str {
    match role {
        PasswordRole::Superuser => "postgres.superuserSecret",
        PasswordRole::Replication => "postgres.replicationSecret",
    }
}

/// S3 targets are in the schema but the Jobs cannot use them yet: say so instead of creating a
/// backup that goes nowhere.
fn backup_target_error(pair: &ReceiptDbPair) -> Option<SpecProblem> {
    let backup_s3 = pair
        .spec
        .backup
        .target
        .as_ref()
        .is_some_and(|t| t.s3.is_some());
    let restore_s3 = pair
        .spec
        .bootstrap
        .from_backup
        .as_ref()
        .is_some_and(|f| f.location.s3.is_some());
    (backup_s3 || restore_s3).then_some(SpecProblem::S3NotSupported)
}

fn requests(pair: &ReceiptDbPair) -> Requests {
    let a = pair.annotations();
    Requests {
        switchover_to: a
            .get(annotation::SWITCHOVER_TO)
            .map(|v| v.trim().parse::<Member>()),
        sync: a.get(annotation::SYNC).map(|v| match v.trim() {
            "now" => Ok(SyncRequest::Now),
            "force" => Ok(SyncRequest::Force),
            other => Err(format!(
                "{}: unknown value {other:?} (expected now or force)",
                annotation::SYNC
            )),
        }),
    }
}

/// A member's pod: labelled with the member, not a Job pod, preferring `<pair>-<member>-0`.
fn member_pod<'a>(pair: &ReceiptDbPair, member: Member, pods: &'a [Pod]) -> Option<&'a Pod> {
    let want = format!("{}-0", pair.member_name(member));
    let mut first = None;
    for p in pods {
        let l = p.labels();
        if l.get(labels::MEMBER).map(String::as_str) != Some(member.as_str())
            || l.contains_key(labels::JOB)
        {
            continue;
        }
        if p.name_any() == want {
            return Some(p);
        }
        first.get_or_insert(p);
    }
    first
}

fn pod_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod_observation(pod: &Pod, update_revision: Option<&str>) -> PodObservation {
    let status = pod.status.as_ref();
    let revision = pod
        .labels()
        .get("controller-revision-hash")
        .map(String::as_str);
    PodObservation {
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        restarts: status
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum()),
        outdated: matches!((revision, update_revision), (Some(a), Some(b)) if a != b),
    }
}

/// A Job the operator made, with its attempt number; `None` for anything else.
fn job_observation(job: &Job, pods: &[Pod]) -> Option<(JobObservation, u32)> {
    let l = job.labels();
    let kind: JobKind =
        serde_json::from_value(serde_json::Value::String(l.get(labels::JOB)?.clone())).ok()?;
    let member: Member = l.get(labels::MEMBER)?.parse().ok()?;
    let attempt = l
        .get(labels::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let name = job.name_any();
    let state = job_state(job);
    let report = (state != JobState::Running)
        .then(|| termination_report(kind, &name, pods))
        .flatten();
    Some((
        JobObservation {
            kind,
            member,
            name,
            state,
            report,
        },
        attempt,
    ))
}

/// The newest finished Job of the backup CronJob: labelled `backup` and, unlike the Jobs the
/// operator creates itself, with no member (it reaches the active one through the Service).
fn last_scheduled_backup(jobs: &[Job], pods: &[Pod]) -> Option<FinishedBackup> {
    jobs.iter()
        .filter(|j| {
            let l = j.labels();
            l.get(labels::JOB).map(String::as_str) == Some(JobKind::Backup.as_str())
                && !l.contains_key(labels::MEMBER)
        })
        .filter_map(|j| {
            let succeeded = match job_state(j) {
                JobState::Running => return None,
                s => s == JobState::Succeeded,
            };
            let name = j.name_any();
            Some(FinishedBackup {
                finished: finished_at(j)?,
                succeeded,
                report: termination_report(JobKind::Backup, &name, pods),
                name,
            })
        })
        .max_by(|a, b| a.finished.0.cmp(&b.finished.0))
}

/// When a finished Job ended: its completion time, else when its final condition was set, else
/// when it was created.
fn finished_at(job: &Job) -> Option<Time> {
    let st = job.status.as_ref();
    st.and_then(|s| s.completion_time.clone())
        .or_else(|| {
            st.and_then(|s| s.conditions.as_ref())?
                .iter()
                .filter(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")
                .filter_map(|c| c.last_transition_time.clone())
                .max_by(|a, b| a.0.cmp(&b.0))
        })
        .or_else(|| job.metadata.creation_timestamp.clone())
}

/// The label the Job controller puts on a Job's pods.
const K8S_JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// Succeeded or Failed from the Job's conditions (or counts, for API implementations that
/// only fill those in), else Running.
pub fn job_state(job: &Job) -> JobState {
    let Some(st) = job.status.as_ref() else {
        return JobState::Running;
    };
    let cond = |t: &str| {
        st.conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    if cond("Complete") || st.succeeded.unwrap_or(0) > 0 {
        JobState::Succeeded
    } else if cond("Failed") {
        JobState::Failed
    } else {
        JobState::Running
    }
}

/// The entrypoint's report from the termination message of the Job's newest finished pod,
/// parsed into the entrypoint's type; any other message is kept as text (it is the error).
///
/// A Job's pods are found by the operator's own label or, for the CronJob's Jobs whose names
/// the CronJob chooses, by the label the Job controller sets (`batch.kubernetes.io/job-name`).
fn termination_report(kind: JobKind, job_name: &str, pods: &[Pod]) -> Option<Reported> {
    let of_job = |p: &&Pod| {
        let l = p.labels();
        [labels::JOB_NAME, K8S_JOB_NAME]
            .iter()
            .any(|k| l.get(*k).map(String::as_str) == Some(job_name))
    };
    pods.iter()
        .filter(of_job)
        .filter_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .filter_map(|c| c.state.as_ref()?.terminated.clone())
                .next_back()
        })
        .max_by(|a, b| {
            let t = |x: &k8s_openapi::api::core::v1::ContainerStateTerminated| {
                x.finished_at.as_ref().map(|t| t.0)
            };
            t(a).cmp(&t(b))
        })
        .and_then(|t| t.message)
        .map(|m| Reported::parse(kind.entrypoint(), &m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BackupLocation, S3Location, SecretKeyRef};
    use crate::resources::testing::pair;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::ByteString;

    fn secret_with(key: &str, value: &str) -> Secret {
        Secret {
            data: Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Secret::default()
        }
    }

    #[test]
    fn spec_problems_without_any_api() {
        let mut p = pair();
        // Generated Secrets that do not exist yet: no problem, act creates them.
        let none = [
            (PasswordRole::Superuser, None),
            (PasswordRole::Replication, None),
        ];
        assert_eq!(validate(&p, &none), []);
        let out = assemble(
            &p,
            &Objects {
                secrets: none.to_vec(),
                ..Objects::default()
            },
        );
        assert_eq!(out.missing_generated, PasswordRole::ALL);
        assert!(out.superuser_password.is_none());

        // A referenced Secret: missing, then without its key, then present.
        p.spec.postgres.superuser_secret = Some(SecretKeyRef {
            name: "app".into(),
            key: "pw".into(),
        });
        let replication = (
            PasswordRole::Replication,
            Some(secret_with("password", "r")),
        );
        let with = |s: Option<Secret>| [(PasswordRole::Superuser, s), replication.clone()];
        let missing = validate(&p, &with(None));
        assert_eq!(
            missing,
            [SpecProblem::SecretMissing {
                name: "app".into(),
                field: "postgres.superuserSecret"
            }]
        );
        assert!(missing[0].awaits_object());
        assert_eq!(
            validate(&p, &with(Some(secret_with("other", "x")))),
            [SpecProblem::SecretKeyMissing {
                name: "app".into(),
                key: "pw".into(),
                field: "postgres.superuserSecret"
            }]
        );
        assert_eq!(
            validate(&p, &with(Some(secret_with("pw", "")))).len(),
            1,
            "empty"
        );
        let fine = with(Some(secret_with("pw", "s3cret")));
        assert_eq!(validate(&p, &fine), []);
        let out = assemble(
            &p,
            &Objects {
                secrets: fine.to_vec(),
                ..Objects::default()
            },
        );
        assert!(out.superuser_password.is_some() && out.missing_generated.is_empty());

        // Problems of the spec itself, with the Secrets fine.
        p.spec
            .postgres
            .parameters
            .insert("wal_level".into(), "minimal".into());
        p.spec.backup.target = Some(BackupLocation {
            pvc: None,
            s3: Some(S3Location {
                endpoint: "https://s3.example".into(),
                bucket: "b".into(),
                prefix: String::new(),
                region: None,
                credentials_secret: "s3".into(),
            }),
        });
        let problems = validate(&p, &fine);
        assert!(
            matches!(&problems[..], [SpecProblem::Parameters(w), SpecProblem::S3NotSupported] if w.contains("wal_level")),
            "{problems:?}"
        );
        assert!(problems.iter().all(|p| !p.awaits_object()));
        let out = assemble(
            &p,
            &Objects {
                secrets: fine.to_vec(),
                ..Objects::default()
            },
        );
        assert_eq!(out.observation.spec_problems, problems);
    }

    fn job_with(status: Option<JobStatus>) -> Job {
        Job {
            status,
            ..Job::default()
        }
    }

    #[test]
    fn job_states() {
        assert_eq!(job_state(&job_with(None)), JobState::Running);
        let cond = |t: &str| JobStatus {
            conditions: Some(vec![JobCondition {
                type_: t.into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            job_state(&job_with(Some(cond("Complete")))),
            JobState::Succeeded
        );
        assert_eq!(job_state(&job_with(Some(cond("Failed")))), JobState::Failed);
        let counted = JobStatus {
            succeeded: Some(1),
            ..Default::default()
        };
        assert_eq!(job_state(&job_with(Some(counted))), JobState::Succeeded);
        let active = JobStatus {
            active: Some(1),
            failed: Some(1),
            ..Default::default()
        };
        assert_eq!(job_state(&job_with(Some(active))), JobState::Running);
    }

    #[test]
    fn annotations_become_requests() {
        let mut p = crate::resources::testing::pair();
        assert_eq!(requests(&p), Requests::default());
        let a = p.metadata.annotations.get_or_insert_with(Default::default);
        a.insert(annotation::SWITCHOVER_TO.into(), "secondary".into());
        a.insert(annotation::SYNC.into(), "sometime".into());
        let r = requests(&p);
        assert_eq!(r.switchover_to, Some(Ok(Member::Secondary)));
        assert!(matches!(r.sync, Some(Err(_))));
    }
}
