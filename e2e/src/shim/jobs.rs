//! Jobs: each Job's main container runs once as a local process (retried up to the Job's
//! backoffLimit), with a Pod object for it and the Job's status kept like the Job controller
//! does. The report file given as `--report /dev/termination-log` becomes the Pod's
//! termination message. Init containers are skipped: the one the operator's Jobs use only
//! copies the operator binary into the member image, and the mapping points at the built
//! binary directly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::env::{resolve_env, PodFacts};
use super::members::{build_mapping, command_line, push_violation};
use super::pods::{self, ContainerState, PodStatus};
use super::volumes::resolve_mounts;
use super::ShimConfig;
use crate::procs::{Container, Spec};

/// The most a termination message holds.
const MESSAGE_LIMIT: usize = 4096;

struct Run {
    name: String,
    container: Option<Container>,
    pod: String,
    report: std::path::PathBuf,
    log: std::path::PathBuf,
    claims: Vec<String>,
    failures: i32,
    retry_at: Option<Instant>,
    done: bool,
    container_name: String,
    image: String,
}

/// All Jobs.
pub struct Jobs {
    client: kube::Client,
    cfg: ShimConfig,
    runs: BTreeMap<String, Run>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Jobs {
    pub fn new(client: kube::Client, cfg: ShimConfig, violations: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            client,
            cfg,
            runs: BTreeMap::new(),
            violations,
        }
    }

    /// Claims used by running Jobs, with the Job name.
    pub fn claims_in_use(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for r in self.runs.values() {
            if r.container.is_some() {
                for c in &r.claims {
                    out.insert(c.clone(), r.name.clone());
                }
            }
        }
        out
    }

