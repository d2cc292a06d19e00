//! The end of every scenario: what must hold, checked from what was recorded.
//!
//! - every acknowledged commit is present on the active member (`lost_acknowledged` counts the
//!   missing ones; 0 is required in synchronous mode);
//! - both members compare equal (receiptdb_postgres's `compare`, checksums);
//! - the client Service never selected a member that status marked stale or fenced at that
//!   moment, and its EndpointSlices never listed two member pods, nor a ready endpoint on a
//!   member status marked stale;
//! - no Job ran on a running member's data claim;
//! - the writer saw no SQLSTATE outside the client guide's "reconnect and retry" set (runbook
//!   002): a client that follows the guide treats any other one as a hard failure.

use serde::Serialize;

use crate::clock::Event;
use crate::observer::{Sample, Selection};
use crate::writer::{Ack, WriteError, RECONNECT_CODES};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            passed,
            detail: detail.into(),
        }
    }
}

/// Acknowledged ids missing from `present` (sorted ascending).
pub fn lost(acks: &[Ack], present: &[i64]) -> Vec<i64> {
    let set: std::collections::HashSet<i64> = present.iter().copied().collect();
    acks.iter()
        .map(|a| a.id)
        .filter(|id| !set.contains(id))
        .collect()
}

/// The member a member pod (`<pair>-<member>-0`) runs.
fn member_of_pod(pod: &str) -> Option<receiptdb_operator::crd::Member> {
    let stem = pod.strip_suffix("-0")?;
    receiptdb_operator::crd::Member::ALL
        .into_iter()
        .find(|m| stem.ends_with(&format!("-{m}")))
}

/// The Service never selected a stale or fenced member (status samples); its EndpointSlices
/// never listed two member pods, nor had a ready endpoint on a member that status then marked
/// stale (endpoint history, against the latest status sample at that time).
pub fn service_checks(samples: &[Sample], selections: &[Selection]) -> Vec<Check> {
    let mut bad = Vec::new();
    for s in samples {
        let Some(sel) = s.selects.as_deref() else {
            continue;
        };
        let Ok(m) = sel.parse::<receiptdb_operator::crd::Member>() else {
            continue;
        };
        let ms = s.member(m);
        if ms.stale || ms.fenced {
            bad.push(format!(
                "at {} ms the Service selected {m}, which status marks {}",
                s.t_ms,
                if ms.stale { "stale" } else { "fenced" }
            ));
        }
    }
    for sel in selections {
        let status = samples.iter().take_while(|s| s.t_ms <= sel.t_ms).last();
        for pod in &sel.ready {
            let (Some(m), Some(st)) = (member_of_pod(pod), status) else {
                continue;
            };
            if st.member(m).stale {
                bad.push(format!(
                    "at {} ms the Service's endpoints had {pod} ready, which status marks stale",
                    sel.t_ms
                ));
            }
        }
    }
    let two: Vec<String> = selections
        .iter()
        .filter(|s| s.matched.len() > 1)
        .map(|s| {
            format!(
                "at {} ms the Service's endpoints listed {:?}",
                s.t_ms, s.matched
            )
        })
        .collect();
    vec![
        Check::new(
            "service_never_selected_stale",
            bad.is_empty(),
            if bad.is_empty() {
                format!(
                    "{} status samples and {} endpoint states checked",
                    samples.len(),
                    selections.len()
                )
            } else {
                bad.join("; ")
            },
        ),
        Check::new(
            "service_never_selected_two",
            two.is_empty(),
            if two.is_empty() {
                format!("{} endpoint states checked", selections.len())
            } else {
                two.join("; ")
            },
        ),
    ]
}

