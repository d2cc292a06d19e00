//! Table tests of `pair::decide`, one behaviour each, driven through the model world.

mod decide_support;

use decide_support::*;
use receiptdb_operator::crd::{
    condition, FailbackPolicy, Member, OperationKind, OperationStep, Phase, ReplicationMode,
};
use receiptdb_operator::pair::{
    decide, is_true, Action, JobKind, Reported, SpecProblem, SyncRequest, DETACH_GRACE,
};
use receiptdb_postgres::actions::Lsn;
use receiptdb_postgres::job_report::{BackupReport, Entrypoint};

const P: Member = Member::Primary;
const S: Member = Member::Secondary;

#[test]
fn spec_error_changes_nothing_and_warns_once_per_message() {
    let mut w = healthy_world(|_| {});
    let gen_before = w.status().observed_generation;
    let mut obs = w.observe();
    obs.generation = 2;
    obs.spec_problems = vec![SpecProblem::Parameters(
        "spec.postgres.parameters: wal_level is set by the operator".into(),
    )];
    let d = decide(&w.pair, &obs, w.now);
    assert_eq!(d.desired, None);
    assert!(d
        .actions
        .iter()
        .all(|a| matches!(a, Action::Event { warning: true, .. })));
    assert_eq!(d.actions.len(), 1);
    assert_eq!(d.status.observed_generation, gen_before);
    assert!(!is_true(&d.status, condition::READY));
    assert!(d.requeue_after.as_secs() >= 60);
    w.pair.status = Some(d.status);
    let again = decide(&w.pair, &obs, w.now);
    assert!(again.actions.is_empty(), "same message: no second Event");
    obs.spec_problems = vec![SpecProblem::S3NotSupported];
    let other = decide(&w.pair, &obs, w.now);
    assert_eq!(other.actions.len(), 1);
    let ready = |s: &receiptdb_operator::crd::ReceiptDbPairStatus| {
        let c = s.conditions.iter().find(|c| c.type_ == condition::READY);
        c.map(|c| (c.reason.clone(), c.message.clone())).unwrap()
    };
    assert_eq!(
        ready(&again.status),
        (
            "InvalidSpec".to_string(),
            "spec.postgres.parameters: wal_level is set by the operator".to_string()
        )
    );
    assert_eq!(
        ready(&other.status).1,
        "S3 backup locations are not supported yet; use a pvc location"
    );
    assert_eq!(
        other.requeue_after,
        receiptdb_operator::pair::SPEC_ERROR_REQUEUE
    );
}

#[test]
fn a_missing_referenced_object_is_looked_for_again_soon() {
    let w = healthy_world(|_| {});
    let mut obs = w.observe();
    obs.spec_problems = vec![
        SpecProblem::Parameters(
            "spec.postgres.parameters: wal_level is set by the operator".into(),
        ),
        SpecProblem::SecretMissing {
            name: "app-superuser".into(),
            field: "postgres.superuserSecret",
        },
    ];
    let d = decide(&w.pair, &obs, w.now);
    assert_eq!(d.desired, None, "nothing changes meanwhile");
    assert_eq!(
        d.requeue_after,
        receiptdb_operator::pair::MISSING_OBJECT_REQUEUE
    );
    assert!(d.requeue_after.as_secs() <= 10);
    let reason = |d: &receiptdb_operator::pair::Decision| {
        let c = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY);
        c.map(|c| c.reason.clone()).unwrap()
    };
    assert_eq!(
        reason(&d),
        "InvalidSpec",
        "a spec problem besides the Secret"
    );
    obs.spec_problems.remove(0);
    let d = decide(&w.pair, &obs, w.now);
    assert_eq!(reason(&d), "SecretNotFound");
    assert!(d.status.conditions.iter().any(|c| c.message
        == "Secret \"app-superuser\" named in spec.postgres.superuserSecret does not exist"));
}

#[test]
fn bootstrap_runs_initdb_then_clone_then_serves_primary() {
    let mut w = World::new(pair(|_| {}));
    let d = w.pass(None, false);
    assert!(has(&d, |a| *a
        == Action::CreateJob {
            kind: JobKind::Initdb,
            member: P
        }));
    assert_eq!(
        d.desired.as_ref().unwrap().primary_replicas,
        0,
        "Jobs before replicas"
    );
    assert_eq!(d.status.phase, Some(Phase::Initializing));
    w.tick(500, false);
    let d = w.pass(None, false);
    assert!(d.status.primary.initialized);
    assert_eq!(d.desired.as_ref().unwrap().primary_replicas, 1);
    assert_eq!(d.desired.as_ref().unwrap().secondary_replicas, 0);
    w.tick(500, false);
    let mut cloned = false;
    for _ in 0..20 {
        let d = w.pass(None, false);
        cloned |= has(&d, |a| {
            *a == Action::CreateJob {
                kind: JobKind::Clone,
                member: S,
            }
        });
        w.tick(500, true);
    }
    assert!(cloned);
    let s = w.status();
    assert_eq!(s.active_member, Some(P));
    assert_eq!(s.authoritative_member, Some(P));
    assert_eq!(s.phase, Some(Phase::Healthy), "{s:#?}");
    assert!(is_true(&s, condition::IN_SYNC));
    assert_eq!(s.synchronous_standby, Some(S));
    assert_eq!(
        s.secondary.role,
        Some(receiptdb_operator::crd::ServerRole::Standby)
    );
    assert!(s.primary.lsn.as_deref().unwrap().contains('/'));
}

