//! Per-bucket figures of a keyed table: the rows split by key into buckets, each with its row
//! count and content checksum, so that a `sync` learns *where* a table differs from the same
//! scan that finds *whether* it differs, and re-aligns only the rows of the differing buckets
//! (see `sync/rows.rs`).
//!
//! - A single integer key: bucket `key >> shift`, a contiguous key range, so the rows of one
//!   bucket are read back through the key's index, and a big differing bucket is split again
//!   (Merkle-style) by a grouped scan of its range alone.
//! - Any other key: bucket `hash(key) & mask`; reading a bucket's rows back takes one filtered
//!   scan of the table (for all differing buckets at once).
//!
//! The whole table's figures are the sums of its buckets' figures: the same numbers as the
//! plain checksum statement, so reports do not depend on how a table was compared.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::tables::{PairKey, TablePair};
use crate::schema::{quote_ident, SqlContext, SqlError};

/// Rows per bucket aimed at when choosing the number of buckets.
pub(crate) const ROWS_PER_BUCKET: i64 = 1024;
/// At most this many buckets per table. The grouped scan costs more with more groups
/// (measured on a 1M-row table against the plain checksum: about 1.25x with 16 to 1,000
/// groups, 2.4x with 62,500); a big differing bucket is split afterwards at little cost
/// (integer keys), or listed whole (other keys).
const MAX_BUCKETS: i64 = 1 << 10;

/// Row count and exact sum of row hashes of one bucket.
pub(crate) type BucketFigures = BTreeMap<i64, (i64, i128)>;

/// How a table's rows are split into buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bucketing {
    /// `key >> shift`: bucket `b` holds the keys `b << shift ..= (b << shift) + 2^shift - 1`.
    Range {
        /// The quoted key column.
        column: String,
        /// Bits of key per bucket.
        shift: u32,
    },
    /// One bucket, `0`: the whole table (a checksum computed in slices).
    Whole,
    /// `hash(key) & mask`.
    Hash {
        /// The key's hash expression.
        key_hash: String,
        /// Number of buckets minus one (a power of two minus one).
        mask: i64,
    },
}

/// The number of buckets for about `rows` rows: a power of two, 1 to [`MAX_BUCKETS`].
pub(crate) fn bucket_count(rows: i64) -> i64 {
    let wanted = (rows.max(1) / ROWS_PER_BUCKET).clamp(1, MAX_BUCKETS);
    // wanted ≤ MAX_BUCKETS, so the next power of two fits.
    i64::try_from(u64::try_from(wanted).unwrap_or(1).next_power_of_two()).unwrap_or(MAX_BUCKETS)
}

/// The smallest shift giving at most `buckets` ranges over `lo..=hi` (about).
pub(crate) fn range_shift(lo: i64, hi: i64, buckets: i64) -> u32 {
    let span = (i128::from(hi) - i128::from(lo) + 1).max(1);
    let per_bucket = (span + i128::from(buckets) - 1) / i128::from(buckets.max(1));
    let mut shift = 0;
    while shift < 63 && (1i128 << shift) < per_bucket {
        shift += 1;
    }
    shift
}

/// The keys of bucket `b` under `shift`, inclusive, within the `bigint` range.
pub(crate) fn range_of(b: i64, shift: u32) -> (i64, i64) {
    let lo = i128::from(b) << shift;
    let hi = lo + (1i128 << shift) - 1;
    let clamp = |v: i128| i64::try_from(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)));
    (clamp(lo).unwrap_or(i64::MIN), clamp(hi).unwrap_or(i64::MAX))
}

impl Bucketing {
    /// The bucket number of a row, as `bigint`.
    pub fn expr(&self) -> String {
        match self {
            Bucketing::Range { column, shift } => format!("({column} >> {shift})::int8"),
            Bucketing::Hash { key_hash, mask } => format!("({key_hash} & {mask})"),
            Bucketing::Whole => "0::int8".into(),
        }
    }

