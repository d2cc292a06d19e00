//! Password Secrets the operator generates when the spec references none.
//!
//! They are created once and never regenerated: the passwords are already set inside the data
//! directories. With `storage.reclaimPolicy: Retain` (the default) they carry no owner
//! reference, so deleting the pair keeps them together with the retained volumes; a pair
//! re-created with the same name adopts both and its old passwords still work.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::{labels, owned_meta, OperatorConfig};
use crate::crd::{ReceiptDbPair, ReclaimPolicy, SecretKeyRef};

/// Key of the password in generated Secrets.
pub const PASSWORD_KEY: &str = "password";
/// Length of generated passwords (alphanumeric: about 238 bits).
pub const PASSWORD_LEN: usize = 40;

/// The two roles with passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRole {
    /// The superuser (the operator's probes and Jobs connect as it).
    Superuser,
    /// The replication role standbys stream as.
    Replication,
}

impl PasswordRole {
    /// Both roles.
    pub const ALL: [PasswordRole; 2] = [PasswordRole::Superuser, PasswordRole::Replication];

    fn suffix(self) -> &'static str {
        match self {
            PasswordRole::Superuser => "superuser",
            PasswordRole::Replication => "replication",
        }
    }
}

/// Where a role's password is: the spec's reference, else the generated `<pair>-<role>`.
pub fn password_ref(pair: &ReceiptDbPair, role: PasswordRole) -> SecretKeyRef {
    let spec = match role {
        PasswordRole::Superuser => &pair.spec.postgres.superuser_secret,
        PasswordRole::Replication => &pair.spec.postgres.replication_secret,
    };
    spec.clone().unwrap_or_else(|| SecretKeyRef {
        name: format!("{}-{}", pair.name_any(), role.suffix()),
        key: PASSWORD_KEY.into(),
    })
}

/// Whether the operator generates this role's Secret (the spec references none).
pub fn generated(pair: &ReceiptDbPair, role: PasswordRole) -> bool {
    match role {
        PasswordRole::Superuser => pair.spec.postgres.superuser_secret.is_none(),
        PasswordRole::Replication => pair.spec.postgres.replication_secret.is_none(),
    }
}

/// A generated password Secret holding `password` (the caller generates it, so this stays
/// pure; see [`random_password`]).
pub fn password_secret(
    pair: &ReceiptDbPair,
    role: PasswordRole,
    password: &str,
    _cfg: &OperatorConfig,
) -> Secret {
    let r = password_ref(pair, role);
    let mut meta = owned_meta(pair, r.name, labels::common(pair, "credentials"));
    if pair.spec.storage.reclaim_policy == ReclaimPolicy::Retain {
        meta.owner_references = None;
    }
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            r.key,
            ByteString(password.as_bytes().to_vec()),
        )])),
        immutable: Some(true),
        ..Secret::default()
    }
}

/// A fresh random alphanumeric password of [`PASSWORD_LEN`] characters from the OS-seeded
/// thread RNG.
pub fn random_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Read the password at `r` from a Secret, when present and UTF-8.
pub fn password_in(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::pair;

    #[test]
    fn names_keys_and_ownership() {
        let mut p = pair();
        let s = password_secret(
            &p,
            PasswordRole::Superuser,
            "pw",
            &OperatorConfig::default(),
        );
        assert_eq!(s.metadata.name.as_deref(), Some("orca-superuser"));
        assert_eq!(password_in(&s, "password").as_deref(), Some("pw"));
        assert_eq!(
            s.metadata.owner_references, None,
            "kept with retained volumes"
        );
        assert_eq!(s.metadata.labels.unwrap()[labels::PAIR], "orca");
        p.spec.storage.reclaim_policy = ReclaimPolicy::Delete;
        let s = password_secret(
            &p,
            PasswordRole::Replication,
            "pw",
            &OperatorConfig::default(),
        );
        assert_eq!(s.metadata.name.as_deref(), Some("orca-replication"));
        assert_eq!(
            s.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
    }

    #[test]
    fn referenced_secrets_are_not_generated() {
        let mut p = pair();
        p.spec.postgres.superuser_secret = Some(SecretKeyRef {
            name: "mine".into(),
            key: "pw".into(),
        });
        assert!(!generated(&p, PasswordRole::Superuser));
        assert!(generated(&p, PasswordRole::Replication));
        let r = password_ref(&p, PasswordRole::Superuser);
        assert_eq!((r.name.as_str(), r.key.as_str()), ("mine", "pw"));
    }

    #[test]
    fn random_passwords_are_long_and_different() {
        let a = random_password();
        let b = random_password();
        assert!(a.len() >= 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
