//! The observed state of a pair: what the operator writes in `status`.
//!
//! Status is the operator's only memory. Everything a restarted operator needs to resume a
//! half-done failover, re-alignment or switchover is here; the rest is derived from observation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use receiptdb_postgres::job_report::Entrypoint;

use super::Member;

/// Status of a ReceiptDbPair.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptDbPairStatus {
    /// Where the pair is in its life: Initializing, Healthy, Degraded, FailingOver, Syncing,
    /// SwitchingOver, Restoring, Failed, Maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The member the client Service points at; none while no member may serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_member: Option<Member>,
    /// The member whose data is the truth; data only ever flows from it to the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authoritative_member: Option<Member>,
    /// What the operator last observed of the `primary` member.
    #[serde(default)]
    pub primary: MemberStatus,
    /// What the operator last observed of the `secondary` member.
    #[serde(default)]
    pub secondary: MemberStatus,
    /// The standby named in `synchronous_standby_names` on the active member, when commits wait
    /// for it. Empty while degraded to asynchronous commits (standby away or catching up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_standby: Option<Member>,
    /// Since when the pair has been continuously in sync (for automatic failback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync_since: Option<Time>,
    /// A multi-step operation in progress, so a restarted operator resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Ready, InSync, Degraded, BackupSucceeded, ConsistencyVerified.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The most recent failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// The most recent re-alignment of a member (rejoin or sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncRecord>,
    /// The outcome of the newest finished scheduled backup (a Job of the backup CronJob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// The most recent consistency check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckRecord>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The authoritative member was (re-)initialised empty and still waits for the restore of
    /// `bootstrap.fromBackup`: it must not serve clients before the restore has succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restore: bool,
}

/// Phases of a pair.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Creating members and their data.
    Initializing,
    /// Both members up, the standby in sync.
    Healthy,
    /// Serving from one member; the other is down, stale or behind.
    Degraded,
    /// Switching clients to the surviving member after a failure.
    FailingOver,
    /// Re-aligning a member's data from the authoritative one.
    Syncing,
    /// A planned switch of the active member.
    SwitchingOver,
    /// Restoring data from a backup.
    Restoring,
    /// Nothing can serve and the operator cannot repair it alone (see conditions).
    Failed,
    /// Paused for maintenance: observing and reporting only.
    Maintenance,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What the operator observed of one member.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The member's pod is ready and its server answered the last probe.
    #[serde(default)]
    pub ready: bool,
    /// `primary` (accepts writes) or `standby` (in recovery), as last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ServerRole>,
    /// The member's data directory has been initialised (initdb or clone Job succeeded).
    #[serde(default)]
    pub initialized: bool,
    /// Current WAL position (`X/Y`): written on a primary, replayed on a standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// Bytes of WAL this standby has not replayed yet, as seen from the active member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Timeline the server is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// When the member started failing health checks, to the microsecond
    /// (`failover.delaySeconds` counts from here); kept across operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<MicroTime>,
    /// The member's data is behind the authoritative member's (it was failed away from) and
    /// must be re-aligned before it may serve or be promoted.
    #[serde(default)]
    pub stale: bool,
    /// The member is fenced: its StatefulSet is scaled to 0 by the operator.
    #[serde(default)]
    pub fenced: bool,
    /// Why the member is not ready, when known (never contains secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A server's role.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    Primary,
    Standby,
}

