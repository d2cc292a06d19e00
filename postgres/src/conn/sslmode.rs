//! libpq's `sslmode` and `sslrootcert`, which tokio-postgres does not fully know: its parser
//! accepts only `disable`, `prefer` and `require` and refuses `sslrootcert`. They are taken out of
//! the connection string here, before tokio-postgres parses the rest, and fall back to
//! `PGSSLMODE` / `PGSSLROOTCERT` like libpq.

use std::path::PathBuf;
use std::sync::Arc;

use super::ConnError;

/// libpq's `sslmode` (`allow` is not supported: it tries plain text first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, without checking the certificate (libpq's default).
    #[default]
    Prefer,
    /// TLS, without checking the certificate (unless a CA is given: then as `verify-ca`).
    Require,
    /// TLS with a certificate signed by the given CA, for any host name.
    VerifyCa,
    /// TLS with a certificate signed by the given CA and valid for the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Parse a libpq `sslmode` value.
    pub fn parse(value: &str) -> Result<Self, ConnError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(ConnError::Tls(format!(
                    "unsupported sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate chain is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// The CA certificates a verifying connection trusts.
#[derive(Clone)]
pub enum RootCerts {
    /// A PEM file, read at every connection (a rotated file is picked up).
    File(PathBuf),
    /// PEM held in memory (the operator reads the pair's CA from a Secret); `label` names it in
    /// error messages.
    Pem { label: String, pem: Arc<Vec<u8>> },
}

impl RootCerts {
    /// How error messages name these certificates: the file, or the label.
    pub fn label(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Pem { label, .. } => label.clone(),
        }
    }
}

impl std::fmt::Debug for RootCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootCerts({})", self.label())
    }
}

/// How a connection uses TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// The CA to verify against; for `verify-ca`/`verify-full` without one, libpq's default
    /// `~/.postgresql/root.crt` is used when it exists.
    pub root_certs: Option<RootCerts>,
}

impl TlsSettings {
    /// Verify the server's certificate and host name against `root_certs`.
    pub fn verify_full(root_certs: RootCerts) -> Self {
        Self {
            mode: SslMode::VerifyFull,
            root_certs: Some(root_certs),
        }
    }

    /// `PGSSLMODE` and `PGSSLROOTCERT`, else libpq's defaults (`prefer`, no CA).
    pub fn from_env() -> Result<Self, ConnError> {
        Self::from_values(
            std::env::var("PGSSLMODE").ok().as_deref(),
            std::env::var_os("PGSSLROOTCERT").map(PathBuf::from),
        )
    }

    fn from_values(mode: Option<&str>, root: Option<PathBuf>) -> Result<Self, ConnError> {
        let mut mode = match mode.filter(|m| !m.is_empty()) {
            Some(m) => SslMode::parse(m)?,
            None => SslMode::Prefer,
        };
        let root_certs = root
            .filter(|p| !p.as_os_str().is_empty())
            .map(RootCerts::File);
        // libpq: "require" with a root certificate given behaves like "verify-ca".
        if mode == SslMode::Require && root_certs.is_some() {
            mode = SslMode::VerifyCa;
        }
        Ok(Self { mode, root_certs })
    }

    /// The CA to verify against: the configured one, else `~/.postgresql/root.crt` when it
    /// exists (libpq's default), else an error naming the settings to use.
    pub(crate) fn resolved_root_certs(&self) -> Result<RootCerts, ConnError> {
        if let Some(r) = &self.root_certs {
            return Ok(r.clone());
        }
        let default = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
            .filter(|p| p.exists());
        default.map(RootCerts::File).ok_or_else(|| {
            ConnError::Tls(format!(
                "sslmode={} needs the CA certificate: set sslrootcert or PGSSLROOTCERT",
                self.mode.as_str()
            ))
        })
    }

