//! What decide wants: the output of [`super::decide`]. Plain data; the controller carries it out.

use std::time::Duration;

use crate::crd::{Member, ReceiptDbPairStatus};

use super::observation::JobKind;

/// The result of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The owned objects' desired shape. The controller server-side applies all of them on
    /// every pass (level-triggered), so these are states, not steps. `None` leaves every owned
    /// object as it is (a spec error, or paused for maintenance).
    pub desired: Option<Desired>,
    /// Imperative steps, carried out in order after `desired` is applied. The controller stops
    /// at the first failing one; the next pass decides again from what it then observes.
    pub actions: Vec<Action>,
    /// The status to write (written only when it differs from the current one).
    pub status: ReceiptDbPairStatus,
    /// When to look again, at the latest.
    pub requeue_after: Duration,
}

/// Desired shape of the owned objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `spec.replicas` of `<pair>-primary` (0 or 1).
    pub primary_replicas: i32,
    /// `spec.replicas` of `<pair>-secondary` (0 or 1).
    pub secondary_replicas: i32,
    /// The member the client Service selects; `None` selects no pod at all.
    pub service_selects: Option<Member>,
    /// The member the PodDisruptionBudget keeps from eviction: the active one (or, while none
    /// is, the authoritative one). `None` protects no pod.
    pub protected: Option<Member>,
}

impl Desired {
    /// Replicas of one member's StatefulSet.
    pub fn replicas(&self, m: Member) -> i32 {
        match m {
            Member::Primary => self.primary_replicas,
            Member::Secondary => self.secondary_replicas,
        }
    }
}

/// An imperative step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a Job of `kind` working on `member` (its PVC or its database), with the other
    /// member as the source where the kind needs one. Idempotent: an existing Job of the same
    /// name is left alone.
    CreateJob { kind: JobKind, member: Member },
    /// Delete a finished Job (and its pods) by name.
    DeleteJob { name: String },
    /// `pg_promote()` on `member` and wait until it is a usable primary.
    Promote { member: Member },
    /// Stop writes on `member` without stopping it: read-only and client sessions ended
    /// (planned switchover).
    FenceWrites { member: Member },
    /// Undo [`Action::FenceWrites`].
    UnfenceWrites { member: Member },
    /// Set `synchronous_standby_names` on `on` to name `standby`, or to nothing.
    SetSynchronousStandby { on: Member, standby: Option<Member> },
    /// Remove a one-shot request annotation.
    ClearAnnotation { key: &'static str },
    /// Record a Kubernetes Event on the pair.
    Event {
        warning: bool,
        reason: &'static str,
        message: String,
    },
}