/// A multi-step operation in progress.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What is being done.
    pub kind: OperationKind,
    /// The member the operation acts on: the one promoted (failover, switchover) or re-aligned
    /// (rejoin, sync, restore).
    pub member: Member,
    /// The step reached; the next reconcile continues from here.
    pub step: OperationStep,
    /// When the operation started.
    pub started: MicroTime,
    /// Why it started, for people.
    #[serde(default)]
    pub reason: String,
    /// Name of the Job the operation waits for, when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The operation's Job was requested. A finished Job of the same kind found before that is
    /// a leftover of an earlier attempt: it is deleted, never read as this attempt's outcome.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub job_created: bool,
    /// Failed attempts of the operation's Job so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// After a failed attempt: the Job is re-created no earlier than this (backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Time>,
    /// Failover and switchover: the member that was active when the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Member>,
    /// Failover: when the old active member started failing (for `lastFailover` timings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<MicroTime>,
    /// Failover: the promoted member's lag when failover was decided (the data at risk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Switchover: writes on the old active member are fenced no earlier than this: 2 s after
    /// the client Service was first observed selecting no member, so that kube-proxy no longer
    /// sends new connections to the old member when its sessions are ended (a client would
    /// otherwise get a read-only session). Cleared if the Service is seen selecting a member
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_after: Option<MicroTime>,
    /// Switchover: the old active member's WAL position (`X/Y`) once its writes were fenced;
    /// the target is promoted only after replaying up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_lsn: Option<String>,
    /// Re-align everything (a full copy) instead of the cheapest method.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The annotation that requested the operation; removed when the operation ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Why the last attempt failed, for people (never contains secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Operation {
    /// A new operation at its first step.
    pub fn new(
        kind: OperationKind,
        member: Member,
        step: OperationStep,
        started: MicroTime,
    ) -> Self {
        Operation {
            kind,
            member,
            step,
            started,
            reason: String::new(),
            job: None,
            job_created: false,
            attempts: 0,
            retry_after: None,
            from: None,
            failing_since: None,
            lag_bytes: None,
            fence_after: None,
            target_lsn: None,
            force: false,
            request: None,
            last_error: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Kinds of Jobs the operator runs (the entrypoint each runs, and the `receiptdb.io/job` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Initialise the primary's data directory.
    Initdb,
    /// Make a member a fresh standby of the authoritative member.
    Clone,
    /// Rewind a stale former primary into a standby (falls back to clone).
    Rejoin,
    /// Re-align data by comparison and copy (external mode, repairs).
    Sync,
    /// Restore a member from a backup.
    Restore,
    /// Compare the two databases.
    Check,
    /// Back up the authoritative member.
    Backup,
}

impl JobKind {
    /// The subcommand and name part: `initdb`, `clone`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Initdb => "initdb",
            JobKind::Clone => "clone",
            JobKind::Rejoin => "rejoin",
            JobKind::Sync => "sync",
            JobKind::Restore => "restore",
            JobKind::Check => "check",
            JobKind::Backup => "backup",
        }
    }

    /// The entrypoint the Job runs (whose report it leaves).
    pub fn entrypoint(self) -> Entrypoint {
        match self {
            JobKind::Initdb => Entrypoint::Initdb,
            JobKind::Clone => Entrypoint::Clone,
            JobKind::Rejoin => Entrypoint::Rejoin,
            JobKind::Sync => Entrypoint::Sync,
            JobKind::Restore => Entrypoint::Restore,
            JobKind::Check => Entrypoint::Check,
            JobKind::Backup => Entrypoint::Backup,
        }
    }
}

/// Kinds of multi-step operations.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Failover,
    Switchover,
    Rejoin,
    Sync,
    Restore,
    /// Bootstrap: initialise a member's data directory.
    Initdb,
    /// Bootstrap or lost data: make a member a fresh standby of the authoritative member.
    Clone,
    /// Compare the two databases (periodic, or before a requested sync).
    Check,
}

/// Steps of the multi-step operations (each operation uses the ones it needs, in this order).
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum OperationStep {
    /// Stopping writes on the old active member. Failover: scale it to 0. Switchover: detach
    /// clients first (the client Service selects no member), then make it read-only and end
    /// its sessions.
    Fencing,
    /// Waiting until the member to promote has replayed everything.
    WaitingForReplay,
    /// Promoting the member.
    Promoting,
    /// Pointing the client Service at the new active member.
    Switching,
    /// A Job runs against the member's data (rejoin, sync, restore).
    RunningJob,
    /// The member starts and catches up as a standby.
    CatchingUp,
    /// A `check` Job verifies a re-aligned member (external mode).
    Verifying,
}

/// The most recent failover.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// When clients were switched.
    pub time: Time,
    /// The member failed away from.
    pub from: Member,
    /// The member now serving.
    pub to: Member,
    /// Why.
    pub reason: String,
    /// Milliseconds from the first failed probe to the decision to fail over.
    pub detection_millis: i64,
    /// Milliseconds from the first failed probe to the Service pointing at the new member.
    pub total_millis: i64,
    /// The standby's replay lag when it was promoted, in bytes: the data at risk. Zero in
    /// synchronous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
}

/// The most recent re-alignment of a member.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// When it finished.
    pub time: Time,
    /// The member re-aligned.
    pub member: Member,
    /// How: `rewind`, `clone` or `none` (a rejoin that had nothing to change), `sync`
    /// (external mode), `restore`.
    pub method: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
    /// WAL the member had past the fork point, which the authoritative member never had and
    /// re-alignment threw away. Absent when nothing was discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded: Option<DiscardedWal>,
}

/// WAL thrown away by a re-alignment: commits the member made alone, after the fork point
/// (asynchronous mode, or a primary that went on without its standby). Nothing a client was
/// told was safe in synchronous mode is ever in it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscardedWal {
    /// The member's timeline the range is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Start of the range (the fork point), `X/Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End of the member's WAL, `X/Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Bytes of WAL between them.
    pub bytes: i64,
}

/// The most recent backup.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// When it finished.
    pub time: Time,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// The backup file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
}

/// The most recent consistency check.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// When it finished.
    pub time: Time,
    /// How the tables were compared.
    pub method: super::CheckMethod,
    /// Whether the two databases compared equal.
    pub equal: bool,
    /// Tables that differ (at most 20 listed).
    #[serde(default)]
    pub differing_tables: Vec<String>,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
}
