//! Argument groups several entrypoints share (flattened into their own arguments), and the
//! command-line form of [`Method`].
//!
//! The help texts are the common ones; an entrypoint whose flag has always said something more
//! specific keeps its text with `#[command(mut_arg(...))]`, so `--help` reads as it always did.

use std::path::PathBuf;

use clap::builder::PossibleValue;

use crate::compare::Method;
use crate::conn::Target;

/// The display order that lists an argument after all the others (`--report` of `check` and
/// `sync` comes after `--jobs`, as it always has).
pub(crate) const LAST: usize = 100;

/// `--report FILE` and `--json`: every entrypoint has them (see `finish::finish`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Reporting {
    /// Also write the report as one line of JSON to this file (e.g. /dev/termination-log).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--source` and `--target`: the two databases `check` and `sync` work on.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Connections {
    /// libpq connection string of the reference database (no password in it).
    #[arg(long)]
    pub source: String,
    /// libpq connection string of the database compared against the source.
    #[arg(long)]
    pub target: String,
}

impl Connections {
    /// Both connection strings parsed; the error names the flag.
    pub(crate) fn parse(&self) -> Result<(Target, Target), String> {
        Ok((
            parse_target("--source", &self.source)?,
            parse_target("--target", &self.target)?,
        ))
    }
}

/// A connection string parsed; the error names `flag`.
pub(crate) fn parse_target(flag: &str, conninfo: &str) -> Result<Target, String> {
    Target::parse(conninfo).map_err(|e| format!("{flag}: {e}"))
}

impl clap::ValueEnum for Method {
    fn value_variants<'a>() -> &'a [Self] {
        &[Method::Counts, Method::Checksums]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Method::Counts => PossibleValue::new("counts").help(
                "Row count per table (the runbook's method): cheap, misses content-only changes",
            ),
            Method::Checksums => PossibleValue::new("checksums")
                .help("Row count plus an order-independent hash of every row's content"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn methods_parse_by_name() {
        assert_eq!(Method::from_str("counts", false), Ok(Method::Counts));
        assert_eq!(Method::from_str("checksums", false), Ok(Method::Checksums));
        assert!(Method::from_str("rows", false).is_err());
    }

    #[test]
    fn a_bad_connection_string_names_its_flag() {
        let c = Connections {
            source: "host=a".into(),
            target: "host=b password=x".into(),
        };
        let e = c.parse().unwrap_err();
        assert!(e.starts_with("--target: "), "{e}");
        assert!(e.contains("password"), "{e}");
    }
}
