//! The state one decision pass works on: inputs (spec, persisted status, observation, time) and
//! the outputs being built (new status, actions, Events, requeue).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use receiptdb_postgres::actions::Lsn;

use crate::crd::{
    Member, MemberStatus, ReceiptDbPair, ReceiptDbPairSpec, ReceiptDbPairStatus, ReplicationMode,
};

use super::{Action, MemberObservation, Observation};

/// Requeue while an operation is in flight: the client outage lasts as long as the slowest
/// pass of a failover, so passes follow each other closely.
pub const FAST: Duration = Duration::from_millis(200);

/// One decision pass.
pub(crate) struct Cx<'a> {
    pub pair: &'a ReceiptDbPair,
    pub obs: &'a Observation,
    pub now: Timestamp,
    /// The status as persisted: the operator's memory from earlier passes.
    pub prior: ReceiptDbPairStatus,
    /// The status being decided.
    pub status: ReceiptDbPairStatus,
    pub actions: Vec<Action>,
    /// Events go after every other action, so a failure to record one never blocks a step.
    pub events: Vec<Action>,
    pub requeue: Duration,
}

impl<'a> Cx<'a> {
    pub fn new(pair: &'a ReceiptDbPair, obs: &'a Observation, now: Timestamp) -> Self {
        let prior = pair.status.clone().unwrap_or_default();
        Cx {
            pair,
            obs,
            now,
            status: prior.clone(),
            prior,
            actions: Vec::new(),
            events: Vec::new(),
            requeue: Duration::from_secs(u64::from(pair.spec.failover.probe_period_seconds.max(1))),
        }
    }

    pub fn spec(&self) -> &'a ReceiptDbPairSpec {
        &self.pair.spec
    }

    pub fn streaming(&self) -> bool {
        self.spec().replication.mode == ReplicationMode::Streaming
    }

    pub fn member(&self, m: Member) -> &MemberStatus {
        member_status(&self.status, m)
    }

    pub fn member_mut(&mut self, m: Member) -> &mut MemberStatus {
        match m {
            Member::Primary => &mut self.status.primary,
            Member::Secondary => &mut self.status.secondary,
        }
    }

    pub fn seen(&self, m: Member) -> &'a MemberObservation {
        self.obs.member(m)
    }

    /// Healthy now: pod ready and the probe answered.
    pub fn healthy(&self, m: Member) -> bool {
        self.seen(m).healthy()
    }

    /// Under rolling maintenance: may be down, never promoted, no Jobs started on it.
    pub fn in_maintenance(&self, m: Member) -> bool {
        self.spec().maintenance.member == Some(m)
    }

    /// May hold clients: initialised, current data, not scaled down.
    pub fn may_serve(&self, m: Member) -> bool {
        let st = self.member(m);
        st.initialized && !st.stale && !st.fenced
    }

    pub fn time(&self) -> Time {
        Time(self.now)
    }

    /// The decision's time, to the microsecond (for the timers decisions wait on).
    pub fn micro_time(&self) -> MicroTime {
        MicroTime(self.now)
    }

    /// Time elapsed since `t` (zero when `t` is in the future).
    pub fn since(&self, t: Timestamp) -> Duration {
        self.now
            .duration_since(t)
            .try_into()
            .unwrap_or(Duration::ZERO)
    }

    /// `now + d`.
    pub fn after(&self, d: Duration) -> Time {
        let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        Time(self.now.checked_add(d).unwrap_or(Timestamp::MAX))
    }

    /// Look again no later than `d` from now.
    pub fn requeue_within(&mut self, d: Duration) {
        self.requeue = self.requeue.min(d.max(FAST));
    }

    pub fn act(&mut self, a: Action) {
        self.actions.push(a);
    }

    pub fn event(&mut self, warning: bool, reason: &'static str, message: String) {
        self.events.push(Action::Event {
            warning,
            reason,
            message,
        });
    }
}

pub(crate) fn member_status(s: &ReceiptDbPairStatus, m: Member) -> &MemberStatus {
    match m {
        Member::Primary => &s.primary,
        Member::Secondary => &s.secondary,
    }
}

/// A WAL position as PostgreSQL prints it: `X/Y`, hexadecimal halves (the data path's
/// [`Lsn`], the one parser and printer of WAL positions).
pub fn format_lsn(lsn: u64) -> String {
    Lsn(lsn).to_string()
}

/// Parse `X/Y`; `None` when malformed.
pub fn parse_lsn(s: &str) -> Option<u64> {
    s.parse::<Lsn>().ok().map(|l| l.0)
}

/// Milliseconds between two instants (negative when `b` is before `a`).
pub(crate) fn millis_between(a: Timestamp, b: Timestamp) -> i64 {
    i64::try_from(b.duration_since(a).as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_in_postgres_format() {
        assert_eq!(format_lsn(0x1_0000_00A0), "1/A0");
        assert_eq!(parse_lsn("1/A0"), Some(0x1_0000_00A0));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("junk"), None);
        assert_eq!(parse_lsn("1FFFFFFFF/0"), None);
    }
}