    /// A predicate selecting the rows of `buckets` (sorted or not; empty selects nothing).
    pub fn predicate(&self, buckets: &[i64]) -> String {
        if buckets.is_empty() {
            return "false".into();
        }
        match self {
            Bucketing::Range { column, shift } => {
                let mut sorted = buckets.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                // Adjacent buckets merge into one range.
                let mut ranges: Vec<(i64, i64)> = Vec::new();
                for b in sorted {
                    let (lo, hi) = range_of(b, *shift);
                    match ranges.last_mut() {
                        Some(last) if i128::from(last.1) + 1 == i128::from(lo) => last.1 = hi,
                        _ => ranges.push((lo, hi)),
                    }
                }
                let parts: Vec<String> = ranges
                    .iter()
                    .map(|(lo, hi)| format!("{column} BETWEEN {lo} AND {hi}"))
                    .collect();
                format!("({})", parts.join(" OR "))
            }
            Bucketing::Whole => "true".into(),
            Bucketing::Hash { .. } => {
                let list: Vec<String> = buckets.iter().map(i64::to_string).collect();
                format!("{} = ANY('{{{}}}'::int8[])", self.expr(), list.join(","))
            }
        }
    }

    /// The grouped statement: bucket, row count, and the checksum (the exact `numeric` sum of
    /// the row hashes) split by `div`/`mod` into two `bigint`s, exact integer operations done
    /// once per bucket; for the rows matching `filter`. Both parts fit a `bigint` for any
    /// bucket under 2^31 rows. (Summing the two halves of every hash instead costs twice the
    /// scan: measured.)
    pub fn grouped_sql(&self, pair: &TablePair, filter: Option<&str>) -> String {
        format!(
            "SELECT b, n, div(s, 4294967296)::int8, mod(s, 4294967296)::int8 FROM \
             (SELECT b, count(*) AS n, coalesce(sum(h), 0) AS s FROM \
              (SELECT {} AS b, {} AS h FROM ONLY {}{} OFFSET 0) r GROUP BY 1) g",
            self.expr(),
            pair.row_hash(),
            pair.qualified,
            filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
        )
    }
}

/// Choose the bucketing of a keyed table: for an integer key, from both sides' key range.
pub(crate) async fn choose(
    pair: &TablePair,
    key: &PairKey,
    src: &Client,
    tgt: &Client,
) -> Result<Bucketing, SqlError> {
    let buckets = bucket_count(pair.rows_estimate);
    if key.integer {
        let column = quote_ident(&key.columns[0].0);
        let (lo, hi) = key_range(pair, &column, None, src, tgt).await?;
        return Ok(Bucketing::Range {
            column,
            shift: range_shift(lo, hi, buckets),
        });
    }
    let cols: Vec<String> = key
        .columns
        .iter()
        .map(|(name, _, native)| {
            let q = quote_ident(name);
            if *native {
                q
            } else {
                format!("{q}::text")
            }
        })
        .collect();
    Ok(Bucketing::Hash {
        key_hash: format!("hash_record_extended(ROW({}), 0)", cols.join(", ")),
        mask: buckets - 1,
    })
}

