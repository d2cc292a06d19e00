//! Property tests of the safety rules (docs/design.md section 3) over random sequences of faults,
//! operator crashes (a prefix of the actions run, the status write lost) and clock jumps,
//! with the model world playing the controller loop. Besides the rules: no client is handed a
//! session on a write-fenced member, even through a kube-proxy that applies the Service's
//! changes a second late.

mod decide_support;

use decide_support::*;
use proptest::prelude::*;
use receiptdb_operator::crd::{Member, OperationKind};
use receiptdb_operator::pair::{decide, Action, JobKind, SyncRequest};

#[derive(Clone, Debug)]
enum Fault {
    Crash(Member),
    Repair(Member),
    Partition(Member),
    Heal(Member),
    Pause(bool),
    Maintenance(Option<Member>),
    Switchover(Member),
    Sync(bool),
    JobsFail(bool),
    Lag(u64),
    Nothing,
}

fn member() -> impl Strategy<Value = Member> {
    prop_oneof![Just(Member::Primary), Just(Member::Secondary)]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => member().prop_map(Fault::Crash),
        3 => member().prop_map(Fault::Repair),
        1 => member().prop_map(Fault::Partition),
        2 => member().prop_map(Fault::Heal),
        1 => any::<bool>().prop_map(Fault::Pause),
        1 => proptest::option::of(member()).prop_map(Fault::Maintenance),
        1 => member().prop_map(Fault::Switchover),
        1 => any::<bool>().prop_map(Fault::Sync),
        1 => any::<bool>().prop_map(Fault::JobsFail),
        1 => (0u64..3000).prop_map(Fault::Lag),
        8 => Just(Fault::Nothing),
    ]
}

#[derive(Clone, Debug)]
struct Step {
    fault: Fault,
    ms: i64,
    /// The operator dies after this many actions (None: all ran).
    crash_after: Option<usize>,
    lose_status: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        fault(),
        prop_oneof![3 => 50i64..800, 1 => 800i64..8000],
        proptest::option::weighted(0.1, 0usize..3),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(fault, ms, crash_after, lose_status)| Step {
            fault,
            ms,
            crash_after,
            lose_status,
        })
}

fn apply(w: &mut World, f: &Fault) {
    match f {
        Fault::Crash(m) => w.crash(*m),
        Fault::Repair(m) => w.repair(*m),
        Fault::Partition(m) => w.node(*m).partitioned = true,
        Fault::Heal(m) => w.node(*m).partitioned = false,
        Fault::Pause(p) => w.pair.spec.maintenance.paused = *p,
        Fault::Maintenance(m) => w.pair.spec.maintenance.member = *m,
        Fault::Switchover(m) => w.request_switchover(*m),
        Fault::Sync(force) => w.request_sync(if *force {
            SyncRequest::Force
        } else {
            SyncRequest::Now
        }),
        Fault::JobsFail(b) => w.jobs_fail = *b,
        Fault::Lag(l) => w.replication_delay = *l,
        Fault::Nothing => {}
    }
}