#[test]
fn failed_bootstrap_job_backs_off_and_retries() {
    let mut w = World::new(pair(|_| {}));
    w.jobs_fail = true;
    w.pass(None, false);
    w.tick(100, false);
    let d = w.pass(None, false);
    assert!(has(&d, |a| matches!(
        a,
        Action::Event {
            warning: true,
            reason: "BootstrapFailed",
            ..
        }
    )));
    let op = d.status.operation.clone().unwrap();
    assert_eq!(op.attempts, 1);
    assert!(op.retry_after.is_some());
    w.tick(100, false);
    let d = w.pass(None, false);
    assert!(
        has(&d, |a| matches!(a, Action::DeleteJob { .. })),
        "failed Job removed"
    );
    w.tick(100, false);
    let d = w.pass(None, false);
    assert!(
        !has(&d, |a| matches!(a, Action::CreateJob { .. })),
        "no retry before the backoff"
    );
    w.jobs_fail = false;
    w.tick(11_000, false);
    let d = w.pass(None, false);
    assert!(has(&d, |a| matches!(
        a,
        Action::CreateJob {
            kind: JobKind::Initdb,
            ..
        }
    )));
}

#[test]
fn from_backup_restores_before_serving() {
    let mut w = World::new(pair(|s| {
        s.bootstrap.from_backup = Some(
            serde_json::from_value(serde_json::json!({
            "location": {"pvc": {"claimName": "backups"}}}))
            .unwrap(),
        );
    }));
    let mut restored = false;
    for _ in 0..40 {
        let d = w.pass(None, false);
        if has(&d, |a| {
            matches!(
                a,
                Action::CreateJob {
                    kind: JobKind::Restore,
                    member: P
                }
            )
        }) {
            restored = true;
            assert_eq!(
                d.status.active_member, None,
                "no clients before the restore"
            );
            assert_eq!(d.status.phase, Some(Phase::Restoring));
        }
        w.tick(500, true);
    }
    assert!(restored);
    assert_eq!(w.status().active_member, Some(P));
    assert!(!w.status().pending_restore);
}

#[test]
fn external_mode_initdbs_both_then_syncs_secondary() {
    let mut w = World::new(pair(|s| s.replication.mode = ReplicationMode::External));
    let mut kinds = Vec::new();
    for _ in 0..40 {
        let d = w.pass(None, false);
        for a in &d.actions {
            if let Action::CreateJob { kind, member } = a {
                kinds.push((*kind, *member));
            }
        }
        w.tick(500, false);
    }
    assert_eq!(
        kinds,
        vec![
            (JobKind::Initdb, P),
            (JobKind::Initdb, S),
            (JobKind::Sync, S),
            (JobKind::Check, S)
        ]
    );
    assert!(!w.status().secondary.stale);
    assert!(is_true(&w.status(), condition::CONSISTENCY_VERIFIED));
}

#[test]
fn failing_since_is_kept_and_cleared_on_recovery() {
    let mut w = healthy_world(|_| {});
    w.crash(S);
    w.pass(None, false);
    let since = w.status().secondary.failing_since.clone().unwrap();
    w.tick(300, false);
    w.pass(None, false);
    assert_eq!(w.status().secondary.failing_since, Some(since));
    assert!(!w.status().secondary.ready);
    w.repair(S);
    w.pass(None, false);
    assert_eq!(w.status().secondary.failing_since, None);
}

#[test]
fn failover_waits_for_the_delay_then_fences_before_promoting() {
    let mut w = healthy_world(|s| s.failover.delay_seconds = 2);
    w.crash(P);
    let d = w.pass(None, false);
    assert!(d.status.operation.is_none(), "not before delaySeconds");
    assert!(d.requeue_after.as_millis() <= 2000);
    w.tick(2100, false);
    let d = w.pass(None, false);
    let op = d.status.operation.clone().unwrap();
    assert_eq!(
        (op.kind, op.step, op.member),
        (OperationKind::Failover, OperationStep::Fencing, S)
    );
    assert!(d.status.primary.stale && d.status.primary.fenced);
    let desired = d.desired.clone().unwrap();
    assert_eq!(desired.primary_replicas, 0);
    assert_eq!(desired.service_selects, None);
    assert!(
        !has(&d, |a| matches!(a, Action::Promote { .. })),
        "old active not confirmed down"
    );
    assert_eq!(d.requeue_after, receiptdb_operator::pair::FAST);
    let mut promoted_at = None;
    for i in 0..10 {
        w.tick(200, false);
        let obs = w.observe();
        let d = w.pass(None, false);
        if has(&d, |a| *a == Action::Promote { member: S }) {
            assert_eq!(obs.primary.replicas, Some(0));
            assert!(
                obs.primary.pod.is_none() || obs.primary.probe.as_ref().is_none_or(|p| p.is_err())
            );
            promoted_at.get_or_insert(i);
        }
    }
    assert!(promoted_at.is_some());
    let s = w.status();
    assert_eq!(s.active_member, Some(S));
    assert_eq!(s.authoritative_member, Some(S));
    assert_eq!(w.service, Some(Some(S)));
    let f = s.last_failover.unwrap();
    assert_eq!((f.from, f.to, f.lag_bytes), (P, S, Some(0)));
    assert!(f.detection_millis >= 2000 && f.total_millis >= f.detection_millis);
    assert_eq!(w.lost_on(S), 0);
}

