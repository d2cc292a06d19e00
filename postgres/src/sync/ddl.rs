//! DDL the target transaction runs around the copy: clearing the target's schema before a
//! rebuild, and setting foreign keys aside while referenced tables are truncated.

use tokio_postgres::Client;

use crate::schema::{quote_ident, SqlContext, SqlError, USER_NAMESPACE};

/// Drop every user schema of the target (and so every object in it), leaving an empty
/// `public` schema as `CREATE DATABASE` makes it, for the source's DDL to fill. Extensions
/// installed in dropped schemas go with them and come back with the source's DDL.
pub(crate) async fn clear_schemas(target: &Client) -> Result<usize, SqlError> {
    let rows = target
        .query(
            &format!(
                "SELECT n.nspname::text FROM pg_namespace n WHERE {USER_NAMESPACE}
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                                   AND d.objid = n.oid AND d.deptype = 'e')
                 ORDER BY 1"
            ),
            &[],
        )
        .await
        .ctx("listing the target's schemas")?;
    let mut sql = String::new();
    for r in &rows {
        let name: String = r.get(0);
        sql.push_str(&format!("DROP SCHEMA {} CASCADE;\n", quote_ident(&name)));
    }
    // What CREATE DATABASE gives in PostgreSQL 15; pg_dump emits only departures from it.
    sql.push_str(
        "CREATE SCHEMA public AUTHORIZATION pg_database_owner;\n\
         GRANT USAGE ON SCHEMA public TO PUBLIC;\n\
         COMMENT ON SCHEMA public IS 'standard public schema';\n",
    );
    target
        .batch_execute(&sql)
        .await
        .ctx("dropping the target's schemas")?;
    Ok(rows.len())
}

/// A foreign key set aside while the tables it references are reloaded.
#[derive(Debug, Clone)]
pub(crate) struct ForeignKey {
    table: String,
    name: String,
    definition: String,
}

/// Drop the foreign keys that reference any of `tables` (or a partition of them): TRUNCATE
/// refuses to empty a referenced table otherwise. Returns them for [`restore_foreign_keys`].
pub(crate) async fn set_aside_foreign_keys(
    target: &Client,
    tables: &[String],
) -> Result<Vec<ForeignKey>, SqlError> {
    let rows = target
        .query(
            "SELECT k.conrelid::regclass::text, k.conname::text, pg_get_constraintdef(k.oid)
             FROM pg_constraint k
             WHERE k.contype = 'f' AND k.conparentid = 0
               AND (k.confrelid = ANY($1::text[]::regclass[])
                    OR EXISTS (SELECT 1 FROM pg_partition_tree(k.confrelid) p
                               WHERE p.relid = ANY($1::text[]::regclass[])))
             ORDER BY 1, 2",
            &[&tables],
        )
        .await
        .ctx("finding foreign keys that reference the tables to reload")?;
    let fks: Vec<ForeignKey> = rows
        .iter()
        .map(|r| ForeignKey {
            table: r.get(0),
            name: r.get(1),
            definition: r.get(2),
        })
        .collect();
    let sql: String = fks
        .iter()
        .map(|f| {
            format!(
                "ALTER TABLE {} DROP CONSTRAINT {};\n",
                f.table,
                quote_ident(&f.name)
            )
        })
        .collect();
    if !sql.is_empty() {
        target
            .batch_execute(&sql)
            .await
            .ctx("setting foreign keys aside")?;
    }
    Ok(fks)
}

/// Re-create foreign keys set aside; PostgreSQL validates each against the reloaded data
/// (unless it was `NOT VALID` to begin with).
pub(crate) async fn restore_foreign_keys(
    target: &Client,
    fks: &[ForeignKey],
) -> Result<(), SqlError> {
    for f in fks {
        target
            .batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                f.table,
                quote_ident(&f.name),
                f.definition
            ))
            .await
            .ctx(format!("re-creating foreign key {} on {}", f.name, f.table))?;
    }
    Ok(())
}
