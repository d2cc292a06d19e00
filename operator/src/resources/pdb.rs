//! The pair's PodDisruptionBudget: at most one member pod may be evicted at a time, so a
//! `kubectl drain` (or a cluster autoscaler, or a node upgrade) never takes both copies at once,
//! and waits while one member is already down.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

use super::{labels, owned_meta};
use crate::crd::ReceiptDbPair;

/// The component label value of member pods (Job pods carry `job`).
pub const MEMBER_COMPONENT: &str = "database";

/// `<pair>`: the budget over both member pods, owned by the pair.
pub fn pod_disruption_budget(pair: &ReceiptDbPair) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(
            pair,
            pair.name_any(),
            labels::common(pair, MEMBER_COMPONENT),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            // Member pods only: the pair and the member component (Job pods are `job`).
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (labels::PAIR.into(), pair.name_any()),
                    (
                        "app.kubernetes.io/component".into(),
                        MEMBER_COMPONENT.into(),
                    ),
                ])),
                ..LabelSelector::default()
            }),
            // A member pod that is not ready serves nobody: evicting it costs no availability,
            // and a drain must not hang on a member that is down anyway. The ready one stays
            // protected while the other is down (1 unavailable already).
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Member;
    use crate::resources::statefulset::statefulset;
    use crate::resources::testing::pair;
    use crate::resources::OperatorConfig;

    #[test]
    fn one_member_pod_at_a_time_and_owned_by_the_pair() {
        let p = pair();
        let pdb = pod_disruption_budget(&p);
        assert_eq!(pdb.metadata.name.as_deref(), Some("orca"));
        assert_eq!(pdb.metadata.namespace.as_deref(), Some("clinic"));
        let owners = pdb.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(owners[0].controller, Some(true));
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        let sel = spec.selector.unwrap().match_labels.unwrap();
        // It selects both member pods ...
        for member in Member::ALL {
            let pod_labels = statefulset(&p, member, 1, &OperatorConfig::default())
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .labels
                .unwrap();
            assert!(
                sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
                "{member}"
            );
        }
        // ... and no Job pod.
        let job_pod_labels = crate::resources::labels::job_pod_labels(
            &p,
            crate::pair::JobKind::Clone,
            Member::Secondary,
            "orca-secondary-clone-1",
        );
        assert!(!sel.iter().all(|(k, v)| job_pod_labels.get(k) == Some(v)));
    }
}
