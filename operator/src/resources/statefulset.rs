//! A member's StatefulSet: one pod running PostgreSQL on the member's PVC, scaled to 0 to fence
//! the member or while a Job writes its data directory.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, ExecAction, Lifecycle, LifecycleHandler,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    TCPSocketAction, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{container_security_context, pod_security_context, pull_policy};
use super::{labels, owned_meta, scheduling, OperatorConfig, DATA_MOUNT, DATA_VOLUME, PGDATA};
use crate::crd::{Member, ReceiptDbPair, ReclaimPolicy};
use kube::{Resource, ResourceExt};

/// Seconds a member pod gets to stop. The preStop hook asks for a *fast* shutdown (SIGTERM
/// alone is PostgreSQL's "smart" shutdown, which waits for every client to leave); a fast
/// shutdown takes well under this even with a checkpoint to write.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;

/// The StatefulSet `<pair>-<member>` with `replicas` (0 or 1, from `Desired`).
pub fn statefulset(
    pair: &ReceiptDbPair,
    member: Member,
    replicas: i32,
    _cfg: &OperatorConfig,
) -> StatefulSet {
    let name = pair.member_name(member);
    let labels = labels::member_labels(pair, member);
    let storage = &pair.spec.storage;
    let mut container = postgres_container(pair);
    let mut volumes = Vec::new();
    if let Some((v, m)) = super::tls::member_volume(pair) {
        volumes.push(v);
        container.volume_mounts.get_or_insert_with(Vec::new).push(m);
    }
    let mut pod = PodSpec {
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        security_context: Some(pod_security_context()),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        enable_service_links: Some(false),
        ..PodSpec::default()
    };
    scheduling::place(&mut pod, pair, Some(member));
    StatefulSet {
        metadata: owned_meta(pair, name.clone(), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name),
            selector: LabelSelector {
                match_labels: Some(labels::member_selector(pair, member)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            // A changed template (image, parameters, resources) restarts nothing by itself:
            // the operator restarts the standby first, switches clients over, then the other
            // member (`pair/rolling.rs`). `RollingUpdate` would restart both at once.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    // Data is never deleted unless the spec asks for it.
                    when_deleted: Some(match storage.reclaim_policy {
                        ReclaimPolicy::Delete => "Delete".into(),
                        ReclaimPolicy::Retain => "Retain".into(),
                    }),
                    // Scaling to 0 fences a member; its data must survive that.
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(vec![claim_template(pair, member)]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The member's data claim as the StatefulSet's template describes it (name `data`).
fn claim_template(pair: &ReceiptDbPair, member: Member) -> PersistentVolumeClaim {
    let storage = &pair.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(labels::member_labels(pair, member)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The member's data claim itself, `data-<pair>-<member>-0`, as the StatefulSet controller
/// would name it. The operator creates it before the first Job that writes the member's data
/// directory (initdb, clone, rejoin): that Job runs while the StatefulSet is at 0 replicas, when
/// the StatefulSet controller has made no claim yet. The StatefulSet adopts it by name later.
/// With `reclaimPolicy: Delete` the pair owns it (not as controller: the StatefulSet controller
/// may add itself), so deleting the pair deletes the data even if no member pod ever ran.
pub fn data_claim(pair: &ReceiptDbPair, member: Member) -> PersistentVolumeClaim {
    let mut claim = claim_template(pair, member);
    claim.metadata.name = Some(super::data_claim_name(pair, member));
    claim.metadata.namespace = pair.namespace();
    if pair.spec.storage.reclaim_policy == ReclaimPolicy::Delete {
        claim.metadata.owner_references = pair.controller_owner_ref(&()).map(|mut o| {
            o.controller = Some(false);
            vec![o]
        });
    }
    claim
}

/// The server's command line: operator-owned settings first (TLS included, see
/// [`super::tls::member_settings`]), then the user's parameters (already checked by
/// [`super::params::parameters_error`]).
pub fn postgres_command(pair: &ReceiptDbPair) -> Vec<String> {
    let port = pair.spec.postgres.port;
    let mut cmd: Vec<String> = vec!["postgres".into(), "-D".into(), PGDATA.into()];
    let mut settings = vec![
        "restart_after_crash=off".to_string(),
        "listen_addresses=*".to_string(),
        format!("port={port}"),
    ];
    settings.extend(super::tls::member_settings(pair));
    for setting in settings {
        cmd.push("-c".into());
        cmd.push(setting);
    }
    for (k, v) in &pair.spec.postgres.parameters {
        cmd.push("-c".into());
        cmd.push(format!("{k}={v}"));
    }
    cmd
}

fn postgres_container(pair: &ReceiptDbPair) -> Container {
    let pg = &pair.spec.postgres;
    let port = pg.port;
    let pg_isready = vec![
        "pg_isready".into(),
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-U".into(),
        pg.superuser.clone(),
        "-d".into(),
        "postgres".into(),
    ];
    Container {
        name: "postgres".into(),
        image: Some(pg.image.clone()),
        image_pull_policy: Some(pull_policy(pair)),
        command: Some(postgres_command(pair)),
        env: Some(vec![EnvVar {
            name: "PGDATA".into(),
            value: Some(PGDATA.into()),
            ..EnvVar::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_MOUNT.into(),
            ..VolumeMount::default()
        }]),
        resources: pg.resources.clone(),
        security_context: Some(container_security_context()),
        // Crash recovery may take a while; liveness must not kill a recovering server.
        startup_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(360),
            ..Probe::default()
        }),
        // Ready = accepting connections (a hot standby is too); pg_isready needs no password.
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(pg_isready),
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(2),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "pg_ctl".into(),
                        "stop".into(),
                        "-D".into(),
                        PGDATA.into(),
                        "-m".into(),
                        "fast".into(),
                        "-w".into(),
                        "-t".into(),
                        (TERMINATION_GRACE_SECONDS - 5).to_string(),
                    ]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ReclaimPolicy;
    use crate::resources::testing::pair;

    #[test]
    fn names_labels_owner_and_replicas() {
        let p = pair();
        for (member, replicas) in [(Member::Primary, 1), (Member::Secondary, 0)] {
            let s = statefulset(&p, member, replicas, &OperatorConfig::default());
            let name = format!("orca-{member}");
            assert_eq!(s.metadata.name.as_deref(), Some(name.as_str()));
            assert_eq!(s.metadata.namespace.as_deref(), Some("clinic"));
            let owners = s.metadata.owner_references.clone().unwrap_or_default();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(owners[0].kind, "ReceiptDbPair");
            assert_eq!(owners[0].uid, "uid-1");
            let spec = s.spec.unwrap();
            assert_eq!(spec.replicas, Some(replicas));
            assert_eq!(spec.service_name.as_deref(), Some(name.as_str()));
            let sel = spec.selector.match_labels.unwrap();
            assert_eq!(sel.get(labels::PAIR).map(String::as_str), Some("orca"));
            assert_eq!(
                sel.get(labels::MEMBER).map(String::as_str),
                Some(member.as_str())
            );
            let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
            for (k, v) in &sel {
                assert_eq!(
                    pod_labels.get(k),
                    Some(v),
                    "pod template carries the selector"
                );
            }
            assert_eq!(
                pod_labels
                    .get("app.kubernetes.io/managed-by")
                    .map(String::as_str),
                Some("receiptdb-operator")
            );
        }
    }

    #[test]
    fn a_changed_template_restarts_nothing_by_itself() {
        let s = statefulset(&pair(), Member::Primary, 1, &OperatorConfig::default());
        let strategy = s.spec.unwrap().update_strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    }

    #[test]
    fn retention_policy_keeps_data_unless_asked() {
        for (policy, want) in [
            (ReclaimPolicy::Retain, "Retain"),
            (ReclaimPolicy::Delete, "Delete"),
        ] {
            let mut p = pair();
            p.spec.storage.reclaim_policy = policy;
            let s = statefulset(&p, Member::Primary, 1, &OperatorConfig::default());
            let r = s
                .spec
                .unwrap()
                .persistent_volume_claim_retention_policy
                .unwrap();
            assert_eq!(r.when_deleted.as_deref(), Some(want));
            assert_eq!(r.when_scaled.as_deref(), Some("Retain"));
        }
    }

    #[test]
    fn volume_claim_and_mount() {
        let mut p = pair();
        p.spec.storage.size = "5Gi".into();
        p.spec.storage.storage_class_name = Some("fast".into());
        let spec = statefulset(&p, Member::Secondary, 1, &OperatorConfig::default())
            .spec
            .unwrap();
        let vct = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(vct.metadata.name.as_deref(), Some("data"));
        let vs = vct.spec.clone().unwrap();
        assert_eq!(vs.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            vs.resources.unwrap().requests.unwrap()["storage"],
            Quantity("5Gi".into())
        );
        let c = &spec.template.spec.unwrap().containers[0];
        let m = &c.volume_mounts.clone().unwrap()[0];
        assert_eq!(
            (m.name.as_str(), m.mount_path.as_str()),
            ("data", DATA_MOUNT)
        );
        assert_eq!(
            super::super::data_claim_name(&p, Member::Secondary),
            "data-orca-secondary-0"
        );
    }

    #[test]
    fn command_security_and_probes() {
        let mut p = pair();
        p.spec.postgres.port = 6543;
        p.spec
            .postgres
            .parameters
            .insert("shared_buffers".into(), "256MB".into());
        let pod = statefulset(&p, Member::Primary, 1, &OperatorConfig::default())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.command.clone().unwrap(),
            [
                "postgres",
                "-D",
                PGDATA,
                "-c",
                "restart_after_crash=off",
                "-c",
                "listen_addresses=*",
                "-c",
                "port=6543",
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=/rdb/tls/tls.crt",
                "-c",
                "ssl_key_file=/rdb/tls/tls.key",
                "-c",
                "ssl_ca_file=/rdb/tls/ca.crt",
                "-c",
                "shared_buffers=256MB"
            ]
        );
        let tls = pod.volumes.clone().unwrap().remove(0).secret.unwrap();
        assert_eq!(tls.secret_name.as_deref(), Some("orca-tls"));
        assert!(c
            .volume_mounts
            .clone()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/rdb/tls" && m.read_only == Some(true)));
        assert_eq!(
            c.image.as_deref(),
            Some("docker.io/library/postgres:15-bookworm")
        );
        assert!(c
            .env
            .clone()
            .unwrap()
            .iter()
            .all(|e| e.value_from.is_none()));
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_user, Some(999));
        assert_eq!(psc.run_as_group, Some(999));
        assert_eq!(psc.fs_group, Some(999));
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let csc = c.security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let ready = c
            .readiness_probe
            .clone()
            .unwrap()
            .exec
            .unwrap()
            .command
            .unwrap();
        assert_eq!(ready[0], "pg_isready");
        assert!(ready.contains(&"6543".to_string()));
        assert_eq!(
            c.liveness_probe.clone().unwrap().tcp_socket.unwrap().port,
            IntOrString::Int(6543)
        );
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(TERMINATION_GRACE_SECONDS)
        );
        let stop = c
            .lifecycle
            .clone()
            .unwrap()
            .pre_stop
            .unwrap()
            .exec
            .unwrap()
            .command
            .unwrap();
        assert!(stop.windows(2).any(|w| w == ["-m", "fast"]));
    }

    #[test]
    fn the_data_claim_is_the_templates_claim_under_the_controllers_name() {
        for (policy, owned) in [
            (ReclaimPolicy::Retain, false),
            (ReclaimPolicy::Delete, true),
        ] {
            let mut p = pair();
            p.spec.storage.reclaim_policy = policy;
            p.spec.storage.size = "3Gi".into();
            let claim = data_claim(&p, Member::Secondary);
            assert_eq!(
                claim.metadata.name.as_deref(),
                Some("data-orca-secondary-0")
            );
            assert_eq!(claim.metadata.namespace.as_deref(), Some("clinic"));
            let tmpl = statefulset(&p, Member::Secondary, 0, &OperatorConfig::default())
                .spec
                .unwrap()
                .volume_claim_templates
                .unwrap()
                .remove(0);
            assert_eq!(claim.spec, tmpl.spec);
            assert_eq!(claim.metadata.labels, tmpl.metadata.labels);
            let owners = claim.metadata.owner_references.unwrap_or_default();
            assert_eq!(owners.len(), usize::from(owned), "{policy:?}");
            if owned {
                assert_eq!(owners[0].uid, "uid-1");
                assert_eq!(owners[0].controller, Some(false));
            }
        }
    }

    #[test]
    fn resources_come_from_spec() {
        let mut p = pair();
        let res = k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
            ..Default::default()
        };
        p.spec.postgres.resources = Some(res.clone());
        let pod = statefulset(&p, Member::Primary, 1, &OperatorConfig::default())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.containers[0].resources, Some(res));
    }

    #[test]
    fn member_pods_keep_apart_and_follow_the_placement_spec() {
        let mut p = pair();
        p.spec
            .scheduling
            .node_selector
            .insert("role".into(), "db".into());
        for member in Member::ALL {
            let pod = statefulset(&p, member, 1, &OperatorConfig::default())
                .spec
                .unwrap()
                .template
                .spec
                .unwrap();
            let terms = pod
                .affinity
                .unwrap()
                .pod_anti_affinity
                .unwrap()
                .required_during_scheduling_ignored_during_execution
                .unwrap();
            assert_eq!(
                terms,
                vec![super::super::scheduling::member_anti_affinity_term(
                    &p, member
                )]
            );
            assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
            assert_eq!(
                pod.node_selector.unwrap().get("role").map(String::as_str),
                Some("db")
            );
        }
    }
}
