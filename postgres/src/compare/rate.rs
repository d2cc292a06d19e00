//! A read-rate limit for `check` and `sync`, so that a periodic comparison on the live active
//! member leaves it to its clients.
//!
//! Each server gets its own limit. Tables are read in slices of heap blocks (`ctid` ranges,
//! a TID range scan, PostgreSQL 14 and later) of a sixteenth of a second's worth of the limit,
//! and a slice starts only when the bytes read so far fit the limit since the start; so the
//! average rate over any stretch longer than a slice stays at or under the limit, and a burst
//! at full speed is at most one slice (short bursts: a commit that lands in one waits less). Rows copied by `sync` are charged as their COPY bytes.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use tokio_postgres::Client;

use crate::schema::{SqlContext, SqlError};

/// PostgreSQL's heap block size (`block_size`; 8 KiB unless the server was built otherwise).
const BLOCK: u64 = 8192;
/// Slices are at least this big (fewer statements for low limits).
const MIN_SLICE: u64 = 1 << 20;
/// And at most this big.
const MAX_SLICE: u64 = 64 << 20;

/// A rate in bytes per second, parsed from `64MiB`, `10MB`, `500k` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("{s:?} is not a rate: expected a number of bytes per second such as 32MiB")
        })?;
        let factor: u64 = match unit.trim().trim_end_matches("/s") {
            "" | "B" => 1,
            "k" | "K" | "kB" | "KB" => 1_000,
            "KiB" | "Ki" => 1 << 10,
            "M" | "MB" => 1_000_000,
            "MiB" | "Mi" => 1 << 20,
            "G" | "GB" => 1_000_000_000,
            "GiB" | "Gi" => 1 << 30,
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (use B, kB, KiB, MB, MiB, GB or GiB)"
                ))
            }
        };
        let bytes = n
            .checked_mul(factor)
            .ok_or_else(|| format!("{s:?} is too large"))?;
        if bytes == 0 {
            return Err("a rate limit must be above zero (leave it out for no limit)".into());
        }
        Ok(Rate(bytes))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", self.0 >> 20)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Both servers' limits (none without a limit).
#[derive(Debug, Default)]
pub struct Limits {
    /// The source's.
    pub source: Option<RateLimit>,
    /// The target's.
    pub target: Option<RateLimit>,
}

impl Limits {
    /// The same rate on each server, or none.
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            source: rate.map(RateLimit::new),
            target: rate.map(RateLimit::new),
        }
    }
}

/// One server's limit, shared by every connection reading from it.
#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second.
    pub rate: u64,
    started: Instant,
    charged: Mutex<u64>,
}

impl RateLimit {
    /// A limit of `rate` bytes per second from now.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate: rate.0.max(1),
            started: Instant::now(),
            charged: Mutex::new(0),
        }
    }

    /// Bytes per slice: a sixteenth of a second's worth, within 1 to 64 MiB, whole blocks.
    pub fn slice_bytes(&self) -> u64 {
        (self.rate / 16).clamp(MIN_SLICE, MAX_SLICE) / BLOCK * BLOCK
    }

    /// Account for `bytes` about to be read; wait until reading them keeps the average rate
    /// since the start at or under the limit.
    pub async fn charge(&self, bytes: u64) {
        let due = {
            let mut charged = self
                .charged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = *charged;
            *charged = charged.saturating_add(bytes);
            // Reading may start once what was read before fits the rate.
            Duration::from_secs_f64(before as f64 / self.rate as f64)
        };
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// The `WHERE` filters that cut a table into block slices for `limit`, or one `None` (the
/// whole table in one statement) without a limit. The last slice is open-ended, so rows of
/// the snapshot in blocks added since the size was read are never missed.
pub(crate) async fn slices(
    client: &Client,
    qualified: &str,
    limit: Option<&RateLimit>,
) -> Result<Vec<(Option<String>, u64)>, SqlError> {
    let Some(limit) = limit else {
        return Ok(vec![(None, 0)]);
    };
    let row = client
        .query_one(
            &format!(
                "SELECT pg_relation_size('{}'::regclass)::int8",
                qualified.replace('\'', "''")
            ),
            &[],
        )
        .await
        .ctx(format!("reading the size of {qualified}"))?;
    let size = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
    let per = limit.slice_bytes() / BLOCK;
    let blocks = size.div_ceil(BLOCK);
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let end = start + per;
        if end >= blocks {
            out.push((
                Some(format!("ctid >= '({start},0)'::tid")),
                (blocks.saturating_sub(start)) * BLOCK,
            ));
            return Ok(out);
        }
        out.push((
            Some(format!(
                "ctid >= '({start},0)'::tid AND ctid < '({end},0)'::tid"
            )),
            per * BLOCK,
        ));
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units() {
        assert_eq!("32MiB".parse::<Rate>(), Ok(Rate(32 << 20)));
        assert_eq!("10MB".parse::<Rate>(), Ok(Rate(10_000_000)));
        assert_eq!("500k".parse::<Rate>(), Ok(Rate(500_000)));
        assert_eq!("4096".parse::<Rate>(), Ok(Rate(4096)));
        assert_eq!("1GiB/s".parse::<Rate>(), Ok(Rate(1 << 30)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert!("3 parsecs".parse::<Rate>().is_err());
        assert_eq!(Rate(32 << 20).to_string(), "32MiB");
    }

    #[test]
    fn slices_are_a_sixteenth_of_a_second_within_bounds() {
        assert_eq!(RateLimit::new(Rate(32 << 20)).slice_bytes(), 2 << 20);
        assert_eq!(RateLimit::new(Rate(1000)).slice_bytes(), MIN_SLICE);
        assert_eq!(RateLimit::new(Rate(1 << 40)).slice_bytes(), MAX_SLICE);
    }

    #[tokio::test]
    async fn charges_wait_for_the_rate() {
        let limit = RateLimit::new(Rate(10 << 20));
        let t = Instant::now();
        limit.charge(1 << 20).await; // the first MiB starts at once
        assert!(t.elapsed() < Duration::from_millis(50));
        limit.charge(2 << 20).await; // after the first MiB's 0.1 s
        limit.charge(1).await; // after 3 MiB: 0.3 s
        let waited = t.elapsed();
        // Only the lower bound is the limit; the upper one just catches a wait far too long.
        assert!(
            waited >= Duration::from_millis(295) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }
}
