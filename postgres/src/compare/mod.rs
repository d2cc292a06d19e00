//! `check`: compare every user table of two databases at consistent snapshots.
//!
//! Each server is read in one exported snapshot (a read-only repeatable-read transaction whose
//! snapshot worker connections import), both servers at the same time, tables in parallel.
//! Besides table contents, the report lists tables present on one side only, schema
//! differences (see [`crate::schema::signature`]) and sequences that lag behind.

pub(crate) mod buckets;
pub mod rate;
pub(crate) mod snapshot;
pub(crate) mod tables;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::conn::Target;
use crate::schema::{
    diff_signatures, sequences, signature::read_signature, tables::list_tables, SchemaDifference,
    SequenceState, SequenceStatus, SqlError, TableInfo,
};
pub use rate::{Limits, Rate, RateLimit};
pub use snapshot::SideError;
pub(crate) use snapshot::{Side, SideMode};
use tables::run_pairs;
pub use tables::TableFigures;
pub(crate) use tables::{Bucketed, TablePair};

/// How tables are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// Row count per table (the runbook's method): cheap, misses content-only changes.
    Counts,
    /// Row count plus an order-independent hash of every row's content.
    #[default]
    Checksums,
}

/// Errors of a comparison (differences are not errors).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Connecting or opening a snapshot failed.
    #[error(transparent)]
    Side(#[from] SideError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
}

/// Options of a comparison.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Counts or checksums.
    pub method: Method,
    /// Tables compared at once (one connection per server each).
    pub jobs: usize,
    /// Read at most this many bytes per second from each server (see [`rate`]).
    pub max_rate: Option<Rate>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            method: Method::Checksums,
            jobs: 2,
            max_rate: None,
        }
    }
}

/// The outcome for one table present on both sides.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableComparison {
    /// Quoted `schema.table`.
    pub table: String,
    /// Same figures and same columns.
    pub equal: bool,
    /// The column lists differ (figures then cover the common columns only).
    pub columns_differ: bool,
    /// Source figures.
    pub source: TableFigures,
    /// Target figures.
    pub target: TableFigures,
    /// Wall time for this table (both servers in parallel).
    pub duration_ms: u64,
}

/// One sequence compared.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SequenceComparison {
    /// Quoted `schema.sequence`.
    pub sequence: String,
    /// Next value on the source.
    pub source_next: Option<i64>,
    /// Next value on the target.
    pub target_next: Option<i64>,
    /// The source's `last_value` and `is_called`.
    pub source_state: (i64, bool),
    /// The target's `last_value` and `is_called`.
    pub target_state: Option<(i64, bool)>,
    /// Equal, ahead (harmless), behind (a difference) or missing.
    pub status: SequenceStatus,
}

/// Counts for a one-line summary.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompareSummary {
    /// Tables present on both sides and compared.
    pub tables_compared: usize,
    /// Of those, how many differ.
    pub tables_differing: usize,
    /// Tables on one side only.
    pub tables_missing: usize,
    /// Schema objects that differ.
    pub schema_differences: usize,
    /// Sequences behind on the target.
    pub sequences_behind: usize,
}

/// The result of `check`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompareReport {
    /// Method used.
    pub method: Method,
    /// `user@host:port/db` of the source (never a password).
    pub source: String,
    /// `user@host:port/db` of the target.
    pub target: String,
    /// Source WAL position at its snapshot.
    pub source_lsn: String,
    /// Target WAL position at its snapshot.
    pub target_lsn: String,
    /// Source `server_version`.
    pub source_version: String,
    /// Target `server_version`.
    pub target_version: String,
    /// Nothing differs.
    pub equal: bool,
    /// Counts.
    pub summary: CompareSummary,
    /// Tables present on both sides, by name.
    pub tables: Vec<TableComparison>,
    /// Tables only on the source.
    pub only_in_source: Vec<String>,
    /// Tables only on the target.
    pub only_in_target: Vec<String>,
    /// Schema objects that differ (includes the missing tables and differing column lists).
    pub schema_differences: Vec<SchemaDifference>,
    /// Sequences that are not equal.
    pub sequences: Vec<SequenceComparison>,
    /// When the comparison started (RFC 3339, UTC).
    pub started_at: String,
    /// Wall time.
    pub duration_ms: u64,
}

impl CompareReport {
    /// Keys of tables (present on both sides) whose contents or columns differ.
    pub fn differing_tables(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter(|t| !t.equal)
            .map(|t| t.table.clone())
            .collect()
    }
}

/// Everything a comparison learned, for `sync` to act on.
pub(crate) struct Compared {
    pub report: CompareReport,
    pub source_tables: Vec<TableInfo>,
    pub source_sequences: Vec<SequenceState>,
    /// Differing tables compared by bucket, by key: where they differ.
    pub differing_buckets: BTreeMap<String, (TablePair, Bucketed)>,
}

/// What to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Schemas and sequences only (sync `--force` copies everything anyway).
    SchemaOnly,
    /// Table contents too (`check`).
    Tables,
    /// Table contents, keyed tables by bucket (a `sync` that re-aligns rows).
    TablesByBucket,
}