/// The status goes through the API server as JSON between passes; the time the delay counts
/// from must keep its fraction of a second there (a `metav1.Time` is cut to the second, which
/// let a failover start after 1.1 s of a 2 s delay on the real cluster).
#[test]
fn the_failover_delay_counts_from_when_failing_began_to_the_millisecond() {
    let mut w = healthy_world(|s| s.failover.delay_seconds = 2);
    let into_second = w.now.subsec_nanosecond() / 1_000_000;
    w.tick(900 - i64::from(into_second) + 1000, false);
    w.crash(P);
    w.pass(None, false);
    assert!(w.status().primary.failing_since.is_some());
    let through_the_api = serde_json::to_value(&w.pair.status).unwrap();
    w.pair.status = serde_json::from_value(through_the_api).unwrap();
    w.tick(1200, false);
    let d = w.pass(None, false);
    assert!(
        d.status.operation.is_none(),
        "1.2 s into a 2 s delay: no failover yet ({:?})",
        d.status.operation
    );
    w.tick(900, false);
    let d = w.pass(None, false);
    assert!(d.status.operation.is_some(), "2.1 s: failing over");
}

/// A probe to a lost node fails only after `probeTimeoutSeconds`: the member has not answered
/// since the probe began, so the delay counts from then, and the next pass starts a probe
/// timeout before the delay runs out (on the real cluster a lost primary's failover started
/// 3.1 s after its first failed probe with a 2 s delay).
#[test]
fn a_failure_counts_from_the_start_of_the_probe_that_found_it() {
    let mut w = healthy_world(|s| {
        s.failover.delay_seconds = 2;
        s.failover.probe_timeout_seconds = 1;
    });
    w.crash(P);
    let mut obs = w.observe();
    let probe_began = w
        .now
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap();
    obs.probed_at = Some(probe_began);
    let d = decide(&w.pair, &obs, w.now);
    assert_eq!(
        d.status.primary.failing_since.as_ref().map(|t| t.0),
        Some(probe_began)
    );
    assert!(d.status.operation.is_none(), "1 s of a 2 s delay");
    assert_eq!(
        d.requeue_after,
        receiptdb_operator::pair::FAST,
        "1 s left, and the next probe may take 1 s: the next pass is due at once"
    );
    w.pair.status = Some(d.status);
    w.tick(1000, false);
    let d = w.pass(None, false);
    assert!(
        d.status.operation.is_some(),
        "2 s after the probe began: failing over"
    );
}

#[test]
fn failover_target_dying_mid_promotion_is_reported_and_resumed() {
    let mut w = healthy_world(|s| s.failover.delay_seconds = 2);
    w.crash(P);
    w.pass(None, false);
    w.tick(2100, false);
    w.pass(None, false);
    w.crash(S);
    let mut warned = 0;
    for _ in 0..30 {
        w.tick(500, false);
        let d = w.pass(None, false);
        assert!(!has(&d, |a| matches!(a, Action::Promote { .. })));
        assert_eq!(d.desired.as_ref().unwrap().service_selects, None);
        assert_eq!(
            d.status.operation.as_ref().unwrap().kind,
            OperationKind::Failover
        );
        warned += d
            .actions
            .iter()
            .filter(|a| {
                matches!(a, Action::Event { warning: true, message, .. }
                    if message.contains("stopped answering before its promotion"))
            })
            .count();
    }
    let ready = receiptdb_operator::pair::condition(&w.status(), condition::READY)
        .cloned()
        .unwrap();
    assert!(
        ready
            .message
            .contains("secondary stopped answering before its promotion"),
        "{}",
        ready.message
    );
    assert_eq!(warned, 1, "one Event, not one per pass");
    assert!(w.status().primary.fenced, "the old primary stays fenced");
    w.repair(S);
    assert!(w.run_until(20, |w| w.status().active_member == Some(S)
        && w.status().operation.is_none()));
    assert_eq!(w.service, Some(Some(S)));
    assert_eq!(w.lost_on(S), 0);
}

/// The Service leaves the active member as soon as Kubernetes counts its pod out (not ready),
/// before any failover, so that the failover's switch to the new member comes long after this
/// change (kube-proxy programs changes at most once per second); a member the operator cannot
/// reach but whose pod is ready keeps its clients until the failover.
#[test]
fn the_service_leaves_an_active_member_whose_pod_is_not_ready() {
    let mut w = healthy_world(|s| s.failover.delay_seconds = 2);
    let mut obs = w.observe();
    obs.primary.probe = Some(Err("timeout".into()));
    let d = decide(&w.pair, &obs, w.now);
    assert_eq!(
        d.desired.unwrap().service_selects,
        Some(P),
        "unreachable, pod ready"
    );
    w.crash(P);
    let d = w.pass(None, false);
    assert!(d.status.operation.is_none(), "no failover yet");
    assert_eq!(d.status.active_member, Some(P));
    assert_eq!(d.desired.unwrap().service_selects, None, "pod not ready");
    w.repair(P);
    let d = w.pass(None, false);
    assert_eq!(
        d.desired.unwrap().service_selects,
        Some(P),
        "back once ready"
    );
}

