//! Where member pods and Job pods run (`spec.scheduling`): the user's node selector,
//! tolerations and affinity, plus the operator's anti-affinity that keeps the two members of a
//! pair apart (by default on different nodes, so losing one node never takes both copies).

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::labels;
use crate::crd::{AntiAffinityMode, Member, ReceiptDbPair};

/// Weight of the preferred anti-affinity term: the highest, so spreading the members outweighs
/// every other preference the scheduler scores.
pub const PREFERRED_WEIGHT: i32 = 100;

/// The term "not in the same `topologyKey` domain as the other member's pod". It selects the
/// other member's pods only (equality on pair and member), so a member pod never repels itself
/// or its own replacement, and Job pods (which carry no `receiptdb.io/member`) are not counted.
pub fn member_anti_affinity_term(pair: &ReceiptDbPair, member: Member) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(labels::member_selector(pair, member.other())),
            ..LabelSelector::default()
        }),
        topology_key: pair.spec.scheduling.topology_key.clone(),
        ..PodAffinityTerm::default()
    }
}

/// The affinity of a pod working for `member` (its member pod, or a Job writing its data
/// directory): the user's affinity with the member anti-affinity added to its pod
/// anti-affinity terms. `None` for `member` gives the user's affinity alone (Jobs that do not
/// touch a member's volume).
pub fn affinity(pair: &ReceiptDbPair, member: Option<Member>) -> Option<Affinity> {
    let sched = &pair.spec.scheduling;
    let mut affinity = sched.affinity.clone();
    let Some(member) = member else {
        return affinity;
    };
    let term = member_anti_affinity_term(pair, member);
    let anti = |a: &mut Option<Affinity>| -> PodAntiAffinity {
        a.get_or_insert_with(Affinity::default)
            .pod_anti_affinity
            .take()
            .unwrap_or_default()
    };
    match sched.anti_affinity {
        AntiAffinityMode::None => {}
        AntiAffinityMode::Required => {
            let mut paa = anti(&mut affinity);
            paa.required_during_scheduling_ignored_during_execution
                .get_or_insert_with(Vec::new)
                .push(term);
            put(&mut affinity, paa);
        }
        AntiAffinityMode::Preferred => {
            let mut paa = anti(&mut affinity);
            paa.preferred_during_scheduling_ignored_during_execution
                .get_or_insert_with(Vec::new)
                .push(WeightedPodAffinityTerm {
                    weight: PREFERRED_WEIGHT,
                    pod_affinity_term: term,
                });
            put(&mut affinity, paa);
        }
    }
    affinity
}

fn put(affinity: &mut Option<Affinity>, paa: PodAntiAffinity) {
    affinity
        .get_or_insert_with(Affinity::default)
        .pod_anti_affinity = Some(paa);
}

/// Set a pod's node selector, tolerations and affinity from the spec (see [`affinity`]).
pub fn place(pod: &mut PodSpec, pair: &ReceiptDbPair, member: Option<Member>) {
    let sched = &pair.spec.scheduling;
    pod.node_selector = (!sched.node_selector.is_empty()).then(|| sched.node_selector.clone());
    pod.tolerations = (!sched.tolerations.is_empty()).then(|| sched.tolerations.clone());
    pod.affinity = affinity(pair, member);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Toleration,
    };

    use super::*;
    use crate::resources::testing::pair;

    fn required(a: &Option<Affinity>) -> Vec<PodAffinityTerm> {
        a.clone()
            .and_then(|a| a.pod_anti_affinity)
            .and_then(|p| p.required_during_scheduling_ignored_during_execution)
            .unwrap_or_default()
    }

    fn preferred(a: &Option<Affinity>) -> Vec<WeightedPodAffinityTerm> {
        a.clone()
            .and_then(|a| a.pod_anti_affinity)
            .and_then(|p| p.preferred_during_scheduling_ignored_during_execution)
            .unwrap_or_default()
    }

    #[test]
    fn by_default_each_member_requires_a_node_without_the_other() {
        let p = pair();
        for member in Member::ALL {
            let a = affinity(&p, Some(member));
            let terms = required(&a);
            assert_eq!(terms.len(), 1, "{member}");
            assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
            let sel = terms[0]
                .label_selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap();
            assert_eq!(
                sel,
                BTreeMap::from([
                    (labels::PAIR.to_string(), "orca".to_string()),
                    (
                        labels::MEMBER.to_string(),
                        member.other().as_str().to_string()
                    ),
                ]),
                "{member} avoids the other member's pods only"
            );
            assert!(preferred(&a).is_empty());
            assert!(a.unwrap().node_affinity.is_none());
        }
    }

    #[test]
    fn preferred_none_and_the_topology_key() {
        let mut p = pair();
        p.spec.scheduling.anti_affinity = AntiAffinityMode::Preferred;
        p.spec.scheduling.topology_key = "topology.kubernetes.io/zone".into();
        let a = affinity(&p, Some(Member::Primary));
        assert!(required(&a).is_empty());
        let w = preferred(&a);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].weight, PREFERRED_WEIGHT);
        assert_eq!(
            w[0].pod_affinity_term.topology_key,
            "topology.kubernetes.io/zone"
        );

        p.spec.scheduling.anti_affinity = AntiAffinityMode::None;
        assert_eq!(affinity(&p, Some(Member::Primary)), None);
        // Jobs that touch no member's volume get only what the user asked for.
        assert_eq!(affinity(&pair(), None), None);
    }

    #[test]
    fn the_users_affinity_is_kept_and_the_member_term_added() {
        let mut p = pair();
        let node_affinity = NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "disk".into(),
                        operator: "In".into(),
                        values: Some(vec!["ssd".into()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        };
        let users_term = PodAffinityTerm {
            topology_key: "kubernetes.io/hostname".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "noisy".into())])),
                ..LabelSelector::default()
            }),
            ..PodAffinityTerm::default()
        };
        p.spec.scheduling.affinity = Some(Affinity {
            node_affinity: Some(node_affinity.clone()),
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![users_term.clone()]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        });
        let a = affinity(&p, Some(Member::Secondary));
        let terms = required(&a);
        assert_eq!(
            terms,
            vec![
                users_term.clone(),
                member_anti_affinity_term(&p, Member::Secondary)
            ]
        );
        assert_eq!(a.unwrap().node_affinity, Some(node_affinity.clone()));
        // Without a member: the user's affinity unchanged.
        let a = affinity(&p, None);
        assert_eq!(required(&a), vec![users_term]);
        assert_eq!(a.unwrap().node_affinity, Some(node_affinity));
    }

    #[test]
    fn node_selector_and_tolerations_pass_through() {
        let mut pod = PodSpec::default();
        place(&mut pod, &pair(), None);
        assert_eq!(pod.node_selector, None);
        assert_eq!(pod.tolerations, None);

        let mut p = pair();
        p.spec
            .scheduling
            .node_selector
            .insert("role".into(), "db".into());
        let t = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        };
        p.spec.scheduling.tolerations = vec![t.clone()];
        place(&mut pod, &p, Some(Member::Primary));
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([("role".into(), "db".into())]))
        );
        assert_eq!(pod.tolerations, Some(vec![t]));
        assert_eq!(required(&pod.affinity).len(), 1);
    }
}
