//! What the controller saw: the input of [`super::decide`]. Plain data, no clients.

use serde::{Deserialize, Serialize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use receiptdb_postgres::job_report::{Entrypoint, JobReport};

pub use crate::crd::JobKind;

use crate::crd::Member;

/// Everything observed about one pair in one reconcile pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The pair's `metadata.generation`.
    pub generation: i64,
    /// Spec problems the schema could not catch (e.g. a referenced Secret is missing or lacks
    /// the key). When there are any, decide changes nothing and reports `Ready=False`. A
    /// referenced object that is missing, e.g. a Secret applied after the pair as GitOps tools
    /// may do, is looked for again after [`super::MISSING_OBJECT_REQUEUE`]: creating it changes
    /// nothing the operator watches unless it carries the pair's label.
    pub spec_problems: Vec<super::SpecProblem>,
    /// The `primary` member.
    pub primary: MemberObservation,
    /// The `secondary` member.
    pub secondary: MemberObservation,
    /// The member the client Service selects now: `None` when the Service is missing,
    /// `Some(None)` when it selects nothing.
    pub service_selects: Option<Option<Member>>,
    /// Jobs the pair owns.
    pub jobs: Vec<JobObservation>,
    /// One-shot requests found in the pair's annotations.
    pub requests: Requests,
    /// The newest finished Job of the scheduled backup (the CronJob's), if any.
    pub last_backup_job: Option<FinishedBackup>,
    /// When the members' probes started. A member that failed its probe has not answered since
    /// then, so its `failingSince` is this time rather than the decision's (a probe to a lost
    /// node only fails after `failover.probeTimeoutSeconds`). `None`: the decision's time.
    pub probed_at: Option<jiff::Timestamp>,
}

/// A finished Job of the scheduled backup.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedBackup {
    /// The Job's name.
    pub name: String,
    /// When it finished (completion time, or when it was marked failed).
    pub finished: Time,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// The `backup` entrypoint's report, from the pod's termination message.
    pub report: Option<Reported>,
}

impl Observation {
    /// The observation of one member.
    pub fn member(&self, m: Member) -> &MemberObservation {
        match m {
            Member::Primary => &self.primary,
            Member::Secondary => &self.secondary,
        }
    }

    /// Mutable access to one member's observation (for tests and builders).
    pub fn member_mut(&mut self, m: Member) -> &mut MemberObservation {
        match m {
            Member::Primary => &mut self.primary,
            Member::Secondary => &mut self.secondary,
        }
    }

    /// The newest Job of `kind` for `member`, if any.
    pub fn job(&self, kind: JobKind, member: Member) -> Option<&JobObservation> {
        self.jobs
            .iter()
            .find(|j| j.kind == kind && j.member == member)
    }
}

/// What was seen of one member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberObservation {
    /// `spec.replicas` of the member's StatefulSet; `None` when the StatefulSet does not exist.
    pub replicas: Option<i32>,
    /// The member's pod, when one exists.
    pub pod: Option<PodObservation>,
    /// The SQL probe: `None` when not probed (no pod), `Some(Err(why))` when it failed.
    pub probe: Option<Result<ServerProbe, String>>,
    /// The member's data directory is gone (its PVC was deleted or re-created empty). Decide
    /// then forgets that the member was initialised: it is cloned again from the authoritative
    /// member, or, when both are gone, restored from `bootstrap.fromBackup`.
    pub data_lost: bool,
    /// The member pod's node is cordoned (`spec.unschedulable`, which `kubectl drain` sets
    /// before it evicts anything). `None`: unknown (no pod, not scheduled, or the Node could
    /// not be read).
    pub node_cordoned: Option<bool>,
}

impl MemberObservation {
    /// The probe result when it succeeded.
    pub fn server(&self) -> Option<&ServerProbe> {
        self.probe.as_ref().and_then(|p| p.as_ref().ok())
    }

    /// Healthy right now: pod ready and the server answered.
    pub fn healthy(&self) -> bool {
        self.pod.as_ref().is_some_and(|p| p.ready) && self.server().is_some()
    }
}

/// What was seen of a member's pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodObservation {
    /// The pod's Ready condition.
    pub ready: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// Container restarts so far.
    pub restarts: i32,
}

/// What the SQL probe of a running server returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerProbe {
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// Current WAL write position on a primary, replay position on a standby.
    pub lsn: u64,
    /// On a standby: WAL received so far.
    pub receive_lsn: Option<u64>,
    /// Timeline the server is on.
    pub timeline: u32,
    /// The cluster's system identifier (differs after an independent initdb).
    pub system_identifier: u64,
    /// On a standby: its WAL receiver is streaming.
    pub streaming: bool,
    /// On a primary: its standbys, from `pg_stat_replication`.
    pub standbys: Vec<StandbyObservation>,
    /// `synchronous_standby_names` in effect.
    pub synchronous_standby_names: String,
    /// `default_transaction_read_only` in effect (fenced for a switchover).
    pub read_only: bool,
}

/// One standby as its primary sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyObservation {
    /// `application_name`: the member name.
    pub application_name: String,
    /// `state = 'streaming'`.
    pub streaming: bool,
    /// `sync_state = 'sync'`.
    pub synchronous: bool,
    /// Bytes between the primary's current LSN and the standby's replay LSN.
    pub replay_lag_bytes: u64,
}

/// What was seen of one owned Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobObservation {
    /// Which Job.
    pub kind: JobKind,
    /// The member it works on (whose PVC it mounts or whose data it writes).
    pub member: Member,
    /// The Job's name.
    pub name: String,
    /// Where it is.
    pub state: JobState,
    /// The entrypoint's report, from the pod's termination message, when it ended.
    pub report: Option<Reported>,
}

/// A termination message, read once.
#[derive(Debug, Clone, PartialEq)]
pub enum Reported {
    /// The report of the Job's entrypoint.
    Report(Box<JobReport>),
    /// Anything else: not JSON (the container crashed and the kubelet kept its last log
    /// lines), or the report of another entrypoint. Its text, for people.
    Unreadable(String),
}

impl Reported {
    /// Read the termination message of a Job running `entrypoint`.
    pub fn parse(entrypoint: Entrypoint, message: &str) -> Reported {
        match JobReport::parse(message) {
            Ok(r) if r.entrypoint() == entrypoint => Reported::Report(Box::new(r)),
            _ => Reported::Unreadable(message.trim().to_string()),
        }
    }

    /// The typed report, when there is one.
    pub fn report(&self) -> Option<&JobReport> {
        match self {
            Reported::Report(r) => Some(r.as_ref()),
            Reported::Unreadable(_) => None,
        }
    }

    /// Why the Job failed, as far as the message says.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reported::Report(r) => r.error(),
            Reported::Unreadable(text) => Some(text).filter(|t| !t.is_empty()).map(String::as_str),
        }
    }
}

/// A Job's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// One-shot requests from annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    /// `receiptdb.io/switchover-to`; `Err` holds an unparseable value to report.
    pub switchover_to: Option<Result<Member, String>>,
    /// `receiptdb.io/sync`.
    pub sync: Option<Result<SyncRequest, String>>,
}

/// `receiptdb.io/sync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRequest {
    /// Compare, then re-align what differs.
    Now,
    /// Re-align everything (the runbook's `-allsync`).
    Force,
}
