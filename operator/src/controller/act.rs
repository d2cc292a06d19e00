//! Act: carry out a decision. First the owned objects' desired state, by server-side apply
//! with one field manager (level-triggered: every pass applies all of them), then decide's
//! imperative actions in order, stopping at the first that fails.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::context::{Context, MemberTarget};
use super::error::Error;
use super::observe::Observed;
use crate::crd::{Member, ReceiptDbPair};
use crate::pair::{Action, Desired, JobState};
use crate::resources::{cronjob, jobs, pdb, secrets, services, statefulset};

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Server-side apply `obj` with the operator's field manager, taking over conflicting fields.
pub async fn apply<K>(api: &Api<K>, obj: &K, ctx: &Context) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(&ctx.config.field_manager).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(Error::kube(format!("applying {} {name}", K::kind(&()))))
}

/// Apply every owned object's desired state. Generated password Secrets are created once,
/// never applied (applying would replace the password set inside the data directories).
pub async fn apply_owned(
    pair: &ReceiptDbPair,
    desired: &Desired,
    observed: &Observed,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = pair.namespace().unwrap_or_default();
    let cfg = &ctx.config;
    let c = ctx.client.clone();

    let secret_api: Api<Secret> = Api::namespaced(c.clone(), &ns);
    for role in &observed.missing_generated {
        let s = secrets::password_secret(pair, *role, &secrets::random_password(), cfg);
        match secret_api.create(&PostParams::default(), &s).await {
            Ok(_) => tracing::info!(secret = s.name_any(), "created password Secret"),
            // Someone (an earlier pass) made it meanwhile: keep theirs.
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(Error::kube(format!("creating Secret {}", s.name_any()))(e)),
        }
    }

    // Certificates before the StatefulSets and Jobs that mount them.
    super::tls::ensure(pair, &observed.tls, ctx).await?;

    let svc: Api<Service> = Api::namespaced(c.clone(), &ns);
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), &ns);
    for member in Member::ALL {
        apply(&svc, &services::headless_service(pair, member, cfg), ctx).await?;
    }
    for member in Member::ALL {
        let s = statefulset::statefulset(pair, member, desired.replicas(member), cfg);
        apply(&sts, &s, ctx).await?;
    }
    apply(
        &svc,
        &services::client_service(pair, desired.service_selects, cfg),
        ctx,
    )
    .await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), &ns);
    apply(
        &pdbs,
        &pdb::pod_disruption_budget(pair, desired.protected),
        ctx,
    )
    .await?;

    // A data-writing Job that runs without its claim (created by an operator that did not make
    // claims) cannot be scheduled: give it its claim.
    for job in &observed.observation.jobs {
        if job.state == JobState::Running && jobs::writes_data_dir(job.kind) {
            ensure_data_claim(pair, job.member, ctx).await?;
        }
    }

    let cron: Api<CronJob> = Api::namespaced(c, &ns);
    match cronjob::backup_cronjob(pair, cfg) {
        Some(cj) => {
            apply(&cron, &cj, ctx).await?;
        }
        None => match cron
            .delete(&cronjob::cronjob_name(pair), &DeleteParams::background())
            .await
        {
            Ok(_) => tracing::info!("deleted the backup CronJob (no schedule)"),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(Error::kube("deleting the backup CronJob")(e)),
        },
    }
    Ok(())
}

fn target(
    pair: &ReceiptDbPair,
    member: Member,
    observed: &Observed,
    action: &'static str,
) -> Result<MemberTarget, Error> {
    observed.target(pair, member).ok_or_else(|| Error::Member {
        action,
        member,
        message: "the superuser password Secret is not available".into(),
    })
}

