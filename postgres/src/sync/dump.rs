//! The source's DDL, from `pg_dump --schema-only` at the sync's snapshot, split into the
//! pre-data section (types, tables, functions, views, sequences) and the post-data section
//! (indexes, constraints, foreign keys, triggers), so data loads between them, as pg_restore
//! does: indexes are built once, foreign keys are validated once, triggers never fire.

use crate::conn::Target;
use crate::pgbin::client_command;

/// `pg_dump` failed.
#[derive(Debug, thiserror::Error)]
#[error("pg_dump --schema-only failed: {0}")]
pub struct DumpError(pub String);

/// A pg_dump section.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Section {
    PreData,
    PostData,
}

/// Dump one section of the source's schema at `snapshot` (exported by a transaction that must
/// stay open meanwhile), ready to run over the simple query protocol inside a transaction.
pub(crate) async fn schema_section(
    source: &Target,
    snapshot: &str,
    section: Section,
) -> Result<String, DumpError> {
    let section = match section {
        Section::PreData => "pre-data",
        Section::PostData => "post-data",
    };
    let out = client_command("pg_dump", source)
        .args(["--schema-only", "--no-publications", "--no-subscriptions"])
        .arg(format!("--section={section}"))
        .arg(format!("--snapshot={snapshot}"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| DumpError(format!("cannot run pg_dump: {e}")))?;
    if !out.status.success() {
        return Err(DumpError(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| DumpError("pg_dump printed something that is not UTF-8".into()))?;
    Ok(for_transaction(&text))
}

/// Make a plain pg_dump script runnable by a client library inside our transaction: drop psql
/// meta-commands (`\restrict`, `\connect`) and `SET client_encoding` (the driver speaks UTF-8).
pub(crate) fn for_transaction(script: &str) -> String {
    script
        .lines()
        .filter(|l| {
            !(l.starts_with("\\restrict ")
                || l.starts_with("\\unrestrict ")
                || l.starts_with("\\connect ")
                || l.starts_with("SET client_encoding"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn meta_commands_are_dropped() {
        let s = "\\restrict abc\nSET client_encoding = 'UTF8';\nCREATE TABLE t (a int);\n\\unrestrict abc";
        assert_eq!(super::for_transaction(s), "CREATE TABLE t (a int);");
    }
}
