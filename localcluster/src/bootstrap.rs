//! What the cluster needs in the API before its components start, applied with the admin
//! identity: the rights of CoreDNS and of the node agents' volume provisioner, the default
//! StorageClass, and the `kube-dns` Service in front of CoreDNS.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde::Serialize;

use crate::layout::{DNS_SERVICE_IP, GATEWAY};

/// The field manager of everything the cluster tool applies.
pub const FIELD_MANAGER: &str = "localcluster";
/// The user name in CoreDNS's client certificate.
pub const COREDNS_USER: &str = "receiptdb:coredns";
/// The group of every node agent's certificate (as of every kubelet's). The rights of the local
/// volume provisioner the agents run are bound to it (a certificate carries one group here:
/// rcgen writes one organisation per name).
pub const NODES_GROUP: &str = "system:nodes";
/// The provisioner name of the default StorageClass.
pub const PROVISIONER: &str = "localcluster.receiptdb.io/dir";
/// The default StorageClass.
pub const STORAGE_CLASS: &str = "local-dir";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(s(groups)),
        resources: Some(s(resources)),
        verbs: s(verbs),
        ..PolicyRule::default()
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .with_context(|| format!("apply {name}"))?;
    Ok(())
}

async fn role_for(
    client: &Client,
    name: &str,
    rules: Vec<PolicyRule>,
    subject: Subject,
) -> Result<()> {
    let role = ClusterRole {
        metadata: meta(name),
        rules: Some(rules),
        ..ClusterRole::default()
    };
    apply(&Api::<ClusterRole>::all(client.clone()), name, &role).await?;
    let binding = ClusterRoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(vec![subject]),
    };
    apply(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        name,
        &binding,
    )
    .await
}

/// Apply everything (idempotent).
pub async fn apply_all(client: &Client) -> Result<()> {
    // CoreDNS's kubernetes plugin lists and watches these (as the standard system:coredns
    // ClusterRole allows).
    role_for(
        client,
        "receiptdb:coredns",
        vec![
            rule(
                &[""],
                &["endpoints", "services", "pods", "namespaces"],
                &["list", "watch"],
            ),
            rule(
                &["discovery.k8s.io"],
                &["endpointslices"],
                &["list", "watch"],
            ),
        ],
        Subject {
            kind: "User".into(),
            name: COREDNS_USER.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        },
    )
    .await?;
    // The node agents' volume provisioner: it creates a PersistentVolume for a claim the
    // scheduler placed on its node, and deletes released ones. The Node authorizer gives
    // nodes no right to create PersistentVolumes, hence this role.
    role_for(
        client,
        "receiptdb:local-volume-provisioner",
        vec![
            rule(
                &[""],
                &["persistentvolumes"],
                &["get", "list", "watch", "create", "delete"],
            ),
            rule(
                &[""],
                &["persistentvolumeclaims"],
                &["get", "list", "watch"],
            ),
            rule(
                &["storage.k8s.io"],
                &["storageclasses"],
                &["get", "list", "watch"],
            ),
            rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
        ],
        Subject {
            kind: "Group".into(),
            name: NODES_GROUP.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        },
    )
    .await?;

    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".into(),
                "true".into(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..StorageClass::default()
    };
    apply(
        &Api::<StorageClass>::all(client.clone()),
        STORAGE_CLASS,
        &class,
    )
    .await?;

    let dns_ports = [("dns", "UDP"), ("dns-tcp", "TCP")];
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("kube-dns".into()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([("k8s-app".into(), "kube-dns".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(DNS_SERVICE_IP.to_string()),
            ports: Some(
                dns_ports
                    .iter()
                    .map(|(n, proto)| ServicePort {
                        name: Some(n.to_string()),
                        port: 53,
                        protocol: Some(proto.to_string()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    apply(
        &Api::<Service>::namespaced(client.clone(), "kube-system"),
        "kube-dns",
        &svc,
    )
    .await?;
    // CoreDNS runs as a host process, so the Service has no selector and this slice names
    // its address, as for any Service in front of something outside the cluster's pods.
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            name: Some("kube-dns-host".into()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/service-name".into(), "kube-dns".into()),
                (
                    "endpointslice.kubernetes.io/managed-by".into(),
                    "localcluster.receiptdb.io".into(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(vec![Endpoint {
            addresses: vec![GATEWAY.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Endpoint::default()
        }]),
        ports: Some(
            dns_ports
                .iter()
                .map(|(n, proto)| EndpointPort {
                    name: Some(n.to_string()),
                    port: Some(53),
                    protocol: Some(proto.to_string()),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    };
    apply(
        &Api::<EndpointSlice>::namespaced(client.clone(), "kube-system"),
        "kube-dns-host",
        &slice,
    )
    .await
}
