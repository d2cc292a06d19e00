//! Ask a running member to read its configuration files and certificates again.

use std::time::Duration;

use super::{query_err, with_timeout, ActionError};
use crate::conn::Target;

/// `SELECT pg_reload_conf()`: the postmaster re-reads `postgresql.conf`, `pg_hba.conf` and its
/// TLS files (a re-issued certificate is presented to new connections from then on; sessions
/// and replication already connected carry on). The reload itself is asynchronous.
pub async fn reload_config(target: &Target, timeout: Duration) -> Result<(), ActionError> {
    with_timeout(target, "reload", timeout, async {
        let client = target.connect(timeout).await?;
        client
            .execute("SELECT pg_reload_conf()", &[])
            .await
            .map_err(query_err(target, "reload: pg_reload_conf()"))?;
        Ok(())
    })
    .await
}
