//! WAL positions.

use std::fmt;
use std::str::FromStr;

/// A WAL position (PostgreSQL's `pg_lsn`), stored as the 64-bit byte position.
///
/// Prints and serializes as PostgreSQL does, `X/Y` in upper-case hex, because the controller
/// stores it in the custom resource's status where people read it and compare it with server
/// logs. Differences between two positions are byte counts ([`Lsn::bytes_since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// A string that is not an `X/Y` WAL position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WAL position (expected X/Y in hex): {0:?}")]
pub struct LsnParseError(pub String);

impl Lsn {
    /// Bytes of WAL from `earlier` to `self`, zero when `earlier` is not before `self`.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_round_trips_through_json() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0x3000060).to_string(), "0/3000060");
        let json = serde_json::to_string(&lsn).unwrap();
        assert_eq!(json, "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
        assert!("nope".parse::<Lsn>().is_err());
        assert!("1/2/3".parse::<Lsn>().is_err());
        assert_eq!(Lsn(10).bytes_since(Lsn(4)), 6);
        assert_eq!(Lsn(4).bytes_since(Lsn(10)), 0);
    }
}
