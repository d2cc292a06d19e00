//! One side of a comparison: a coordinating connection that holds a transaction and exports
//! its snapshot, and worker connections that import it, so that every table of one server is
//! read as of the same instant even though tables are read in parallel.

use std::time::Duration;

use futures::future::try_join_all;
use tokio_postgres::Client;

use crate::conn::{ConnError, Target};
use crate::schema::{
    qualified, quote_literal, session_setup, SqlContext, SqlError, USER_NAMESPACE,
};

/// How long to wait for a connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors opening a side.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    /// The server could not be reached or refused us.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
}

/// What the coordinating transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SideMode {
    /// `check`, and the source of a `sync`: a read-only repeatable-read transaction.
    ReadOnly,
    /// The target of a `sync`: a read-write transaction that first locks every user table in
    /// SHARE mode (writers wait, readers do not), so nothing changes between the comparison
    /// and the copy; the runbook's tool holds updates bound for the secondary the same way.
    LockedWrite,
}

/// One server, at one snapshot.
pub(crate) struct Side {
    /// `user@host:port/db`, for reports.
    pub describe: String,
    /// Holds the snapshot-exporting transaction (and, for [`SideMode::LockedWrite`], does the
    /// writing).
    pub main: Client,
    /// Connections in transactions that imported `snapshot`.
    pub workers: Vec<Client>,
    /// The exported snapshot id (for workers and `pg_dump --snapshot`).
    pub snapshot: String,
    /// The WAL position when the snapshot was taken (replay position on a standby).
    pub lsn: String,
    /// `server_version`.
    pub server_version: String,
}

impl Side {
    /// Open the coordinating transaction and `jobs` workers.
    pub async fn open(
        target: &Target,
        jobs: usize,
        mode: SideMode,
        app: &str,
    ) -> Result<Self, SideError> {
        let main = target.connect(CONNECT_TIMEOUT).await?;
        session_setup(&main, app).await?;
        match mode {
            SideMode::ReadOnly => main
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .ctx("starting the snapshot transaction")?,
            SideMode::LockedWrite => {
                main.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .await
                    .ctx("starting the target transaction")?;
                lock_all_tables(&main).await?;
            }
        }
        let row = main
            .query_one(
                "SELECT pg_export_snapshot(),
                        (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                              ELSE pg_current_wal_lsn() END)::text,
                        current_setting('server_version')",
                &[],
            )
            .await
            .ctx("exporting the snapshot")?;
        let snapshot: String = row.get(0);
        let lsn: Option<String> = row.get(1);
        let workers = try_join_all((0..jobs.max(1)).map(|i| {
            let snapshot = snapshot.clone();
            let app = format!("{app}-worker-{i}");
            async move { open_worker(target, &snapshot, &app).await }
        }))
        .await?;
        Ok(Self {
            describe: target.describe(),
            main,
            workers,
            snapshot,
            lsn: lsn.unwrap_or_default(),
            server_version: row.get(2),
        })
    }

    /// End the workers' transactions and close them: their ACCESS SHARE locks would otherwise
    /// block the target transaction's TRUNCATE and DDL forever (idle sessions are no deadlock).
    pub async fn release_workers(&mut self) -> Result<(), SqlError> {
        for w in self.workers.drain(..) {
            w.batch_execute("COMMIT")
                .await
                .ctx("ending a worker transaction")?;
        }
        Ok(())
    }
}

async fn open_worker(target: &Target, snapshot: &str, app: &str) -> Result<Client, SideError> {
    let c = target.connect(CONNECT_TIMEOUT).await?;
    session_setup(&c, app).await?;
    // No parallel query workers: a comparison uses exactly `--jobs` backends per server, a
    // load that is known in advance on a live primary (raise `--jobs` where there are cores
    // to spare), and bucketed and plain scans run alike (a grouped scan is not planned in
    // parallel, a plain one is).
    c.batch_execute(&format!(
        "SET max_parallel_workers_per_gather = 0;
         BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot)
    ))
    .await
    .ctx("importing the snapshot in a worker")?;
    Ok(c)
}

async fn lock_all_tables(main: &Client) -> Result<(), SqlError> {
    let rows = main
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND {USER_NAMESPACE} ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .ctx("listing target tables to lock")?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = rows.iter().map(|r| qualified(r.get(0), r.get(1))).collect();
    main.batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", names.join(", ")))
        .await
        .ctx("locking the target's tables against writers")
}