    /// ` sslmode=... sslrootcert=...` for a libpq connection string handed to a libpq program
    /// (pg_basebackup, pg_rewind), so it connects as this target does. Empty for the default.
    pub fn libpq_params(&self) -> String {
        let mut out = String::new();
        if self.mode != SslMode::Prefer {
            out.push_str(" sslmode=");
            out.push_str(self.mode.as_str());
        }
        if let Some(RootCerts::File(p)) = &self.root_certs {
            out.push_str(" sslrootcert=");
            out.push_str(&quote_value(&p.display().to_string()));
        }
        out
    }
}

/// Take `sslmode` and `sslrootcert` out of a connection string (key/value or URI form),
/// returning the rest for tokio-postgres and the TLS settings (the environment's where the
/// string says nothing).
pub(crate) fn split_tls(conninfo: &str) -> Result<(String, TlsSettings), ConnError> {
    let (rest, mode, root) = if is_uri(conninfo) {
        split_uri(conninfo)
    } else {
        split_key_values(conninfo)?
    };
    let mode = mode.or_else(|| std::env::var("PGSSLMODE").ok());
    let root = root
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PGSSLROOTCERT").map(PathBuf::from));
    Ok((rest, TlsSettings::from_values(mode.as_deref(), root)?))
}

fn is_uri(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}

type Split = (String, Option<String>, Option<String>);

/// URI form: `sslmode` and `sslrootcert` are query parameters (percent-encoded).
fn split_uri(uri: &str) -> Split {
    let Some((base, query)) = uri.split_once('?') else {
        return (uri.to_string(), None, None);
    };
    let (mut mode, mut root) = (None, None);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|param| {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            match percent_decode(k).as_str() {
                "sslmode" => mode = Some(percent_decode(v)),
                "sslrootcert" => root = Some(percent_decode(v)),
                _ => return true,
            }
            false
        })
        .collect();
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, root)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Key/value form: `key = value` pairs, values optionally single-quoted, `\` escaping.
fn split_key_values(s: &str) -> Result<Split, ConnError> {
    let bad = |why: &str| ConnError::Tls(format!("cannot read the connection string: {why}"));
    let mut chars = s.chars().peekable();
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("expected = after {key:?}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated quoted value")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(format!("{key}={}", quote_value(&value))),
        }
    }
    Ok((kept.join(" "), mode, root))
}

/// A libpq connection-string value, quoted when it needs to be.
pub fn quote_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_lose_only_the_tls_keys() {
        let (rest, mode, root) = split_key_values(
            "host=db1  sslmode = verify-full port=5433 sslrootcert='/etc/my ca.crt' application_name='it\\'s'",
        )
        .unwrap();
        assert_eq!(rest, "host=db1 port=5433 application_name='it\\'s'");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/my ca.crt"));
        assert!(split_key_values("host").is_err());
        assert!(split_key_values("host='x").is_err());
    }

    #[test]
    fn uri_query_loses_only_the_tls_keys() {
        let (rest, mode, root) = split_uri(
            "postgresql://u@db1:5433/app?sslmode=verify-ca&application_name=x&sslrootcert=%2Fca.crt",
        );
        assert_eq!(rest, "postgresql://u@db1:5433/app?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/ca.crt"));
        let (rest, mode, _) = split_uri("postgres://db1/app?sslmode=disable");
        assert_eq!(
            (rest.as_str(), mode.as_deref()),
            ("postgres://db1/app", Some("disable"))
        );
    }

    #[test]
    fn modes_parse_and_require_with_a_ca_verifies_it() {
        for m in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslMode::parse(m).unwrap().as_str(), m);
        }
        assert!(SslMode::parse("allow").is_err());
        let t = TlsSettings::from_values(Some("require"), Some("/ca.crt".into())).unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
        let t = TlsSettings::from_values(None, None).unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.libpq_params(), "");
        let t = TlsSettings::verify_full(RootCerts::File("/a b/ca.crt".into()));
        assert_eq!(
            t.libpq_params(),
            " sslmode=verify-full sslrootcert='/a b/ca.crt'"
        );
    }
}
