//! The owned objects' desired shape, derived from the decided status alone, so that applying it
//! every pass is idempotent and a restarted operator applies the same thing.

use crate::crd::{Member, OperationKind};

use super::context::Cx;
use super::Desired;

/// Replicas and client Service selector for the decided status.
///
/// A member runs when it holds initialised data and is not fenced (a stale member in
/// streaming mode is always fenced). The Service selects the active member only when it may
/// serve (never a stale or fenced member, nothing while no member is active) and its pod is
/// ready.
///
/// The pod's readiness changes nothing for clients (an EndpointSlice gives a pod that is not
/// ready no traffic), but it moves the selector's change to when Kubernetes counts the member
/// out: a failover's two changes (away from the old member, to the new one) are then seconds
/// apart instead of a few hundred milliseconds, and kube-proxy, which programs changes at most
/// once per `minSyncPeriod` (1 s by default), applies the new member at once. Measured on the
/// local cluster, the held-back change cost 600 ms of a 3 s outage.
///
/// Nor does it select a member clients could open only read-only sessions on, where every
/// write fails with SQLSTATE 25006, an error the client guide (runbook 002) does not tell
/// clients to retry: the member a streaming switchover is moving away from (its writes are
/// fenced once clients are off it, `switchover.rs`), and a member whose server reports
/// `default_transaction_read_only` on (a write fence not yet lifted after an aborted or
/// interrupted switchover). Clients get connection errors instead, which the guide says to
/// retry.
pub(crate) fn compute(cx: &Cx) -> Desired {
    let runs = |m: Member| i32::from(cx.member(m).initialized && !cx.member(m).fenced);
    let pod_ready = |m: Member| {
        cx.seen(m)
            .pod
            .as_ref()
            .is_some_and(|p| p.ready && !p.terminating)
    };
    let switching_away = |m: Member| {
        cx.streaming()
            && cx.status.operation.as_ref().is_some_and(|op| {
                op.kind == OperationKind::Switchover && op.from.unwrap_or(op.member.other()) == m
            })
    };
    let write_fenced = |m: Member| cx.seen(m).server().is_some_and(|p| p.read_only);
    let service_selects = cx
        .status
        .active_member
        .filter(|&m| cx.may_serve(m) && pod_ready(m) && !switching_away(m) && !write_fenced(m));
    Desired {
        primary_replicas: runs(Member::Primary),
        secondary_replicas: runs(Member::Secondary),
        service_selects,
        protected: cx.status.active_member.or(cx.status.authoritative_member),
    }
}
