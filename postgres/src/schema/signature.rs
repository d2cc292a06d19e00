//! A comparable signature of a database's schema: one `kind name` key per object, mapped to
//! its definition as the server renders it (`pg_get_*def`, `format_type`), so that two
//! databases built from the same DDL compare equal whatever their OIDs or creation history.
//!
//! Covered: schemas, tables (columns with types, defaults, identity, generated expressions,
//! collations, partition keys and bounds, inheritance, persistence, owner, privileges), views
//! and materialized views, sequences (parameters and ownership; values are compared separately
//! in [`super::sequences`]), indexes, table constraints (primary, unique, check, foreign,
//! exclusion), triggers (with their enabled state), functions and procedures, enums, domains,
//! composite and range types, extensions. Not covered: comments, rules other than views,
//! policies, publications, large objects, event triggers.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{SqlContext, SqlError, USER_NAMESPACE};

/// Object key (`table "s"."t"`, `index "s"."i"`, ...) to definition.
pub type SchemaSignature = BTreeMap<String, String>;

/// One object that differs between two signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaDifference {
    /// The object's key, e.g. `table "public"."receipts"`.
    pub object: String,
    /// The source's definition, absent when the object exists only on the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The target's definition, absent when the object exists only on the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Objects that are not extension members (`cls` is the catalog, `o` the object's oid).
fn not_ext(cls: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{cls}'::regclass \
         AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

fn signature_sql() -> String {
    let rel_ext = not_ext("pg_class", "c.oid");
    let q = "quote_ident(n.nspname) || '.' || quote_ident(c.relname)";
    let parts = [
        // schemas
        format!(
            "SELECT 'schema ' || quote_ident(n.nspname), 'owner=' || pg_get_userbyid(n.nspowner)
                    || ' acl=' || coalesce(n.nspacl::text, '')
             FROM pg_namespace n WHERE {USER_NAMESPACE} AND {}",
            not_ext("pg_namespace", "n.oid")
        ),
        // tables, partitioned tables, foreign tables
        format!(
            "SELECT 'table ' || {q},
                    concat_ws(' ', 'kind=' || c.relkind::text, 'persistence=' || c.relpersistence::text,
                      'owner=' || pg_get_userbyid(c.relowner), 'acl=' || coalesce(c.relacl::text, ''),
                      'partkey=' || pg_get_partkeydef(c.oid),
                      'bound=' || pg_get_expr(c.relpartbound, c.oid),
                      'parents=' || (SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno)
                                     FROM pg_inherits i WHERE i.inhrelid = c.oid),
                      'columns=(' || (SELECT string_agg(
                          format('%I %s%s%s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                            CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                            CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END,
                            CASE WHEN a.attgenerated <> '' THEN ' GENERATED ' || pg_get_expr(d.adbin, d.adrelid)
                                 WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)
                                 ELSE '' END,
                            CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                                 THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END,
                            CASE WHEN a.attislocal THEN '' ELSE ' INHERITED' END),
                          ', ' ORDER BY a.attnum)
                        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ')')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'f') AND {USER_NAMESPACE} AND {rel_ext}"
        ),
        // views and materialized views
        format!(
            "SELECT CASE c.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || {q},
                    pg_get_viewdef(c.oid) || ' owner=' || pg_get_userbyid(c.relowner)
                    || ' acl=' || coalesce(c.relacl::text, '')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('v', 'm') AND {USER_NAMESPACE} AND {rel_ext}"
        ),
        // sequences (parameters and owner column; values are compared elsewhere)
        format!(
            "SELECT 'sequence ' || {q},
                    format('%s start %s increment %s min %s max %s cache %s%s owned_by=%s',
                      format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                      s.seqcache, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END,
                      (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname) || ':' || d.deptype::text
                       FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                       WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_sequence s ON s.seqrelid = c.oid
             WHERE c.relkind = 'S' AND {USER_NAMESPACE} AND {rel_ext}"
        ),
        // indexes
        format!(
            "SELECT 'index ' || {q}, pg_get_indexdef(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('i', 'I') AND {USER_NAMESPACE} AND {rel_ext}"
        ),
        // table constraints
        format!(
            "SELECT 'constraint ' || {q} || '.' || quote_ident(k.conname),
                    pg_get_constraintdef(k.oid) || CASE WHEN k.conislocal THEN '' ELSE ' INHERITED' END
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NAMESPACE} AND {rel_ext}"
        ),
        // triggers
        format!(
            "SELECT 'trigger ' || {q} || '.' || quote_ident(g.tgname),
                    pg_get_triggerdef(g.oid) || ' enabled=' || g.tgenabled::text
             FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE NOT g.tgisinternal AND {USER_NAMESPACE} AND {rel_ext}"
        ),
        // functions, procedures, aggregates
        format!(
            "SELECT 'function ' || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
                    || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                    CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid)
                         ELSE p.prokind::text || ' returns ' || pg_get_function_result(p.oid) END
                    || ' owner=' || pg_get_userbyid(p.proowner) || ' acl=' || coalesce(p.proacl::text, '')
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE {USER_NAMESPACE} AND {}",
            not_ext("pg_proc", "p.oid")
        ),
        // enums, domains, composite and range types
        format!(
            "SELECT 'type ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname),
                    CASE t.typtype
                      WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                  ORDER BY e.enumsortorder)
                                                FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
                      WHEN 'd' THEN concat_ws(' ', 'domain', format_type(t.typbasetype, t.typtypmod),
                                   CASE WHEN t.typnotnull THEN 'NOT NULL' END,
                                   'DEFAULT ' || t.typdefault,
                                   (SELECT string_agg(quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid),
                                                      ', ' ORDER BY k.conname)
                                    FROM pg_constraint k WHERE k.contypid = t.oid))
                      WHEN 'c' THEN 'composite (' || (SELECT string_agg(quote_ident(a.attname) || ' '
                                                        || format_type(a.atttypid, a.atttypmod), ', '
                                                        ORDER BY a.attnum)
                                                      FROM pg_attribute a WHERE a.attrelid = t.typrelid
                                                        AND a.attnum > 0 AND NOT a.attisdropped) || ')'
                      WHEN 'r' THEN 'range of ' || (SELECT format_type(r.rngsubtype, NULL)
                                                    FROM pg_range r WHERE r.rngtypid = t.oid)
                      ELSE 'type ' || t.typtype::text END
                    || ' owner=' || pg_get_userbyid(t.typowner)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE t.typtype IN ('e', 'd', 'c', 'r', 'b')
               AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
               AND NOT (t.typtype = 'b' AND t.typelem <> 0
                        AND EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid))
               AND {USER_NAMESPACE} AND {}",
            not_ext("pg_type", "t.oid")
        ),
        // extensions
        "SELECT 'extension ' || quote_ident(x.extname),
                x.extversion || ' schema=' || x.extnamespace::regnamespace::text
         FROM pg_extension x"
            .to_string(),
    ];
    parts.join("\nUNION ALL\n")
}

