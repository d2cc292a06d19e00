//! Label keys and label sets. Selectors are equality-only (no `in (...)`), so they behave the
//! same in every API implementation, including the in-memory one the tests use.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::{Member, ReceiptDbPair};
use crate::pair::JobKind;

/// The pair an object or pod belongs to.
pub const PAIR: &str = "receiptdb.io/pair";
/// The member a StatefulSet, headless Service, member pod or Job is about. Only member pods
/// carry it among pods: the Services select on it, so Job pods must not.
pub const MEMBER: &str = "receiptdb.io/member";
/// The kind of a Job (`initdb`, `clone`, ...), on the Job and its pods.
pub const JOB: &str = "receiptdb.io/job";
/// On Job pods: the member the Job works on (never `receiptdb.io/member`, see [`MEMBER`]).
pub const JOB_MEMBER: &str = "receiptdb.io/job-member";
/// On Job pods: the Job's name, so the operator finds them without relying on the Job
/// controller's own labels.
pub const JOB_NAME: &str = "receiptdb.io/job-name";
/// On Jobs: the attempt number in the name (`<pair>-<member>-<kind>-<attempt>`).
pub const ATTEMPT: &str = "receiptdb.io/attempt";
/// The member label value that no pod has: a client Service selecting it selects nothing.
pub const NO_MEMBER: &str = "none";

/// `app.kubernetes.io/*` labels shared by everything the operator creates for a pair.
pub fn common(pair: &ReceiptDbPair, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "receiptdb".into()),
        ("app.kubernetes.io/instance".into(), pair.name_any()),
        ("app.kubernetes.io/component".into(), component.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "receiptdb-operator".into(),
        ),
        (PAIR.into(), pair.name_any()),
    ])
}

/// The selector of one member's pods.
pub fn member_selector(pair: &ReceiptDbPair, member: Member) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PAIR.into(), pair.name_any()),
        (MEMBER.into(), member.as_str().into()),
    ])
}

/// Labels of a member's StatefulSet, Service and pods.
pub fn member_labels(pair: &ReceiptDbPair, member: Member) -> BTreeMap<String, String> {
    let mut l = common(pair, "database");
    l.extend(member_selector(pair, member));
    l
}

/// Labels of a Job object.
pub fn job_labels(
    pair: &ReceiptDbPair,
    kind: JobKind,
    member: Member,
    attempt: u32,
) -> BTreeMap<String, String> {
    let mut l = common(pair, "job");
    l.insert(MEMBER.into(), member.as_str().into());
    l.insert(JOB.into(), kind.as_str().into());
    l.insert(ATTEMPT.into(), attempt.to_string());
    l
}

/// Labels of a Job's pods: no `receiptdb.io/member`, so no Service ever selects them.
pub fn job_pod_labels(
    pair: &ReceiptDbPair,
    kind: JobKind,
    member: Member,
    job_name: &str,
) -> BTreeMap<String, String> {
    let mut l = common(pair, "job");
    l.insert(JOB.into(), kind.as_str().into());
    l.insert(JOB_MEMBER.into(), member.as_str().into());
    l.insert(JOB_NAME.into(), job_name.into());
    l
}

/// `receiptdb.io/pair=<pair>`: the list selector for everything of one pair.
pub fn pair_selector(pair: &ReceiptDbPair) -> String {
    format!("{PAIR}={}", pair.name_any())
}