    /// One pass. `member_claims`: claims whose member process runs.
    pub async fn tick(&mut self, member_claims: &BTreeMap<String, String>) -> Result<()> {
        let ns = self.cfg.namespace.clone();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let jobs = jobs_api
            .list(&ListParams::default())
            .await
            .context("list Jobs")?
            .items;
        let mut seen = Vec::new();
        for job in &jobs {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            seen.push(uid.clone());
            if let Err(e) = self
                .reconcile(job, &uid, &jobs_api, &pods_api, member_claims)
                .await
            {
                tracing::warn!("Job {}: {e:#}", job.name_any());
            }
        }
        // Deleted Jobs: kill what still runs.
        let gone: Vec<String> = self
            .runs
            .keys()
            .filter(|u| !seen.contains(u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(mut r) = self.runs.remove(&uid) {
                if let Some(c) = r.container.as_mut() {
                    c.stop(Duration::from_secs(1));
                    c.wait().await;
                    self.cfg
                        .timeline
                        .record("job_killed", format!("{}: deleted while running", r.name));
                }
            }
        }
        Ok(())
    }

    async fn reconcile(
        &mut self,
        job: &Job,
        uid: &str,
        jobs_api: &Api<Job>,
        pods_api: &Api<Pod>,
        member_claims: &BTreeMap<String, String>,
    ) -> Result<()> {
        let name = job.name_any();
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        let Some(run) = self.runs.get_mut(uid) else {
            if finished {
                return Ok(());
            }
            return self
                .start_attempt(job, uid, jobs_api, pods_api, member_claims, 0)
                .await;
        };
        if run.done {
            return Ok(());
        }
        if let Some(exit) = run.container.as_ref().and_then(|c| c.exited()) {
            run.container = None;
            let mut message = std::fs::read_to_string(&run.report).unwrap_or_default();
            message = message.trim().to_string();
            if message.len() > MESSAGE_LIMIT {
                let mut cut = MESSAGE_LIMIT;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            let ok = exit.success();
            let st = PodStatus {
                phase: if ok { "Succeeded" } else { "Failed" },
                ready: false,
                container: run.container_name.clone(),
                image: run.image.clone(),
                restarts: 0,
                state: ContainerState::Terminated {
                    code: exit.k8s_code(),
                    reason: if ok { "Completed" } else { "Error" }.into(),
                    message: message.clone(),
                },
                last_state: None,
            };
            pods::set_status(pods_api, &run.pod, &st).await?;
            let short: String = message.chars().take(300).collect();
            let backoff_limit = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
            if ok {
                run.done = true;
                self.cfg.timeline.record(
                    "job_succeeded",
                    format!("{name}: succeeded; report {short}"),
                );
                patch_job_status(
                    jobs_api,
                    &name,
                    json!({
                        "active": 0, "ready": 0, "succeeded": 1, "failed": run.failures,
                        "completionTime": pods::now(),
                        "conditions": [
                            condition("SuccessCriteriaMet", "CompletionsReached"),
                            condition("Complete", "CompletionsReached"),
                        ],
                    }),
                )
                .await?;
            } else {
                run.failures += 1;
                let log_tail = tail_file(&run.log, 600);
                self.cfg.timeline.record(
                    "job_failed",
                    format!(
                        "{name}: failed ({}); report {short}; log: {log_tail}",
                        exit.k8s_code()
                    ),
                );
                if run.failures > backoff_limit {
                    run.done = true;
                    patch_job_status(
                        jobs_api,
                        &name,
                        json!({
                            "active": 0, "ready": 0, "failed": run.failures,
                            "conditions": [
                                condition("FailureTarget", "BackoffLimitExceeded"),
                                condition("Failed", "BackoffLimitExceeded"),
                            ],
                        }),
                    )
                    .await?;
                } else {
                    run.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    patch_job_status(
                        jobs_api,
                        &name,
                        json!({"active": 0, "ready": 0, "failed": run.failures}),
                    )
                    .await?;
                }
            }
            return Ok(());
        }
        if run.container.is_none() && run.retry_at.is_some_and(|t| Instant::now() >= t) {
            let failures = run.failures;
            return self
                .start_attempt(job, uid, jobs_api, pods_api, member_claims, failures)
                .await;
        }
        // Running: its volumes must not be in use by a member process.
        if run.container.is_some() {
            for c in &run.claims {
                if let Some(sts) = member_claims.get(c) {
                    push_violation(
                        &self.violations,
                        &format!("Job {name} runs on volume {c} while member {sts} runs"),
                    );
                }
            }
        }
        Ok(())
    }

    async fn start_attempt(
        &mut self,
        job: &Job,
        uid: &str,
        jobs_api: &Api<Job>,
        pods_api: &Api<Pod>,
        member_claims: &BTreeMap<String, String>,
        failures: i32,
    ) -> Result<()> {
        let name = job.name_any();
        let ns = self.cfg.namespace.clone();
        let spec = job.spec.as_ref().context("Job without spec")?;
        let template = &spec.template;
        let pod_spec = template
            .spec
            .as_ref()
            .context("Job pod template without spec")?;
        let container = pod_spec
            .containers
            .first()
            .context("Job pod template without containers")?
            .clone();
        let pod_name = format!("{name}-{}", failures);
        let scratch = self.cfg.work.join("jobs").join(&pod_name);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("create {}", scratch.display()))?;
        crate::workdir::set_mode(&scratch, 0o755)?;
        let mut mounts = resolve_mounts(
            &self.client,
            &ns,
            &self.cfg.work,
            pod_spec,
            &container,
            &[],
            &scratch,
        )
        .await?;
        for c in &mounts.claims {
            if let Some(sts) = member_claims.get(c) {
                push_violation(
                    &self.violations,
                    &format!("Job {name} would mount volume {c} while member {sts} runs"),
                );
                return Ok(());
            }
        }
        let report = scratch.join("termination-log");
        std::fs::write(&report, b"").with_context(|| format!("create {}", report.display()))?;
        crate::workdir::set_mode(&report, 0o666)?;
        let message_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".to_string());
        mounts.paths.push((message_path, report.clone()));
        // The port of the member whose volume the Job mounts (its `--port`), else the member
        // its labels name.
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let member_sts = mounts
            .claims
            .iter()
            .find_map(|c| claim_owner(c))
            .or_else(|| {
                let pair = labels.get("receiptdb.io/pair")?;
                let member = labels.get("receiptdb.io/member")?;
                Some(format!("{pair}-{member}"))
            });
        let own_port = match &member_sts {
            Some(s) => Some(self.cfg.ports.port_for(s)?),
            None => None,
        };
        let mut pod_labels = labels.clone();
        pod_labels.insert("job-name".into(), name.clone());
        pod_labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
        pod_labels.insert("controller-uid".into(), uid.to_string());
        pod_labels.insert("batch.kubernetes.io/controller-uid".into(), uid.to_string());
        let env = resolve_env(
            &self.client,
            &container,
            &PodFacts {
                namespace: &ns,
                pod_name: &pod_name,
                labels: &pod_labels,
            },
        )
        .await?;
        let mapping = build_mapping(&self.cfg, &container, own_port, mounts.paths.clone());
        let (program, args) = command_line(&container)?;
        let log = self.cfg.work.join("logs").join(format!("{pod_name}.log"));
        let spec = Spec {
            program: mapping.program(&program),
            args: mapping.args(&args),
            env: mapping.env(&env),
            as_postgres: false,
            log: log.clone(),
            stop_signal: nix::sys::signal::Signal::SIGTERM,
        };
        tracing::debug!(?spec, "starting Job {name}");
        let c = Container::start(&spec).with_context(|| format!("start Job {name}"))?;
        self.cfg.timeline.record(
            "job_started",
            format!("{name}: started pid {} ({})", c.pid, args.join(" ")),
        );
        let status = PodStatus {
            phase: "Running",
            ready: true,
            container: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            restarts: 0,
            state: ContainerState::Running {
                started: pods::now(),
            },
            last_state: None,
        };
        let extra: BTreeMap<String, String> = pod_labels
            .into_iter()
            .filter(|(k, _)| !labels.contains_key(k))
            .collect();
        pods::create(
            pods_api,
            &pod_name,
            template,
            extra,
            pods::owner("batch/v1", "Job", &name, uid),
            &status,
        )
        .await?;
        let mut st = json!({"active": 1, "ready": 1, "failed": failures});
        if failures == 0 {
            st["startTime"] = json!(pods::now());
        }
        patch_job_status(jobs_api, &name, st).await?;
        self.runs.insert(
            uid.to_string(),
            Run {
                name,
                container: Some(c),
                pod: pod_name,
                report,
                log,
                claims: mounts.claims,
                failures,
                retry_at: None,
                done: false,
                container_name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
            },
        );
        Ok(())
    }

    /// Kill running Jobs.
    pub async fn shutdown(&mut self) {
        for r in self.runs.values_mut() {
            if let Some(c) = r.container.as_mut() {
                c.stop(Duration::from_millis(500));
                c.wait().await;
            }
        }
    }
}

/// The StatefulSet owning claim `<template>-<sts>-0` (the template name has no `-` in the
/// operator's StatefulSets: `data`).
fn claim_owner(claim: &str) -> Option<String> {
    let rest = claim.strip_suffix("-0")?;
    let (_, sts) = rest.split_once('-')?;
    Some(sts.to_string())
}

fn condition(type_: &str, reason: &str) -> serde_json::Value {
    let t = pods::now();
    json!({"type": type_, "status": "True", "reason": reason,
           "lastProbeTime": t, "lastTransitionTime": t})
}

async fn patch_job_status(api: &Api<Job>, name: &str, status: serde_json::Value) -> Result<()> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("update the status of Job {name}"))?;
    Ok(())
}

fn tail_file(p: &std::path::Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let start = t.len().saturating_sub(n);
    let mut s = start;
    while !t.is_char_boundary(s) {
        s += 1;
    }
    t[s..].replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn claim_owner_is_the_statefulset() {
        assert_eq!(
            super::claim_owner("data-orca-primary-0").as_deref(),
            Some("orca-primary")
        );
        assert_eq!(super::claim_owner("backups"), None);
    }
}
