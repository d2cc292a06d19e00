//! The contract between the operator and its Jobs: what each entrypoint (`initdb`, `clone`,
//! `rejoin`, `check`, `sync`, `backup`, `restore`) reports when it ends.
//!
//! A Job's container writes one [`JobReport`] as one line of JSON (camelCase keys, the
//! entrypoint's name under `command`) to its termination message (`--report
//! /dev/termination-log`, at most [`MAX_REPORT`] bytes); the operator parses it once, with
//! [`JobReport::parse`], into these same types. Both sides compile against this module, so a
//! field one side writes and the other reads cannot drift apart.
//!
//! Every report says `ok` and, when not ok, `error`. Missing fields take their defaults when
//! parsed: a report shortened to fit the limit (long strings cut, see `report::one_line`)
//! still parses. The reports of `check` and `sync` are digests of the full results their
//! `--json` output prints ([`crate::compare::CompareReport`], [`crate::sync::SyncOutcome`]):
//! bounded lists, so the verdict always fits.

use serde::{Deserialize, Serialize};

use crate::actions::Lsn;
use crate::compare::{CompareReport, Method};
use crate::sync::{SyncMode, SyncOutcome};

/// The termination message limit (Kubernetes keeps at most 4096 bytes of it).
pub const MAX_REPORT: usize = 4096;

/// Table names listed in a report, at most (the count says how many there were).
pub const MAX_LISTED: usize = 20;

/// The entrypoints that report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entrypoint {
    Initdb,
    Clone,
    Rejoin,
    Check,
    Sync,
    Backup,
    Restore,
}

impl Entrypoint {
    /// Every entrypoint.
    pub const ALL: [Entrypoint; 7] = [
        Entrypoint::Initdb,
        Entrypoint::Clone,
        Entrypoint::Rejoin,
        Entrypoint::Check,
        Entrypoint::Sync,
        Entrypoint::Backup,
        Entrypoint::Restore,
    ];

    /// The subcommand name.
    pub fn as_str(self) -> &'static str {
        match self {
            Entrypoint::Initdb => "initdb",
            Entrypoint::Clone => "clone",
            Entrypoint::Rejoin => "rejoin",
            Entrypoint::Check => "check",
            Entrypoint::Sync => "sync",
            Entrypoint::Backup => "backup",
            Entrypoint::Restore => "restore",
        }
    }
}

/// What one entrypoint reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum JobReport {
    Initdb(InitdbReport),
    Clone(CloneReport),
    Rejoin(RejoinReport),
    Check(CheckReport),
    Sync(SyncReport),
    Backup(BackupReport),
    Restore(RestoreReport),
}

macro_rules! each_report {
    ($self:expr, $r:ident => $e:expr) => {
        match $self {
            JobReport::Initdb($r) => $e,
            JobReport::Clone($r) => $e,
            JobReport::Rejoin($r) => $e,
            JobReport::Check($r) => $e,
            JobReport::Sync($r) => $e,
            JobReport::Backup($r) => $e,
            JobReport::Restore($r) => $e,
        }
    };
}

impl JobReport {
    /// Parse a termination message (one line of JSON).
    pub fn parse(text: &str) -> Result<JobReport, serde_json::Error> {
        serde_json::from_str(text.trim())
    }

    /// The report of an entrypoint that failed before it had anything else to say.
    pub fn failed(entrypoint: Entrypoint, error: impl Into<String>) -> JobReport {
        let error = Some(error.into());
        match entrypoint {
            Entrypoint::Initdb => JobReport::Initdb(InitdbReport {
                error,
                ..Default::default()
            }),
            Entrypoint::Clone => JobReport::Clone(CloneReport {
                error,
                ..Default::default()
            }),
            Entrypoint::Rejoin => JobReport::Rejoin(RejoinReport {
                error,
                ..Default::default()
            }),
            Entrypoint::Check => JobReport::Check(CheckReport {
                error,
                ..Default::default()
            }),
            Entrypoint::Sync => JobReport::Sync(SyncReport {
                error,
                ..Default::default()
            }),
            Entrypoint::Backup => JobReport::Backup(BackupReport {
                error,
                ..Default::default()
            }),
            Entrypoint::Restore => JobReport::Restore(RestoreReport {
                error,
                ..Default::default()
            }),
        }
    }

