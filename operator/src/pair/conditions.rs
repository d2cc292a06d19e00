//! Kubernetes conditions in status: set with a transition time that changes only when the
//! condition's status flips, so `kubectl wait` and alerting see real transitions only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::ReceiptDbPairStatus;

use super::context::Cx;

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }

    pub fn from(b: bool) -> Self {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

/// The condition of `type_` in `status`, if set.
pub fn condition<'s>(status: &'s ReceiptDbPairStatus, type_: &str) -> Option<&'s Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(status: &ReceiptDbPairStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

/// Set one condition; the transition time is kept while the status stays the same.
pub(crate) fn set(cx: &mut Cx, type_: &str, truth: Truth, reason: &str, message: String) {
    let generation = cx.obs.generation;
    let now = cx.time();
    let previous = condition(&cx.prior, type_).cloned();
    let last_transition_time = match previous {
        Some(p) if p.status == truth.as_str() => p.last_transition_time,
        _ => now,
    };
    let c = Condition {
        type_: type_.to_string(),
        status: truth.as_str().to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time,
        observed_generation: Some(generation),
    };
    match cx.status.conditions.iter_mut().find(|x| x.type_ == type_) {
        Some(x) => *x = c,
        None => cx.status.conditions.push(c),
    }
}
