//! A member's data directory: create it ([`initdb()`]), make it a streaming standby of another
//! member ([`clone()`]), and re-align a stale former primary as a standby of the authoritative
//! member ([`rejoin()`]), with pg_rewind and a fresh clone as fallback.
//!
//! These run in the operator's Jobs (the `initdb`, `clone` and `rejoin` subcommands, see
//! [`crate::cli`] and `docs/job-interface.md`) while the member's server is stopped, and by
//! hand. Server-side programs run as the `postgres` user when this process is root (tests,
//! local scenarios).
//!
//! Staging: `initdb` and `clone` build the new directory beside the data directory
//! (`<pgdata>.initdb`, `<pgdata>.clone`) and rename it into place only when complete, so a data
//! directory is never half-made and an interrupted Job can simply run again.

mod cmd;
mod conf;
mod controldata;
mod rejoin_plan;
mod server;
mod timeline;
pub mod tls;

pub mod clone;
pub mod initdb;
pub mod rejoin;

use std::path::PathBuf;

pub(crate) use clone::host_port;
pub use clone::{clone, CloneOptions};
pub use conf::{passfile_path, DEFAULT_SETTINGS};
pub use controldata::ControlData;
pub use initdb::{initdb, InitdbOptions};
pub use rejoin::{rejoin, RejoinOptions};
pub use tls::MemberTls;

use crate::actions::ActionError;
use crate::conn::ConnError;

/// A password, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The password itself, for the few places that must hand it on (a child's environment, a
    /// 0600 passfile, a SCRAM verifier).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a member operation failed. Each variant says which file, program or server and which
/// step, so a Job's termination message alone tells an operator what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{step}: {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {program} failed ({status}): {output}")]
    Command {
        step: &'static str,
        program: String,
        status: String,
        output: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error("{step}: {target}: {message}")]
    Sql {
        step: &'static str,
        target: String,
        message: String,
    },
}

impl MemberError {
    pub(crate) fn io(
        step: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| MemberError::Io { step, path, source }
    }
}

/// The replication password for a standby's `primary_conninfo`: `RECEIPTDB_REPLICATION_PASSWORD`,
/// else the libpq passfile (`PGPASSFILE`, else `~/.pgpass`) entry for the replication
/// pseudo-database on the source.
pub fn replication_password_from_env(
    host: &str,
    port: u16,
    user: &str,
) -> Result<Secret, MemberError> {
    if let Ok(pw) = std::env::var("RECEIPTDB_REPLICATION_PASSWORD") {
        if !pw.is_empty() {
            return Ok(Secret(pw));
        }
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")));
    if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
        if let Some(pw) =
            crate::conn::passfile_lookup(&text, host, &port.to_string(), "replication", user)
        {
            return Ok(Secret(pw));
        }
    }
    Err(MemberError::Config(format!(
        "no password for replication user {user:?}: set RECEIPTDB_REPLICATION_PASSWORD or a passfile entry"
    )))
}

/// Whether `name` is a valid physical replication slot name (lower-case letters, digits and
/// underscores, at most 63 bytes).
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A slot name derived from an application name (`orca-secondary` → `orca_secondary`).
pub fn slot_name_for(application_name: &str) -> String {
    let mut s: String = application_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(63);
    if s.is_empty() {
        s.push_str("standby");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        assert_eq!(slot_name_for("orca-Secondary"), "orca_secondary");
        assert!(valid_slot_name("orca_secondary"));
        assert!(!valid_slot_name("orca-secondary"));
        assert!(!valid_slot_name(""));
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
