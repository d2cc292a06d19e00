//! Per-table figures (row count, content checksum), computed on both servers in parallel by
//! pairs of snapshot workers, biggest tables first.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use futures::future::try_join_all;
use serde::Serialize;
use tokio_postgres::Client;

use super::buckets::{self, BucketFigures, Bucketing};
use super::rate::{self, Limits, RateLimit};
use super::Method;
use crate::schema::{quote_ident, SqlContext, SqlError, TableInfo};

/// One side's figures for one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableFigures {
    /// Row count.
    pub rows: i64,
    /// Content checksum (method `checksums`): the sum, as an exact decimal, of a 64-bit hash of
    /// every row's text form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// A table present on both sides, with the columns to compare.
pub(crate) struct TablePair {
    pub key: String,
    pub qualified: String,
    /// Column names present on both sides, sorted, so that physical column order (a table
    /// altered over time versus one created afresh) does not matter; with whether both sides
    /// can hash the column natively.
    pub columns: Vec<(String, bool)>,
    pub bytes: i64,
    /// The row key both sides share (same columns, same types), for row-level re-alignment.
    pub row_key: Option<PairKey>,
    /// The larger of both sides' row estimates.
    pub rows_estimate: i64,
}

/// A key naming each row, the same on both sides.
#[derive(Debug, Clone)]
pub(crate) struct PairKey {
    /// Key columns in index order: name, `format_type`, and whether it hashes natively.
    pub columns: Vec<(String, String, bool)>,
    /// A single `smallint`/`integer`/`bigint` column: buckets are key ranges, and the rows of
    /// one bucket are found through the key's index.
    pub integer: bool,
}

impl PairKey {
    fn new(src: &TableInfo, tgt: &TableInfo) -> Option<Self> {
        if src.key.is_empty() || src.key != tgt.key {
            return None;
        }
        let mut columns = Vec::new();
        for name in &src.key {
            let (a, b) = (src.column(name)?, tgt.column(name)?);
            if a.type_name != b.type_name {
                return None;
            }
            columns.push((
                name.clone(),
                a.type_name.clone(),
                a.hash_native && b.hash_native,
            ));
        }
        let integer = columns.len() == 1
            && matches!(columns[0].1.as_str(), "smallint" | "integer" | "bigint");
        Some(Self { columns, integer })
    }
}

impl TablePair {
    pub fn new(src: &TableInfo, tgt: &TableInfo) -> Self {
        let mut columns: Vec<(String, bool)> = src
            .columns
            .iter()
            .filter_map(|c| {
                let t = tgt.columns.iter().find(|t| t.name == c.name)?;
                let native = c.hash_native && t.hash_native && c.type_name == t.type_name;
                Some((c.name.clone(), native))
            })
            .collect();
        columns.sort();
        Self {
            key: src.key(),
            qualified: src.qualified(),
            columns,
            bytes: src.bytes.max(tgt.bytes),
            row_key: PairKey::new(src, tgt),
            rows_estimate: src.rows_estimate.max(tgt.rows_estimate),
        }
    }

    /// The 64-bit hash of one row's content (see [`Self::sql`]).
    pub fn row_hash(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|(c, native)| {
                let q = quote_ident(c);
                if *native {
                    q
                } else {
                    format!("{q}::text")
                }
            })
            .collect();
        format!("hash_record_extended(ROW({}), 0)", cols.join(", "))
    }

    /// The statement computing this table's figures.
    ///
    /// Checksums: each row is hashed to 64 bits with `hash_record_extended(ROW(...), 0)`, the
    /// server's hash-join/hash-index hash: built-in scalar columns through their own hash
    /// functions (no text conversion, the expensive part), every other column through its text
    /// form (`col::text`; enums hash by OID, which differs between servers). The per-table
    /// value is the exact (numeric) sum of the row hashes plus the row count: order-independent,
    /// and unlike XOR a sum does not cancel duplicate rows. For accidental divergence (not an
    /// adversary crafting collisions) a changed multiset of rows goes unnoticed with
    /// probability about 2^-64 per table. Values equal by their type's equality hash equally
    /// (`1.0` and `1.00` numeric, trailing blanks in `char(n)`), as the server compares them.
    pub fn sql(&self, method: Method, filter: Option<&str>) -> String {
        let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
        match method {
            Method::Counts => format!(
                "SELECT count(*), NULL::text FROM ONLY {}{filter}",
                self.qualified
            ),
            Method::Checksums => format!(
                "SELECT count(*), coalesce(sum({}), 0)::text FROM ONLY {}{filter}",
                self.row_hash(),
                self.qualified
            ),
        }
    }
}