#[test]
fn partitioned_active_counts_as_failing() {
    let mut w = healthy_world(|_| {});
    w.node(P).partitioned = true;
    w.pass(None, false);
    assert!(w.status().primary.failing_since.is_some());
    assert!(!w.status().primary.ready);
}

#[test]
fn no_failover_while_paused_disabled_or_target_in_maintenance() {
    for (name, tweak) in [
        (
            "paused",
            Box::new(|s: &mut receiptdb_operator::crd::ReceiptDbPairSpec| {
                s.maintenance.paused = true
            }) as Box<dyn Fn(&mut _)>,
        ),
        (
            "disabled",
            Box::new(|s: &mut receiptdb_operator::crd::ReceiptDbPairSpec| {
                s.failover.enabled = false
            }),
        ),
        (
            "maintenance",
            Box::new(|s: &mut receiptdb_operator::crd::ReceiptDbPairSpec| {
                s.maintenance.member = Some(Member::Secondary)
            }),
        ),
        (
            "active in maintenance",
            Box::new(|s: &mut receiptdb_operator::crd::ReceiptDbPairSpec| {
                s.maintenance.member = Some(Member::Primary)
            }),
        ),
    ] {
        let mut w = healthy_world(|_| {});
        tweak(&mut w.pair.spec);
        w.crash(P);
        for _ in 0..20 {
            let d = w.pass(None, false);
            assert!(!has(&d, |a| matches!(a, Action::Promote { .. })), "{name}");
            assert!(
                d.status.operation.is_none(),
                "{name}: {:?}",
                d.status.operation
            );
            if name == "paused" {
                assert_eq!(d.desired, None);
                assert!(d.actions.iter().all(|a| matches!(a, Action::Event { .. })));
                assert_eq!(d.status.phase, Some(Phase::Maintenance));
            }
            w.tick(1000, false);
        }
        if name == "disabled" {
            let ready = receiptdb_operator::pair::condition(&w.status(), condition::READY)
                .cloned()
                .unwrap();
            assert_eq!(ready.reason, "FailoverRefused", "{name}");
        }
        if name == "active in maintenance" {
            assert!(!is_true(&w.status(), condition::READY));
        }
    }
}

#[test]
fn async_failover_refused_past_the_lag_bound() {
    let mut w = healthy_world(|s| {
        s.replication.synchronous = Some(false);
        s.replication.max_lag_bytes = 1000;
    });
    w.replication_delay = 5000;
    for _ in 0..40 {
        w.pass(None, false);
        w.tick(500, true);
    }
    assert!(w.status().secondary.lag_bytes.unwrap() > 1000);
    w.crash(P);
    for _ in 0..10 {
        let d = w.pass(None, false);
        assert!(d.status.operation.is_none());
        w.tick(1000, false);
    }
    let ready = receiptdb_operator::pair::condition(&w.status(), condition::READY)
        .cloned()
        .unwrap();
    assert_eq!(ready.reason, "FailoverRefused");
    assert!(ready.message.contains("maxLagBytes"), "{}", ready.message);
}

#[test]
fn async_failover_within_the_bound_records_data_at_risk() {
    let mut w = healthy_world(|s| {
        s.replication.synchronous = Some(false);
        s.replication.max_lag_bytes = 10_000;
    });
    w.replication_delay = 300;
    for _ in 0..5 {
        w.pass(None, false);
        w.tick(500, true);
    }
    w.crash(P);
    assert!(w.run_until(30, |w| w.status().last_failover.is_some()));
    let lag = w.status().last_failover.unwrap().lag_bytes.unwrap();
    assert!(lag > 0 && lag <= 10_000, "{lag}");
}

#[test]
fn async_in_sync_holds_within_the_lag_bound_and_needs_zero_lag_to_return() {
    let mut w = healthy_world(|s| {
        s.replication.synchronous = Some(false);
        s.replication.max_lag_bytes = 1000;
    });
    w.replication_delay = 0;
    for _ in 0..3 {
        w.pass(None, false);
        w.tick(500, false);
    }
    assert!(
        is_true(&w.status(), condition::IN_SYNC),
        "caught up at zero lag"
    );
    let since = w.status().in_sync_since;
    // Steady writes: the standby trails by a few hundred bytes, within the bound.
    w.replication_delay = 300;
    for _ in 0..10 {
        let d = w.pass(None, false);
        assert!(
            is_true(&d.status, condition::IN_SYNC),
            "{:?}",
            d.status.conditions
        );
        assert_eq!(d.status.in_sync_since, since, "no flapping");
        w.tick(500, true);
    }
    assert!(w.status().secondary.lag_bytes.unwrap() > 0);
    // Past the bound: not in sync.
    w.replication_delay = 5000;
    assert!(w.run_until(20, |w| !is_true(&w.status(), condition::IN_SYNC)));
    assert!(w.status().in_sync_since.is_none());
    // Back within the bound but never at zero lag: still not in sync.
    w.replication_delay = 300;
    for _ in 0..10 {
        w.pass(None, false);
        w.tick(500, true);
    }
    assert!(!is_true(&w.status(), condition::IN_SYNC));
    // Zero lag again: in sync.
    w.replication_delay = 0;
    for _ in 0..3 {
        w.pass(None, false);
        w.tick(500, false);
    }
    assert!(is_true(&w.status(), condition::IN_SYNC));
}

