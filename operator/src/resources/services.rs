//! Services: a headless one per member (direct, stable addressing for probes and Jobs) and the
//! client Service, whose selector names the active member or nothing.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::{labels, owned_meta, OperatorConfig};
use crate::crd::{Member, ReceiptDbPair, ServiceType};

fn postgres_port(pair: &ReceiptDbPair) -> ServicePort {
    ServicePort {
        name: Some("postgres".into()),
        port: pair.spec.postgres.port,
        target_port: Some(IntOrString::Int(pair.spec.postgres.port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The headless Service `<pair>-<member>`. It publishes not-ready addresses, so Jobs and the
/// operator's probes reach a member that is still starting or catching up.
pub fn headless_service(pair: &ReceiptDbPair, member: Member, _cfg: &OperatorConfig) -> Service {
    Service {
        metadata: owned_meta(
            pair,
            pair.member_name(member),
            labels::member_labels(pair, member),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::member_selector(pair, member)),
            ports: Some(vec![postgres_port(pair)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The client Service. `selects`: the active member, or `None` to select no pod at all (both
/// members down, restoring), so clients fail fast instead of reaching a stale server. The
/// selector is always the same two equality terms; only the member value changes.
pub fn client_service(
    pair: &ReceiptDbPair,
    selects: Option<Member>,
    _cfg: &OperatorConfig,
) -> Service {
    let spec = &pair.spec.client_service;
    let mut meta = owned_meta(
        pair,
        pair.client_service_name(),
        labels::common(pair, "client"),
    );
    if !spec.annotations.is_empty() {
        meta.annotations = Some(spec.annotations.clone());
    }
    let selector = BTreeMap::from([
        (
            labels::PAIR.to_string(),
            pair.metadata.name.clone().unwrap_or_default(),
        ),
        (
            labels::MEMBER.to_string(),
            selects
                .map_or(labels::NO_MEMBER, Member::as_str)
                .to_string(),
        ),
    ]);
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(
                match spec.type_ {
                    ServiceType::ClusterIP => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                }
                .into(),
            ),
            selector: Some(selector),
            ports: Some(vec![postgres_port(pair)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The member a client Service's selector names: `None` when it selects nothing.
pub fn selected_member(service: &Service) -> Option<Member> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()?
        .get(labels::MEMBER)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::pair;

    fn selects(svc: &Service, pod_labels: &BTreeMap<String, String>) -> bool {
        svc.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|sel| sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    }

    fn member_pod_labels(member: Member) -> BTreeMap<String, String> {
        let p = pair();
        let sts = super::super::statefulset::statefulset(&p, member, 1, &OperatorConfig::default());
        sts.spec.unwrap().template.metadata.unwrap().labels.unwrap()
    }

    #[test]
    fn headless_services_select_their_member_only() {
        let p = pair();
        for member in Member::ALL {
            let s = headless_service(&p, member, &OperatorConfig::default());
            assert_eq!(s.metadata.name, Some(format!("orca-{member}")));
            assert_eq!(
                s.metadata.owner_references.clone().unwrap()[0].controller,
                Some(true)
            );
            let spec = s.spec.clone().unwrap();
            assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
            assert_eq!(spec.publish_not_ready_addresses, Some(true));
            assert!(selects(&s, &member_pod_labels(member)));
            assert!(!selects(&s, &member_pod_labels(member.other())));
        }
    }

    #[test]
    fn client_service_selects_the_active_member_or_nothing() {
        let mut p = pair();
        let cases = [
            (Some(Member::Primary), [true, false]),
            (Some(Member::Secondary), [false, true]),
            (None, [false, false]),
        ];
        for (active, want) in cases {
            let s = client_service(&p, active, &OperatorConfig::default());
            assert_eq!(s.metadata.name.as_deref(), Some("orca"));
            let got = [
                selects(&s, &member_pod_labels(Member::Primary)),
                selects(&s, &member_pod_labels(Member::Secondary)),
            ];
            assert_eq!(got, want, "active {active:?}");
            assert_eq!(selected_member(&s), active);
            let sel = s.spec.unwrap().selector.unwrap();
            assert_eq!(sel.len(), 2, "equality selector on pair and member only");
        }
        p.spec.client_service.name = Some("receipts-db".into());
        p.spec.client_service.type_ = ServiceType::LoadBalancer;
        p.spec
            .client_service
            .annotations
            .insert("lb.example/internal".into(), "true".into());
        let s = client_service(&p, Some(Member::Primary), &OperatorConfig::default());
        assert_eq!(s.metadata.name.as_deref(), Some("receipts-db"));
        assert_eq!(
            s.metadata.annotations.clone().unwrap()["lb.example/internal"],
            "true"
        );
        assert_eq!(s.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
    }

    #[test]
    fn no_service_selects_job_pods() {
        let p = pair();
        let job = super::super::jobs::job(
            &p,
            crate::pair::JobKind::Initdb,
            Member::Primary,
            1,
            &OperatorConfig::default(),
        );
        let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        for member in Member::ALL {
            assert!(!selects(
                &headless_service(&p, member, &OperatorConfig::default()),
                &pod_labels
            ));
            assert!(!selects(
                &client_service(&p, Some(member), &OperatorConfig::default()),
                &pod_labels
            ));
        }
    }
}
