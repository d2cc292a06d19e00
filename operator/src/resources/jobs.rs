//! Jobs: the data operations on a member (`initdb`, `clone`, `rejoin`, `sync`, `restore`,
//! `check`, `backup`), each running the member image (so PostgreSQL tools match the server)
//! with the operator binary copied in by an init container. The command line follows
//! `docs/job-interface.md`; passwords come from Secrets through the environment only.
//!
//! Naming: `<pair>-<member>-<kind>-<attempt>`. The attempt is 1 + the highest attempt among
//! the pair's existing Jobs of that kind and member, so re-running a finished Job makes a new
//! Job (and a new name) while a running one is never duplicated (the controller does not
//! create a Job while one of the same kind and member runs). With the CRD's 40-character limit
//! on pair names, the longest name (`-secondary-restore-NNNN`) still fits the 63 characters a
//! Job name may have.

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::pod::{
    bin_mount, bin_volume, container_security_context, copy_binary_container, pod_security_context,
    pull_policy, BIN,
};
use super::secrets::{password_ref, PasswordRole};
use super::{
    data_claim_name, labels, member_host, owned_meta, quantity, scheduling, OperatorConfig,
    DATA_MOUNT, DATA_VOLUME, PGDATA,
};
use crate::crd::{annotation, BackupLocation, Member, ReceiptDbPair, SecretKeyRef};
use crate::pair::JobKind;

/// Where the entrypoint writes its JSON report; the kubelet turns it into the pod's termination
/// message, which the operator reads without reading logs.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Retries of a failed Job pod before the Job counts as failed.
pub const BACKOFF_LIMIT: i32 = 2;
/// The name of a Job pod's main container.
pub const JOB_CONTAINER: &str = "job";
/// Where a backup PVC is mounted.
pub const BACKUP_MOUNT: &str = "/backup";
/// Where secret key files (age recipients or identity) are mounted.
pub const KEYS_MOUNT: &str = "/rdb/keys";

/// `<pair>-<member>-<kind>-<attempt>`.
pub fn job_name(pair: &ReceiptDbPair, kind: JobKind, member: Member, attempt: u32) -> String {
    format!("{}-{}-{attempt}", pair.member_name(member), kind.as_str())
}

/// Whether a kind writes the member's data directory (and so mounts its PVC, which it may
/// only do while the member's StatefulSet is at 0 replicas).
pub fn writes_data_dir(kind: JobKind) -> bool {
    matches!(kind, JobKind::Initdb | JobKind::Clone | JobKind::Rejoin)
}

/// A libpq connection string for a member's database: no password, ever.
pub fn conninfo(pair: &ReceiptDbPair, member: Member, dbname: &str) -> String {
    format!(
        "host={} port={} user={} dbname={dbname}",
        member_host(pair, member),
        pair.spec.postgres.port,
        pair.spec.postgres.superuser
    )
}

fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Password environment of a kind: only the passwords it needs.
fn password_env(pair: &ReceiptDbPair, kind: JobKind) -> Vec<EnvVar> {
    let su = password_ref(pair, PasswordRole::Superuser);
    let repl = password_ref(pair, PasswordRole::Replication);
    match kind {
        JobKind::Initdb => vec![
            secret_env("RECEIPTDB_SUPERUSER_PASSWORD", &su),
            secret_env("RECEIPTDB_REPLICATION_PASSWORD", &repl),
        ],
        JobKind::Clone | JobKind::Rejoin => vec![
            secret_env("PGPASSWORD", &su),
            secret_env("RECEIPTDB_REPLICATION_PASSWORD", &repl),
        ],
        _ => vec![secret_env("PGPASSWORD", &su)],
    }
}

fn method(pair: &ReceiptDbPair) -> &'static str {
    pair.spec.consistency_check.method.as_str()
}

