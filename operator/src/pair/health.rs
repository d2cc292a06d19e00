//! Health: per-member status from the pod and the SQL probe, and `failingSince`.
//!
//! A member is healthy when its pod is ready *and* its server answered the probe: a ready pod
//! whose server the operator cannot reach (a partition) counts as failing. Values that need the
//! server (LSN, timeline, lag) keep their last observed value while it is unreachable: they are
//! the operator's memory of how far each member got, used to judge data at risk.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use crate::crd::{Member, ServerRole};

use super::context::{format_lsn, parse_lsn, Cx};

/// Fill per-member status from the observation.
pub(crate) fn observe(cx: &mut Cx) {
    for m in Member::ALL {
        observe_member(cx, m);
    }
    for m in Member::ALL {
        observe_lag(cx, m);
    }
}

fn observe_member(cx: &mut Cx, m: Member) {
    let seen = cx.seen(m);
    let healthy = seen.healthy();
    // A failure is dated from the start of the probe that found it (see `probed_at`).
    let now = cx.obs.probed_at.map_or_else(|| cx.micro_time(), MicroTime);
    let expected_up = {
        let st = cx.member(m);
        st.initialized && !st.fenced && !seen.data_lost
    };
    if seen.data_lost && cx.member(m).initialized {
        // The data is gone: the member needs a clone (or both a restore). Whatever it held is
        // not the truth anymore.
        cx.data_lost(m);
        let st = cx.member_mut(m);
        st.lsn = None;
        st.timeline = None;
        st.lag_bytes = None;
    }
    let st = cx.member_mut(m);
    st.ready = healthy;
    if let Some(p) = seen.server() {
        st.role = Some(if p.in_recovery {
            ServerRole::Standby
        } else {
            ServerRole::Primary
        });
        st.lsn = Some(format_lsn(p.lsn));
        st.timeline = Some(p.timeline);
    }
    st.message = if healthy {
        None
    } else {
        Some(match (&seen.pod, &seen.probe) {
            (None, _) => "no pod".to_string(),
            (Some(p), _) if p.terminating => "pod terminating".to_string(),
            (Some(_), Some(Err(e))) => format!("probe failed: {e}"),
            (Some(p), _) if !p.ready => "pod not ready".to_string(),
            _ => "not probed".to_string(),
        })
    };
    st.failing_since = match (healthy, expected_up, st.failing_since.take()) {
        (true, _, _) | (false, false, _) => None,
        (false, true, since) => Some(since.unwrap_or(now)),
    };
}

/// A standby's lag as the active member sees it; the active member has none.
fn observe_lag(cx: &mut Cx, m: Member) {
    let Some(active) = cx.status.active_member.or(cx.status.authoritative_member) else {
        return;
    };
    if m == active {
        cx.member_mut(m).lag_bytes = None;
        return;
    }
    let Some(p) = cx.seen(active).server() else {
        return; // keep the last observed lag: the data at risk if the active member is gone
    };
    let from_stats = p
        .standbys
        .iter()
        .find(|s| s.application_name == m.as_str())
        .map(|s| s.replay_lag_bytes);
    let lag = from_stats.or_else(|| {
        let mine = cx.member(m).lsn.as_deref().and_then(parse_lsn)?;
        Some(p.lsn.saturating_sub(mine))
    });
    if let Some(lag) = lag {
        cx.member_mut(m).lag_bytes = Some(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}

/// The standby `m` is streaming from the active member, as the active member reports it.
pub(crate) fn streaming_to(cx: &Cx, active: Member, m: Member) -> Option<u64> {
    let p = cx.seen(active).server()?;
    if p.in_recovery {
        return None;
    }
    p.standbys
        .iter()
        .find(|s| s.application_name == m.as_str() && s.streaming)
        .map(|s| s.replay_lag_bytes)
}
