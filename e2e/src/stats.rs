//! Figures over repeated runs: p50 and max.

use serde::Serialize;

/// p50 and max of a set of values (ms).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub p50: Option<u64>,
    pub max: Option<u64>,
    pub values: Vec<u64>,
}

impl Spread {
    /// Of these values (`None`s are dropped, and counted by the caller as failures).
    pub fn of(values: impl IntoIterator<Item = Option<u64>>) -> Self {
        let mut v: Vec<u64> = values.into_iter().flatten().collect();
        let values = v.clone();
        v.sort_unstable();
        Self {
            count: v.len(),
            p50: percentile(&v, 50.0),
            max: v.last().copied(),
            values,
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[5], 50.0), Some(5));
        assert_eq!(percentile(&[], 50.0), None);
        let s = Spread::of([Some(3), None, Some(1), Some(2)]);
        assert_eq!((s.count, s.p50, s.max), (3, Some(2), Some(3)));
    }
}