/// Volumes and mounts for a backup location (a PVC; S3 is refused earlier as a spec error).
pub(crate) fn backup_volume(location: &BackupLocation) -> Option<(Volume, VolumeMount, String)> {
    let pvc = location.pvc.as_ref()?;
    let dir = format!("{BACKUP_MOUNT}/{}", pvc.path.trim_matches('/'));
    Some((
        Volume {
            name: "backup".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "backup".into(),
            mount_path: BACKUP_MOUNT.into(),
            ..VolumeMount::default()
        },
        dir.trim_end_matches('/').to_string(),
    ))
}

/// The Secret volume holding age keys or recipients, its mount, and the file path of `r`.
pub(crate) fn key_volume(r: &SecretKeyRef) -> (Volume, VolumeMount, String) {
    (
        Volume {
            name: "keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "keys".into(),
            mount_path: KEYS_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        format!("{KEYS_MOUNT}/{}", r.key),
    )
}

/// What a Job of `kind` on `member` runs: arguments after the binary, and its extra volumes.
fn command(
    pair: &ReceiptDbPair,
    kind: JobKind,
    member: Member,
    name: &str,
) -> (Vec<String>, Vec<(Volume, VolumeMount)>) {
    let pg = &pair.spec.postgres;
    let other = member.other();
    let db = pg.database.as_str();
    let mut args: Vec<String> = vec![kind.as_str().into()];
    let mut vols = Vec::new();
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
    match kind {
        JobKind::Initdb => {
            push(&[
                "--pgdata",
                PGDATA,
                "--database",
                db,
                "--port",
                &pg.port.to_string(),
                "--superuser",
                &pg.superuser,
                "--replication-user",
                &pg.replication_user,
            ]);
            if let Some(mb) = quantity::slot_wal_limit_mb(&pair.spec.storage.size) {
                push(&["--set", &format!("max_slot_wal_keep_size={mb}MB")]);
            }
        }
        JobKind::Clone | JobKind::Rejoin => push(&[
            "--pgdata",
            PGDATA,
            "--source",
            &conninfo(pair, other, "postgres"),
            "--slot",
            member.as_str(),
            "--port",
            &pg.port.to_string(),
            "--replication-user",
            &pg.replication_user,
            "--application-name",
            member.as_str(),
        ]),
        JobKind::Check | JobKind::Sync => {
            push(&[
                "--source",
                &conninfo(pair, other, db),
                "--target",
                &conninfo(pair, member, db),
                "--method",
                method(pair),
                "--json",
            ]);
            let rate = pair.spec.consistency_check.max_rate.as_str();
            if kind == JobKind::Check && rate != "none" {
                push(&["--max-rate", rate]);
            }
            let force =
                pair.annotations().get(annotation::SYNC).map(String::as_str) == Some("force");
            if kind == JobKind::Sync && force {
                push(&["--force"]);
            }
        }
        JobKind::Backup => {
            let target = pair.spec.backup.target.as_ref();
            let (dir, v) = match target.and_then(backup_volume) {
                Some((v, m, dir)) => (dir, Some((v, m))),
                None => (BACKUP_MOUNT.to_string(), None),
            };
            vols.extend(v);
            push(&[
                "--source",
                &conninfo(pair, member, db),
                "--output",
                &format!("{dir}/{name}.rdb"),
            ]);
            if let Some(r) = &pair.spec.backup.encryption_recipients {
                let (v, m, file) = key_volume(r);
                vols.push((v, m));
                push(&["--recipients-file", &file]);
            }
        }
        JobKind::Restore => {
            let from = pair.spec.bootstrap.from_backup.as_ref();
            let (dir, v) = match from.and_then(|f| backup_volume(&f.location)) {
                Some((v, m, dir)) => (dir, Some((v, m))),
                None => (BACKUP_MOUNT.to_string(), None),
            };
            vols.extend(v);
            // Without a file name the entrypoint gets the directory and picks the newest.
            let input = match from.and_then(|f| f.file.as_deref()) {
                Some(file) => format!("{dir}/{file}"),
                None => dir,
            };
            push(&["--input", &input, "--target", &conninfo(pair, member, db)]);
            if let Some(r) = from.and_then(|f| f.identity.as_ref()) {
                let (v, m, file) = key_volume(r);
                vols.push((v, m));
                push(&["--identity-file", &file]);
            }
        }
    }
    args.push("--report".into());
    args.push(TERMINATION_LOG.into());
    (args, vols)
}

/// The pod of a Job or CronJob: init container copying the operator binary, then the member
/// image running `args` with `env`, non-root, never restarted in place (a failed pod keeps its
/// termination message; the Job makes a new pod).
pub(crate) fn job_pod(
    pod_labels: std::collections::BTreeMap<String, String>,
    main: Container,
    mut volumes: Vec<Volume>,
    cfg: &OperatorConfig,
) -> PodTemplateSpec {
    volumes.insert(0, bin_volume());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            init_containers: Some(vec![copy_binary_container(cfg)]),
            containers: vec![main],
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            security_context: Some(pod_security_context()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
    }
}

/// The main container of a Job pod.
pub(crate) fn job_container(
    pair: &ReceiptDbPair,
    command: Vec<String>,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: JOB_CONTAINER.into(),
        image: Some(pair.spec.postgres.image.clone()),
        image_pull_policy: Some(pull_policy(pair)),
        command: Some(command),
        env: Some(env),
        volume_mounts: Some(mounts),
        security_context: Some(container_security_context()),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("File".into()),
        resources: pair.spec.postgres.job_resources.clone(),
        ..Container::default()
    }
}