/// Check every safety rule on one pass: `obs` is what decide saw, `prior` the status before.
fn check_pass(w: &World, synchronous: bool) -> Result<(), TestCaseError> {
    let obs = w.observe();
    let prior = w.status();
    let d = decide(&w.pair, &obs, w.now);
    // 5. idempotent: the same input gives the same decision.
    prop_assert_eq!(&d, &decide(&w.pair, &obs, w.now));
    let s = &d.status;
    // paused: observe and report only.
    if w.pair.spec.maintenance.paused {
        prop_assert!(d.desired.is_none());
        let only_events = d.actions.iter().all(|a| matches!(a, Action::Event { .. }));
        prop_assert!(only_events, "paused but acting: {:?}", d.actions);
    }
    // 1. the Service never selects a stale or fenced member.
    if let Some(Some(m)) = d.desired.as_ref().map(|x| x.service_selects) {
        let st = if m == Member::Primary {
            &s.primary
        } else {
            &s.secondary
        };
        prop_assert!(
            !st.stale && !st.fenced && st.initialized,
            "selects {m}: {s:#?}"
        );
    }
    for a in &d.actions {
        match a {
            // 2. data flows only from the authoritative member to the other.
            Action::CreateJob { kind, member } => {
                if matches!(
                    kind,
                    JobKind::Clone | JobKind::Rejoin | JobKind::Sync | JobKind::Check
                ) {
                    prop_assert_eq!(s.authoritative_member, Some(member.other()), "{:?}", a);
                }
                if receiptdb_operator::pair::mounts_pvc(*kind) {
                    let seen = obs.member(*member);
                    prop_assert!(seen.pod.is_none() && matches!(seen.replicas, None | Some(0)));
                }
            }
            // 3. promote only when the old active member is confirmed down.
            Action::Promote { member } => {
                let old = obs.member(member.other());
                prop_assert!(matches!(old.replicas, None | Some(0)), "{:?}", old);
                prop_assert!(old.pod.is_none() || old.server().is_none(), "{:?}", old);
            }
            _ => {}
        }
    }
    // 4. no automatic failover while paused, to a member under maintenance, past the lag
    //    bound (async), or (sync) to a standby that was not the synchronous one.
    let started = s
        .operation
        .as_ref()
        .filter(|o| o.kind == OperationKind::Failover)
        .filter(|_| {
            prior
                .operation
                .as_ref()
                .is_none_or(|p| p.kind != OperationKind::Failover)
        });
    if let Some(op) = started {
        prop_assert!(!w.pair.spec.maintenance.paused);
        prop_assert!(w.pair.spec.failover.enabled);
        prop_assert_ne!(w.pair.spec.maintenance.member, Some(op.member));
        if synchronous {
            let target_lost_data = !prior_member(&prior, op.member.other()).initialized;
            prop_assert!(
                prior.synchronous_standby == Some(op.member) || target_lost_data,
                "sync failover to a non-synchronous standby: {prior:#?}"
            );
        } else {
            prop_assert!(op
                .lag_bytes
                .is_some_and(|l| l <= w.pair.spec.replication.max_lag_bytes));
        }
    }
    Ok(())
}

fn prior_member(
    s: &receiptdb_operator::crd::ReceiptDbPairStatus,
    m: Member,
) -> &receiptdb_operator::crd::MemberStatus {
    if m == Member::Primary {
        &s.primary
    } else {
        &s.secondary
    }
}

/// kube-proxy's default `minSyncPeriod`: how late it may program a change of the Service.
const KUBE_PROXY_LAG_MS: i64 = 1000;

fn run(synchronous: bool, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut w = healthy_world(|s| {
        s.replication.synchronous = Some(synchronous);
        s.replication.max_lag_bytes = 1500;
        s.failover.failback_delay_seconds = 3;
        s.consistency_check.interval_seconds = 20;
    });
    for st in steps {
        apply(&mut w, &st.fault);
        check_pass(&w, synchronous)?;
        let before = w.status().active_member;
        w.pass(st.crash_after, st.lose_status);
        // No client is handed a session on a member whose writes are fenced, even through a
        // kube-proxy that programs the Service's changes up to a second late.
        let read_only = w.read_only_sessions(KUBE_PROXY_LAG_MS);
        prop_assert!(
            read_only.is_empty(),
            "clients may reach write-fenced {:?}; Service changes {:?}",
            read_only,
            w.service_changes
        );
        w.tick(st.ms, true);
        // Synchronous mode: whoever serves after a change of active member has every
        // acknowledged commit.
        let after = w.status().active_member;
        if let Some(m) = after.filter(|_| synchronous && after != before) {
            prop_assert_eq!(w.lost_on(m), 0, "acknowledged commits lost on {}", m);
        }
        // The Service never selects a member whose server is not a primary.
        if let Some(Some(m)) = w.service {
            if let Some(d) = &w.nodes[idx(m)].data {
                prop_assert!(!d.in_recovery || !w.nodes[idx(m)].running());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn safety_rules_hold_in_synchronous_mode(steps in proptest::collection::vec(step(), 10..80)) {
        run(true, steps)?;
    }

    #[test]
    fn safety_rules_hold_in_asynchronous_mode(steps in proptest::collection::vec(step(), 10..80)) {
        run(false, steps)?;
    }
}