#[test]
fn synchronous_mode_refuses_a_standby_that_was_not_synchronous() {
    let mut w = healthy_world(|_| {});
    // The standby goes away: commits block, then the operator degrades to async.
    w.crash(S);
    for _ in 0..4 {
        w.pass(None, false);
        w.tick(300, true);
    }
    assert!(!w.node(P).sync_names, "degraded so writes continue");
    assert_eq!(w.status().synchronous_standby, None);
    let acked_while_degraded = w.acked.len();
    w.tick(300, true);
    assert!(
        w.acked.len() > acked_while_degraded,
        "writes continue while degraded"
    );
    // The standby returns but the primary dies before it is synchronous again.
    w.repair(S);
    w.crash(P);
    for _ in 0..10 {
        let d = w.pass(None, false);
        assert!(!has(&d, |a| matches!(a, Action::Promote { .. })));
        w.tick(1000, false);
    }
    let ready = receiptdb_operator::pair::condition(&w.status(), condition::READY)
        .cloned()
        .unwrap();
    assert!(
        ready.message.contains("not the synchronous standby"),
        "{}",
        ready.message
    );
}

#[test]
fn degrade_clears_the_promise_before_commits_stop_waiting() {
    let mut w = healthy_world(|_| {});
    w.crash(S);
    let d1 = w.pass(None, false);
    assert_eq!(d1.status.synchronous_standby, None);
    assert!(!has(&d1, |a| matches!(
        a,
        Action::SetSynchronousStandby { .. }
    )));
    let d2 = w.pass(None, false);
    assert!(has(&d2, |a| *a
        == Action::SetSynchronousStandby {
            on: P,
            standby: None
        }));
    w.repair(S);
    assert!(w.run_until(20, |w| w.status().synchronous_standby == Some(S)));
}

#[test]
fn a_standby_the_operator_cannot_reach_is_degraded_after_the_delay() {
    // The primary still lists the standby as streaming (its walsender has not timed out), but
    // the standby's own probe fails: commits must stop waiting for it after delaySeconds.
    let mut w = healthy_world(|_| {});
    assert_eq!(w.status().synchronous_standby, Some(S));
    w.node(S).partitioned = true;
    let first = w.pass(None, false);
    assert!(
        !has(&first, |a| matches!(
            a,
            Action::SetSynchronousStandby { .. }
        )),
        "not before the delay"
    );
    let mut cleared_before_degrade = false;
    let mut degraded = false;
    for _ in 0..20 {
        w.tick(500, true);
        let promise_before = w.status().synchronous_standby;
        let d = w.pass(None, false);
        if has(&d, |a| {
            *a == Action::SetSynchronousStandby {
                on: P,
                standby: None,
            }
        }) {
            degraded = true;
            cleared_before_degrade = promise_before.is_none();
            break;
        }
    }
    assert!(degraded, "commits stop waiting for an unreachable standby");
    assert!(
        cleared_before_degrade,
        "the promise was withdrawn one pass before"
    );
    assert_eq!(
        w.status().active_member,
        Some(P),
        "no failover for a standby problem"
    );
}

#[test]
fn stale_member_is_rejoined_from_the_authoritative_one_then_in_sync() {
    let mut w = healthy_world(|s| s.failover.failback = FailbackPolicy::Manual);
    w.crash(P);
    assert!(w.run_until(30, |w| w.status().active_member == Some(S)));
    w.repair(P);
    let mut rejoin = false;
    for _ in 0..30 {
        let d = w.pass(None, false);
        rejoin |= has(&d, |a| {
            *a == Action::CreateJob {
                kind: JobKind::Rejoin,
                member: P,
            }
        });
        assert!(
            !has(&d, |a| matches!(a, Action::CreateJob { member: S, .. })),
            "never into the authoritative member"
        );
        w.tick(500, true);
    }
    assert!(rejoin);
    let s = w.status();
    assert!(!s.primary.stale && !s.primary.fenced);
    let sync = s.last_sync.unwrap();
    assert_eq!((sync.member, sync.method.as_str()), (P, "rewind"));
    assert_eq!(
        sync.discarded, None,
        "synchronous: the old primary had nothing the standby lacked"
    );
    assert_eq!(sync.message, "primary re-aligned from secondary by rewind");
    assert!(is_true(&w.status(), condition::IN_SYNC));
    assert_eq!(w.status().active_member, Some(S), "manual failback stays");
    assert_eq!(w.status().phase, Some(Phase::Healthy));
}

#[test]
fn automatic_failback_switches_back_to_primary_without_loss() {
    let mut w = healthy_world(|s| s.failover.failback_delay_seconds = 5);
    w.crash(P);
    assert!(w.run_until(30, |w| w.status().active_member == Some(S)));
    w.repair(P);
    assert!(w.run_until(120, |w| w.status().active_member == Some(P)
        && w.status().operation.is_none()
        && w.status().phase == Some(Phase::Healthy)));
    assert!(w
        .decisions
        .iter()
        .any(|d| has(d, |a| *a == Action::FenceWrites { member: S })));
    assert_eq!(w.lost_on(P), 0);
    assert!(!w.node(P).read_only);
}