    /// Which entrypoint reported.
    pub fn entrypoint(&self) -> Entrypoint {
        match self {
            JobReport::Initdb(_) => Entrypoint::Initdb,
            JobReport::Clone(_) => Entrypoint::Clone,
            JobReport::Rejoin(_) => Entrypoint::Rejoin,
            JobReport::Check(_) => Entrypoint::Check,
            JobReport::Sync(_) => Entrypoint::Sync,
            JobReport::Backup(_) => Entrypoint::Backup,
            JobReport::Restore(_) => Entrypoint::Restore,
        }
    }

    /// Whether the entrypoint did what it was asked (a `check` that found differences is ok).
    pub fn ok(&self) -> bool {
        each_report!(self, r => r.ok)
    }

    /// Why it failed.
    pub fn error(&self) -> Option<&str> {
        each_report!(self, r => r.error.as_deref())
    }

    /// The one-line JSON written to the termination message: under [`MAX_REPORT`] bytes,
    /// long strings shortened when it would not fit.
    pub fn to_line(&self) -> String {
        crate::report::one_line(self)
    }
}

macro_rules! into_job_report {
    ($($variant:ident($ty:ident)),*) => {
        $(impl From<$ty> for JobReport {
            fn from(r: $ty) -> JobReport {
                JobReport::$variant(r)
            }
        })*
    };
}
into_job_report!(
    Initdb(InitdbReport),
    Clone(CloneReport),
    Rejoin(RejoinReport),
    Check(CheckReport),
    Sync(SyncReport),
    Backup(BackupReport),
    Restore(RestoreReport)
);

/// What `initdb` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitdbReport {
    pub ok: bool,
    /// False: the directory was already initialized and was left alone.
    pub initialized: bool,
    pub pgdata: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What `clone` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CloneReport {
    pub ok: bool,
    pub pgdata: String,
    pub source: String,
    pub slot: String,
    pub application_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// How `rejoin` re-aligned the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejoinMethod {
    /// pg_rewind from the source, then configured as its standby.
    Rewind,
    /// Moved aside and cloned afresh (rewind could not work).
    Clone,
    /// No data had to change: it never went past the source's history (already a standby of
    /// it, or a cleanly switched-over former primary); only the standby settings were written.
    None,
}

impl RejoinMethod {
    /// The name reports and status use.
    pub fn as_str(self) -> &'static str {
        match self {
            RejoinMethod::Rewind => "rewind",
            RejoinMethod::Clone => "clone",
            RejoinMethod::None => "none",
        }
    }
}

/// WAL the stale member had past the fork point, which re-alignment discards: what was lost on
/// the old timeline. All zero / None when it had nothing extra.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lost {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Lsn>,
    pub bytes: u64,
}

/// What `rejoin` found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RejoinReport {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<RejoinMethod>,
    /// Why this method.
    pub reason: String,
    pub pgdata: String,
    pub source: String,
    pub slot: String,
    pub application_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_system_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_state: Option<String>,
    /// The timeline the stale member was on: the one `lost` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_timeline: Option<u32>,
    /// End of the stale member's WAL (after its last valid record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_end_of_wal: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_system_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_timeline: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lsn: Option<Lsn>,
    /// The timeline both shared last, and where they parted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fork_timeline: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fork_point: Option<Lsn>,
    pub lost: Lost,
    /// pg_rewind's own "servers diverged at ..." line, as a cross-check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewind_says: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What `check` found: the verdict and what differs (a digest of [`CompareReport`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckReport {
    /// The comparison ran to the end (`equal` is the verdict).
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The verdict; None when the comparison could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equal: Option<bool>,
    pub tables_compared: usize,
    /// Tables whose contents or columns differ, then tables on one side only (at most
    /// [`MAX_LISTED`]).
    pub differing_tables: Vec<String>,
    /// How many tables differ or are on one side only.
    pub differing_count: usize,
    /// Schema objects and sequences that differ.
    pub schema_differences: usize,
    pub sequences_differing: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lsn: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_lsn: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl From<&CompareReport> for CheckReport {
    fn from(r: &CompareReport) -> CheckReport {
        let mut differing: Vec<String> = r.differing_tables();
        differing.extend(r.only_in_source.iter().cloned());
        differing.extend(r.only_in_target.iter().cloned());
        let differing_count = differing.len();
        differing.truncate(MAX_LISTED);
        CheckReport {
            ok: true,
            method: Some(r.method),
            equal: Some(r.equal),
            tables_compared: r.summary.tables_compared,
            differing_tables: differing,
            differing_count,
            schema_differences: r.summary.schema_differences,
            sequences_differing: r.sequences.len(),
            source_lsn: r.source_lsn.parse().ok(),
            target_lsn: r.target_lsn.parse().ok(),
            error: None,
            duration_ms: r.duration_ms,
        }
    }
}

