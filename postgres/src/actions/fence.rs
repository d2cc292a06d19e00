//! `fence` / `unfence`: stop and resume writes on a running server without stopping it.
//!
//! This is the soft fence for planned switchover (stop writes on the active member, let the
//! standby catch up, promote it). It is not a safety fence: a client may still `SET
//! default_transaction_read_only = off`. Failover fences hard by scaling the old member to 0.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{query_err, with_timeout, ActionError, POLL};
use crate::conn::Target;

/// What `fence` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FenceOutcome {
    /// Client sessions terminated (replication senders and our own session are left alone).
    pub terminated_sessions: u64,
}

/// Make `target` read-only and end its client sessions: terminate every other client backend
/// (waiting up to 5 s for each to exit), `ALTER SYSTEM SET default_transaction_read_only = on`,
/// reload, wait until the server applies it (so sessions opened from now on are read-only),
/// then terminate the client backends again. Idempotent.
///
/// Sessions end before the setting changes because a reload reaches open sessions too: a
/// session still open when it is applied turns read-only, and its next write fails with 25006
/// (an error clients are not told to retry) instead of the session ending with 57P01 (which
/// they are). The second round ends sessions opened meanwhile.
pub async fn fence(target: &Target, timeout: Duration) -> Result<FenceOutcome, ActionError> {
    with_timeout(target, "fence", timeout, async {
        let client = target.connect(timeout).await?;
        let before = terminate_client_sessions(&client, target).await?;
        set_read_only(&client, target, true).await?;
        let after = terminate_client_sessions(&client, target).await?;
        Ok(FenceOutcome {
            terminated_sessions: before + after,
        })
    })
    .await
}

/// Terminate every client backend but our own, waiting up to 5 s for each to exit; how many
/// were terminated.
async fn terminate_client_sessions(client: &Client, target: &Target) -> Result<u64, ActionError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE t) FROM (
               SELECT pg_terminate_backend(pid, 5000) AS t FROM pg_stat_activity
               WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) s",
            &[],
        )
        .await
        .map_err(query_err(target, "fence: pg_terminate_backend()"))?;
    let n: i64 = row.get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Undo [`fence`]: `ALTER SYSTEM RESET default_transaction_read_only`, reload, and wait until
/// the server applies it. Idempotent.
pub async fn unfence(target: &Target, timeout: Duration) -> Result<(), ActionError> {
    with_timeout(target, "unfence", timeout, async {
        let client = target.connect(timeout).await?;
        set_read_only(&client, target, false).await
    })
    .await
}

async fn set_read_only(client: &Client, target: &Target, on: bool) -> Result<(), ActionError> {
    let (stmt, step) = if on {
        (
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "fence: ALTER SYSTEM",
        )
    } else {
        (
            "ALTER SYSTEM RESET default_transaction_read_only",
            "unfence: ALTER SYSTEM",
        )
    };
    client
        .batch_execute(stmt)
        .await
        .map_err(query_err(target, step))?;
    reload_and_wait(
        client,
        target,
        "default_transaction_read_only",
        if on { "on" } else { "off" },
    )
    .await
}

/// `pg_reload_conf()`, then poll our own session until `name` reads `want`. The postmaster
/// re-reads the files before it signals the backends, so once our backend shows the new value,
/// every session started from now on gets it too.
pub(crate) async fn reload_and_wait(
    client: &Client,
    target: &Target,
    name: &str,
    want: &str,
) -> Result<(), ActionError> {
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(query_err(target, "pg_reload_conf()"))?;
    loop {
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .map_err(query_err(target, "current_setting()"))?;
        let now: String = row.get(0);
        if now == want {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}
