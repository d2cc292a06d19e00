//! Storage sizes: Kubernetes quantities (`10Gi`, `500M`, `1e9`-free subset) to bytes.

/// Bytes in a quantity such as `10Gi`, `512Mi`, `20G` or `1073741824`; `None` for forms the
/// schema's pattern does not admit.
pub fn bytes(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * factor as f64) as u64)
}

/// `max_slot_wal_keep_size` for a member volume of `storage` bytes: a quarter of it, in MB.
///
/// A standby that stays away keeps its replication slot, and the slot keeps WAL on the
/// primary. Unbounded, that fills the primary's volume and stops it: an outage caused by the
/// member that was already down. Bounded, the slot is invalidated instead and the standby's
/// rejoin falls back to a fresh clone: slower repair, no outage.
pub fn slot_wal_limit_mb(storage: &str) -> Option<u64> {
    bytes(storage).map(|b| (b / 4 / (1 << 20)).max(64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(bytes("10Gi"), Some(10 << 30));
        assert_eq!(bytes("512Mi"), Some(512 << 20));
        assert_eq!(bytes("20G"), Some(20_000_000_000));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("1073741824"), Some(1 << 30));
        assert_eq!(bytes("10Xi"), None);
        assert_eq!(bytes("Gi"), None);
    }

    #[test]
    fn slot_limit_is_a_quarter_of_the_volume() {
        assert_eq!(slot_wal_limit_mb("10Gi"), Some(2560));
        assert_eq!(slot_wal_limit_mb("100Mi"), Some(64), "never below 64 MB");
        assert_eq!(slot_wal_limit_mb("lots"), None);
    }
}
