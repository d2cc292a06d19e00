//! Row-level re-alignment of one keyed table: only the rows that differ are replaced.
//!
//! The comparison gave both sides' figures per bucket (`compare/buckets.rs`). Here:
//! 1. Integer keys: a differing bucket with more than [`LEAF_ROWS`] rows is split into
//!    smaller key ranges by a grouped scan of its range alone, again until every differing
//!    bucket is small (a Merkle-style descent).
//! 2. If the differing buckets hold more than [`MAX_ROWS`] rows, or more than a quarter of the
//!    table, the whole table is copied instead (cheaper than naming that many rows).
//! 3. Both sides list the key and row hash of every row in the differing buckets; rows whose
//!    hash differs or that exist on one side only are the ones to replace.
//! 4. In the target transaction: DELETE those keys, then COPY the source's rows with those
//!    keys (from the source snapshot). Triggers do not fire (`session_replication_role =
//!    replica`, as for whole-table loads); foreign keys are not re-checked, and need not be:
//!    the rows end as on the source, where they hold.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use super::copy::{copy_rows, TableCopy};
use crate::compare::buckets::{self, BucketFigures, Bucketing};
use crate::compare::{Bucketed, Limits, TablePair};
use crate::schema::{quote_ident, quote_literal, SqlContext, SqlError, TableInfo};

/// A differing integer-key bucket with more rows than this is split further.
pub(crate) const LEAF_ROWS: i64 = 4096;
/// More rows than this in the differing buckets: copy the whole table.
pub(crate) const MAX_ROWS: i64 = 200_000;
/// Keys per DELETE / COPY statement.
const KEYS_PER_STATEMENT: usize = 500;
/// Buckets per leaf listing statement.
const BUCKETS_PER_STATEMENT: usize = 256;

/// How a row-level re-alignment went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkFigures {
    /// Buckets compared, at every level.
    pub compared: u64,
    /// Differing buckets whose rows were listed.
    pub differing: u64,
    /// Rows listed from those buckets (both sides).
    pub rows_examined: u64,
    /// Target rows deleted (changed or not on the source).
    pub rows_deleted: u64,
    /// Source rows copied in (changed or not on the target).
    pub rows_inserted: u64,
}

/// A row's key (each column's text form) and its content hash.
type Listing = HashMap<Vec<String>, i64>;

/// Re-align `table` row by row, or return `None` when copying it whole is the better way (too
/// many rows differ). `source` is a worker in the source snapshot, `target` the target
/// transaction.
pub(crate) async fn realign(
    source: &Client,
    target: &Client,
    table: &TableInfo,
    pair: &TablePair,
    bucketed: &Bucketed,
    limits: &Limits,
) -> Result<Option<TableCopy>, SqlError> {
    let started = Instant::now();
    let Some(key) = &pair.row_key else {
        return Ok(None);
    };
    let mut figures = ChunkFigures {
        compared: union_len(&bucketed.source, &bucketed.target),
        ..ChunkFigures::default()
    };
    let leaves = descend(source, target, pair, bucketed, &mut figures).await?;
    let estimate: i64 = leaves.iter().map(|l| l.rows).sum();
    let table_rows = bucketed.source.values().map(|v| v.0).sum::<i64>();
    if estimate > MAX_ROWS || (estimate > LEAF_ROWS && estimate > table_rows / 4) {
        return Ok(None);
    }
    figures.differing = leaves.iter().map(|l| l.buckets.len() as u64).sum();

    let key_text: Vec<String> = key
        .columns
        .iter()
        .map(|(c, _, _)| format!("{}::text", quote_ident(c)))
        .collect();
    let mut src_rows = Listing::new();
    let mut tgt_rows = Listing::new();
    for leaf in &leaves {
        for part in leaf.buckets.chunks(BUCKETS_PER_STATEMENT) {
            let sql = format!(
                "SELECT {}, {} FROM ONLY {} WHERE {}",
                key_text.join(", "),
                pair.row_hash(),
                pair.qualified,
                leaf.bucketing.predicate(part)
            );
            let what = format!("listing the differing rows of {}", pair.key);
            let (s, t) = futures::try_join!(
                list(source, &sql, key.columns.len(), &what),
                list(target, &sql, key.columns.len(), &what)
            )?;
            src_rows.extend(s);
            tgt_rows.extend(t);
        }
    }
    figures.rows_examined = (src_rows.len() + tgt_rows.len()) as u64;
    let mut delete: Vec<&Vec<String>> = tgt_rows
        .iter()
        .filter(|(k, h)| src_rows.get(*k) != Some(h))
        .map(|(k, _)| k)
        .collect();
    let mut insert: Vec<&Vec<String>> = src_rows
        .iter()
        .filter(|(k, h)| tgt_rows.get(*k) != Some(h))
        .map(|(k, _)| k)
        .collect();
    delete.sort();
    insert.sort();

    let types: Vec<&str> = key.columns.iter().map(|(_, t, _)| t.as_str()).collect();
    let key_list: Vec<String> = key.columns.iter().map(|(c, _, _)| quote_ident(c)).collect();
    let key_list = format!("({})", key_list.join(", "));
    for part in delete.chunks(KEYS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM ONLY {} WHERE {key_list} IN ({})",
            pair.qualified,
            literals(part, &types)
        );
        let n = target
            .execute(&sql, &[])
            .await
            .ctx(format!("deleting the differing rows of {}", pair.key))?;
        figures.rows_deleted += n;
    }
    let mut copied = TableCopy::empty(table, "rows");
    for part in insert.chunks(KEYS_PER_STATEMENT) {
        let filter = format!("{key_list} IN ({})", literals(part, &types));
        let c = copy_rows(source, target, table, Some(&filter), limits.source.as_ref()).await?;
        copied.rows += c.rows;
        copied.bytes += c.bytes;
        copied.format = c.format;
    }
    figures.rows_inserted = copied.rows;
    copied.chunks = Some(figures);
    copied.duration_ms = crate::report::elapsed_ms(started);
    Ok(Some(copied))
}

