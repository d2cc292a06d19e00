//! A spec the schema could not reject (e.g. a referenced Secret lacks its key): the typed
//! problems the controller's validation finds, and what decide does about them.
//!
//! Nothing that exists is changed: no desired state, no actions. Status keeps everything it
//! knew; only the Ready condition says why (its `observedGeneration` names the offending
//! generation), while `status.observedGeneration` stays at the last generation acted upon, so
//! tools waiting for the new generation to be observed do not mistake it for applied.
//! A Warning Event is recorded only when the message changes, and the pass is not repeated
//! soon: a spec error waits for a change of the spec, which triggers a pass by itself. A missing
//! referenced Secret is the exception: it is looked for again every 10 s.

use std::fmt;
use std::time::Duration;

use super::context::Cx;
use super::phase::ready;
use super::Decision;

/// How long to wait before looking at a broken spec again without a change.
pub const SPEC_ERROR_REQUEUE: Duration = Duration::from_secs(300);

/// How long to wait before looking again for a referenced object that is missing.
pub const MISSING_OBJECT_REQUEUE: Duration = Duration::from_secs(10);

/// Something in the spec the operator cannot act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecProblem {
    /// `spec.postgres.parameters` names an operator-owned or malformed setting.
    Parameters(String),
    /// A backup location on S3 (in the schema, not implemented by the Jobs).
    S3NotSupported,
    /// A referenced Secret does not exist (it may be applied after the pair, as GitOps tools
    /// do).
    SecretMissing {
        name: String,
        /// The spec field naming it, under `spec` (e.g. `postgres.superuserSecret`).
        field: &'static str,
    },
    /// A referenced Secret exists but lacks the key, or its value is empty.
    SecretKeyMissing {
        name: String,
        key: String,
        field: &'static str,
    },
}

impl SpecProblem {
    /// Whether the problem is an object that may still appear: looked for again soon.
    pub fn awaits_object(&self) -> bool {
        matches!(
            self,
            SpecProblem::SecretMissing { .. } | SpecProblem::SecretKeyMissing { .. }
        )
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecProblem::Parameters(why) => f.write_str(why),
            SpecProblem::S3NotSupported => {
                f.write_str("S3 backup locations are not supported yet; use a pvc location")
            }
            SpecProblem::SecretMissing { name, field } => {
                write!(f, "Secret {name:?} named in spec.{field} does not exist")
            }
            SpecProblem::SecretKeyMissing { name, key, field } => write!(
                f,
                "Secret {name:?} has no non-empty key {key:?} (spec.{field})"
            ),
        }
    }
}

/// The Ready condition's reason for these problems: `SecretNotFound` when every one of them
/// is a referenced object that may still appear, else `InvalidSpec`.
pub fn ready_reason(problems: &[SpecProblem]) -> &'static str {
    if problems.iter().all(SpecProblem::awaits_object) {
        "SecretNotFound"
    } else {
        "InvalidSpec"
    }
}

/// How long until the pair is looked at again without a change: soon when a referenced object
/// is missing (creating it triggers nothing the operator watches), else on the next change.
pub fn requeue_after(problems: &[SpecProblem]) -> Duration {
    if problems.iter().any(SpecProblem::awaits_object) {
        MISSING_OBJECT_REQUEUE
    } else {
        SPEC_ERROR_REQUEUE
    }
}

pub(crate) fn decide(mut cx: Cx, problems: &[SpecProblem]) -> Decision {
    let requeue_after = requeue_after(problems);
    let message = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    ready(&mut cx, false, ready_reason(problems), message);
    let mut actions = cx.actions;
    actions.extend(cx.events);
    Decision {
        desired: None,
        actions,
        status: cx.status,
        requeue_after,
    }
}
