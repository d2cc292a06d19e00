//! `sync`: re-align a target database to a source, at one source snapshot, in one target
//! transaction.
//!
//! 1. Open the source read-only at an exported snapshot, and the target in a read-write
//!    transaction that locks every user table in SHARE mode (writers wait until commit).
//! 2. Compare (unless `force`): schema signature, sequences, and per-table counts or checksums.
//! 3. Plan (from the comparison alone, `sync/mode.rs`): nothing; reload the differing tables
//!    ([`SyncMode::Tables`]); or, when the schemas differ or `force` is given, rebuild
//!    ([`SyncMode::Rebuild`]): drop the target's user schemas and replay the source's
//!    `pg_dump --schema-only` (pre-data), load every table, replay the post-data section
//!    (indexes, constraints, foreign keys, triggers).
//! 4. Load with `session_replication_role = replica` (user triggers and foreign-key triggers
//!    do not fire; `ENABLE ALWAYS`/`ENABLE REPLICA` triggers still would), TRUNCATE + COPY,
//!    foreign keys that reference reloaded tables dropped and re-created (so validated), the
//!    reloaded tables' indexes dropped before the load and rebuilt after it (as pg_restore
//!    builds them after the data).
//! 5. Set sequences to the source's exact state (`last_value`, `is_called`): `ALTER SEQUENCE
//!    ... RESTART` then `setval` on the new relation file, so the transaction rolls both back.
//! 6. COMMIT. Any failure before that (a server killed, a lost connection, a constraint that
//!    does not hold) rolls the whole target transaction back: the target is as it was.

pub(crate) mod copy;
pub(crate) mod ddl;
pub(crate) mod dump;
mod mode;
pub(crate) mod rows;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::compare::{
    compare_sides, CompareError, CompareReport, Limits, Method, Rate, Scope, Side, SideError,
    SideMode,
};
use crate::conn::Target;
use crate::report::elapsed_ms;
use crate::schema::{sequences, SqlContext, SqlError, TableInfo};
pub use copy::TableCopy;
pub use dump::DumpError;
pub use mode::SyncMode;
use mode::{choose_mode, SyncPlan};
pub use rows::ChunkFigures;

/// A progress line sink (the CLI prints them; the controller may log them).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Options of a sync.
#[derive(Clone)]
pub struct SyncOptions {
    /// How to compare before copying.
    pub method: Method,
    /// Skip the comparison and rebuild everything (the runbook's `-allsync`).
    pub force: bool,
    /// Snapshot workers per server for the comparison.
    pub jobs: usize,
    /// Copy differing tables whole even when they have a key (no row-level re-alignment).
    pub whole_tables: bool,
    /// Read at most this many bytes per second from each server (comparison and copy).
    pub max_rate: Option<Rate>,
    /// Receives progress lines, if set.
    pub progress: Option<Progress>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            method: Method::Checksums,
            force: false,
            jobs: 2,
            whole_tables: false,
            max_rate: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("method", &self.method)
            .field("force", &self.force)
            .field("jobs", &self.jobs)
            .field("whole_tables", &self.whole_tables)
            .field("max_rate", &self.max_rate)
            .finish()
    }
}