/// Differing buckets small enough to list, at one bucketing.
struct Leaf {
    bucketing: Bucketing,
    buckets: Vec<i64>,
    /// The larger side's row count, summed.
    rows: i64,
}

/// Split big differing range buckets until each is small; hash buckets are listed as they
/// are. Each big bucket is split over the keys it actually holds (its smallest and largest
/// key on either side, through the index), into buckets of about
/// [`buckets::ROWS_PER_BUCKET`] rows, so that a few outlying keys (a sparse key space) cost
/// one more level, not one per 8 bits of key.
async fn descend(
    source: &Client,
    target: &Client,
    pair: &TablePair,
    bucketed: &Bucketed,
    figures: &mut ChunkFigures,
) -> Result<Vec<Leaf>, SqlError> {
    let mut leaves = Vec::new();
    let mut work = vec![(
        bucketed.bucketing.clone(),
        bucketed.source.clone(),
        bucketed.target.clone(),
    )];
    while let Some((bucketing, src, tgt)) = work.pop() {
        let size = |b: &i64| {
            let count = |f: &BucketFigures| f.get(b).map_or(0, |v| v.0);
            count(&src).max(count(&tgt))
        };
        let diff = buckets::differing(&src, &tgt);
        let (big, small): (Vec<i64>, Vec<i64>) = match &bucketing {
            Bucketing::Range { shift, .. } if *shift > 0 => {
                diff.into_iter().partition(|b| size(b) > LEAF_ROWS)
            }
            _ => (Vec::new(), diff),
        };
        let rows = small.iter().map(size).sum();
        if !small.is_empty() {
            leaves.push(Leaf {
                bucketing: bucketing.clone(),
                buckets: small,
                rows,
            });
        }
        let Bucketing::Range { column, shift } = &bucketing else {
            continue;
        };
        for b in big {
            let range = bucketing.predicate(&[b]);
            let (lo, hi) = buckets::key_range(pair, column, Some(&range), source, target).await?;
            let next = Bucketing::Range {
                column: column.clone(),
                shift: buckets::range_shift(lo, hi, buckets::bucket_count(size(&b)))
                    .min(shift.saturating_sub(1)),
            };
            let sql = next.grouped_sql(pair, Some(&range));
            let what = format!("comparing the differing key ranges of {}", pair.key);
            let (s, t) = futures::try_join!(
                buckets::figures(source, &sql, &what),
                buckets::figures(target, &sql, &what)
            )?;
            figures.compared += union_len(&s, &t);
            work.push((next, s, t));
        }
    }
    Ok(leaves)
}

fn union_len(a: &BucketFigures, b: &BucketFigures) -> u64 {
    (a.len() + b.keys().filter(|k| !a.contains_key(k)).count()) as u64
}

async fn list(
    client: &Client,
    sql: &str,
    key_columns: usize,
    what: &str,
) -> Result<Listing, SqlError> {
    let rows = client.query(sql, &[]).await.ctx(what)?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: Vec<String> = (0..key_columns).map(|i| r.get(i)).collect();
            (key, r.get(key_columns))
        })
        .collect())
}

/// `('v1'::type1, 'v2'::type2), ...`: keys as typed literals (their text forms read back).
fn literals(keys: &[&Vec<String>], types: &[&str]) -> String {
    keys.iter()
        .map(|k| {
            let parts: Vec<String> = k
                .iter()
                .zip(types)
                .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
                .collect();
            format!("({})", parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_typed_literal_rows() {
        let a = vec!["1".to_string(), "O'Brien".to_string()];
        let b = vec!["2".to_string(), "x".to_string()];
        assert_eq!(
            literals(&[&a, &b], &["bigint", "text"]),
            "('1'::bigint, 'O''Brien'::text), ('2'::bigint, 'x'::text)"
        );
    }
}
