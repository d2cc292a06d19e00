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

/// A constraint (a foreign key, or a primary-key/unique/exclusion constraint) set aside while
/// tables are reloaded: the table it is on, its name and its definition.
#[derive(Debug, Clone)]
pub(crate) struct SetAside {
    table: String,
    name: String,
    definition: String,
}

/// Drop the foreign keys that reference any of `tables` (or a partition of them): TRUNCATE
/// refuses to empty a referenced table otherwise. Returns them for [`restore_foreign_keys`].
pub(crate) async fn set_aside_foreign_keys(
    target: &Client,
    tables: &[String],
) -> Result<Vec<SetAside>, SqlError> {
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
    let fks: Vec<SetAside> = rows
        .iter()
        .map(|r| SetAside {
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
    fks: &[SetAside],
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

/// Indexes (and the primary-key, unique and exclusion constraints they implement) of tables
/// about to be reloaded, dropped before the load and rebuilt after it: one sorted build is
/// several times faster than maintaining the index row by row. Indexes attached to a
/// partitioned parent's index, replica-identity and clustered indexes stay in place.
#[derive(Debug, Default)]
pub(crate) struct SetAsideIndexes {
    constraints: Vec<SetAside>,
    indexes: Vec<String>,
}

impl SetAsideIndexes {
    /// How many were set aside.
    pub fn len(&self) -> usize {
        self.constraints.len() + self.indexes.len()
    }
}

/// Drop the indexes of `tables` (call after [`set_aside_foreign_keys`], since foreign keys
/// depend on the unique indexes they reference).
pub(crate) async fn set_aside_indexes(
    target: &Client,
    tables: &[String],
) -> Result<SetAsideIndexes, SqlError> {
    let rows = target
        .query(
            "SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text,
                    pg_get_indexdef(i.indexrelid), k.conname::text, pg_get_constraintdef(k.oid)
             FROM pg_index i
             LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                                       AND k.contype IN ('p', 'u', 'x')
             WHERE i.indrelid = ANY($1::text[]::regclass[])
               AND i.indisvalid AND NOT i.indisreplident AND NOT i.indisclustered
               AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
             ORDER BY 1, 2",
            &[&tables],
        )
        .await
        .ctx("listing indexes of the tables to reload")?;
    let mut out = SetAsideIndexes::default();
    let mut sql = String::new();
    for r in &rows {
        let table: String = r.get(0);
        let index: String = r.get(1);
        match r.get::<_, Option<String>>(3) {
            Some(name) => {
                sql.push_str(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT {};\n",
                    quote_ident(&name)
                ));
                out.constraints.push(SetAside {
                    table,
                    name,
                    definition: r.get(4),
                });
            }
            None => {
                sql.push_str(&format!("DROP INDEX {index};\n"));
                out.indexes.push(r.get(2));
            }
        }
    }
    if !sql.is_empty() {
        target
            .batch_execute(&sql)
            .await
            .ctx("dropping indexes before the reload")?;
    }
    Ok(out)
}

/// Rebuild what [`set_aside_indexes`] dropped.
pub(crate) async fn restore_indexes(
    target: &Client,
    set: &SetAsideIndexes,
) -> Result<(), SqlError> {
    restore_foreign_keys(target, &set.constraints).await?;
    for def in &set.indexes {
        target
            .batch_execute(def)
            .await
            .ctx(format!("rebuilding index: {def}"))?;
    }
    Ok(())
}