/// What `sync` did (a digest of [`SyncOutcome`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncReport {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<SyncMode>,
    /// `--force`: every table copied without comparing first.
    pub forced: bool,
    /// Why this mode.
    pub reason: String,
    /// Tables loaded (at most [`MAX_LISTED`]).
    pub tables_loaded: Vec<String>,
    pub tables_count: usize,
    pub sequences_set: usize,
    pub rows: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lsn: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl From<&SyncOutcome> for SyncReport {
    fn from(r: &SyncOutcome) -> SyncReport {
        SyncReport {
            ok: true,
            mode: Some(r.mode),
            forced: r.forced,
            reason: r.reason.clone(),
            tables_loaded: r
                .tables
                .iter()
                .take(MAX_LISTED)
                .map(|t| t.table.clone())
                .collect(),
            tables_count: r.tables.len(),
            sequences_set: r.sequences_set.len(),
            rows: r.rows,
            bytes: r.bytes,
            source_lsn: r.source_lsn.parse().ok(),
            error: None,
            duration_ms: r.durations.total_ms,
        }
    }
}

/// What `backup` wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackupReport {
    pub ok: bool,
    /// The file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// The database dumped.
    pub database: String,
    /// WAL position of the dump's snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_lsn: Option<Lsn>,
    pub encrypted: bool,
    /// Backups deleted by `--keep` retention.
    pub pruned: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What `restore` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestoreReport {
    pub ok: bool,
    /// The file restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The database restored (as named in the backup).
    pub database: String,
    /// WAL position of the backup's snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_lsn: Option<Lsn>,
    /// Whether an existing target database was replaced.
    pub replaced_existing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_round_trips_with_its_command() {
        for e in Entrypoint::ALL {
            let r = JobReport::failed(e, "boom");
            let line = r.to_line();
            assert!(
                line.contains(&format!("\"command\":\"{}\"", e.as_str())),
                "{line}"
            );
            let back = JobReport::parse(&line).unwrap();
            assert_eq!(back, r);
            assert_eq!(
                (back.entrypoint(), back.ok(), back.error()),
                (e, false, Some("boom"))
            );
        }
    }

    #[test]
    fn keys_are_camel_case() {
        let r = JobReport::Rejoin(RejoinReport {
            ok: true,
            method: Some(RejoinMethod::Rewind),
            stale_timeline: Some(2),
            lost: Lost {
                from: Some(Lsn(0x300_0000)),
                to: Some(Lsn(0x300_0100)),
                bytes: 256,
            },
            ..Default::default()
        });
        let line = r.to_line();
        assert!(line.contains("\"staleTimeline\":2"), "{line}");
        assert!(
            line.contains(r#""lost":{"bytes":256,"from":"0/3000000","to":"0/3000100"}"#),
            "{line}"
        );
        assert!(!line.contains('_'), "{line}");
        assert_eq!(JobReport::parse(&line).unwrap(), r);
    }

    #[test]
    fn a_long_report_still_parses_with_its_verdict() {
        let r = JobReport::Check(CheckReport {
            ok: true,
            equal: Some(false),
            differing_tables: vec!["t".repeat(400); MAX_LISTED],
            differing_count: 500,
            ..Default::default()
        });
        let line = r.to_line();
        assert!(line.len() < MAX_REPORT, "{}", line.len());
        let JobReport::Check(back) = JobReport::parse(&line).unwrap() else {
            panic!("{line}");
        };
        assert_eq!((back.equal, back.differing_count), (Some(false), 500));
    }
}
