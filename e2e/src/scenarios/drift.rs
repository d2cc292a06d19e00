//! A difference introduced behind the operator's back, detected and repaired.
//!
//! A streaming standby is read-only, and any change to it by hand would need a promotion
//! (which the operator would rightly treat as a split brain), so the realistic place for drift
//! is `replication.mode: external`: the receipt software's redirector writes every receipt to
//! both members itself (the writer mirrors each receipt to the non-active member directly), and
//! someone changes the secondary by hand: a session that turns `default_transaction_read_only`
//! off (in case the operator set it on the non-active member) updates one receipt and deletes
//! another. The periodic consistency check (every 5 s here, checksums, autoRepair on) must find
//! the difference and the repair (`sync` Job) must make the members equal again.

use std::time::Duration;

use anyhow::{Context, Result};
use receiptdb_operator::crd::{CheckMethod, Member, ReplicationMode};

use super::Scenario;
use crate::harness::{spec_with, World};

pub fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "drift-repair",
        about: "external mode: a receipt changed and one deleted on the secondary by hand; the periodic check detects it, autoRepair re-aligns",
        spec: || {
            spec_with(|s| {
                s.replication.mode = ReplicationMode::External;
                s.consistency_check.interval_seconds = 5;
                s.consistency_check.method = CheckMethod::Checksums;
                s.consistency_check.auto_repair = true;
            })
        },
        body: |w| Box::pin(drift(w)),
    }]
}

async fn drift(w: &mut World) -> Result<()> {
    // The runbook's advice: pause clients while re-aligning.
    if let Some(writer) = w.writer.as_mut() {
        writer.stop().await;
    }
    let active = w
        .observer
        .latest()
        .and_then(|s| s.status.active_member)
        .unwrap_or(Member::Primary);
    let other = active.other();
    let c = w
        .member_target(other)
        .await?
        .connect(Duration::from_secs(10))
        .await
        .context("connect to the non-active member")?;
    c.batch_execute(
        "SET default_transaction_read_only = off;
         UPDATE receipts SET amount = amount + 1 WHERE id = (SELECT min(id) FROM receipts);
         DELETE FROM receipts WHERE id = (SELECT max(id) FROM receipts);",
    )
    .await
    .context("change the non-active member behind the operator's back")?;
    w.fault(&format!(
        "drift: on the {other}, one receipt's amount changed and another deleted"
    ));
    let fault = w.fault_ms.unwrap_or(0);
    let detected = w
        .wait_for("a consistency check to find the difference", |s| {
            s.status.last_check.as_ref().is_some_and(|c| !c.equal)
        })
        .await?;
    w.check(
        "drift_detected",
        true,
        format!("{:?}", detected.status.last_check),
    );
    let t0 = w.timeline.now_ms();
    let repaired = w
        .wait_for("the repair and an equal check", |s| {
            s.status.last_check.as_ref().is_some_and(|c| c.equal)
                && s.status
                    .last_sync
                    .as_ref()
                    .is_some_and(|r| r.member == other && r.succeeded)
        })
        .await?;
    w.check(
        "drift_repaired",
        true,
        format!(
            "detected {} ms after the change; repaired {} ms later; {:?}",
            t0.saturating_sub(fault),
            w.timeline.now_ms() - t0,
            repaired.status.last_sync
        ),
    );
    Ok(())
}
