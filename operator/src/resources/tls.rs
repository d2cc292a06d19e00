//! The pair's TLS objects (pure builders): three Secrets, and what member pods and Jobs mount.
//!
//! - `<pair>-tls-ca`: the CA certificate and its key. Only the operator reads it; created once
//!   and never replaced (clients hold the CA). Like the password Secrets it carries no owner
//!   with `storage.reclaimPolicy: Retain`, so a pair re-created on retained volumes keeps its CA.
//! - `<pair>-tls`: the server certificate, its key and the CA certificate (`kubernetes.io/tls`
//!   with `ca.crt`), mounted into both members; re-issued by the operator (see
//!   [`receiptdb_postgres::pki::reissue_reason`]). Replaced by `spec.tls.serverSecret` when set.
//! - `<pair>-ca`: only `ca.crt`, for clients (and mounted by every Job to verify the members).
//!
//! Members read the server Secret through a volume with mode 0640: owned by root, readable by
//! the pod's fsGroup (the postgres group), which PostgreSQL accepts for a key file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::ByteString;
use kube::ResourceExt;
use receiptdb_postgres::member::tls::{CA_FILE, CERT_FILE, KEY_FILE};
use receiptdb_postgres::pki::CertAndKey;

use super::{labels, owned_meta};
use crate::crd::{Member, ReceiptDbPair, ReclaimPolicy};

/// Where member pods mount the server Secret (the `--tls-dir` of initdb, clone and rejoin).
pub const SERVER_TLS_MOUNT: &str = "/rdb/tls";
/// Where Job pods mount the client CA Secret.
pub const CA_MOUNT: &str = "/rdb/ca";
/// Key of the CA's private key in the CA Secret.
pub const CA_KEY: &str = "ca.key";
/// Annotation on the server Secret: when the operator issued it (RFC 3339), so members are
/// asked to reload for a while after (the kubelet updates mounted files lazily).
pub const ISSUED_AT: &str = "receiptdb.io/tls-issued-at";
/// The cluster's DNS domain, for the fully qualified names in the certificate.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

const SERVER_VOLUME: &str = "tls";
const CA_VOLUME: &str = "ca";

/// Whether TLS is on for the pair.
pub fn enabled(pair: &ReceiptDbPair) -> bool {
    pair.spec.tls.enabled
}

/// `<pair>-tls-ca`: the operator's CA Secret.
pub fn ca_secret_name(pair: &ReceiptDbPair) -> String {
    format!("{}-tls-ca", pair.name_any())
}

/// The Secret the members mount: the user's `spec.tls.serverSecret`, else `<pair>-tls`.
pub fn server_secret_name(pair: &ReceiptDbPair) -> String {
    pair.spec
        .tls
        .server_secret
        .clone()
        .unwrap_or_else(|| format!("{}-tls", pair.name_any()))
}

/// Whether the operator issues the server certificate (no user-supplied Secret).
pub fn operator_issued(pair: &ReceiptDbPair) -> bool {
    pair.spec.tls.server_secret.is_none()
}

/// `<pair>-ca`: the CA certificate for clients.
pub fn client_ca_secret_name(pair: &ReceiptDbPair) -> String {
    format!("{}-ca", pair.name_any())
}

/// Every name the server certificate must carry: the client Service's and each member's
/// headless Service's, and each member pod's, short and qualified (`name`, `name.ns`,
/// `name.ns.svc`, `name.ns.svc.cluster.local`). Sorted, without duplicates.
pub fn server_names(pair: &ReceiptDbPair) -> Vec<String> {
    let ns = pair.namespace().unwrap_or_else(|| "default".into());
    let qualified = |name: &str| {
        vec![
            name.to_string(),
            format!("{name}.{ns}"),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}"),
        ]
    };
    let mut names = qualified(&pair.client_service_name());
    for member in Member::ALL {
        let svc = pair.member_name(member);
        names.extend(qualified(&svc));
        // The StatefulSet's pod through its headless Service.
        names.push(format!("{svc}-0.{svc}.{ns}.svc"));
        names.push(format!("{svc}-0.{svc}.{ns}.svc.{CLUSTER_DOMAIN}"));
    }
    names.sort();
    names.dedup();
    names
}