/// `kubectl drain` cordons the node first and its evictions of the active member are refused by
/// the PodDisruptionBudget, which protects the active member only: the operator switches over
/// to the other member, and the budget follows the clients.
#[test]
fn a_cordoned_active_node_is_switched_away_from_and_the_budget_follows() {
    let mut w = healthy_world(|s| s.failover.failback_delay_seconds = 5);
    let d = w.pass(None, false);
    assert_eq!(d.desired.unwrap().protected, Some(P));
    w.cordoned[idx(P)] = true;
    let d = w.pass(None, false);
    let op = d.status.operation.clone().expect("a switchover starts");
    assert_eq!((op.kind, op.member), (OperationKind::Switchover, S));
    assert!(op.reason.contains("cordoned"), "{}", op.reason);
    assert!(w.run_until(60, |w| w.status().active_member == Some(S)
        && w.status().operation.is_none()));
    let d = w.pass(None, false);
    assert_eq!(d.desired.unwrap().protected, Some(S));
    assert_eq!(w.lost_on(S), 0);
    // No automatic failback onto the cordoned node, however long the pair stays in sync ...
    w.run_until(120, |w| w.status().active_member == Some(P));
    assert_eq!(
        w.status().active_member,
        Some(S),
        "no failback while cordoned"
    );
    // ... and it comes once the node is uncordoned.
    w.cordoned[idx(P)] = false;
    assert!(w.run_until(120, |w| w.status().active_member == Some(P)
        && w.status().operation.is_none()));
    assert_eq!(w.lost_on(P), 0);
}

/// A changed pod template (image, parameter) restarts the standby first, then a planned
/// switchover moves clients off the active member, whose new pod comes with its re-alignment;
/// the active member's pod is never restarted while it serves.
#[test]
fn a_changed_template_rolls_the_standby_first_then_switches_over_and_back() {
    let mut w = healthy_world(|s| s.failover.failback_delay_seconds = 5);
    w.outdated = [true, true];
    let d = w.pass(None, false);
    assert!(has(&d, |a| *a == Action::RestartPod { member: S }));
    assert!(d.status.operation.is_none());
    let d = w.pass(None, false);
    let op = d.status.operation.clone().expect("a switchover");
    assert_eq!((op.kind, op.member), (OperationKind::Switchover, S));
    assert!(op.reason.contains("outdated"), "{}", op.reason);
    assert!(w.run_until(200, |w| w.status().active_member == Some(P)
        && w.status().operation.is_none()
        && w.status().phase == Some(Phase::Healthy)));
    assert_eq!(w.outdated, [false, false]);
    for d in &w.decisions {
        for a in &d.actions {
            if let Action::RestartPod { member } = a {
                assert_ne!(
                    Some(*member),
                    d.status.active_member,
                    "restarted the active member"
                );
            }
        }
    }
    assert_eq!(w.lost_on(P), 0);
}

#[test]
fn no_rolling_restart_while_the_pair_is_not_settled() {
    let mut w = healthy_world(|_| {});
    w.crash(S);
    w.outdated = [true, true];
    for _ in 0..10 {
        let d = w.pass(None, false);
        assert!(!has(&d, |a| matches!(a, Action::RestartPod { .. })));
        assert!(d.status.operation.is_none());
        w.tick(500, true);
    }
}

#[test]
fn no_switchover_onto_a_cordoned_node() {
    let mut w = healthy_world(|_| {});
    w.cordoned = [true, true];
    for _ in 0..10 {
        let d = w.pass(None, false);
        assert!(d.status.operation.is_none(), "{:?}", d.status.operation);
        w.tick(500, true);
    }
    w.cordoned = [false, true];
    w.request_switchover(S);
    let d = w.pass(None, false);
    assert!(has(&d, |a| matches!(
        a,
        Action::Event {
            reason: "SwitchoverRefused",
            ..
        }
    )));
    assert!(d.status.operation.is_none());
}

#[test]
fn switchover_request_is_refused_when_the_target_is_down() {
    let mut w = healthy_world(|_| {});
    w.crash(S);
    w.request_switchover(S);
    let d = w.pass(None, false);
    assert!(has(&d, |a| matches!(
        a,
        Action::Event {
            reason: "SwitchoverRefused",
            ..
        }
    )));
    assert!(has(&d, |a| matches!(a, Action::ClearAnnotation { .. })));
    assert!(d.status.operation.is_none());
}

#[test]
fn planned_switchover_waits_for_replay_and_clears_the_annotation() {
    let mut w = healthy_world(|s| s.failover.failback = FailbackPolicy::Manual);
    w.request_switchover(S);
    assert!(w.run_until(60, |w| w.status().active_member == Some(S)
        && w.requests.switchover_to.is_none()));
    assert_eq!(w.lost_on(S), 0);
    let first = |f: &dyn Fn(&Action) -> bool| w.decisions.iter().position(|d| has(d, f));
    let fenced = first(&|a| *a == Action::FenceWrites { member: P }).expect("writes fenced");
    let promoted = first(&|a| *a == Action::Promote { member: S }).expect("promoted");
    assert!(fenced < promoted);
    let waited = w.decisions[fenced..promoted].iter().any(|d| {
        d.status
            .operation
            .as_ref()
            .is_some_and(|o| o.target_lsn.is_some())
    });
    assert!(
        waited,
        "the old member's position was recorded before promoting"
    );
    assert!(w.run_until(60, |w| !w.status().primary.stale
        && is_true(&w.status(), condition::IN_SYNC)));
}