/// The smallest and largest integer key on either side (of the rows matching `filter`),
/// through the key's index; `(0, 0)` when there are none.
pub(crate) async fn key_range(
    pair: &TablePair,
    column: &str,
    filter: Option<&str>,
    src: &Client,
    tgt: &Client,
) -> Result<(i64, i64), SqlError> {
    let sql = format!(
        "SELECT min({column})::int8, max({column})::int8 FROM ONLY {}{}",
        pair.qualified,
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let what = format!("reading the key range of {}", pair.key);
    let (a, b) = futures::try_join!(async { src.query_one(&sql, &[]).await.ctx(&what) }, async {
        tgt.query_one(&sql, &[]).await.ctx(&what)
    },)?;
    let ends: Vec<i64> = [0, 1]
        .into_iter()
        .flat_map(|i| [a.get::<_, Option<i64>>(i), b.get::<_, Option<i64>>(i)])
        .flatten()
        .collect();
    Ok((
        ends.iter().copied().min().unwrap_or(0),
        ends.iter().copied().max().unwrap_or(0),
    ))
}

/// Run a grouped statement.
pub(crate) async fn figures(
    client: &Client,
    sql: &str,
    what: &str,
) -> Result<BucketFigures, SqlError> {
    let rows = client.query(sql, &[]).await.ctx(what)?;
    let mut out = BucketFigures::new();
    for row in rows {
        let (high, low): (i64, i64) = (row.get(2), row.get(3));
        out.insert(
            row.get(0),
            (row.get(1), (i128::from(high) << 32) + i128::from(low)),
        );
    }
    Ok(out)
}

/// Add `part`'s figures (another slice of the same table) into `all`.
pub(crate) fn merge(all: &mut BucketFigures, part: BucketFigures) {
    for (b, (n, sum)) in part {
        let e = all.entry(b).or_insert((0, 0));
        e.0 += n;
        e.1 += sum;
    }
}

/// The whole table's row count and checksum (as the plain statement prints it).
pub(crate) fn totals(buckets: &BucketFigures) -> (i64, String) {
    let rows = buckets.values().map(|v| v.0).sum();
    let sum: i128 = buckets.values().map(|v| v.1).sum();
    (rows, sum.to_string())
}

/// Buckets whose figures differ between the sides (or exist on one side only).
pub(crate) fn differing(source: &BucketFigures, target: &BucketFigures) -> Vec<i64> {
    let mut out: Vec<i64> = source
        .iter()
        .filter(|(b, f)| target.get(b) != Some(f))
        .map(|(b, _)| *b)
        .collect();
    out.extend(target.keys().filter(|b| !source.contains_key(b)));
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_are_powers_of_two_within_bounds() {
        assert_eq!(bucket_count(-1), 1);
        assert_eq!(bucket_count(1000), 1);
        assert_eq!(bucket_count(3000), 2);
        assert_eq!(bucket_count(5000), 4);
        assert_eq!(bucket_count(300_000), 512);
        assert_eq!(bucket_count(10_000_000), MAX_BUCKETS);
        assert_eq!(bucket_count(i64::MAX), MAX_BUCKETS);
    }

    #[test]
    fn range_shift_covers_the_span_with_at_most_the_buckets_asked() {
        assert_eq!(range_shift(1, 1_000_000, 1024), 10);
        assert_eq!(range_shift(5, 5, 1), 0);
        assert_eq!(range_shift(i64::MIN, i64::MAX, 1), 63);
        for (lo, hi, n) in [(1, 1_000_000, 1024), (-50, 77, 8), (0, 1 << 40, 65536)] {
            let s = range_shift(lo, hi, n);
            let used = (hi >> s) - (lo >> s) + 1;
            assert!(used <= n + 1, "{lo}..{hi} in {used} buckets, asked {n}");
        }
    }

    #[test]
    fn ranges_tile_the_keys_and_merge_when_adjacent() {
        assert_eq!(range_of(3, 4), (48, 63));
        assert_eq!(range_of(-1, 4), (-16, -1));
        assert_eq!(range_of(i64::MAX >> 2, 2).1, i64::MAX);
        let b = Bucketing::Range {
            column: "\"id\"".into(),
            shift: 4,
        };
        assert_eq!(
            b.predicate(&[3, 1, 2, 7]),
            "(\"id\" BETWEEN 16 AND 63 OR \"id\" BETWEEN 112 AND 127)"
        );
        assert_eq!(b.predicate(&[]), "false");
    }

    #[test]
    fn differing_buckets_include_one_sided_ones() {
        let s: BucketFigures = [(1, (2, 5)), (2, (1, 9)), (4, (1, 1))].into();
        let t: BucketFigures = [(1, (2, 5)), (2, (1, 8)), (3, (1, 1))].into();
        assert_eq!(differing(&s, &t), vec![2, 3, 4]);
        assert_eq!(totals(&s), (4, "15".into()));
    }
}
