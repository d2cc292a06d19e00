//! Reconcile errors and what to do after one: a spec the operator cannot act on waits for the
//! user to change it (no hot loop); anything transient is retried with capped exponential
//! backoff and jitter, so many failing pairs do not retry in lockstep.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::ResourceExt;
use rand::Rng;

use super::Context;
use crate::crd::ReceiptDbPair;

/// Why a reconcile pass failed. Messages never contain passwords (members are named
/// `user@host:port/db`; Secrets are only ever named).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// An SQL action on a member failed.
    #[error("{action} on member {member}: {message}")]
    Member {
        action: &'static str,
        member: crate::crd::Member,
        message: String,
    },
    /// The pair cannot be acted on as written (and the schema could not say so).
    #[error("invalid spec: {0}")]
    Spec(String),
    /// A certificate could not be issued.
    #[error("TLS: {0}")]
    Tls(String),
    /// An object could not be (de)serialized.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The `error` label of the `receiptdb_reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Member { .. } => "member",
            Error::Spec(_) => "spec",
            Error::Json { .. } => "json",
            Error::Tls(_) => "tls",
        }
    }

    /// Whether retrying cannot help until the pair changes.
    pub fn is_spec_error(&self) -> bool {
        matches!(self, Error::Spec(_))
    }

    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube {
            what,
            source: Box::new(source),
        }
    }
}

/// How long a spec error waits before looking again (a watch event on the pair comes sooner).
pub const SPEC_ERROR_REQUEUE: Duration = Duration::from_secs(300);
/// First retry delay after a transient error.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (1 = first failure): base · 2^(n-1), capped, then
/// scaled by a random factor in [0.5, 1.0].
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)));
    exp.min(BACKOFF_CAP).mul_f64(jitter.clamp(0.5, 1.0))
}

fn key(pair: &ReceiptDbPair) -> String {
    format!(
        "{}/{}",
        pair.namespace().unwrap_or_default(),
        pair.name_any()
    )
}

/// The controller's error policy (see the module doc).
pub fn error_policy(pair: Arc<ReceiptDbPair>, error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(retry_delay(&pair, error, &ctx))
}

/// How long after a failed pass the pair is looked at again; counts the pair's failures.
pub fn retry_delay(pair: &ReceiptDbPair, error: &Error, ctx: &Context) -> Duration {
    if error.is_spec_error() {
        return SPEC_ERROR_REQUEUE;
    }
    let n = match ctx.failures.lock() {
        Ok(mut m) => {
            let n = m.entry(key(pair)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    backoff(n, rand::rng().random_range(0.5..=1.0))
}

/// Forget a pair's failures after a successful pass.
pub(crate) fn reset_failures(pair: &ReceiptDbPair, ctx: &Context) {
    if let Ok(mut m) = ctx.failures.lock() {
        m.remove(&key(pair));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(30, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(4, 0.5), Duration::from_secs(4));
        assert_eq!(
            backoff(4, 0.1),
            Duration::from_secs(4),
            "jitter never below half"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(Error::Spec("x".into()).metric_label(), "spec");
        assert!(Error::Spec("x".into()).is_spec_error());
        let e = Error::Member {
            action: "promote",
            member: crate::crd::Member::Secondary,
            message: "timeout".into(),
        };
        assert_eq!(e.metric_label(), "member");
        assert!(!e.is_spec_error());
    }
}
