//! `kubectl drain` of the active member's node, as a person does before a node's maintenance:
//! the PodDisruptionBudget refuses to evict the active member, the operator sees the node
//! cordoned and switches clients over to the other member in a planned switchover, and the
//! drain then evicts the old member like any standby. Clients see a switchover, never a crash.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use receiptdb_operator::crd::Member;

use super::Scenario;
use crate::harness::{healthy_on, World};

pub fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "drain-active",
        about: "kubectl drain of the primary's node: a planned switchover to the secondary (no failover), the drain completes, uncordon, the primary returns and automatic failback",
        spec: receiptdb_operator::crd::ReceiptDbPairSpec::default,
        body: |w| Box::pin(drain_active(w)),
    }]
}

async fn drain_active(w: &mut World) -> Result<()> {
    let node = w.node_of(Member::Primary).await?.name();
    let mut drain = w
        .cluster()
        .kubectl()
        .args([
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=180s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start kubectl drain")?;
    w.fault(&format!("kubectl drain {node} (the primary member's node)"));
    w.wait_for("the switchover to the secondary", |s| {
        s.status.active_member == Some(Member::Secondary)
            && s.selects.as_deref() == Some("secondary")
            && s.status.operation.is_none()
    })
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(200);
    let status = loop {
        if let Some(st) = drain.try_wait().context("wait for kubectl drain")? {
            break st;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = drain.kill();
            bail!("kubectl drain {node} did not finish within 200 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = drain
        .wait_with_output()
        .context("read kubectl drain's output")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    w.timeline.record(
        "drained",
        format!(
            "kubectl drain {node}: {status}; {}",
            said.trim().lines().last().unwrap_or("")
        ),
    );
    w.check("drain_completed", status.success(), said.trim().to_string());
    let s = w.pair().await?.status.unwrap_or_default();
    w.check(
        "no_failover",
        s.last_failover.is_none(),
        format!("lastFailover {:?}", s.last_failover),
    );
    let out = w
        .cluster()
        .kubectl()
        .args(["uncordon", &node])
        .output()
        .context("kubectl uncordon")?;
    if !out.status.success() {
        bail!(
            "kubectl uncordon {node} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w.timeline
        .record("uncordoned", format!("kubectl uncordon {node}"));
    w.wait_for("the primary back and the automatic failback", |s| {
        healthy_on(s, Member::Primary)
    })
    .await?;
    w.pause(Duration::from_secs(2)).await
}
