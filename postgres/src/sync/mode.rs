//! What a sync does, decided from what the comparison found alone: nothing, reload the tables
//! that differ, or rebuild the target's schema and load every table.

use serde::Serialize;

use crate::compare::CompareReport;

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncMode {
    /// Already equal: nothing written.
    Nothing,
    /// Only differing tables (and sequences) reloaded.
    Tables,
    /// Schema replaced from the source and every table loaded.
    Rebuild,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncPlan {
    pub mode: SyncMode,
    /// Why, for the report.
    pub reason: String,
    /// The source tables to load (keys, in the source's order).
    pub tables: Vec<String>,
}

/// Choose what to do, from `comparison` (of schemas and sequences only when `forced`) and the
/// keys of the source's tables, in order:
/// - `forced` (`--force`): rebuild, every table;
/// - schema differences (they include tables on one side only and differing column lists):
///   rebuild, every table;
/// - tables whose contents differ, or sequences that are not equal (behind, ahead or
///   missing on the target): reload those tables, set the sequences;
/// - else nothing.
pub(crate) fn choose_mode(
    forced: bool,
    comparison: &CompareReport,
    source_tables: &[String],
) -> SyncPlan {
    let every_table = || source_tables.to_vec();
    if forced {
        return SyncPlan {
            mode: SyncMode::Rebuild,
            reason: "forced".into(),
            tables: every_table(),
        };
    }
    if !comparison.schema_differences.is_empty() {
        return SyncPlan {
            mode: SyncMode::Rebuild,
            reason: format!("{} schema differences", comparison.schema_differences.len()),
            tables: every_table(),
        };
    }
    let differing = comparison.differing_tables();
    let tables: Vec<String> = source_tables
        .iter()
        .filter(|key| differing.contains(key))
        .cloned()
        .collect();
    if tables.is_empty() && comparison.sequences.is_empty() {
        return SyncPlan {
            mode: SyncMode::Nothing,
            reason: "equal".into(),
            tables,
        };
    }
    SyncPlan {
        mode: SyncMode::Tables,
        reason: format!(
            "{} of {} tables differ, {} sequences differ",
            tables.len(),
            comparison.tables.len(),
            comparison.sequences.len()
        ),
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{
        CompareSummary, Method, SequenceComparison, TableComparison, TableFigures,
    };
    use crate::schema::{SchemaDifference, SequenceStatus};

    const SOURCE: [&str; 3] = ["public.a", "public.b", "public.c"];

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    /// A comparison of the tables in `SOURCE` (none when `compared` is false, as with `--force`),
    /// `differing` of them different, with these schema differences and sequence states.
    fn comparison(
        compared: bool,
        differing: &[&str],
        schema: &[&str],
        sequences: &[SequenceStatus],
    ) -> CompareReport {
        let figures = |rows| TableFigures {
            rows,
            checksum: None,
        };
        let tables = SOURCE
            .iter()
            .filter(|_| compared)
            .map(|t| TableComparison {
                table: t.to_string(),
                equal: !differing.contains(t),
                columns_differ: false,
                source: figures(2),
                target: figures(if differing.contains(t) { 1 } else { 2 }),
                duration_ms: 0,
            })
            .collect();
        CompareReport {
            method: Method::Checksums,
            source: "src".into(),
            target: "tgt".into(),
            source_lsn: "0/3000000".into(),
            target_lsn: "0/3000000".into(),
            source_version: "15".into(),
            target_version: "15".into(),
            equal: false,
            summary: CompareSummary::default(),
            tables,
            only_in_source: Vec::new(),
            only_in_target: Vec::new(),
            schema_differences: schema
                .iter()
                .map(|o| SchemaDifference {
                    object: o.to_string(),
                    source: Some("x".into()),
                    target: None,
                })
                .collect(),
            sequences: sequences
                .iter()
                .map(|&status| SequenceComparison {
                    sequence: "public.s".into(),
                    source_next: Some(10),
                    target_next: Some(5),
                    source_state: (9, true),
                    target_state: Some((5, false)),
                    status,
                })
                .collect(),
            started_at: String::new(),
            duration_ms: 0,
        }
    }

    fn want(mode: SyncMode, reason: &str, tables: &[&str]) -> SyncPlan {
        SyncPlan {
            mode,
            reason: reason.into(),
            tables: keys(tables),
        }
    }

    #[test]
    fn sync_modes() {
        use SequenceStatus::{StateDiffers, TargetAhead, TargetBehind};
        let only_in_source = CompareReport {
            only_in_source: keys(&["public.d"]),
            ..comparison(true, &[], &["table \"public\".\"d\""], &[])
        };
        let cases: Vec<(&str, bool, CompareReport, SyncPlan)> = vec![
            (
                "equal",
                false,
                comparison(true, &[], &[], &[]),
                want(SyncMode::Nothing, "equal", &[]),
            ),
            (
                "forced: every table, without comparing them",
                true,
                comparison(false, &[], &[], &[]),
                want(SyncMode::Rebuild, "forced", &SOURCE),
            ),
            (
                "forced wins over schema differences",
                true,
                comparison(false, &[], &["index \"public\".\"i\""], &[]),
                want(SyncMode::Rebuild, "forced", &SOURCE),
            ),
            (
                "schema differences: rebuild, every table",
                false,
                comparison(true, &["public.b"], &["index \"public\".\"i\"", "trigger t"], &[]),
                want(SyncMode::Rebuild, "2 schema differences", &SOURCE),
            ),
            (
                "a table missing on the target (a schema difference)",
                false,
                only_in_source,
                want(SyncMode::Rebuild, "1 schema differences", &SOURCE),
            ),
            (
                "some tables differ: those, in the source's order",
                false,
                comparison(true, &["public.c", "public.a"], &[], &[]),
                want(
                    SyncMode::Tables,
                    "2 of 3 tables differ, 0 sequences differ",
                    &["public.a", "public.c"],
                ),
            ),
            (
                "tables and a sequence behind",
                false,
                comparison(true, &["public.b"], &[], &[TargetBehind]),
                want(
                    SyncMode::Tables,
                    "1 of 3 tables differ, 1 sequences differ",
                    &["public.b"],
                ),
            ),
            (
                "only a sequence differs, ahead on the target (harmless to check): no table to load",
                false,
                comparison(true, &[], &[], &[TargetAhead]),
                want(
                    SyncMode::Tables,
                    "0 of 3 tables differ, 1 sequences differ",
                    &[],
                ),
            ),
            (
                "a sequence with the same next value in another state: set to the source's",
                false,
                comparison(true, &[], &[], &[StateDiffers]),
                want(
                    SyncMode::Tables,
                    "0 of 3 tables differ, 1 sequences differ",
                    &[],
                ),
            ),
        ];
        for (name, forced, comparison, want) in cases {
            let source = keys(&SOURCE);
            assert_eq!(choose_mode(forced, &comparison, &source), want, "{name}");
        }
    }
}