#[test]
fn planned_switchover_moves_clients_off_before_fencing_writes() {
    let mut w = healthy_world(|s| s.failover.failback = FailbackPolicy::Manual);
    w.request_switchover(S);
    let (mut detached, mut fenced) = (None, None);
    for _ in 0..60 {
        let d = w.pass(None, false);
        if d.desired.as_ref().unwrap().service_selects.is_none() {
            detached.get_or_insert(w.now);
        }
        if has(&d, |a| *a == Action::FenceWrites { member: P }) {
            fenced.get_or_insert(w.now);
            assert!(
                detached.is_some(),
                "writes fenced while the Service selects P"
            );
        }
        assert_eq!(w.read_only_sessions(1000), [], "{:?}", w.service_changes);
        w.tick(200, true);
        if w.status().active_member == Some(S) && w.status().operation.is_none() {
            break;
        }
    }
    let (detached, fenced) = (detached.unwrap(), fenced.expect("writes fenced"));
    let waited = fenced.duration_since(detached);
    assert!(
        waited >= jiff::SignedDuration::try_from(DETACH_GRACE).unwrap(),
        "fenced {waited:?} after the Service stopped selecting P"
    );
    assert_eq!(w.status().active_member, Some(S));
    assert_eq!(w.lost_on(S), 0);
}

#[test]
fn an_aborted_switchover_selects_the_old_member_only_once_its_writes_resume() {
    let mut w = healthy_world(|s| s.failover.failback = FailbackPolicy::Manual);
    w.request_switchover(S);
    assert!(w.run_until(20, |w| w.nodes[idx(P)].read_only));
    // The target dies before it replayed: the switchover is abandoned, writes on P resume.
    w.crash(S);
    let d = w.pass(None, false);
    assert!(has(&d, |a| *a == Action::UnfenceWrites { member: P }));
    assert_eq!(
        d.desired.unwrap().service_selects,
        None,
        "P answered read-only when this pass looked"
    );
    assert!(!w.node(P).read_only);
    w.tick(200, true);
    assert!(w.run_until(5, |w| w.service == Some(Some(P))));
    assert_eq!(w.status().active_member, Some(P));
    assert_eq!(w.read_only_sessions(1000), []);
}

#[test]
fn a_write_fence_left_on_the_active_member_keeps_clients_off_until_lifted() {
    let mut w = healthy_world(|_| {});
    w.node(P).read_only = true; // an interrupted switchover's fence, status lost
    let d = w.pass(None, false);
    assert!(has(&d, |a| *a == Action::UnfenceWrites { member: P }));
    assert_eq!(d.desired.unwrap().service_selects, None);
    w.tick(200, true);
    assert_eq!(
        w.pass(None, false).desired.unwrap().service_selects,
        Some(P)
    );
}

#[test]
fn sync_force_reclones_the_standby_and_clears_the_annotation() {
    let mut w = healthy_world(|_| {});
    w.request_sync(SyncRequest::Force);
    assert!(w.run_until(40, |w| w.requests.sync.is_none()));
    assert!(w.decisions.iter().any(|d| has(d, |a| *a
        == Action::CreateJob {
            kind: JobKind::Clone,
            member: S
        })));
    assert_eq!(w.status().active_member, Some(P));
}

#[test]
fn periodic_check_records_last_check_and_auto_repairs() {
    let mut w = healthy_world(|s| {
        s.consistency_check.interval_seconds = 10;
        s.consistency_check.auto_repair = true;
        s.replication.synchronous = Some(false);
    });
    w.replication_delay = 50; // the model's check compares LSNs: a lagging standby "differs"
    assert!(w.run_until(100, |w| w.status().last_check.is_some_and(|c| !c.equal)));
    assert!(!is_true(&w.status(), condition::CONSISTENCY_VERIFIED));
    assert!(w.run_until(30, |w| w.decisions.iter().any(|d| has(d, |a| *a
        == Action::CreateJob {
            kind: JobKind::Clone,
            member: S
        }))));
}

#[test]
fn both_down_selects_nothing_and_the_authoritative_member_serves_first() {
    let mut w = healthy_world(|_| {});
    w.crash(S);
    w.crash(P);
    for _ in 0..8 {
        w.pass(None, false);
        w.tick(1000, false);
    }
    let s = w.status();
    assert_eq!(w.service, Some(None));
    assert_eq!(s.phase, Some(Phase::Failed));
    assert!(!is_true(&s, condition::READY));
    w.repair(P);
    assert!(w.run_until(10, |w| w.service == Some(Some(P))));
}

