//! The pair's PodDisruptionBudget: the active member's pod is never evicted (at most 0
//! unavailable), the other member's may be. A `kubectl drain` of the active member's node (or a
//! cluster autoscaler, or a node upgrade) therefore cannot take the serving copy: the eviction
//! is refused (and retried by `kubectl drain`) until the operator, which sees the node cordoned,
//! has switched clients over to the other member in a planned switchover and moved this budget
//! to it. Then the old member is evicted like any standby. Both copies are never evicted at
//! once, since the active one never is.
//!
//! A member pod that is not ready serves nobody: evicting it costs no availability, and a drain
//! must not hang on a member that is down anyway (`unhealthyPodEvictionPolicy: AlwaysAllow`).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{labels, owned_meta};
use crate::crd::{Member, ReceiptDbPair};

/// The component label value of member pods (Job pods carry `job`).
pub const MEMBER_COMPONENT: &str = "database";

/// `<pair>`: the budget over the `protected` member's pod (none when `None`), owned by the pair.
pub fn pod_disruption_budget(
    pair: &ReceiptDbPair,
    protected: Option<Member>,
) -> PodDisruptionBudget {
    let mut selector = labels::member_selector(pair, Member::Primary);
    selector.insert(
        labels::MEMBER.into(),
        protected.map_or(labels::NO_MEMBER, Member::as_str).into(),
    );
    PodDisruptionBudget {
        metadata: owned_meta(
            pair,
            pair.name_any(),
            labels::common(pair, MEMBER_COMPONENT),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(0)),
            // Member pods only: Job pods never carry the member label.
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::statefulset::statefulset;
    use crate::resources::testing::pair;
    use crate::resources::OperatorConfig;

    fn selects(
        pdb: &PodDisruptionBudget,
        pod_labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        let sel = pdb
            .spec
            .clone()
            .unwrap()
            .selector
            .unwrap()
            .match_labels
            .unwrap();
        sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    }

    fn member_pod_labels(
        p: &ReceiptDbPair,
        m: Member,
    ) -> std::collections::BTreeMap<String, String> {
        statefulset(p, m, 1, &OperatorConfig::default())
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap()
    }

    #[test]
    fn only_the_protected_member_pod_none_evictable_and_owned_by_the_pair() {
        let p = pair();
        let pdb = pod_disruption_budget(&p, Some(Member::Secondary));
        assert_eq!(pdb.metadata.name.as_deref(), Some("orca"));
        assert_eq!(pdb.metadata.namespace.as_deref(), Some("clinic"));
        let owners = pdb.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(owners[0].controller, Some(true));
        let spec = pdb.spec.clone().unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        assert!(selects(&pdb, &member_pod_labels(&p, Member::Secondary)));
        assert!(!selects(&pdb, &member_pod_labels(&p, Member::Primary)));
        let job_pod_labels = crate::resources::labels::job_pod_labels(
            &p,
            crate::pair::JobKind::Clone,
            Member::Secondary,
            "orca-secondary-clone-1",
        );
        assert!(!selects(&pdb, &job_pod_labels));
        let nobody = pod_disruption_budget(&p, None);
        for m in Member::ALL {
            assert!(!selects(&nobody, &member_pod_labels(&p, m)), "{m}");
        }
    }
}
