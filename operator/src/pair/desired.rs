//! The owned objects' desired shape, derived from the decided status alone, so that applying it
//! every pass is idempotent and a restarted operator applies the same thing.

use crate::crd::Member;

use super::context::Cx;
use super::Desired;

/// Replicas and client Service selector for the decided status.
///
/// A member runs when it holds initialised data and is not fenced (a stale member in
/// streaming mode is always fenced). The Service selects the active member only when it may
/// serve: never a stale or fenced member, nothing while no member is active.
pub(crate) fn compute(cx: &Cx) -> Desired {
    let runs = |m: Member| i32::from(cx.member(m).initialized && !cx.member(m).fenced);
    let service_selects = cx.status.active_member.filter(|&m| cx.may_serve(m));
    Desired {
        primary_replicas: runs(Member::Primary),
        secondary_replicas: runs(Member::Secondary),
        service_selects,
    }
}