/// The CA Secret's common name: which pair it belongs to.
pub fn ca_common_name(pair: &ReceiptDbPair) -> String {
    format!(
        "{}/{} CA",
        pair.namespace().unwrap_or_default(),
        pair.name_any()
    )
}

fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The CA Secret holding `ca` (certificate and key).
pub fn ca_secret(pair: &ReceiptDbPair, ca: &CertAndKey) -> Secret {
    let mut meta = owned_meta(pair, ca_secret_name(pair), labels::common(pair, "tls"));
    if pair.spec.storage.reclaim_policy == ReclaimPolicy::Retain {
        meta.owner_references = None;
    }
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(data(&[(CA_FILE, &ca.cert_pem), (CA_KEY, &ca.key_pem)])),
        immutable: Some(true),
        ..Secret::default()
    }
}

/// The server Secret: `server` and the CA certificate, stamped with when it was issued.
pub fn server_secret(
    pair: &ReceiptDbPair,
    server: &CertAndKey,
    ca_cert_pem: &str,
    issued_at: &str,
) -> Secret {
    let mut meta = owned_meta(pair, server_secret_name(pair), labels::common(pair, "tls"));
    meta.annotations = Some(BTreeMap::from([(ISSUED_AT.into(), issued_at.into())]));
    Secret {
        metadata: meta,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data(&[
            (CERT_FILE, &server.cert_pem),
            (KEY_FILE, &server.key_pem),
            (CA_FILE, ca_cert_pem),
        ])),
        ..Secret::default()
    }
}

/// The clients' CA Secret: `ca.crt` only.
pub fn client_ca_secret(pair: &ReceiptDbPair, ca_cert_pem: &str) -> Secret {
    Secret {
        metadata: owned_meta(
            pair,
            client_ca_secret_name(pair),
            labels::common(pair, "tls"),
        ),
        type_: Some("Opaque".into()),
        data: Some(data(&[(CA_FILE, ca_cert_pem)])),
        ..Secret::default()
    }
}

/// A text value of a Secret, when present and UTF-8.
pub fn text_in(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|s| !s.is_empty())
}

fn secret_volume(volume: &str, secret: String, mount: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o640),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: volume.into(),
            mount_path: mount.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    )
}

/// The member pod's server Secret volume, when TLS is on. Mounted as a directory (no
/// `subPath`), so the kubelet updates the files when the Secret changes.
pub fn member_volume(pair: &ReceiptDbPair) -> Option<(Volume, VolumeMount)> {
    enabled(pair).then(|| secret_volume(SERVER_VOLUME, server_secret_name(pair), SERVER_TLS_MOUNT))
}

/// The server's command-line settings that turn TLS on with the mounted files (they also
/// cover a data directory initialized before TLS was on).
pub fn member_settings(pair: &ReceiptDbPair) -> Vec<String> {
    if !enabled(pair) {
        return Vec::new();
    }
    vec![
        "ssl=on".into(),
        format!("ssl_cert_file={SERVER_TLS_MOUNT}/{CERT_FILE}"),
        format!("ssl_key_file={SERVER_TLS_MOUNT}/{KEY_FILE}"),
        format!("ssl_ca_file={SERVER_TLS_MOUNT}/{CA_FILE}"),
    ]
}

