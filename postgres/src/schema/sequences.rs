//! Sequence values. A sequence is "behind" on the target when the target would hand out a
//! value the source already handed out (duplicate keys after a failover): that is a
//! difference. "Ahead" is harmless (sequences have gaps by design, and a hot standby reports
//! values up to 32 ahead because nextval WAL-logs ahead), so it is reported but not counted;
//! so is the same next value held in another state (`last_value`/`is_called`, e.g. 4242 called
//! against 4249 not called with increment 7), which `SELECT last_value` or `pg_dump` would show
//! as a difference. `sync` reproduces the source's state exactly.

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{qualified, quote_literal, SqlContext, SqlError, USER_NAMESPACE};

/// One sequence's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SequenceState {
    /// Quoted `schema.sequence`.
    pub name: String,
    /// `last_value` of the sequence relation.
    pub last_value: i64,
    /// Whether `last_value` was handed out (`false` right after creation or a RESTART).
    pub is_called: bool,
    /// Increment (negative for descending sequences).
    pub increment: i64,
}

impl SequenceState {
    /// The value the next `nextval` returns (ignoring max/cycle).
    pub fn next_value(&self) -> i64 {
        if self.is_called {
            self.last_value.saturating_add(self.increment)
        } else {
            self.last_value
        }
    }

    /// Same `last_value` and `is_called`: what `SELECT * FROM seq` and `pg_dump` show.
    pub fn same_state(&self, other: &SequenceState) -> bool {
        self.last_value == other.last_value && self.is_called == other.is_called
    }
}

/// How a target sequence relates to the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SequenceStatus {
    /// Same state: same `last_value` and `is_called`.
    Equal,
    /// The same next value in another state (`last_value`/`is_called`): harmless to clients,
    /// visible to a by-hand comparison.
    StateDiffers,
    /// The target would skip values: harmless.
    TargetAhead,
    /// The target would hand out values the source already used: a difference.
    TargetBehind,
    /// Only on one side (also reported as a schema difference).
    Missing,
}

/// Classify a target sequence against the source's.
pub fn classify(source: &SequenceState, target: Option<&SequenceState>) -> SequenceStatus {
    let Some(target) = target else {
        return SequenceStatus::Missing;
    };
    let (s, t) = (source.next_value(), target.next_value());
    if source.same_state(target) {
        SequenceStatus::Equal
    } else if s == t {
        SequenceStatus::StateDiffers
    } else if (source.increment > 0) == (t > s) {
        SequenceStatus::TargetAhead
    } else {
        SequenceStatus::TargetBehind
    }
}

/// Read every user sequence's value (one statement, so one snapshot in a repeatable-read
/// transaction).
pub async fn read_sequences(client: &impl GenericClient) -> Result<Vec<SequenceState>, SqlError> {
    let list = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, s.seqincrement
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_sequence s ON s.seqrelid = c.oid
                 WHERE c.relkind = 'S' AND {USER_NAMESPACE}
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')
                 ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .ctx("listing sequences")?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    let mut increments = Vec::new();
    for row in &list {
        let name = qualified(row.get(0), row.get(1));
        parts.push(format!(
            "SELECT {} AS name, last_value, is_called FROM {name}",
            quote_literal(&name)
        ));
        increments.push(row.get::<_, i64>(2));
    }
    let rows = client
        .query(&parts.join(" UNION ALL "), &[])
        .await
        .ctx("reading sequence values")?;
    Ok(rows
        .into_iter()
        .zip(increments)
        .map(|(r, increment)| SequenceState {
            name: r.get(0),
            last_value: r.get(1),
            is_called: r.get(2),
            increment,
        })
        .collect())
}

/// SQL that gives the target's sequence the source's exact state (`last_value` and
/// `is_called`), transactionally. `setval` alone is never rolled back; but `ALTER SEQUENCE ...
/// RESTART` gives the sequence a new relation file within the transaction, and a `setval`
/// after it writes to that file, which a rollback discards with the rest. (`RESTART WITH` alone
/// leaves `is_called` false: the next value right, the state not.)
pub fn restart_sql(source: &SequenceState) -> String {
    format!(
        "ALTER SEQUENCE {name} RESTART WITH {next}; SELECT pg_catalog.setval({literal}, {last}, {called})",
        name = source.name,
        next = source.last_value,
        literal = quote_literal(&source.name),
        last = source.last_value,
        called = source.is_called,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(last: i64, called: bool, inc: i64) -> SequenceState {
        SequenceState {
            name: "s".into(),
            last_value: last,
            is_called: called,
            increment: inc,
        }
    }

    #[test]
    fn ahead_is_harmless_behind_is_a_difference() {
        assert_eq!(
            classify(&seq(10, true, 1), Some(&seq(10, true, 1))),
            SequenceStatus::Equal
        );
        assert_eq!(
            classify(&seq(10, true, 1), Some(&seq(11, false, 1))),
            SequenceStatus::StateDiffers
        );
        assert_eq!(
            classify(&seq(4242, true, 7), Some(&seq(4249, false, 7))),
            SequenceStatus::StateDiffers
        );
        assert_eq!(
            classify(&seq(10, true, 1), Some(&seq(42, true, 1))),
            SequenceStatus::TargetAhead
        );
        assert_eq!(
            classify(&seq(10, true, 1), Some(&seq(3, true, 1))),
            SequenceStatus::TargetBehind
        );
        assert_eq!(
            classify(&seq(-10, true, -1), Some(&seq(-3, true, -1))),
            SequenceStatus::TargetBehind
        );
        assert_eq!(classify(&seq(1, true, 1), None), SequenceStatus::Missing);
    }
}
