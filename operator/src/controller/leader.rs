//! Leader election on a `coordination.k8s.io/v1` Lease, so that several operator replicas can
//! run and exactly one of them writes.
//!
//! A small module rather than a crate: the one well-kept crate that builds against kube 4.2
//! (kube-lease-manager 0.12) keeps reporting leadership while it cannot reach the API server
//! (its watch loop only logs renewal errors), and a replica that believes it leads after its
//! Lease expired is exactly the second writer this must prevent.
//!
//! Rules:
//! - Every write of the Lease is a `replace` carrying the resourceVersion read just before (or a
//!   `create`), so two replicas can never both win the same round: the loser gets 409.
//! - A replica takes the Lease when it is free (no holder), expired (`renewTime` +
//!   `leaseDurationSeconds` in the past) or its own; it renews every [`RENEW_EVERY`].
//! - A leader that has not renewed for [`LEASE_DURATION`] − [`RENEW_EVERY`] (three missed
//!   renewals) stops leading. The others may take over only after the full [`LEASE_DURATION`]
//!   since its last renewal, so it has stopped [`RENEW_EVERY`] before (room for clock skew
//!   between nodes and a pass in flight).
//! - On shutdown the leader releases the Lease (holder cleared), so a replacement takes over on
//!   its next try ([`RETRY_EVERY`]) instead of waiting for the Lease to expire.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

/// How long a Lease stays valid after its last renewal. Shorter than client-go's customary
/// 15 s: a crashed leader stalls every failover until it expires, and the failover bar here is
/// seconds (a renewal every 2 s is no load for the API server).
pub const LEASE_DURATION: Duration = Duration::from_secs(8);
/// How often the leader renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often a follower tries to take the Lease.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Which Lease, and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name (one per operator installation; the chart passes its full name).
    pub name: String,
    /// The namespace it lives in (the operator's own).
    pub namespace: String,
    /// This replica's identity, written as `holderIdentity` (the pod's name).
    pub identity: String,
}

/// The Lease spec this replica should write now, or `None` when another holder's Lease is
/// still valid. Pure: `current` is the Lease as read (None when it does not exist).
pub fn claim(current: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Option<LeaseSpec> {
    let duration = LEASE_DURATION.as_secs() as i32;
    let fresh = |transitions: i32| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(cur) = current else {
        return Some(fresh(0));
    };
    let holder = cur.holder_identity.as_deref().filter(|h| !h.is_empty());
    if holder == Some(me) {
        return Some(LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration),
            ..cur.clone()
        });
    }
    let expired = match (&cur.renew_time, cur.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(secs)) => {
            let until = renewed
                .checked_add(jiff::SignedDuration::from_secs(i64::from(secs.max(0))))
                .unwrap_or(*renewed);
            until < now
        }
        _ => true,
    };
    if holder.is_none() || expired {
        Some(fresh(cur.lease_transitions.unwrap_or(0) + 1))
    } else {
        None
    }
}

/// One round: read the Lease and write this replica's claim when it may. `Ok(true)`: this
/// replica holds it now. A lost race (409) is `Ok(false)`.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let Some(spec) = claim(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        Timestamp::now(),
    ) else {
        return Ok(false);
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            // metadata.resourceVersion is kept: the update fails with 409 if anyone wrote since.
            lease.spec = Some(spec);
            api.replace(&cfg.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Clear the holder when it is this replica (resourceVersion-guarded), so another replica
/// takes over at once. Best effort.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %cfg.name, "released the leader Lease"),
        Err(e) => {
            tracing::warn!(error = %e, lease = %cfg.name, "could not release the leader Lease")
        }
    }
}

/// Run the election until `stop` turns true, publishing whether this replica leads on `tx`.
/// Releases the Lease on the way out when it holds it.
pub async fn elect(
    client: Client,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let give_up_after = LEASE_DURATION - RENEW_EVERY;
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(RENEW_EVERY, round(&api, &cfg)).await;
        let leading = match outcome {
            Ok(Ok(true)) => {
                last_renewal = Some(started);
                true
            }
            Ok(Ok(false)) => {
                last_renewal = None;
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %cfg.name, "leader election: reading or writing the Lease failed");
                last_renewal.is_some_and(|t| t.elapsed() < give_up_after)
            }
            Err(_) => {
                tracing::warn!(lease = %cfg.name, "leader election: the Lease round timed out");
                last_renewal.is_some_and(|t| t.elapsed() < give_up_after)
            }
        };
        if !leading {
            last_renewal = None;
        }
        let was = *tx.borrow();
        if was != leading {
            if leading {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "leading: reconciling");
            } else {
                tracing::warn!(lease = %cfg.name, identity = %cfg.identity, "not leading: reconciling stops");
            }
            tx.send_replace(leading);
        }
        let wait = if leading { RENEW_EVERY } else { RETRY_EVERY };
        // While leading, never sleep past the point where leadership must be given up.
        let wait = match last_renewal {
            Some(t) => wait.min(give_up_after.saturating_sub(t.elapsed())),
            None => wait,
        };
        let stopping = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            // A dropped sender also means stop.
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            tx.send_replace(false);
            if leading {
                release(&api, &cfg).await;
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn held_by(who: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_or_free_lease_is_taken() {
        let s = claim(None, "op-a", at(1)).unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(s.lease_duration_seconds, Some(8));
        assert_eq!(s.renew_time, Some(MicroTime(at(1))));
        let mut free = held_by("op-b", 0);
        free.holder_identity = None;
        let s = claim(Some(&free), "op-a", at(1)).unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(s.lease_transitions, Some(4));
    }

    #[test]
    fn anothers_valid_lease_is_left_alone_until_it_expires() {
        let l = held_by("op-b", 10);
        assert_eq!(claim(Some(&l), "op-a", at(24)), None);
        assert_eq!(
            claim(Some(&l), "op-a", at(25)),
            None,
            "valid through renew + 15 s"
        );
        let s = claim(Some(&l), "op-a", at(26)).unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(s.acquire_time, Some(MicroTime(at(26))));
        assert_eq!(s.lease_transitions, Some(4));
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let l = held_by("op-a", 10);
        let s = claim(Some(&l), "op-a", at(14)).unwrap();
        assert_eq!(s.renew_time, Some(MicroTime(at(14))));
        assert_eq!(s.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(s.lease_transitions, Some(3));
    }
}