/// The Job of `kind` working on `member`, attempt `attempt`.
pub fn job(
    pair: &ReceiptDbPair,
    kind: JobKind,
    member: Member,
    attempt: u32,
    cfg: &OperatorConfig,
) -> Job {
    let name = job_name(pair, kind, member, attempt);
    let (args, extra) = command(pair, kind, member, &name);
    let mut volumes = Vec::new();
    let mut mounts = vec![bin_mount()];
    if writes_data_dir(kind) {
        volumes.push(Volume {
            name: DATA_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data_claim_name(pair, member),
                read_only: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_MOUNT.into(),
            ..VolumeMount::default()
        });
    }
    for (v, m) in extra {
        volumes.push(v);
        mounts.push(m);
    }
    let mut env = password_env(pair, kind);
    if let Some((v, m, tls_env)) = super::tls::job_tls(pair, writes_data_dir(kind)) {
        volumes.push(v);
        mounts.push(m);
        env.extend(tls_env);
    }
    let mut cmd = vec![BIN.to_string()];
    cmd.extend(args);
    let main = job_container(pair, cmd, env, mounts);
    let pod_labels = labels::job_pod_labels(pair, kind, member, &name);
    let mut template = job_pod(pod_labels, main, volumes, cfg);
    if let Some(pod) = template.spec.as_mut() {
        // A Job writing a member's data directory may be the first user of its claim (which
        // binds where that pod runs): it keeps apart from the other member like the member.
        scheduling::place(pod, pair, writes_data_dir(kind).then_some(member));
    }
    Job {
        metadata: owned_meta(pair, name, labels::job_labels(pair, kind, member, attempt)),
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            pod_failure_policy: verdict_is_final(kind),
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// `check` exits 1 when it found differences: a verdict, not a crash. Without a policy the Job
/// controller retried it like a failure (`backoffLimit`, with 10 s and 20 s back-offs), so on a
/// real cluster a drift was reported half a minute after the first check had found it. The
/// policy ends the Job at once on that exit code; errors (exit 2) are still retried.
fn verdict_is_final(kind: JobKind) -> Option<PodFailurePolicy> {
    (kind == JobKind::Check).then(|| PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "FailJob".into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(JOB_CONTAINER.into()),
                operator: "In".into(),
                values: vec![i32::from(receiptdb_postgres::cli::EXIT_DIFFERENT)],
            }),
            ..PodFailurePolicyRule::default()
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BackupLocation, FromBackup, PvcLocation};
    use crate::resources::testing::pair;

    #[test]
    fn a_check_that_found_differences_ends_its_job_at_once() {
        let p = full_pair();
        for kind in ALL_KINDS {
            let spec = job(&p, kind, Member::Secondary, 1, &OperatorConfig::default())
                .spec
                .unwrap();
            let policy = spec.pod_failure_policy;
            if kind != JobKind::Check {
                assert!(policy.is_none(), "{kind:?}: failures are retried");
                continue;
            }
            let rule = &policy.expect("check has a policy").rules[0];
            assert_eq!(rule.action, "FailJob");
            let codes = rule.on_exit_codes.clone().unwrap();
            assert_eq!((codes.operator.as_str(), codes.values), ("In", vec![1]));
            assert_eq!(codes.container_name.as_deref(), Some(JOB_CONTAINER));
            assert_eq!(
                spec.template.spec.unwrap().containers[0].name,
                JOB_CONTAINER
            );
        }
    }

    #[test]
    fn every_job_verifies_the_members_against_the_pairs_ca() {
        let mut p = full_pair();
        for kind in ALL_KINDS {
            let j = job(&p, kind, Member::Secondary, 1, &OperatorConfig::default());
            let pod = j.spec.unwrap().template.spec.unwrap();
            let c = &pod.containers[0];
            let env = c.env.clone().unwrap();
            let get = |k: &str| {
                env.iter()
                    .find(|e| e.name == k)
                    .and_then(|e| e.value.clone())
            };
            assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"), "{kind:?}");
            assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/rdb/ca/ca.crt"));
            assert_eq!(
                get("RECEIPTDB_TLS_DIR").is_some(),
                writes_data_dir(kind),
                "{kind:?}: the member's TLS directory goes to the Jobs writing its data"
            );
            let ca = pod.volumes.unwrap().into_iter().find_map(|v| {
                v.secret
                    .filter(|s| s.secret_name.as_deref() == Some("orca-ca"))
            });
            assert!(ca.is_some(), "{kind:?}: mounts the clients' CA Secret");
            assert!(c
                .volume_mounts
                .clone()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == "/rdb/ca"));
        }
        p.spec.tls.enabled = false;
        let j = job(
            &p,
            JobKind::Clone,
            Member::Secondary,
            1,
            &OperatorConfig::default(),
        );
        let env = j.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(env.iter().all(|e| !e.name.starts_with("PGSSL")));
    }

    const ALL_KINDS: [JobKind; 7] = [
        JobKind::Initdb,
        JobKind::Clone,
        JobKind::Rejoin,
        JobKind::Sync,
        JobKind::Restore,
        JobKind::Check,
        JobKind::Backup,
    ];

    fn full_pair() -> ReceiptDbPair {
        let mut p = pair();
        let loc = BackupLocation {
            pvc: Some(PvcLocation {
                claim_name: "backups".into(),
                path: "orca/".into(),
            }),
            s3: None,
        };
        p.spec.backup.schedule = Some("0 3 * * *".into());
        p.spec.backup.target = Some(loc.clone());
        p.spec.backup.encryption_recipients = Some(SecretKeyRef {
            name: "age".into(),
            key: "recipients".into(),
        });
        p.spec.bootstrap.from_backup = Some(FromBackup {
            location: loc,
            file: Some("b1.rdb".into()),
            identity: Some(SecretKeyRef {
                name: "age-id".into(),
                key: "identity".into(),
            }),
        });
        p
    }

    fn main_container(j: &Job) -> Container {
        j.spec.clone().unwrap().template.spec.unwrap().containers[0].clone()
    }

    #[test]
    fn names_labels_and_owner() {
        let p = full_pair();
        for kind in ALL_KINDS {
            for member in Member::ALL {
                let j = job(&p, kind, member, 3, &OperatorConfig::default());
                let name = format!("orca-{member}-{}-3", kind.as_str());
                assert_eq!(j.metadata.name.as_deref(), Some(name.as_str()));
                assert_eq!(
                    j.metadata.owner_references.clone().unwrap()[0].controller,
                    Some(true)
                );
                let l = j.metadata.labels.clone().unwrap();
                assert_eq!(l[labels::PAIR], "orca");
                assert_eq!(l[labels::MEMBER], member.as_str());
                assert_eq!(l[labels::JOB], kind.as_str());
                assert_eq!(l[labels::ATTEMPT], "3");
                let spec = j.spec.clone().unwrap();
                assert_eq!(spec.backoff_limit, Some(BACKOFF_LIMIT));
                let pl = spec.template.metadata.unwrap().labels.unwrap();
                assert!(
                    !pl.contains_key(labels::MEMBER),
                    "no Service may select Job pods"
                );
                assert_eq!(pl[labels::JOB_NAME], name);
                assert_eq!(pl[labels::JOB_MEMBER], member.as_str());
            }
        }
        let long = "a".repeat(40);
        let mut p = pair();
        p.metadata.name = Some(long);
        assert!(job_name(&p, JobKind::Restore, Member::Secondary, 9999).len() <= 63);
    }

    #[test]
    fn init_container_copies_the_operator_binary() {
        let cfg = OperatorConfig::new("registry.example/rdb-op:1.2");
        let j = job(&pair(), JobKind::Clone, Member::Secondary, 1, &cfg);
        let pod = j.spec.unwrap().template.spec.unwrap();
        let init = &pod.init_containers.unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("registry.example/rdb-op:1.2"));
        assert_eq!(
            init.command.clone().unwrap(),
            [cfg.operator_binary.as_str(), "copy-binary", "/rdb/bin"]
        );
        assert_eq!(
            init.volume_mounts.clone().unwrap()[0].mount_path,
            "/rdb/bin"
        );
        let main = &pod.containers[0];
        assert_eq!(
            main.image.as_deref(),
            Some("docker.io/library/postgres:15-bookworm")
        );
        assert_eq!(
            main.command.clone().unwrap()[0],
            "/rdb/bin/receiptdb-operator"
        );
        assert_eq!(main.command.clone().unwrap()[1], "clone");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.security_context.unwrap().run_as_user, Some(999));
        for c in [init, main] {
            let sc = c.security_context.clone().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        }
    }

    #[test]
    fn data_pvc_only_for_kinds_that_write_the_data_dir() {
        let p = full_pair();
        for kind in ALL_KINDS {
            for member in Member::ALL {
                let j = job(&p, kind, member, 1, &OperatorConfig::default());
                let pod = j.spec.unwrap().template.spec.unwrap();
                let claims: Vec<String> = pod
                    .volumes
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.persistent_volume_claim.as_ref())
                    .map(|c| c.claim_name.clone())
                    .collect();
                let data = format!("data-orca-{member}-0");
                assert_eq!(claims.contains(&data), writes_data_dir(kind), "{kind:?}");
                assert!(!claims.contains(&format!("data-orca-{}-0", member.other())));
                let mounted = pod.containers[0]
                    .volume_mounts
                    .clone()
                    .unwrap()
                    .iter()
                    .any(|m| m.mount_path == DATA_MOUNT);
                assert_eq!(mounted, writes_data_dir(kind));
                let backup = claims.contains(&"backups".to_string());
                assert_eq!(backup, matches!(kind, JobKind::Backup | JobKind::Restore));
            }
        }
    }

    #[test]
    fn passwords_come_from_secrets_and_never_from_args() {
        let mut p = full_pair();
        p.spec.postgres.superuser_secret = Some(SecretKeyRef {
            name: "su".into(),
            key: "pw".into(),
        });
        let cases: &[(JobKind, &[&str])] = &[
            (
                JobKind::Initdb,
                &[
                    "RECEIPTDB_SUPERUSER_PASSWORD",
                    "RECEIPTDB_REPLICATION_PASSWORD",
                ],
            ),
            (
                JobKind::Clone,
                &["PGPASSWORD", "RECEIPTDB_REPLICATION_PASSWORD"],
            ),
            (
                JobKind::Rejoin,
                &["PGPASSWORD", "RECEIPTDB_REPLICATION_PASSWORD"],
            ),
            (JobKind::Sync, &["PGPASSWORD"]),
            (JobKind::Check, &["PGPASSWORD"]),
            (JobKind::Backup, &["PGPASSWORD"]),
            (JobKind::Restore, &["PGPASSWORD"]),
        ];
        for (kind, want) in cases {
            let c = main_container(&job(
                &p,
                *kind,
                Member::Secondary,
                1,
                &OperatorConfig::default(),
            ));
            // TLS settings are plain values (tested below); passwords come from Secrets.
            let env: Vec<EnvVar> = c
                .env
                .clone()
                .unwrap()
                .into_iter()
                .filter(|e| !e.name.starts_with("PGSSL") && e.name != "RECEIPTDB_TLS_DIR")
                .collect();
            let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(&names, want, "{kind:?}");
            for e in &env {
                assert_eq!(
                    e.value, None,
                    "{kind:?}: {} must come from a Secret",
                    e.name
                );
                let r = e.value_from.clone().unwrap().secret_key_ref.unwrap();
                let want_secret = if e.name.contains("REPLICATION") {
                    ("orca-replication", "password")
                } else {
                    ("su", "pw")
                };
                assert_eq!((r.name.as_str(), r.key.as_str()), want_secret);
            }
            let args = c.command.unwrap().join(" ").to_lowercase();
            assert!(!args.contains("password"), "{kind:?}: {args}");
            assert_eq!(c.termination_message_path.as_deref(), Some(TERMINATION_LOG));
            assert!(args.ends_with("--report /dev/termination-log"), "{args}");
        }
    }

    /// Every Job's command line is one the entrypoint it runs parses (the same clap argument
    /// types the binary uses): an argument it does not know cannot be rendered unnoticed.
    #[test]
    fn every_unit_the_spec_allows_for_max_rate_parses_as_a_rate() {
        // The CRD's pattern for consistencyCheck.maxRate admits these units.
        for rate in [
            "7", "7B", "500kB", "2KB", "3KiB", "10MB", "32MiB", "1GB", "1GiB",
        ] {
            assert!(
                rate.parse::<receiptdb_postgres::compare::Rate>().is_ok(),
                "{rate}"
            );
        }
    }

    #[test]
    fn every_job_command_line_parses_as_its_entrypoint() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let p = full_pair();
        let mut forced = p.clone();
        forced
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(annotation::SYNC.into(), "force".into());
        let mut lines: Vec<(JobKind, Vec<String>)> = Vec::new();
        for pair in [&p, &forced] {
            for kind in ALL_KINDS {
                for member in [Member::Primary, Member::Secondary] {
                    let c = main_container(&job(pair, kind, member, 1, &OperatorConfig::default()));
                    lines.push((kind, c.command.unwrap()));
                }
            }
        }
        let cron = crate::resources::cronjob::backup_cronjob(&p, &OperatorConfig::default())
            .expect("a scheduled backup");
        let pod = cron.spec.job_template.spec.unwrap().template.spec.unwrap();
        // The CronJob's line goes through a shell (for the file's timestamp): let the shell
        // expand it, printing the argument vector instead of running it.
        let shell = pod.containers[0].command.clone().unwrap();
        assert_eq!(shell[..2], ["/bin/sh", "-c"]);
        let script = shell[2].replacen("exec ", "printf '%s\\n' ", 1);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .args(&shell[3..])
            .output()
            .unwrap();
        let argv: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.push((JobKind::Backup, argv));
        for (kind, line) in lines {
            let cli = Cli::try_parse_from(&line)
                .unwrap_or_else(|e| panic!("{kind:?}: {}: {e}", line.join(" ")));
            let ran = match cli.command {
                Command::Initdb(_) => JobKind::Initdb,
                Command::Clone(_) => JobKind::Clone,
                Command::Rejoin(_) => JobKind::Rejoin,
                Command::Check(_) => JobKind::Check,
                Command::Sync(_) => JobKind::Sync,
                Command::Backup(_) => JobKind::Backup,
                Command::Restore(_) => JobKind::Restore,
                other => panic!("{kind:?} runs {other:?}"),
            };
            assert_eq!(ran, kind, "{}", line.join(" "));
        }
    }

    #[test]
    fn command_lines_follow_the_job_interface() {
        let p = full_pair();
        let cmd = |kind, member| -> Vec<String> {
            let c = main_container(&job(&p, kind, member, 1, &OperatorConfig::default()));
            c.command.unwrap()[1..].to_vec()
        };
        assert_eq!(
            cmd(JobKind::Initdb, Member::Primary),
            [
                "initdb",
                "--pgdata",
                PGDATA,
                "--database",
                "receipts",
                "--port",
                "5432",
                "--superuser",
                "postgres",
                "--replication-user",
                "replicator",
                "--set",
                "max_slot_wal_keep_size=2560MB",
                "--report",
                TERMINATION_LOG
            ]
        );
        assert_eq!(
            cmd(JobKind::Clone, Member::Secondary),
            [
                "clone",
                "--pgdata",
                PGDATA,
                "--source",
                "host=orca-primary.clinic.svc port=5432 user=postgres dbname=postgres",
                "--slot",
                "secondary",
                "--port",
                "5432",
                "--replication-user",
                "replicator",
                "--application-name",
                "secondary",
                "--report",
                TERMINATION_LOG
            ]
        );
        let rejoin = cmd(JobKind::Rejoin, Member::Primary);
        assert_eq!(rejoin[0], "rejoin");
        assert!(rejoin.contains(
            &"host=orca-secondary.clinic.svc port=5432 user=postgres dbname=postgres".to_string()
        ));
        let check = cmd(JobKind::Check, Member::Secondary);
        assert_eq!(
            check,
            [
                "check",
                "--source",
                "host=orca-primary.clinic.svc port=5432 user=postgres dbname=receipts",
                "--target",
                "host=orca-secondary.clinic.svc port=5432 user=postgres dbname=receipts",
                "--method",
                "checksums",
                "--json",
                "--max-rate",
                "64MiB",
                "--report",
                TERMINATION_LOG
            ]
        );
        assert!(!cmd(JobKind::Sync, Member::Secondary).contains(&"--max-rate".to_string()));
        assert!(!cmd(JobKind::Sync, Member::Secondary).contains(&"--force".to_string()));
        let mut forced = p.clone();
        forced
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(annotation::SYNC.into(), "force".into());
        let c = main_container(&job(
            &forced,
            JobKind::Sync,
            Member::Secondary,
            1,
            &OperatorConfig::default(),
        ));
        assert!(c.command.unwrap().contains(&"--force".to_string()));
        let backup = cmd(JobKind::Backup, Member::Primary);
        assert!(backup
            .windows(2)
            .any(|w| w == ["--output", "/backup/orca/orca-primary-backup-1.rdb"]));
        assert!(backup
            .windows(2)
            .any(|w| w == ["--recipients-file", "/rdb/keys/recipients"]));
        let restore = cmd(JobKind::Restore, Member::Primary);
        assert!(restore
            .windows(2)
            .any(|w| w == ["--input", "/backup/orca/b1.rdb"]));
        assert!(restore
            .windows(2)
            .any(|w| w == ["--identity-file", "/rdb/keys/identity"]));
    }

    #[test]
    fn jobs_writing_a_members_data_keep_apart_from_the_other_member() {
        let mut p = pair();
        let res = k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(std::collections::BTreeMap::from([(
                "cpu".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("250m".into()),
            )])),
            ..Default::default()
        };
        p.spec.postgres.job_resources = Some(res.clone());
        for kind in [
            JobKind::Initdb,
            JobKind::Clone,
            JobKind::Rejoin,
            JobKind::Sync,
            JobKind::Check,
        ] {
            let j = job(&p, kind, Member::Secondary, 1, &OperatorConfig::default());
            let pod = j.spec.clone().unwrap().template.spec.unwrap();
            let terms = pod
                .affinity
                .and_then(|a| a.pod_anti_affinity)
                .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                .unwrap_or_default();
            if writes_data_dir(kind) {
                assert_eq!(
                    terms,
                    vec![scheduling::member_anti_affinity_term(&p, Member::Secondary)],
                    "{kind:?}"
                );
            } else {
                assert!(terms.is_empty(), "{kind:?}");
            }
            assert_eq!(main_container(&j).resources, Some(res.clone()), "{kind:?}");
        }
    }
}
