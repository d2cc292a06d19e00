//! One reconcile pass, as a visible pipeline: observe → decide (pure) → apply the desired
//! objects → carry out the actions → write status. Only observe and act hold a client.
//!
//! No finalizer: everything the pair owns carries an owner reference, so the garbage collector
//! deletes it with the pair, and nothing outside the cluster needs cleaning up. The data is
//! protected by the StatefulSets' PVC retention policy (`Retain` unless the spec says
//! `Delete`) and the generated password Secrets are kept with it; a finalizer would only add a
//! way for a stuck operator to block deleting the pair.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tracing::{info_span, Instrument};

use super::context::Context;
use super::error::{reset_failures, Error};
use super::{act, observe, status, tls};
use crate::crd::ReceiptDbPair;
use crate::pair;

/// One pass over one pair, without metrics or error reporting (what the reconcile tests call
/// directly).
///
/// The pass decides from the pair as stored now, read afresh: the object that triggered it
/// comes from the watch's cache, which can lag behind this operator's own last status write.
/// Deciding from that older status (the operator's only memory) once took a finished step
/// back on a real cluster: a failback switchover at `Promoting` returned to `Fencing` and the
/// Service selected the member it had just marked stale.
///
/// Order matters: status is written last, only after every action succeeded, so status never
/// claims a step that did not happen; a failed action leaves the old status, and the next pass
/// decides again from it and from what it then observes.
///
/// Returns when to look at the pair again without a change (`None`: only on a change).
pub async fn reconcile_once(
    pair: Arc<ReceiptDbPair>,
    ctx: Arc<Context>,
) -> Result<Option<Duration>, Error> {
    let api: Api<ReceiptDbPair> =
        Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    let Some(pair) = api
        .get_opt(&pair.name_any())
        .await
        .map_err(Error::kube("reading the pair"))?
    else {
        return Ok(None);
    };
    if pair.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let observed = observe::observe(&pair, &ctx).await?;
    let now = ctx.now();
    let decision = pair::decide(&pair, &observed.observation, now);
    if let Some(desired) = &decision.desired {
        act::apply_owned(&pair, desired, &observed, &ctx).await?;
    }
    act::run_actions(&pair, &decision.actions, &observed, &ctx).await?;
    if tls::reload_due(&observed.tls, now)
        || tls::user_secret_changed(&pair, &observed.tls, now, &ctx)
    {
        act::reload_members(&pair, &observed, &ctx).await;
    }
    let old_failover = pair.status.as_ref().and_then(|s| s.last_failover.as_ref());
    if decision.status.last_failover.is_some()
        && decision.status.last_failover.as_ref() != old_failover
    {
        ctx.metrics.failover();
    }
    status::write_if_changed(&pair, &decision.status, &ctx).await?;
    Ok(Some(decision.requeue_after))
}

/// The Controller's reconciler: [`reconcile_once`] with metrics, a span, and errors reported
/// to the user as a log line, a Warning Event and `Ready=False`.
pub async fn reconcile(pair: Arc<ReceiptDbPair>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", pair = %pair.name_any(), namespace = pair.namespace().unwrap_or_default());
    async {
        ctx.metrics.reconciled();
        let _timer = ctx.metrics.reconcile_timer();
        let result = reconcile_once(pair.clone(), ctx.clone()).await;
        match &result {
            Ok(_) => reset_failures(&pair, &ctx),
            Err(e) => report_error(&pair, e, &ctx).await,
        }
        result.map(|requeue| requeue.map_or_else(Action::await_change, Action::requeue))
    }
    .instrument(span)
    .await
}

async fn report_error(pair: &ReceiptDbPair, e: &Error, ctx: &Context) {
    ctx.metrics.error(e.metric_label());
    tracing::warn!(error = %e, kind = e.metric_label(), "reconcile failed");
    let current = pair.status.clone().unwrap_or_default();
    let next = status::with_not_ready(
        &current,
        pair.metadata.generation,
        "ReconcileFailed",
        &e.to_string(),
        ctx.now(),
    );
    let changed = next.conditions != current.conditions;
    if changed {
        act::publish(pair, true, "ReconcileFailed", &e.to_string(), ctx).await;
        if let Err(w) = status::write_if_changed(pair, &next, ctx).await {
            tracing::warn!(error = %w, "could not record the error in status");
        }
    }
}
