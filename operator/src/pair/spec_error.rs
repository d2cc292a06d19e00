//! A spec the schema could not reject (e.g. a referenced Secret lacks its key).
//!
//! Nothing that exists is changed: no desired state, no actions. Status keeps everything it
//! knew; only the Ready condition says why (its `observedGeneration` names the offending
//! generation), while `status.observedGeneration` stays at the last generation acted upon, so
//! tools waiting for the new generation to be observed do not mistake it for applied.
//! A Warning Event is recorded only when the message changes, and the pass is not repeated
//! soon: a spec error waits for a change of the spec, which triggers a pass by itself. A missing
//! referenced Secret is the exception: it is looked for again every 10 s.

use std::time::Duration;

use super::context::Cx;
use super::phase::ready;
use super::Decision;

/// How long to wait before looking at a broken spec again without a change.
pub const SPEC_ERROR_REQUEUE: Duration = Duration::from_secs(300);

/// How long to wait before looking again for a referenced object that is missing.
pub const MISSING_OBJECT_REQUEUE: Duration = Duration::from_secs(10);

pub(crate) fn decide(mut cx: Cx, error: &str) -> Decision {
    let requeue_after = if cx.obs.spec_error_awaits_object {
        MISSING_OBJECT_REQUEUE
    } else {
        SPEC_ERROR_REQUEUE
    };
    ready(&mut cx, false, "InvalidSpec", error.to_string());
    let mut actions = cx.actions;
    actions.extend(cx.events);
    Decision {
        desired: None,
        actions,
        status: cx.status,
        requeue_after,
    }
}