#[test]
fn member_returning_with_old_data_is_never_made_active() {
    // The old primary, failed away from, returns while the new active member is down.
    let mut w = healthy_world(|s| s.failover.failback = FailbackPolicy::Manual);
    w.crash(P);
    assert!(w.run_until(30, |w| w.status().active_member == Some(S)));
    w.crash(S);
    w.repair(P);
    for _ in 0..15 {
        let d = w.pass(None, false);
        assert_ne!(d.desired.as_ref().unwrap().service_selects, Some(P));
        assert!(!has(&d, |a| *a == Action::Promote { member: P }));
        assert!(!has(&d, |a| matches!(
            a,
            Action::CreateJob { member: S, .. }
        )));
        w.tick(1000, true);
    }
    // A standby further behind than the lag bound is not made active either (async mode).
    let mut w = healthy_world(|s| {
        s.replication.synchronous = Some(false);
        s.replication.max_lag_bytes = 100;
    });
    w.crash(S);
    for _ in 0..6 {
        w.pass(None, false);
        w.tick(500, true);
    }
    w.crash(P);
    w.repair(S);
    for _ in 0..10 {
        let d = w.pass(None, false);
        assert_ne!(d.desired.unwrap().service_selects, Some(S));
        w.tick(1000, false);
    }
}

#[test]
fn both_data_lost_without_backup_is_failed_and_with_backup_restores() {
    let mut w = healthy_world(|_| {});
    w.data_lost = [true, true];
    w.nodes[0].data = None;
    w.nodes[1].data = None;
    w.crash(P);
    w.crash(S);
    for _ in 0..5 {
        w.pass(None, false);
        w.tick(500, false);
    }
    assert_eq!(w.status().phase, Some(Phase::Failed));
    assert!(w
        .decisions
        .last()
        .unwrap()
        .actions
        .iter()
        .all(|a| !matches!(a, Action::CreateJob { .. })));
    w.pair.spec.bootstrap.from_backup = Some(
        serde_json::from_value(serde_json::json!({
        "location": {"pvc": {"claimName": "backups"}}}))
        .unwrap(),
    );
    assert!(w.run_until(60, |w| w.status().active_member.is_some()));
    assert!(w.decisions.iter().any(|d| has(d, |a| matches!(
        a,
        Action::CreateJob {
            kind: JobKind::Restore,
            ..
        }
    ))));
}

#[test]
fn deciding_twice_gives_the_same_decision() {
    let mut w = healthy_world(|_| {});
    w.crash(P);
    for _ in 0..12 {
        let obs = w.observe();
        assert_eq!(decide(&w.pair, &obs, w.now), decide(&w.pair, &obs, w.now));
        w.pass(None, false);
        w.tick(700, false);
    }
}

#[test]
fn a_backup_outcome_is_recorded_once_and_older_ones_are_ignored() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use receiptdb_operator::pair::FinishedBackup;
    let mut w = healthy_world(|_| {});
    let events = |d: &receiptdb_operator::pair::Decision, reason: &str| {
        d.actions
            .iter()
            .filter(|a| matches!(a, Action::Event { reason: r, .. } if *r == reason))
            .count()
    };
    let mut obs = w.observe();
    let at = w.now;
    obs.last_backup_job = Some(FinishedBackup {
        name: "orca-backup-1".into(),
        finished: Time(at),
        succeeded: true,
        report: Some(Reported::Report(Box::new(
            BackupReport {
                ok: true,
                output: Some("/backup/b.rdb".into()),
                file_bytes: 10,
                snapshot_lsn: Some(Lsn(1)),
                encrypted: false,
                ..Default::default()
            }
            .into(),
        ))),
    });
    let d = decide(&w.pair, &obs, w.now);
    assert_eq!(events(&d, "BackupSucceeded"), 1);
    let b = d.status.last_backup.clone().unwrap();
    assert!(
        b.succeeded && b.message.contains("not encrypted"),
        "{}",
        b.message
    );
    assert!(is_true(&d.status, condition::BACKUP_SUCCEEDED));
    w.pair.status = Some(d.status);
    let again = decide(&w.pair, &obs, w.now);
    assert_eq!(
        events(&again, "BackupSucceeded"),
        0,
        "the same outcome: no second Event"
    );
    assert_eq!(again.status.last_backup, Some(b.clone()));

    // An older failed Job (history) does not replace the newer success.
    obs.last_backup_job = Some(FinishedBackup {
        name: "orca-backup-0".into(),
        finished: Time(at - jiff::SignedDuration::from_hours(24)),
        succeeded: false,
        report: Some(Reported::parse(Entrypoint::Backup, "boom")),
    });
    let old = decide(&w.pair, &obs, w.now);
    assert_eq!(old.status.last_backup, Some(b));
    assert_eq!(events(&old, "BackupFailed"), 0);

    // A newer failure: Warning Event, condition False, the raw message kept.
    obs.last_backup_job = Some(FinishedBackup {
        name: "orca-backup-2".into(),
        finished: Time(at + jiff::SignedDuration::from_hours(24)),
        succeeded: false,
        report: Some(Reported::parse(
            Entrypoint::Backup,
            "pg_dump: error: connection refused",
        )),
    });
    let failed = decide(&w.pair, &obs, w.now);
    assert_eq!(events(&failed, "BackupFailed"), 1);
    let b = failed.status.last_backup.clone().unwrap();
    assert!(
        !b.succeeded && b.message.contains("connection refused"),
        "{}",
        b.message
    );
    assert!(!is_true(&failed.status, condition::BACKUP_SUCCEEDED));
}
