//! Synchronous replication on and off, and waiting for a standby to catch up.

use std::time::Duration;

use super::fence::reload_and_wait;
use super::{lsn_col, query_err, sql_literal, with_timeout, ActionError, Lsn, POLL};
use crate::conn::Target;

/// The `synchronous_standby_names` value naming one standby: its `application_name` as a
/// double-quoted identifier (so names such as `orca-secondary` work), or '' for none.
pub fn standby_names_value(standby: Option<&str>) -> String {
    match standby {
        Some(name) => format!("\"{}\"", name.replace('"', "\"\"")),
        None => String::new(),
    }
}

/// Make commits on the primary at `target` wait for `standby` (its `application_name`), or for
/// nobody (`None`): `ALTER SYSTEM SET synchronous_standby_names`, reload, and wait until the
/// server applies it. The controller degrades to asynchronous while the standby is away (else
/// every commit would hang) and restores synchronous mode once it has caught up. Idempotent.
pub async fn set_synchronous_standby(
    target: &Target,
    standby: Option<&str>,
    timeout: Duration,
) -> Result<(), ActionError> {
    let value = standby_names_value(standby);
    with_timeout(target, "set_synchronous_standby", timeout, async {
        let client = target.connect(timeout).await?;
        let stmt = format!(
            "ALTER SYSTEM SET synchronous_standby_names = {}",
            sql_literal(&value)
        );
        client.batch_execute(&stmt).await.map_err(query_err(
            target,
            "ALTER SYSTEM SET synchronous_standby_names",
        ))?;
        reload_and_wait(&client, target, "synchronous_standby_names", &value).await
    })
    .await
}

/// Wait until the standby at `standby` has replayed WAL up to `lsn` (planned switchover: after
/// fencing the primary, wait for its last LSN before promoting). Returns the replay position.
pub async fn wait_for_replay(
    standby: &Target,
    lsn: Lsn,
    timeout: Duration,
) -> Result<Lsn, ActionError> {
    with_timeout(standby, "wait_for_replay", timeout, async {
        let client = standby.connect(timeout).await?;
        loop {
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
                    &[],
                )
                .await
                .map_err(query_err(standby, "pg_last_wal_replay_lsn()"))?;
            let in_recovery: bool = row.get(0);
            match lsn_col(&row, 1) {
                Some(replayed) if replayed >= lsn => return Ok(replayed),
                // A primary replays nothing more: waiting would only time out.
                _ if !in_recovery => {
                    return Err(ActionError::State {
                        target: standby.describe(),
                        message: format!("not a standby: it will never replay up to {lsn}"),
                    })
                }
                _ => {}
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
}

/// Wait until the primary at `primary` sees the standby `application_name` replayed up to `lsn`
/// in `pg_stat_replication` (the same wait as [`wait_for_replay`], seen from the primary, when
/// the standby is not directly reachable). Returns the replay position.
pub async fn wait_for_standby_replay(
    primary: &Target,
    application_name: &str,
    lsn: Lsn,
    timeout: Duration,
) -> Result<Lsn, ActionError> {
    with_timeout(primary, "wait_for_standby_replay", timeout, async {
        let client = primary.connect(timeout).await?;
        loop {
            let row = client
                .query_opt(
                    "SELECT replay_lsn::text FROM pg_stat_replication WHERE application_name = $1
                     ORDER BY replay_lsn DESC NULLS LAST LIMIT 1",
                    &[&application_name],
                )
                .await
                .map_err(query_err(primary, "pg_stat_replication"))?;
            if let Some(replayed) = row.as_ref().and_then(|r| lsn_col(r, 0)) {
                if replayed >= lsn {
                    return Ok(replayed);
                }
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_names_are_quoted() {
        assert_eq!(
            standby_names_value(Some("orca-secondary")),
            "\"orca-secondary\""
        );
        assert_eq!(standby_names_value(Some("a\"b")), "\"a\"\"b\"");
        assert_eq!(standby_names_value(None), "");
    }
}
