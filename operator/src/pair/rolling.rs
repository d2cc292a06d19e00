//! Rolling changes of the members' pod template: an image, a parameter, resources, scheduling.
//!
//! Member StatefulSets update `OnDelete`, so a changed template restarts nothing by itself (with
//! `RollingUpdate` both members would restart at once: the primary's restart is an outage, and
//! the operator would see a failing primary). Instead, while the pair is settled (no operation,
//! the active member healthy, the standby healthy and streaming, as a switchover needs):
//! 1. the standby, if its pod is outdated, is restarted on the new template (`RestartPod`); its
//!    commits degrade to asynchronous while it is away, as for any standby restart;
//! 2. once the standby runs the new template and streams again, an outdated active member is
//!    switched away from in a planned switchover (clients see only the errors the client
//!    guide says to retry);
//! 3. the old active member is re-aligned after the switchover like any switched-away member,
//!    and its new pod is made from the new template.
//!
//! With `failover.failback: automatic` the pair then fails back to `primary`, already updated.
//! A major-version change of the image never gets here: the CRD refuses it.

use crate::crd::Member;

use super::context::Cx;
use super::switchover::{refusal, start};
use super::Action;

/// The member's pod runs an outdated template (and is not already on its way out).
fn outdated(cx: &Cx, m: Member) -> bool {
    cx.seen(m)
        .pod
        .as_ref()
        .is_some_and(|p| p.outdated && !p.terminating)
}

/// Take the next step of a rolling change, if one is due. Returns true when it acted.
pub(crate) fn plan(cx: &mut Cx) -> bool {
    if cx.status.operation.is_some() {
        return false;
    }
    let Some(active) = cx.status.active_member else {
        return false;
    };
    let standby = active.other();
    if !outdated(cx, standby) && !outdated(cx, active) {
        return false;
    }
    // Both steps need what a switchover to the standby needs: the active member healthy, the
    // standby healthy, current, streaming and not under maintenance or on a cordoned node.
    if refusal(cx, standby).is_some() {
        return false;
    }
    if outdated(cx, standby) {
        cx.act(Action::RestartPod { member: standby });
        cx.event(
            false,
            "RollingRestart",
            format!("restarting {standby} on the changed pod template (the standby first)"),
        );
        return true;
    }
    let reason = format!("rolling change: {active} runs an outdated pod template");
    start(cx, standby, &reason, None);
    true
}