/// Read the schema signature of the database `client` is connected to.
pub async fn read_signature(client: &impl GenericClient) -> Result<SchemaSignature, SqlError> {
    let rows = client
        .query(&signature_sql(), &[])
        .await
        .ctx("reading the schema signature")?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let key: String = r.get(0);
            let def: Option<String> = r.get(1);
            (key, def.unwrap_or_default())
        })
        .collect())
}

/// The objects whose definitions differ or that exist on one side only, in key order.
pub fn diff_signatures(
    source: &SchemaSignature,
    target: &SchemaSignature,
) -> Vec<SchemaDifference> {
    let mut out = Vec::new();
    for (key, def) in source {
        match target.get(key) {
            Some(t) if t == def => {}
            other => out.push(SchemaDifference {
                object: key.clone(),
                source: Some(def.clone()),
                target: other.cloned(),
            }),
        }
    }
    for (key, def) in target {
        if !source.contains_key(key) {
            out.push(SchemaDifference {
                object: key.clone(),
                source: None,
                target: Some(def.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_reports_both_sides_and_changes() {
        let s: SchemaSignature = [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]
        .into();
        let t: SchemaSignature = [
            ("b".to_string(), "3".to_string()),
            ("c".to_string(), "4".to_string()),
        ]
        .into();
        let d = diff_signatures(&s, &t);
        let keys: Vec<_> = d.iter().map(|x| x.object.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(d[0].target, None);
        assert_eq!(d[2].source, None);
        assert!(diff_signatures(&s, &s).is_empty());
    }
}
