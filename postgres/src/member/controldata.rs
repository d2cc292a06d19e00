//! What a stopped data directory says about itself: `pg_controldata`, and the true end of its
//! WAL (`pg_waldump`), which can lie past the last checkpoint after a crash.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::cmd::{prepare, run, run_any};
use super::MemberError;
use crate::actions::Lsn;
use crate::pgbin::program;

/// The fields of `pg_controldata` the member lifecycle needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlData {
    pub system_identifier: String,
    /// `shut down`, `shut down in recovery`, `in production`, `in archive recovery`, ...
    pub state: String,
    pub checkpoint: Lsn,
    pub redo: Lsn,
    pub checkpoint_timeline: u32,
    pub min_recovery_end: Lsn,
    pub min_recovery_timeline: u32,
    pub wal_segment_size: u64,
    pub data_checksums: bool,
}

impl ControlData {
    /// The newest timeline the control file knows of (a standby may be past its last
    /// restartpoint's timeline).
    pub fn timeline(&self) -> u32 {
        self.checkpoint_timeline.max(self.min_recovery_timeline)
    }

    /// Parse `pg_controldata` output (C locale).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut c = ControlData::default();
        let mut seen = 0;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            let lsn = || v.parse::<Lsn>().map_err(|e| e.to_string());
            let num = || v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
            match k.trim() {
                "Database system identifier" => {
                    c.system_identifier = v.to_string();
                    seen += 1;
                }
                "Database cluster state" => c.state = v.to_string(),
                "Latest checkpoint location" => {
                    c.checkpoint = lsn()?;
                    seen += 1;
                }
                "Latest checkpoint's REDO location" => c.redo = lsn()?,
                "Latest checkpoint's TimeLineID" => {
                    c.checkpoint_timeline = u32::try_from(num()?).map_err(|e| e.to_string())?;
                    seen += 1;
                }
                "Minimum recovery ending location" => c.min_recovery_end = lsn()?,
                "Min recovery ending loc's timeline" => {
                    c.min_recovery_timeline = u32::try_from(num()?).map_err(|e| e.to_string())?
                }
                "Bytes per WAL segment" => c.wal_segment_size = num()?,
                "Data page checksum version" => c.data_checksums = v != "0",
                _ => {}
            }
        }
        if seen < 3 || c.wal_segment_size == 0 {
            return Err(
                "pg_controldata output lacks the system identifier, checkpoint or segment size"
                    .into(),
            );
        }
        Ok(c)
    }

    /// Read a data directory's control file.
    pub async fn read(pgdata: &Path) -> Result<Self, MemberError> {
        let mut cmd = Command::new(program("pg_controldata"));
        cmd.arg("-D").arg(pgdata);
        let ran = run(prepare(cmd), "pg_controldata").await?;
        Self::parse(&ran.stdout).map_err(|e| MemberError::Command {
            step: "pg_controldata",
            program: "pg_controldata".into(),
            status: "unparsable output".into(),
            output: format!("{}: {e}", pgdata.display()),
        })
    }
}

/// WAL file name of the segment holding `lsn` on `timeline`.
pub(crate) fn walfile_name(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    let segno = lsn.0 / segment_size;
    let per_id = 0x1_0000_0000u64 / segment_size;
    format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// Segment number of a WAL file name (its last 16 hex digits).
fn segno_of(name: &str, segment_size: u64) -> Option<u64> {
    let hi = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
    let lo = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
    Some(hi * (0x1_0000_0000u64 / segment_size) + lo)
}

/// The end of the WAL in `pgdata` on `timeline`, read forward from `start` (a position known to
/// be on that timeline, e.g. the latest checkpoint): the position after the last valid record.
/// Returns None when pg_waldump's output cannot tell.
pub(crate) async fn end_of_wal(
    pgdata: &Path,
    timeline: u32,
    start: Lsn,
    segment_size: u64,
) -> Result<Option<Lsn>, MemberError> {
    let mut cmd = Command::new(program("pg_waldump"));
    cmd.arg("--quiet")
        .arg("--path")
        .arg(pgdata.join("pg_wal"))
        .arg("--timeline")
        .arg(timeline.to_string())
        .arg("--start")
        .arg(start.to_string());
    let ran = run_any(prepare(cmd), "pg_waldump").await?;
    Ok(parse_waldump_end(&ran.stderr, segment_size))
}

/// pg_waldump stops at the end of valid WAL with an error saying where:
/// `... invalid record length at 0/1752A28: wanted 24, got 0` (the last `at X/Y`), or, at a
/// segment boundary, `could not find file "0000000100000000000000002"` /
/// `... in log segment 000000010000000000000003, offset 0`.
pub(crate) fn parse_waldump_end(stderr: &str, segment_size: u64) -> Option<Lsn> {
    let line = stderr.lines().rev().find(|l| l.contains("error"))?;
    if let Some(pos) = line.find("in log segment ") {
        let rest = &line[pos + "in log segment ".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        let offset: u64 = rest.split("offset ").nth(1)?.trim().parse().ok()?;
        return Some(Lsn(segno_of(&name, segment_size)? * segment_size + offset));
    }
    if let Some(pos) = line.find("could not find file \"") {
        let name: String = line[pos + 21..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        return Some(Lsn(segno_of(&name, segment_size)? * segment_size));
    }
    line.match_indices(" at ")
        .filter_map(|(i, _)| {
            let rest = &line[i + 4..];
            let tok: String = rest
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '/')
                .collect();
            tok.parse::<Lsn>().ok()
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    #[test]
    fn parses_controldata() {
        let text = "Database system identifier:           7710401750774858239\n\
            Database cluster state:               shut down\n\
            Latest checkpoint location:           0/17529B0\n\
            Latest checkpoint's REDO location:    0/17529B0\n\
            Latest checkpoint's TimeLineID:       1\n\
            Minimum recovery ending location:     0/0\n\
            Min recovery ending loc's timeline:   0\n\
            Bytes per WAL segment:                16777216\n\
            Data page checksum version:           1\n";
        let c = ControlData::parse(text).unwrap();
        assert_eq!(c.system_identifier, "7710401750774858239");
        assert_eq!(c.checkpoint, "0/17529B0".parse().unwrap());
        assert_eq!(c.timeline(), 1);
        assert!(c.data_checksums);
        assert!(ControlData::parse("nothing").is_err());
    }

    #[test]
    fn waldump_end_positions() {
        let e = "pg_waldump: error: error in WAL record at 0/17529B0: invalid record length at 0/1752A28: wanted 24, got 0";
        assert_eq!(
            parse_waldump_end(e, SEG),
            Some("0/1752A28".parse().unwrap())
        );
        let e = "pg_waldump: error: could not find file \"000000010000000000000004\": No such file or directory";
        assert_eq!(parse_waldump_end(e, SEG), Some(Lsn(4 * SEG)));
        let e = "pg_waldump: error: error in WAL record at 0/3FFFFD8: unexpected pageaddr 0/1000000 in log segment 000000010000000000000004, offset 0";
        assert_eq!(parse_waldump_end(e, SEG), Some(Lsn(4 * SEG)));
    }

    #[test]
    fn walfile_names() {
        assert_eq!(
            walfile_name(2, Lsn(0x3000060), SEG),
            "000000020000000000000003"
        );
        assert_eq!(
            walfile_name(1, Lsn(0x1_0500_0000), SEG),
            "000000010000000100000005"
        );
        assert_eq!(segno_of("000000010000000100000005", SEG), Some(0x105));
    }
}
