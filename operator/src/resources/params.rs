//! Which `spec.postgres.parameters` a user may set. The operator owns the settings that make
//! replication, fencing and failover work; letting a user override them would silently break
//! the safety rules, so such a spec is refused (`Ready=False`), not half-applied.

use crate::crd::ReceiptDbPair;

/// Settings the operator sets itself (on the command line, in `initdb`, or at run time with
/// `ALTER SYSTEM`), and settings that would move files the operator relies on.
pub const OPERATOR_OWNED: &[&str] = &[
    "port",
    "listen_addresses",
    "restart_after_crash",
    "hot_standby",
    "wal_level",
    "wal_log_hints",
    "synchronous_standby_names",
    "synchronous_commit",
    "default_transaction_read_only",
    "primary_conninfo",
    "primary_slot_name",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "external_pid_file",
];

/// Why `parameters` cannot be used, if it cannot: an operator-owned or malformed name, or a
/// value PostgreSQL's command line cannot carry.
pub fn parameters_error(pair: &ReceiptDbPair) -> Option<String> {
    let mut owned = Vec::new();
    for (name, value) in &pair.spec.postgres.parameters {
        let lower = name.to_ascii_lowercase();
        let well_formed = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !well_formed {
            return Some(format!(
                "spec.postgres.parameters: {name:?} is not a PostgreSQL setting name"
            ));
        }
        if value.contains('\0') || value.contains('\n') {
            return Some(format!(
                "spec.postgres.parameters.{name}: the value must be one line without NUL characters"
            ));
        }
        if OPERATOR_OWNED.contains(&lower.as_str()) {
            owned.push(name.clone());
        }
    }
    (!owned.is_empty()).then(|| {
        format!(
            "spec.postgres.parameters sets {} which the operator manages; remove {}",
            owned.join(", "),
            if owned.len() == 1 { "it" } else { "them" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::pair;

    #[test]
    fn operator_owned_and_malformed_names_are_refused() {
        type Case = (
            &'static [(&'static str, &'static str)],
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (&[], None),
            (
                &[
                    ("shared_buffers", "256MB"),
                    ("log_min_duration_statement", "1s"),
                ],
                None,
            ),
            (&[("Port", "5433")], Some("Port")),
            (
                &[("wal_level", "minimal"), ("work_mem", "4MB")],
                Some("wal_level"),
            ),
            (&[("bad name", "x")], Some("not a PostgreSQL setting name")),
            (&[("work_mem", "4MB\n")], Some("one line")),
        ];
        for (params, want) in cases {
            let mut p = pair();
            p.spec.postgres.parameters = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let got = parameters_error(&p);
            match want {
                None => assert_eq!(got, None, "{params:?}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{params:?}: {got:?}"
                ),
            }
        }
    }
}