/// The writer's errors carried only SQLSTATEs the client guide says to retry (57P01, 08006,
/// 08001). A broken or refused connection is what 08006 and 08001 mean, so it passes; a
/// timeout carries no SQLSTATE (the recovery figures judge it); a failed write to the mirror
/// member (external mode) is the redirector's business, not the client's. Anything else, such
/// as 25006 from a session opened on a write-fenced member or 57P03 from one that is shutting
/// down, is an error the guide has no answer for.
pub fn retryable_errors_check(errors: &[WriteError]) -> Check {
    let is_sqlstate = |c: &str| {
        c.len() == 5
            && c.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    };
    let outside: Vec<&WriteError> = errors
        .iter()
        .filter(|e| is_sqlstate(&e.code) && !RECONNECT_CODES.contains(&e.code.as_str()))
        .collect();
    if outside.is_empty() {
        return Check::new(
            "writer_saw_only_retryable_errors",
            true,
            format!(
                "{} writer errors, none with a SQLSTATE outside {RECONNECT_CODES:?}",
                errors.len()
            ),
        );
    }
    let mut by_code = std::collections::BTreeMap::new();
    for e in &outside {
        *by_code.entry(e.code.as_str()).or_insert(0usize) += 1;
    }
    let first = outside
        .iter()
        .take(3)
        .map(|e| format!("at {} ms {} {}", e.t_ms, e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Check::new(
        "writer_saw_only_retryable_errors",
        false,
        format!(
            "{} writer errors with a SQLSTATE outside {RECONNECT_CODES:?} ({by_code:?}); first: {first}",
            outside.len()
        ),
    )
}

/// Last acknowledgement before the fault to the first after it, where "the fault" is when the
/// client first felt it: its first error at or after the injection (a commit already in flight
/// when the postmaster is killed may still be acknowledged a few ms later; that is not the
/// recovery), or the injection itself when the client saw no error.
pub fn recovery_ms(acks: &[Ack], fault_ms: u64, first_error_ms: Option<u64>) -> Option<u64> {
    let fault_ms = first_error_ms
        .filter(|e| *e >= fault_ms)
        .unwrap_or(fault_ms);
    let before = acks
        .iter()
        .filter(|a| a.t_ms <= fault_ms)
        .map(|a| a.t_ms)
        .max()?;
    let after = acks
        .iter()
        .filter(|a| a.t_ms > fault_ms)
        .map(|a| a.t_ms)
        .min()?;
    Some(after - before)
}

/// Fault to the first `in_sync` that follows an `out_of_sync` after the fault (or the first
/// `in_sync` after the fault when sync was never reported lost).
pub fn in_sync_ms(events: &[Event], fault_ms: u64) -> Option<u64> {
    let lost = events
        .iter()
        .find(|e| e.kind == "out_of_sync" && e.t_ms >= fault_ms)
        .map(|e| e.t_ms)
        .unwrap_or(fault_ms);
    events
        .iter()
        .find(|e| e.kind == "in_sync" && e.t_ms >= lost)
        .map(|e| e.t_ms - fault_ms)
}

/// The longest pause between consecutive acknowledgements after `from_ms`.
pub fn longest_gap_ms(acks: &[Ack], from_ms: u64) -> u64 {
    acks.windows(2)
        .filter(|w| w[1].t_ms >= from_ms)
        .map(|w| w[1].t_ms - w[0].t_ms)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_on_two_pods_or_a_stale_member_fail() {
        let mut stale = receiptdb_operator::crd::ReceiptDbPairStatus::default();
        stale.primary.stale = true;
        let samples = vec![Sample {
            t_ms: 100,
            status: stale,
            selects: Some("secondary".into()),
            annotations: Default::default(),
        }];
        let sel = |t_ms, matched: &[&str], ready: &[&str]| Selection {
            t_ms,
            selects: Some("secondary".into()),
            matched: matched.iter().map(|s| s.to_string()).collect(),
            ready: ready.iter().map(|s| s.to_string()).collect(),
        };
        let ok = service_checks(
            &samples,
            &[
                sel(50, &["orca-primary-0"], &["orca-primary-0"]),
                sel(150, &["orca-secondary-0"], &["orca-secondary-0"]),
            ],
        );
        assert!(ok.iter().all(|c| c.passed), "{ok:?}");
        let stale_ready = service_checks(
            &samples,
            &[sel(150, &["orca-primary-0"], &["orca-primary-0"])],
        );
        assert!(!stale_ready[0].passed);
        let two = service_checks(
            &samples,
            &[sel(150, &["orca-primary-0", "orca-secondary-0"], &[])],
        );
        assert!(!two[1].passed);
        assert_eq!(
            member_of_pod("orca-secondary-0"),
            Some(receiptdb_operator::crd::Member::Secondary)
        );
    }

    fn error(t_ms: u64, code: &str, expected: bool) -> WriteError {
        WriteError {
            t_ms,
            code: code.into(),
            expected,
            message: "m".into(),
        }
    }

    #[test]
    fn a_sqlstate_outside_the_guide_fails_the_verdict() {
        let retryable = [
            error(10, "57P01", true),
            error(20, "connection", true),
            error(30, "08001", true),
            error(40, "timeout", false),
            error(50, "mirror:08006", true),
        ];
        assert!(retryable_errors_check(&retryable).passed);
        assert!(retryable_errors_check(&[]).passed);
        let mut read_only = retryable.to_vec();
        read_only.push(error(60, "25006", false));
        read_only.push(error(70, "57P03", false));
        let c = retryable_errors_check(&read_only);
        assert!(!c.passed);
        assert!(
            c.detail.contains("\"25006\": 1") && c.detail.contains("57P03"),
            "{}",
            c.detail
        );
    }

    fn ack(id: i64, t_ms: u64) -> Ack {
        Ack { id, t_ms }
    }

    #[test]
    fn recovery_spans_the_fault() {
        let acks = [ack(1, 100), ack(2, 200), ack(3, 2300), ack(4, 2320)];
        assert_eq!(recovery_ms(&acks, 250, None), Some(2100));
        assert_eq!(recovery_ms(&acks, 5000, None), None);
        // An in-flight commit acknowledged just after the kill does not count as recovery.
        assert_eq!(recovery_ms(&acks, 150, Some(250)), Some(2100));
        assert_eq!(lost(&acks, &[1, 2, 4]), vec![3]);
        assert_eq!(longest_gap_ms(&acks, 0), 2100);
    }

    #[test]
    fn in_sync_after_it_was_lost() {
        let ev = |t, k: &str| Event {
            t_ms: t,
            kind: k.into(),
            detail: String::new(),
        };
        let events = vec![
            ev(10, "in_sync"),
            ev(1000, "out_of_sync"),
            ev(5000, "in_sync"),
        ];
        assert_eq!(in_sync_ms(&events, 500), Some(4500));
    }
}