/// Carry out decide's actions in order; the first failure ends the pass (the next pass
/// decides again from what it then observes).
pub async fn run_actions(
    pair: &ReceiptDbPair,
    actions: &[Action],
    observed: &Observed,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = pair.namespace().unwrap_or_default();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    for action in actions {
        tracing::debug!(?action, "carrying out");
        let member_err = |action: &'static str, member: Member| {
            move |message: String| Error::Member {
                action,
                member,
                message,
            }
        };
        match action {
            Action::CreateJob { kind, member } => {
                // Also while the Job runs: its pod cannot be scheduled without the claim.
                if jobs::writes_data_dir(*kind) {
                    ensure_data_claim(pair, *member, ctx).await?;
                }
                if observed.job_running(*kind, *member) {
                    continue;
                }
                let attempt = observed.next_attempt(*kind, *member);
                let job = jobs::job(pair, *kind, *member, attempt, &ctx.config);
                match job_api.create(&PostParams::default(), &job).await {
                    Ok(_) => tracing::info!(job = job.name_any(), "created Job"),
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => {
                        return Err(Error::kube(format!("creating Job {}", job.name_any()))(e))
                    }
                }
            }
            Action::DeleteJob { name } => {
                match job_api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => tracing::info!(job = name, "deleted Job"),
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(Error::kube(format!("deleting Job {name}"))(e)),
                }
            }
            Action::RestartPod { member } => {
                let name = format!("{}-0", pair.member_name(*member));
                let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
                match pods.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        tracing::info!(pod = name, "deleted to restart on the current template")
                    }
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(Error::kube(format!("deleting Pod {name}"))(e)),
                }
            }
            Action::Promote { member } => {
                let t = target(pair, *member, observed, "promote")?;
                ctx.members
                    .promote(&t)
                    .await
                    .map_err(member_err("promote", *member))?;
                tracing::info!(%member, "promoted");
            }
            Action::FenceWrites { member } => {
                let t = target(pair, *member, observed, "fence writes")?;
                ctx.members
                    .fence_writes(&t)
                    .await
                    .map_err(member_err("fence writes", *member))?;
            }
            Action::UnfenceWrites { member } => {
                let t = target(pair, *member, observed, "unfence writes")?;
                ctx.members
                    .unfence_writes(&t)
                    .await
                    .map_err(member_err("unfence writes", *member))?;
            }
            Action::SetSynchronousStandby { on, standby } => {
                let t = target(pair, *on, observed, "set synchronous standby")?;
                ctx.members
                    .set_synchronous_standby(&t, standby.map(Member::as_str))
                    .await
                    .map_err(member_err("set synchronous standby", *on))?;
            }
            Action::ClearAnnotation { key } => clear_annotation(pair, key, ctx).await?,
            Action::Event {
                warning,
                reason,
                message,
            } => publish(pair, *warning, reason, message, ctx).await,
        }
    }
    Ok(())
}

/// Ask every member that answered its probe to reload (a re-issued certificate, see
/// [`super::tls`]). Best effort: a member that cannot reload now is asked again next pass.
pub async fn reload_members(pair: &ReceiptDbPair, observed: &Observed, ctx: &Context) {
    for member in Member::ALL {
        let answered = matches!(observed.observation.member(member).probe, Some(Ok(_)));
        let Some(t) = observed.target(pair, member).filter(|_| answered) else {
            continue;
        };
        if let Err(e) = ctx.members.reload_config(&t).await {
            tracing::warn!(%member, error = %e, "could not reload the member's certificates");
        }
    }
}

/// Create the member's data claim when it does not exist yet (see
/// [`statefulset::data_claim`]).
async fn ensure_data_claim(
    pair: &ReceiptDbPair,
    member: Member,
    ctx: &Context,
) -> Result<(), Error> {
    let claim = statefulset::data_claim(pair, member);
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &claim).await {
        Ok(_) => {
            tracing::info!(claim = claim.name_any(), "created the member's data claim");
            Ok(())
        }
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(Error::kube(format!(
            "creating PersistentVolumeClaim {}",
            claim.name_any()
        ))(e)),
    }
}

/// Remove a one-shot request annotation. A merge patch on metadata (the annotation belongs to
/// whoever set it, not to the operator's field manager, so apply cannot remove it).
pub async fn clear_annotation(pair: &ReceiptDbPair, key: &str, ctx: &Context) -> Result<(), Error> {
    let api: Api<ReceiptDbPair> =
        Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "metadata": { "annotations": { key: null } } });
    api.patch(
        &pair.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::kube(format!("removing annotation {key}")))?;
    Ok(())
}

/// Publish an Event on the pair. Best effort: a lost Event must not fail the pass.
pub async fn publish(
    pair: &ReceiptDbPair,
    warning: bool,
    reason: &str,
    message: &str,
    ctx: &Context,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &pair.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}
