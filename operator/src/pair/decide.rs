//! The decision function. (Being written.)

use jiff::Timestamp;

use crate::crd::ReceiptDbPair;

use super::{Decision, Desired, Observation};

/// Decide what the pair needs now, from its spec and status, what was observed, and the time.
pub fn decide(pair: &ReceiptDbPair, _obs: &Observation, _now: Timestamp) -> Decision {
    Decision {
        desired: Some(Desired {
            primary_replicas: 0,
            secondary_replicas: 0,
            service_selects: None,
        }),
        actions: Vec::new(),
        status: pair.status.clone().unwrap_or_default(),
        requeue_after: std::time::Duration::from_secs(10),
    }
}
