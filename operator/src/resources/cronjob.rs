//! The scheduled backup: a CronJob running the `backup` entrypoint against the client Service,
//! which always points at the active (authoritative, serving) member; when it selects nothing
//! the backup fails and says so, rather than dumping a stale member.
//!
//! Retention: each run keeps the newest `spec.backup.retention` scheduled backups in its
//! directory (`backup --keep`). The outcome of the newest finished run becomes
//! `status.lastBackup` (`pair/backups.rs`). S3 targets are refused as a spec error until the
//! backup entrypoint can upload.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::jobs::{
    backup_volume, job_container, job_pod, key_volume, BACKOFF_LIMIT, TERMINATION_LOG,
};
use super::pod::{bin_mount, BIN};
use super::secrets::{password_ref, PasswordRole};
use super::{labels, owned_meta, scheduling, OperatorConfig};
use crate::crd::ReceiptDbPair;
use crate::pair::JobKind;

/// `<pair>-backup`.
pub fn cronjob_name(pair: &ReceiptDbPair) -> String {
    format!("{}-backup", pair.name_any())
}

/// The backup CronJob, when `spec.backup.schedule` and a PVC target are set.
pub fn backup_cronjob(pair: &ReceiptDbPair, cfg: &OperatorConfig) -> Option<CronJob> {
    let backup = &pair.spec.backup;
    let schedule = backup.schedule.clone()?;
    let (backup_vol, backup_mount, dir) = backup_volume(backup.target.as_ref()?)?;
    let pg = &pair.spec.postgres;
    let source = format!(
        "host={}.{}.svc port={} user={} dbname={}",
        pair.client_service_name(),
        pair.namespace().unwrap_or_else(|| "default".into()),
        pg.port,
        pg.superuser,
        pg.database
    );
    let mut volumes = vec![backup_vol];
    let mut mounts = vec![bin_mount(), backup_mount];
    // A timestamped file name needs the date at run time: the member image's shell provides
    // it. The connection string and paths are positional parameters, never interpolated.
    let mut script =
        r#"exec "$0" backup --source "$1" --output "$2/backup-$(date -u +%Y%m%dT%H%M%SZ).rdb" --report "$3" --keep "$4""#
            .to_string();
    let mut args = vec![
        BIN.to_string(),
        source,
        dir,
        TERMINATION_LOG.to_string(),
        backup.retention.to_string(),
    ];
    if let Some(r) = &backup.encryption_recipients {
        let (v, m, file) = key_volume(r);
        volumes.push(v);
        mounts.push(m);
        script.push_str(r#" --recipients-file "$5""#);
        args.push(file);
    }
    let mut command = vec!["/bin/sh".to_string(), "-c".to_string(), script];
    command.extend(args);
    let su = password_ref(pair, PasswordRole::Superuser);
    let mut env = vec![EnvVar {
        name: "PGPASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: su.name,
                key: su.key,
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    if let Some((v, m, tls_env)) = super::tls::job_tls(pair, false) {
        volumes.push(v);
        mounts.push(m);
        env.extend(tls_env);
    }
    let main = job_container(pair, command, env, mounts);
    let mut template = job_pod(job_labels_for(pair), main, volumes, cfg);
    if let Some(pod) = template.spec.as_mut() {
        scheduling::place(pod, pair, None);
    }
    let job_labels = job_labels_for(pair);
    Some(CronJob {
        metadata: owned_meta(pair, cronjob_name(pair), job_labels.clone()),
        spec: CronJobSpec {
            schedule,
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(BACKOFF_LIMIT),
                    template,
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        status: None,
    })
}

fn job_labels_for(pair: &ReceiptDbPair) -> std::collections::BTreeMap<String, String> {
    let mut job_labels = labels::common(pair, "job");
    job_labels.insert(labels::JOB.into(), JobKind::Backup.as_str().into());
    job_labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BackupLocation, PvcLocation, SecretKeyRef};
    use crate::resources::testing::pair;

    #[test]
    fn only_with_a_schedule_and_a_pvc() {
        let mut p = pair();
        assert!(backup_cronjob(&p, &OperatorConfig::default()).is_none());
        p.spec.backup.schedule = Some("0 3 * * *".into());
        p.spec.backup.target = Some(BackupLocation {
            pvc: Some(PvcLocation {
                claim_name: "backups".into(),
                path: "nightly".into(),
            }),
            s3: None,
        });
        p.spec.backup.encryption_recipients = Some(SecretKeyRef {
            name: "age".into(),
            key: "recipients".into(),
        });
        let c = backup_cronjob(&p, &OperatorConfig::default()).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("orca-backup"));
        assert_eq!(
            c.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
        let spec = c.spec;
        assert_eq!(spec.schedule, "0 3 * * *");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
        let labels = spec.job_template.metadata.unwrap().labels.unwrap();
        assert!(!labels.contains_key(labels::MEMBER));
        let main = &pod.containers[0];
        let cmd = main.command.clone().unwrap();
        assert_eq!(cmd[3], BIN);
        assert_eq!(
            cmd[4],
            "host=orca.clinic.svc port=5432 user=postgres dbname=receipts"
        );
        assert_eq!(cmd[5], "/backup/nightly");
        assert!(cmd[2].contains(r#"--keep "$4""#) && cmd[2].contains(r#"--recipients-file "$5""#));
        assert_eq!(cmd[7], "7", "spec.backup.retention becomes --keep");
        assert_eq!(cmd[8], "/rdb/keys/recipients");
        assert!(!cmd.join(" ").to_lowercase().contains("password"));
        // Plain values only for TLS settings; passwords come from Secrets.
        assert!(main
            .env
            .clone()
            .unwrap()
            .iter()
            .all(|e| e.value.is_none() || e.name.starts_with("PGSSL")));
        let claims: Vec<_> = pod
            .volumes
            .unwrap()
            .iter()
            .filter_map(|v| v.persistent_volume_claim.clone())
            .map(|c| c.claim_name)
            .collect();
        assert_eq!(claims, ["backups"]);
        assert_eq!(pod.init_containers.unwrap().len(), 1);
    }
}
