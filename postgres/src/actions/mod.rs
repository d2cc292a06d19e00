//! SQL actions the controller takes on a running member: observe it ([`probe`]), make it the
//! primary ([`promote`]), stop and restart writes ([`fence`], [`unfence`]) and switch commit
//! waiting on and off ([`set_synchronous_standby`]), and reload its configuration and
//! certificates ([`reload_config`]).
//!
//! Every action has a hard timeout over the whole action (connect included), because a hung
//! server must never hang the control loop, and returns typed results the controller can store
//! in status, or an [`ActionError`] naming the server and the step that failed.

mod fence;
mod lsn;
mod probe;
mod promote;
mod reload;
mod sync_rep;

use std::future::Future;
use std::time::Duration;

use tokio_postgres::Client;

use crate::conn::{error_text, ConnError, Target};

pub use fence::{fence, unfence, FenceOutcome};
pub use lsn::{Lsn, LsnParseError};
pub use probe::{probe, MemberProbe, ReplicaState, SlotState, WalReceiver};
pub use promote::{promote, PromoteOutcome};
pub use reload::reload_config;
pub use sync_rep::{
    set_synchronous_standby, standby_names_value, wait_for_replay, wait_for_standby_replay,
};

/// Why an action failed. Every variant names the server (`user@host:port/db`, never a password).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error("{target}: {step} failed: {message}")]
    Query {
        target: String,
        step: &'static str,
        message: String,
    },
    #[error("{target}: {action} did not finish within {after:?}")]
    Timeout {
        target: String,
        action: &'static str,
        after: Duration,
    },
    #[error("{target}: {message}")]
    State { target: String, message: String },
}

/// Run `fut` (one whole action) under a hard timeout.
pub(crate) async fn with_timeout<T>(
    target: &Target,
    action: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, ActionError>>,
) -> Result<T, ActionError> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(ActionError::Timeout {
            target: target.describe(),
            action,
            after,
        }),
    }
}

/// A closure turning a tokio-postgres error into [`ActionError::Query`] for `step`.
pub(crate) fn query_err<'a>(
    target: &'a Target,
    step: &'static str,
) -> impl Fn(tokio_postgres::Error) -> ActionError + 'a {
    move |e| ActionError::Query {
        target: target.describe(),
        step,
        message: error_text(&e),
    }
}

/// Read a `pg_lsn` column that the query cast to text.
pub(crate) fn lsn_col(row: &tokio_postgres::Row, idx: usize) -> Option<Lsn> {
    row.get::<_, Option<String>>(idx)
        .and_then(|s| s.parse().ok())
}

/// `SELECT pg_is_in_recovery()`.
pub(crate) async fn in_recovery(client: &Client, target: &Target) -> Result<bool, ActionError> {
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(query_err(target, "pg_is_in_recovery()"))?;
    Ok(row.get(0))
}

/// A string as an SQL literal (`'...'`, quotes doubled). For utility statements such as
/// `ALTER SYSTEM`, which take no bind parameters; assumes standard_conforming_strings (the
/// default since 9.1), and uses `E''` only when a backslash makes it necessary.
pub(crate) fn sql_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// Time between polls while waiting for a server to reach a state.
pub(crate) const POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(sql_literal("a'b"), "'a''b'");
        assert_eq!(sql_literal("a\\b'"), "E'a\\\\b'''");
        assert_eq!(sql_literal(""), "''");
    }
}
