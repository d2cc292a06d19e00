//! `promote`: make a standby the primary, and return only once it is one.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::probe::timeline_of_walfile;
use super::{in_recovery, lsn_col, query_err, with_timeout, ActionError, Lsn};
use crate::conn::Target;
use crate::report::elapsed_ms;

/// What `promote` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteOutcome {
    /// The server was already a primary: nothing was promoted (a repeated or resumed action).
    pub already_primary: bool,
    /// The timeline the primary now writes on.
    pub timeline: Option<u32>,
    /// `pg_current_wal_lsn()` right after the checkpoint.
    pub lsn: Option<Lsn>,
    pub duration_ms: u64,
}

/// Promote the standby at `target` within `timeout`: `pg_promote(wait => true)`, then a
/// `CHECKPOINT`, then check that it left recovery.
///
/// The checkpoint matters: `pg_promote()` returns before the end-of-recovery checkpoint, and a
/// `pg_rewind` of the old primary against a new primary whose control file still shows the old
/// timeline wrongly finds "no rewind required". Idempotent: on a primary it only checkpoints
/// and reports `already_primary`. The caller must have fenced the old primary first.
pub async fn promote(target: &Target, timeout: Duration) -> Result<PromoteOutcome, ActionError> {
    let started = Instant::now();
    with_timeout(target, "promote", timeout, async {
        let client = target.connect(timeout).await?;
        let mut already_primary = !in_recovery(&client, target).await?;
        if !already_primary {
            let wait_seconds = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
            match client
                .query_one("SELECT pg_promote(true, $1)", &[&wait_seconds])
                .await
            {
                Ok(row) => {
                    let done: bool = row.get(0);
                    if !done {
                        return Err(ActionError::State {
                            target: target.describe(),
                            message: format!("pg_promote() did not finish within {wait_seconds} s"),
                        });
                    }
                }
                // Someone else promoted it between our check and our call.
                Err(e)
                    if e.code()
                        == Some(
                            &tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        ) =>
                {
                    already_primary = true;
                }
                Err(e) => return Err(query_err(target, "pg_promote()")(e)),
            }
        }
        client
            .batch_execute("CHECKPOINT")
            .await
            .map_err(query_err(target, "CHECKPOINT"))?;
        if in_recovery(&client, target).await? {
            return Err(ActionError::State {
                target: target.describe(),
                message: "still in recovery after pg_promote()".into(),
            });
        }
        let row = client
            .query_one(
                "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())",
                &[],
            )
            .await
            .map_err(query_err(target, "pg_current_wal_lsn()"))?;
        let walfile: String = row.get(1);
        Ok(PromoteOutcome {
            already_primary,
            timeline: timeline_of_walfile(&walfile),
            lsn: lsn_col(&row, 0),
            duration_ms: elapsed_ms(started),
        })
    })
    .await
}
