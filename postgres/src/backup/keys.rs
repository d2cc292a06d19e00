//! age recipients (for `backup`) and identities (for `restore`), read from files the operator
//! mounts from Secrets.

use std::path::Path;

/// A key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A line is not an age recipient.
    #[error("{path} line {line}: not an age X25519 recipient (age1...)")]
    BadRecipient { path: String, line: usize },
    /// No recipient in the file.
    #[error("{path} holds no recipient")]
    NoRecipients { path: String },
    /// The identity file is not usable.
    #[error("{path}: not an age identity file: {reason}")]
    BadIdentity { path: String, reason: String },
}

/// Read age X25519 recipients, one per line (`#` comments and blank lines allowed), the
/// format of `age -R`.
pub fn read_recipients(path: &Path) -> Result<Vec<age::x25519::Recipient>, KeyError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: p.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = line
            .parse::<age::x25519::Recipient>()
            .map_err(|_| KeyError::BadRecipient {
                path: p.clone(),
                line: i + 1,
            })?;
        out.push(r);
    }
    if out.is_empty() {
        return Err(KeyError::NoRecipients { path: p });
    }
    Ok(out)
}

/// Read an age identity file (the format of `age -i` / `age-keygen`).
pub fn read_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, KeyError> {
    let p = path.display().to_string();
    let file = age::IdentityFile::from_file(p.clone()).map_err(|source| KeyError::Read {
        path: p.clone(),
        source,
    })?;
    let ids = file.into_identities().map_err(|e| KeyError::BadIdentity {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    if ids.is_empty() {
        return Err(KeyError::BadIdentity {
            path: p,
            reason: "no identity in it".into(),
        });
    }
    Ok(ids)
}
