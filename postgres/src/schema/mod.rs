//! Schema introspection shared by `check`, `sync` and the tests: which user tables exist and
//! with which columns ([`tables`]), a comparable signature of every schema object
//! ([`signature`]), and sequence values ([`sequences`]).
//!
//! Every query here expects the session set up by [`session_setup`], so that definitions come
//! out schema-qualified and values print the same way on both servers.

pub mod sequences;
pub mod signature;
pub mod tables;

use std::fmt;

use crate::conn::error_text;

pub use sequences::{SequenceState, SequenceStatus};
pub use signature::{diff_signatures, SchemaDifference, SchemaSignature};
pub use tables::{Column, TableInfo};

/// A failed SQL statement, with what we were doing (the server's message and SQLSTATE are
/// included; statements never carry secrets).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {}", error_text(source))]
pub struct SqlError {
    /// What was being done, for the person reading the error.
    pub context: String,
    /// The driver's error.
    #[source]
    pub source: tokio_postgres::Error,
}

/// Attach context to a tokio-postgres result.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T, SqlError>;
}

impl<T> SqlContext<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: impl fmt::Display) -> Result<T, SqlError> {
        self.map_err(|source| SqlError {
            context: context.to_string(),
            source,
        })
    }
}

/// Session settings every comparing or copying connection uses, so that both servers render
/// values and definitions identically: an empty-ish `search_path` (definitions come out
/// schema-qualified), UTC, ISO dates, round-trip floats, hex bytea.
pub const SESSION_SETUP: &str = "SET search_path = pg_catalog; SET TimeZone = 'UTC'; \
     SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; \
     SET bytea_output = 'hex'; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0";

/// Apply [`SESSION_SETUP`] with an `application_name` saying who we are.
pub async fn session_setup(
    client: &tokio_postgres::Client,
    application_name: &str,
) -> Result<(), SqlError> {
    client
        .batch_execute(&format!(
            "{SESSION_SETUP}; SET application_name = {}",
            quote_literal(application_name)
        ))
        .await
        .ctx("setting up the session")
}

/// Quote an SQL identifier (`"my ""odd"" name"`), always, so any name is safe.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote an SQL string literal (standard_conforming_strings is on in every supported version).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `schema.name`, both parts quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// SQL condition selecting user namespaces (`n` is `pg_namespace`): not the system ones,
/// not TOAST or temporary schemas.
pub(crate) const USER_NAMESPACE: &str =
    "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_handles_odd_names() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("My Schema", "t"), "\"My Schema\".\"t\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