/// A Job's client CA volume and its TLS environment (`PGSSLMODE=verify-full`,
/// `PGSSLROOTCERT`), when TLS is on. `writes_member` Jobs (initdb, clone, rejoin) also get
/// `RECEIPTDB_TLS_DIR`: where the member's server finds its files.
pub fn job_tls(
    pair: &ReceiptDbPair,
    writes_member: bool,
) -> Option<(Volume, VolumeMount, Vec<EnvVar>)> {
    if !enabled(pair) {
        return None;
    }
    let (v, m) = secret_volume(CA_VOLUME, client_ca_secret_name(pair), CA_MOUNT);
    let var = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    };
    let mut env = vec![
        var("PGSSLMODE", "verify-full".into()),
        var("PGSSLROOTCERT", format!("{CA_MOUNT}/{CA_FILE}")),
    ];
    if writes_member {
        env.push(var("RECEIPTDB_TLS_DIR", SERVER_TLS_MOUNT.into()));
    }
    Some((v, m, env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::pair;
    use std::time::SystemTime;

    #[test]
    fn the_certificate_carries_every_name_clients_and_peers_use() {
        let mut p = pair();
        p.spec.client_service.name = Some("db".into());
        let names = server_names(&p);
        for n in [
            "db",
            "db.clinic",
            "db.clinic.svc",
            "db.clinic.svc.cluster.local",
            "orca-primary",
            "orca-primary.clinic.svc",
            "orca-secondary.clinic.svc.cluster.local",
            "orca-secondary-0.orca-secondary.clinic.svc",
            // What the operator's probes and the Jobs connect to.
            &crate::resources::member_host(&p, Member::Primary),
            &crate::resources::member_host(&p, Member::Secondary),
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        // A certificate issued for them is current; a renamed client Service is not.
        let ca = receiptdb_postgres::pki::issue_ca(&ca_common_name(&p), SystemTime::now()).unwrap();
        let cert = receiptdb_postgres::pki::issue_server(&ca, &names, SystemTime::now()).unwrap();
        let reason = |p: &ReceiptDbPair| {
            receiptdb_postgres::pki::reissue_reason(
                Some(&cert.cert_pem),
                &ca.cert_pem,
                &server_names(p),
                SystemTime::now(),
            )
        };
        assert_eq!(reason(&p), None);
        p.spec.client_service.name = Some("db2".into());
        assert_eq!(
            reason(&p),
            Some(receiptdb_postgres::pki::Reissue::NamesChanged)
        );
    }

    #[test]
    fn secrets_hold_what_their_readers_need() {
        let p = pair();
        let ca = CertAndKey {
            cert_pem: "CA".into(),
            key_pem: "CAKEY".into(),
        };
        let s = ca_secret(&p, &ca);
        assert_eq!(s.metadata.name.as_deref(), Some("orca-tls-ca"));
        assert_eq!(text_in(&s, "ca.key").as_deref(), Some("CAKEY"));
        assert_eq!(
            s.metadata.owner_references, None,
            "kept with retained volumes"
        );
        let server = CertAndKey {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let s = server_secret(&p, &server, "CA", "2026-12-01T00:00:00Z");
        assert_eq!(s.metadata.name.as_deref(), Some("orca-tls"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        for (k, v) in [("tls.crt", "CERT"), ("tls.key", "KEY"), ("ca.crt", "CA")] {
            assert_eq!(text_in(&s, k).as_deref(), Some(v));
        }
        let c = client_ca_secret(&p, "CA");
        assert_eq!(c.metadata.name.as_deref(), Some("orca-ca"));
        assert_eq!(c.data.unwrap().keys().collect::<Vec<_>>(), ["ca.crt"]);
    }

    #[test]
    fn mounts_and_environment_follow_the_spec() {
        let mut p = pair();
        let (v, m) = member_volume(&p).expect("TLS is on by default");
        let src = v.secret.unwrap();
        assert_eq!(src.secret_name.as_deref(), Some("orca-tls"));
        assert_eq!(src.default_mode, Some(0o640));
        assert_eq!(
            (m.mount_path.as_str(), m.sub_path),
            (SERVER_TLS_MOUNT, None)
        );
        let (_, _, env) = job_tls(&p, true).unwrap();
        let get = |k: &str| {
            env.iter()
                .find(|e| e.name == k)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/rdb/ca/ca.crt"));
        assert_eq!(get("RECEIPTDB_TLS_DIR").as_deref(), Some("/rdb/tls"));
        assert!(job_tls(&p, false)
            .unwrap()
            .2
            .iter()
            .all(|e| e.name != "RECEIPTDB_TLS_DIR"));
        p.spec.tls.server_secret = Some("mine".into());
        assert_eq!(
            member_volume(&p)
                .unwrap()
                .0
                .secret
                .unwrap()
                .secret_name
                .as_deref(),
            Some("mine")
        );
        p.spec.tls.enabled = false;
        assert!(member_volume(&p).is_none() && job_tls(&p, true).is_none());
        assert!(member_settings(&p).is_empty());
    }
}
