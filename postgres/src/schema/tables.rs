//! The user tables that hold data (ordinary tables and leaf partitions; a partitioned parent
//! holds no rows of its own) and their columns.

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{qualified, SqlContext, SqlError, USER_NAMESPACE};

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    /// Column name.
    pub name: String,
    /// `format_type` of the column's type.
    pub type_name: String,
    /// `GENERATED ALWAYS AS (...) STORED`: computed by the server, never copied.
    pub generated: bool,
    /// Whether COPY BINARY is safe for this column between two servers: built-in types (and
    /// arrays of them), enums (sent as labels) and domains over built-in types. Arrays of user
    /// types and composite types carry type OIDs on the wire, which differ between servers.
    pub binary_safe: bool,
    /// Whether the checksum may hash the value with its type's own hash function (built-in
    /// scalar types whose hash depends on the value only); otherwise the text form is hashed.
    /// Enums are excluded: they hash by OID, which differs between servers.
    pub hash_native: bool,
}

/// One table that stores rows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableInfo {
    /// Schema name (unquoted).
    pub schema: String,
    /// Table name (unquoted).
    pub name: String,
    /// `pg_total_relation_size`, for scheduling the biggest tables first.
    pub bytes: i64,
    /// Columns in `attnum` order.
    pub columns: Vec<Column>,
    /// `pg_class.reltuples`, the planner's row estimate; before the first ANALYZE, an upper
    /// bound from the size (32 bytes a row), as more buckets cost less than too few.
    pub rows_estimate: i64,
    /// The columns of the primary key, or else of a unique index on NOT NULL columns (no
    /// expression, no predicate), in index order; empty when the table has neither. A row-level
    /// re-alignment needs it to name rows.
    pub key: Vec<String>,
}

impl TableInfo {
    /// The quoted `schema.table`.
    pub fn qualified(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// The key used to match a table between two servers and in reports: `schema.table`, both
    /// parts quoted only when needed would be ambiguous, so always quoted.
    pub fn key(&self) -> String {
        self.qualified()
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// List the user tables with storage (relkind `r`), excluding extension members, with their
/// columns, ordered by name.
pub async fn list_tables(client: &impl GenericClient) -> Result<Vec<TableInfo>, SqlError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, pg_total_relation_size(c.oid)::int8,
                (CASE WHEN c.reltuples >= 0 THEN c.reltuples
                      ELSE pg_relation_size(c.oid) / 32 END)::int8,
                (SELECT array_agg(ka.attname::text ORDER BY k.ord)
                   FROM unnest(ki.indkey[0:ki.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)
                   JOIN pg_attribute ka ON ka.attrelid = c.oid AND ka.attnum = k.attnum),
                a.attname::text, format_type(a.atttypid, a.atttypmod),
                a.attgenerated <> '',
                CASE WHEN t.typtype = 'e' THEN true
                     WHEN t.typtype = 'd' THEN t.typbasetype::int8 < 16384
                          AND coalesce((SELECT b.typelem::int8 < 16384 FROM pg_type b
                                        WHERE b.oid = t.typbasetype), false)
                     ELSE t.oid::int8 < 16384 AND t.typelem::int8 < 16384 END,
                t.oid::int8 < 16384 AND t.typname IN ('int2', 'int4', 'int8', 'text', 'varchar',
                    'numeric', 'date', 'timestamp', 'timestamptz', 'bool', 'bytea', 'uuid',
                    'float4', 'float8', 'interval', 'time', 'jsonb', 'oid', 'char', 'name')
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         LEFT JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN LATERAL (
           SELECT i.indkey, i.indnkeyatts FROM pg_index i
           WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
             AND i.indpred IS NULL AND i.indexprs IS NULL
             AND NOT EXISTS (SELECT 1 FROM pg_attribute na
                             WHERE na.attrelid = c.oid AND na.attnum = ANY(i.indkey)
                               AND NOT na.attnotnull)
           ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid LIMIT 1) ki ON true
         WHERE c.relkind = 'r' AND {USER_NAMESPACE}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2, a.attnum"
    );
    let rows = client.query(&sql, &[]).await.ctx("listing user tables")?;
    let mut tables: Vec<TableInfo> = Vec::new();
    for row in rows {
        let schema: String = row.get(0);
        let name: String = row.get(1);
        let same = tables
            .last()
            .is_some_and(|t| t.schema == schema && t.name == name);
        if !same {
            tables.push(TableInfo {
                schema,
                name,
                bytes: row.get(2),
                columns: Vec::new(),
                rows_estimate: row.get(3),
                key: row.get::<_, Option<Vec<String>>>(4).unwrap_or_default(),
            });
        }
        let col: Option<String> = row.get(5);
        if let (Some(col), Some(t)) = (col, tables.last_mut()) {
            t.columns.push(Column {
                name: col,
                type_name: row.get(6),
                generated: row.get(7),
                binary_safe: row.get(8),
                hash_native: row.get(9),
            });
        }
    }
    Ok(tables)
}
