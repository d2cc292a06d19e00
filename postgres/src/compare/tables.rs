//! Per-table figures (row count, content checksum), computed on both servers in parallel by
//! pairs of snapshot workers, biggest tables first.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use futures::future::try_join_all;
use serde::Serialize;
use tokio_postgres::Client;

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
        }
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
    pub fn sql(&self, method: Method) -> String {
        match method {
            Method::Counts => format!("SELECT count(*), NULL::text FROM ONLY {}", self.qualified),
            Method::Checksums => {
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
                format!(
                    "SELECT count(*), coalesce(sum(hash_record_extended(ROW({}), 0)), 0)::text \
                     FROM ONLY {}",
                    cols.join(", "),
                    self.qualified
                )
            }
        }
    }
}

/// Figures of one table on both sides.
pub(crate) struct PairResult {
    pub index: usize,
    pub source: TableFigures,
    pub target: TableFigures,
    pub millis: u64,
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

/// Compute figures for every pair, `workers` pairs of connections at a time, biggest first.
pub(crate) async fn run_pairs(
    pairs: &[TablePair],
    method: Method,
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
            let sql = pair.sql(method);
            let started = Instant::now();
            let (source, target) =
                futures::try_join!(figures(sw, &sql, &pair.key), figures(tw, &sql, &pair.key))?;
            let result = PairResult {
                index,
                source,
                target,
                millis: crate::report::elapsed_ms(started),
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
