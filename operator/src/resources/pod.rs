//! Pieces shared by member pods and Job pods: the non-root security context and the init
//! container that brings the operator binary into the member image.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, PodSecurityContext, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};

use super::OperatorConfig;
use crate::crd::{PullPolicy, ReceiptDbPair};

/// uid and gid of `postgres` in the official Debian PostgreSQL image: the data directory must
/// belong to the user the server runs as, and fsGroup makes the volume writable for it.
pub const POSTGRES_UID: i64 = 999;
/// Where Job pods find the operator binary (an emptyDir filled by the init container).
pub const BIN_DIR: &str = "/rdb/bin";
/// The operator binary inside Job pods.
pub const BIN: &str = "/rdb/bin/receiptdb-operator";
const BIN_VOLUME: &str = "rdb-bin";

/// Pod-level security: non-root postgres user, RuntimeDefault seccomp.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(POSTGRES_UID),
        run_as_group: Some(POSTGRES_UID),
        fs_group: Some(POSTGRES_UID),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level security: no privilege escalation, no capabilities.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// `imagePullPolicy` of the member image.
pub fn pull_policy(pair: &ReceiptDbPair) -> String {
    match pair.spec.postgres.image_pull_policy {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
    .into()
}

/// The emptyDir the operator binary is copied into.
pub fn bin_volume() -> Volume {
    Volume {
        name: BIN_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// Mount of [`bin_volume`] at [`BIN_DIR`].
pub fn bin_mount() -> VolumeMount {
    VolumeMount {
        name: BIN_VOLUME.into(),
        mount_path: BIN_DIR.into(),
        ..VolumeMount::default()
    }
}

/// The init container: the operator image is static and distroless (no `cp`), so the binary
/// copies itself (`receiptdb-operator copy-binary /rdb/bin`).
pub fn copy_binary_container(cfg: &OperatorConfig) -> Container {
    Container {
        name: "copy-operator-binary".into(),
        image: Some(cfg.operator_image.clone()),
        command: Some(vec![
            cfg.operator_binary.clone(),
            "copy-binary".into(),
            BIN_DIR.into(),
        ]),
        volume_mounts: Some(vec![bin_mount()]),
        security_context: Some(container_security_context()),
        ..Container::default()
    }
}
