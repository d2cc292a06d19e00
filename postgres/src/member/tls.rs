//! A member's TLS: the certificate files its server presents and trusts, the settings that
//! turn TLS on, and `hostssl`-only authentication.
//!
//! The paths are where the *server* finds the files (in a member pod, the mounted server
//! Secret), not where the Job writing the configuration runs. PostgreSQL reads them at start and
//! again on every reload (SIGHUP, `pg_reload_conf()`), so a rotated certificate is picked up
//! without a restart. It refuses a key file others can read: owned by the server's user it must
//! be 0600, owned by root it may be 0640 (what a Secret volume with `defaultMode: 0640` and the
//! pod's `fsGroup` gives).

use std::path::{Path, PathBuf};

use super::conf::edit_settings;
use super::MemberError;

/// File names in a Kubernetes TLS Secret (`kubernetes.io/tls` with `ca.crt`).
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const CA_FILE: &str = "ca.crt";

/// The certificate files of a member's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberTls {
    /// The server certificate (PEM), valid for every name clients and the other member use.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// The pair's CA: the standby verifies its primary against it (`sslmode=verify-full`).
    pub ca_file: PathBuf,
}

impl MemberTls {
    /// `tls.crt`, `tls.key` and `ca.crt` in `dir` (a mounted TLS Secret).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert_file: dir.join(CERT_FILE),
            key_file: dir.join(KEY_FILE),
            ca_file: dir.join(CA_FILE),
        }
    }

    /// The `postgresql.conf` settings that turn TLS on with these files.
    pub(crate) fn settings(&self) -> Vec<(String, String)> {
        let p = |p: &Path| p.display().to_string();
        vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), p(&self.cert_file)),
            ("ssl_key_file".into(), p(&self.key_file)),
            ("ssl_ca_file".into(), p(&self.ca_file)),
        ]
    }

    /// The `primary_conninfo` parameters of a standby verifying its primary.
    pub(crate) fn standby_conninfo(&self) -> [(&'static str, String); 2] {
        [
            ("sslmode", "verify-full".into()),
            ("sslrootcert", self.ca_file.display().to_string()),
        ]
    }
}

/// Write TLS into a data directory: the ssl settings in `postgresql.conf` and a `hostssl`-only
/// `pg_hba.conf`. Used by initdb, and by clone and rejoin after a copy (so a standby's files
/// are this member's even when the source's differ).
pub(crate) fn apply(pgdata: &Path, tls: &MemberTls) -> Result<(), MemberError> {
    edit_settings(&pgdata.join("postgresql.conf"), &[], &tls.settings(), true)?;
    super::conf::write_private(
        &pgdata.join("pg_hba.conf"),
        super::conf::pg_hba(true).as_bytes(),
    )
}