/// Compare two databases. Opens its own read-only snapshots on both servers.
pub async fn compare(
    source: &Target,
    target: &Target,
    opts: CompareOptions,
) -> Result<CompareReport, CompareError> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let (src, tgt) = futures::try_join!(
        Side::open(source, opts.jobs, SideMode::ReadOnly, "receiptdb-check"),
        Side::open(target, opts.jobs, SideMode::ReadOnly, "receiptdb-check"),
    )?;
    let limits = Limits::new(opts.max_rate);
    let mut c = compare_sides(&src, &tgt, opts.method, Scope::Tables, &limits, &|_, _| {}).await?;
    c.report.started_at = started_at;
    c.report.duration_ms = crate::report::elapsed_ms(started);
    Ok(c.report)
}

/// Compare two open sides.
pub(crate) async fn compare_sides(
    src: &Side,
    tgt: &Side,
    method: Method,
    scope: Scope,
    limits: &Limits,
    on_table: &(dyn Fn(&str, bool) + Sync),
) -> Result<Compared, CompareError> {
    let started = Instant::now();
    let (src_sig, tgt_sig, src_tables, tgt_tables, src_seq, tgt_seq) = futures::try_join!(
        read_signature(&src.main),
        read_signature(&tgt.main),
        list_tables(&src.workers[0]),
        list_tables(&tgt.workers[0]),
        sequences::read_sequences(&src.main),
        sequences::read_sequences(&tgt.main),
    )?;
    let tgt_by_key: BTreeMap<String, &TableInfo> =
        tgt_tables.iter().map(|t| (t.key(), t)).collect();
    let src_keys: std::collections::BTreeSet<String> = src_tables.iter().map(|t| t.key()).collect();
    let mut pairs = Vec::new();
    let mut columns_differ = Vec::new();
    let mut only_in_source = Vec::new();
    for t in &src_tables {
        match tgt_by_key.get(&t.key()) {
            Some(other) => {
                columns_differ.push(t.columns != other.columns);
                pairs.push(TablePair::new(t, other));
            }
            None => only_in_source.push(t.key()),
        }
    }
    let only_in_target: Vec<String> = tgt_tables
        .iter()
        .map(|t| t.key())
        .filter(|k| !src_keys.contains(k))
        .collect();

    let results = if scope == Scope::SchemaOnly {
        Vec::new()
    } else {
        let cb = |p: &TablePair, r: &tables::PairResult| on_table(&p.key, r.source == r.target);
        let by_bucket = scope == Scope::TablesByBucket;
        run_pairs(
            &pairs,
            method,
            by_bucket,
            limits,
            &src.workers,
            &tgt.workers,
            &cb,
        )
        .await?
    };
    let mut differing_buckets = BTreeMap::new();
    let mut pairs: Vec<Option<TablePair>> = pairs.into_iter().map(Some).collect();
    let tables: Vec<TableComparison> = results
        .into_iter()
        .map(|r| {
            let cd = columns_differ[r.index];
            let key = pairs[r.index]
                .as_ref()
                .map(|p| p.key.clone())
                .unwrap_or_default();
            if let (Some(b), false) = (r.buckets, cd || r.source == r.target) {
                if let Some(p) = pairs[r.index].take() {
                    differing_buckets.insert(key.clone(), (p, b));
                }
            }
            TableComparison {
                table: key,
                equal: !cd && r.source == r.target,
                columns_differ: cd,
                source: r.source,
                target: r.target,
                duration_ms: r.millis,
            }
        })
        .collect();

    let tgt_seq_by: BTreeMap<&str, &SequenceState> =
        tgt_seq.iter().map(|s| (s.name.as_str(), s)).collect();
    let sequences: Vec<SequenceComparison> = src_seq
        .iter()
        .map(|s| {
            let t = tgt_seq_by.get(s.name.as_str()).copied();
            SequenceComparison {
                sequence: s.name.clone(),
                source_next: Some(s.next_value()),
                target_next: t.map(|t| t.next_value()),
                source_state: (s.last_value, s.is_called),
                target_state: t.map(|t| (t.last_value, t.is_called)),
                status: sequences::classify(s, t),
            }
        })
        .filter(|c| c.status != SequenceStatus::Equal)
        .collect();
    let schema_differences = diff_signatures(&src_sig, &tgt_sig);
    let summary = CompareSummary {
        tables_compared: tables.len(),
        tables_differing: tables.iter().filter(|t| !t.equal).count(),
        tables_missing: only_in_source.len() + only_in_target.len(),
        schema_differences: schema_differences.len(),
        sequences_behind: sequences
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    SequenceStatus::TargetBehind | SequenceStatus::Missing
                )
            })
            .count(),
    };
    let equal = summary.tables_differing == 0
        && summary.tables_missing == 0
        && summary.schema_differences == 0
        && summary.sequences_behind == 0;
    let report = CompareReport {
        method,
        source: src.describe.clone(),
        target: tgt.describe.clone(),
        source_lsn: src.lsn.clone(),
        target_lsn: tgt.lsn.clone(),
        source_version: src.server_version.clone(),
        target_version: tgt.server_version.clone(),
        equal,
        summary,
        tables,
        only_in_source,
        only_in_target,
        schema_differences,
        sequences,
        started_at: now_rfc3339(),
        duration_ms: crate::report::elapsed_ms(started),
    };
    Ok(Compared {
        report,
        source_tables: src_tables,
        source_sequences: src_seq,
        differing_buckets,
    })
}

/// The current time, RFC 3339 in UTC (reports and manifests).
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}