/// Errors of a sync. In every case the target transaction was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Connecting or opening a snapshot failed.
    #[error(transparent)]
    Side(#[from] SideError),
    /// Comparing failed.
    #[error(transparent)]
    Compare(#[from] CompareError),
    /// A statement failed (the target was rolled back).
    #[error("{0} (the target was left unchanged)")]
    Sql(#[from] SqlError),
    /// Dumping the source's schema failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
}

/// Wall time per phase.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncDurations {
    /// Opening both snapshots.
    pub open_ms: u64,
    /// Comparison.
    pub compare_ms: u64,
    /// Schema work (drop, pre-data, post-data, foreign keys).
    pub schema_ms: u64,
    /// Data copy.
    pub copy_ms: u64,
    /// Commit.
    pub commit_ms: u64,
    /// Everything.
    pub total_ms: u64,
}

/// The result of `sync`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOutcome {
    /// Source `user@host:port/db`.
    pub source: String,
    /// Target `user@host:port/db`.
    pub target: String,
    /// Source WAL position at the snapshot copied.
    pub source_lsn: String,
    /// Comparison method (when compared).
    pub method: Method,
    /// `--force`.
    pub forced: bool,
    /// What was done.
    pub mode: SyncMode,
    /// Why.
    pub reason: String,
    /// The comparison before copying (absent with `force`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<CompareReport>,
    /// Tables loaded.
    pub tables: Vec<TableCopy>,
    /// Sequences set to the source's value.
    pub sequences_set: Vec<String>,
    /// Foreign keys dropped and re-created around a reload.
    pub foreign_keys_recreated: usize,
    /// Indexes (and their constraints) dropped before a reload and rebuilt after it.
    pub indexes_rebuilt: usize,
    /// Total rows loaded.
    pub rows: u64,
    /// Total COPY bytes streamed.
    pub bytes: u64,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// Phase durations.
    pub durations: SyncDurations,
}

fn say(opts: &SyncOptions, line: &str) {
    if let Some(p) = &opts.progress {
        p(line);
    }
}