/// Figures of one table on both sides.
pub(crate) struct PairResult {
    pub index: usize,
    pub source: TableFigures,
    pub target: TableFigures,
    pub millis: u64,
    /// Per-bucket figures, when computed (see [`super::buckets`]).
    pub buckets: Option<Bucketed>,
}

/// Both sides' per-bucket figures of one table.
pub(crate) struct Bucketed {
    pub bucketing: Bucketing,
    pub source: BucketFigures,
    pub target: BucketFigures,
}

async fn figures(client: &Client, sql: &str, key: &str) -> Result<TableFigures, SqlError> {
    let row = client
        .query_one(sql, &[])
        .await
        .ctx(format!("comparing {key}"))?;
    Ok(TableFigures {
        rows: row.get(0),
        checksum: row.get(1),
    })
}

/// One side's figures for a pair: by `bucketing` if given, in slices under `limit` if given.
async fn side_figures(
    client: &Client,
    pair: &TablePair,
    method: Method,
    bucketing: Option<&Bucketing>,
    limit: Option<&RateLimit>,
) -> Result<(TableFigures, Option<BucketFigures>), SqlError> {
    if bucketing.is_none() && limit.is_none() {
        return Ok((
            figures(client, &pair.sql(method, None), &pair.key).await?,
            None,
        ));
    }
    let slices = rate::slices(client, &pair.qualified, limit).await?;
    if method == Method::Counts && bucketing.is_none() {
        let mut rows = 0;
        for (filter, bytes) in slices {
            if let Some(l) = limit {
                l.charge(bytes).await;
            }
            let sql = pair.sql(method, filter.as_deref());
            rows += figures(client, &sql, &pair.key).await?.rows;
        }
        return Ok((
            TableFigures {
                rows,
                checksum: None,
            },
            None,
        ));
    }
    let what = format!("comparing {}", pair.key);
    let by = bucketing.unwrap_or(&Bucketing::Whole);
    let mut all = BucketFigures::new();
    for (filter, bytes) in slices {
        if let Some(l) = limit {
            l.charge(bytes).await;
        }
        let part =
            buckets::figures(client, &by.grouped_sql(pair, filter.as_deref()), &what).await?;
        buckets::merge(&mut all, part);
    }
    let (rows, sum) = buckets::totals(&all);
    let figures = TableFigures {
        rows,
        checksum: Some(sum),
    };
    Ok((figures, bucketing.map(|_| all)))
}

/// Compute figures for every pair, `workers` pairs of connections at a time, biggest first.
/// With `bucketed` (and checksums), keyed tables are compared by bucket.
pub(crate) async fn run_pairs(
    pairs: &[TablePair],
    method: Method,
    bucketed: bool,
    limits: &Limits,
    src_workers: &[Client],
    tgt_workers: &[Client],
    on_done: &(dyn Fn(&TablePair, &PairResult) + Sync),
) -> Result<Vec<PairResult>, SqlError> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pairs[i].bytes));
    let queue = Mutex::new(order.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::with_capacity(pairs.len()));
    let next = || {
        queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    };
    try_join_all(src_workers.iter().zip(tgt_workers).map(|(sw, tw)| async {
        while let Some(index) = next() {
            let pair = &pairs[index];
            let started = Instant::now();
            let bucketing = match &pair.row_key {
                Some(key) if bucketed && method == Method::Checksums => {
                    Some(buckets::choose(pair, key, sw, tw).await?)
                }
                _ => None,
            };
            let b = bucketing.as_ref();
            let ((source, src_buckets), (target, tgt_buckets)) = futures::try_join!(
                side_figures(sw, pair, method, b, limits.source.as_ref()),
                side_figures(tw, pair, method, b, limits.target.as_ref()),
            )?;
            let buckets = match (bucketing, src_buckets, tgt_buckets) {
                (Some(bucketing), Some(source), Some(target)) => Some(Bucketed {
                    bucketing,
                    source,
                    target,
                }),
                _ => None,
            };
            let result = PairResult {
                index,
                source,
                target,
                millis: crate::report::elapsed_ms(started),
                buckets,
            };
            on_done(pair, &result);
            results
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(result);
        }
        Ok::<_, SqlError>(())
    }))
    .await?;
    let mut out = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    out.sort_by_key(|r| r.index);
    Ok(out)
}
