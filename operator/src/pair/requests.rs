//! `receiptdb.io/sync=now|force`: re-align the non-authoritative member on request.
//!
//! `now` compares first and re-aligns only when the databases differ (streaming: a `check`,
//! then a full clone if needed; external: the `sync` Job compares by itself). `force` re-aligns
//! without comparing (streaming: a fresh clone; external: a `sync` Job, built with `--force`
//! while the annotation says `force`; a repair that a check started in external mode runs the
//! differential `sync`, which reloads what differs, then verifies). The annotation is removed when the
//! operation it started ends, or at once when the value is invalid or the request cannot run.

use crate::crd::annotation;

use super::checks;
use super::context::Cx;
use super::realign;
use super::{Action, SyncRequest};

/// Handle a sync request. True when it acted.
pub(crate) fn plan(cx: &mut Cx) -> bool {
    let Some(request) = cx.obs.requests.sync.clone() else {
        return false;
    };
    let clear = Action::ClearAnnotation {
        key: annotation::SYNC,
    };
    let request = match request {
        Err(v) => {
            cx.event(
                true,
                "SyncRefused",
                format!("{}={v:?}: expected now or force", annotation::SYNC),
            );
            cx.act(clear);
            return true;
        }
        Ok(r) => r,
    };
    let Some(auth) = cx.status.authoritative_member else {
        return false; // not bootstrapped yet: keep the request for later
    };
    let n = auth.other();
    let refusal = if cx.in_maintenance(n) {
        Some(format!("{n} is under maintenance"))
    } else if !cx.member(n).initialized || !cx.member(auth).initialized {
        Some("the pair is not initialised".to_string())
    } else if !realign::source_ready(cx, auth) {
        Some(format!("the authoritative member {auth} is not healthy"))
    } else {
        None
    };
    if let Some(why) = refusal {
        cx.event(true, "SyncRefused", format!("sync of {n} refused: {why}"));
        cx.act(clear);
        return true;
    }
    match request {
        SyncRequest::Now if cx.streaming() && checks::ready_to_compare(cx, auth, n) => {
            checks::start(
                cx,
                n,
                "requested sync: comparing first",
                Some(annotation::SYNC),
            );
        }
        SyncRequest::Now => {
            realign::start(cx, n, false, "requested sync", Some(annotation::SYNC));
        }
        SyncRequest::Force => {
            realign::start(cx, n, true, "requested full sync", Some(annotation::SYNC));
        }
    }
    true
}