/// Re-align `target` to `source`. See the module documentation for the steps.
pub async fn sync(
    source: &Target,
    target: &Target,
    opts: SyncOptions,
) -> Result<SyncOutcome, SyncError> {
    let started = Instant::now();
    let started_at = crate::compare::now_rfc3339();
    let mut durations = SyncDurations::default();
    let (src, mut tgt) = futures::try_join!(
        Side::open(source, opts.jobs, SideMode::ReadOnly, "receiptdb-sync"),
        Side::open(target, opts.jobs, SideMode::LockedWrite, "receiptdb-sync"),
    )?;
    durations.open_ms = elapsed_ms(started);
    say(
        &opts,
        &format!(
            "source {} at LSN {}; target {} locked",
            src.describe, src.lsn, tgt.describe
        ),
    );

    let t = Instant::now();
    let progress = opts.progress.clone();
    let on_table = move |key: &str, equal: bool| {
        if let Some(p) = &progress {
            p(&format!(
                "compared {key}: {}",
                if equal { "equal" } else { "DIFFERENT" }
            ));
        }
    };
    let scope = if opts.force {
        Scope::SchemaOnly
    } else if opts.whole_tables {
        Scope::Tables
    } else {
        Scope::TablesByBucket
    };
    let limits = Limits::new(opts.max_rate);
    let compared = compare_sides(&src, &tgt, opts.method, scope, &limits, &on_table).await?;
    durations.compare_ms = elapsed_ms(t);
    tgt.release_workers().await?;
    let report = &compared.report;

    let source_keys: Vec<String> = compared.source_tables.iter().map(|t| t.key()).collect();
    let SyncPlan {
        mode,
        reason,
        tables,
    } = choose_mode(opts.force, report, &source_keys);
    let mut tables: Vec<&TableInfo> = compared
        .source_tables
        .iter()
        .filter(|t| tables.contains(&t.key()))
        .collect();
    say(&opts, &format!("plan: {mode:?} ({reason})"));

    let main = &tgt.main;
    let mut copies = Vec::new();
    let mut fks = Vec::new();
    let mut indexes = ddl::SetAsideIndexes::default();
    let mut sequences_set = Vec::new();
    if mode != SyncMode::Nothing {
        main.batch_execute("SET LOCAL session_replication_role = replica")
            .await
            .ctx("disabling triggers for the load")?;
        if mode == SyncMode::Tables {
            let t = Instant::now();
            let mut whole = Vec::new();
            for table in tables {
                let by_rows = match compared.differing_buckets.get(&table.key()) {
                    Some((pair, b)) => {
                        rows::realign(&src.workers[0], main, table, pair, b, &limits).await?
                    }
                    None => None,
                };
                match by_rows {
                    Some(c) => {
                        if let Some(f) = &c.chunks {
                            say(
                                &opts,
                                &format!(
                                    "re-aligned {} by rows: {} chunks compared, {} differing, \
                                     {} rows examined, {} deleted, {} inserted in {} ms",
                                    c.table,
                                    f.compared,
                                    f.differing,
                                    f.rows_examined,
                                    f.rows_deleted,
                                    f.rows_inserted,
                                    c.duration_ms
                                ),
                            );
                        }
                        copies.push(c);
                    }
                    None => whole.push(table),
                }
            }
            tables = whole;
            durations.copy_ms += elapsed_ms(t);
        }
        let t = Instant::now();
        let post_data = if mode == SyncMode::Rebuild {
            let (pre, post) = futures::try_join!(
                dump::schema_section(source, &src.snapshot, dump::Section::PreData),
                dump::schema_section(source, &src.snapshot, dump::Section::PostData),
            )?;
            let dropped = ddl::clear_schemas(main).await?;
            say(
                &opts,
                &format!("dropped {dropped} target schemas; creating the source's schema"),
            );
            main.batch_execute(&pre)
                .await
                .ctx("creating the source's schema (pre-data)")?;
            Some(post)
        } else {
            let keys: Vec<String> = tables.iter().map(|t| t.key()).collect();
            fks = ddl::set_aside_foreign_keys(main, &keys).await?;
            indexes = ddl::set_aside_indexes(main, &keys).await?;
            // Sequences alone may differ: nothing to empty then.
            if !keys.is_empty() {
                main.batch_execute(&format!("TRUNCATE ONLY {}", keys.join(", ")))
                    .await
                    .ctx("emptying the tables to reload")?;
            }
            None
        };
        durations.schema_ms += elapsed_ms(t);

        let t = Instant::now();
        let reader = &src.workers[0];
        for table in &tables {
            let c = copy::copy_table(reader, main, table, limits.source.as_ref()).await?;
            say(
                &opts,
                &format!(
                    "copied {}: {} rows, {} bytes ({}) in {} ms",
                    c.table, c.rows, c.bytes, c.format, c.duration_ms
                ),
            );
            copies.push(c);
        }
        durations.copy_ms += elapsed_ms(t);

        let t = Instant::now();
        if let Some(post) = post_data {
            main.batch_execute(&post)
                .await
                .ctx("creating indexes, constraints and triggers (post-data)")?;
        }
        ddl::restore_indexes(main, &indexes).await?;
        ddl::restore_foreign_keys(main, &fks).await?;
        durations.schema_ms += elapsed_ms(t);

        let current = if mode == SyncMode::Rebuild {
            Vec::new()
        } else {
            sequences::read_sequences(main).await?
        };
        let mut sql = String::new();
        for s in &compared.source_sequences {
            let unchanged = current.iter().any(|c| c.name == s.name && c.same_state(s));
            if !unchanged {
                sql.push_str(&sequences::restart_sql(s));
                sql.push_str(";\n");
                sequences_set.push(s.name.clone());
            }
        }
        if !sql.is_empty() {
            main.batch_execute(&sql)
                .await
                .ctx("setting sequence values")?;
        }
    }
    let t = Instant::now();
    main.batch_execute("COMMIT")
        .await
        .ctx("committing the target transaction")?;
    durations.commit_ms = elapsed_ms(t);
    durations.total_ms = elapsed_ms(started);
    let rows = copies.iter().map(|c| c.rows).sum();
    let bytes = copies.iter().map(|c| c.bytes).sum();
    Ok(SyncOutcome {
        source: src.describe.clone(),
        target: tgt.describe.clone(),
        source_lsn: src.lsn.clone(),
        method: opts.method,
        forced: opts.force,
        mode,
        reason,
        comparison: (!opts.force).then(|| compared.report.clone()),
        tables: copies,
        sequences_set,
        foreign_keys_recreated: fks.len(),
        indexes_rebuilt: indexes.len(),
        rows,
        bytes,
        started_at,
        durations,
    })
}
