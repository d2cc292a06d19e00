//! Connections from libpq connection strings, with passwords from the environment or a
//! passfile, never from the string itself (a connection string travels in arguments and logs),
//! and TLS as libpq's `sslmode` and `sslrootcert` say (see [`sslmode`]; rustls underneath).

mod sslmode;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

pub use sslmode::{quote_value, RootCerts, SslMode, TlsSettings};
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// The rustls connector [`Target::connect`] uses for `settings`, for clients that drive
/// tokio-postgres themselves (the scenario suite's writer). Not for `disable`.
pub fn tls_connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, ConnError> {
    tls::connector(settings)
}

/// Errors while building or opening a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("invalid connection string: {0}")]
    Parse(#[source] tokio_postgres::Error),
    #[error(
        "the connection string carries a password; pass it through PGPASSWORD or a passfile instead"
    )]
    PasswordInString,
    #[error("cannot connect to {target}: {}", error_text(source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("connecting to {target} timed out after {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("TLS: {0}")]
    Tls(String),
}

/// A parsed connection target: the libpq settings plus a printable description without secrets.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    /// How the connection uses TLS (tokio-postgres's own `ssl_mode` is set from this).
    pub tls: TlsSettings,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Target {
    /// Parse a libpq connection string (`host=... port=... dbname=...` or a `postgresql://` URI).
    /// A password inside the string is refused; the password comes from `PGPASSWORD`, then the
    /// passfile (`PGPASSFILE`, else `~/.pgpass`), matched on host, port, database and user.
    ///
    /// `sslmode` (including `verify-ca` and `verify-full`) and `sslrootcert` come from the string,
    /// else `PGSSLMODE` and `PGSSLROOTCERT`, else libpq's default `prefer`.
    pub fn parse(conninfo: &str) -> Result<Self, ConnError> {
        let (rest, tls) = sslmode::split_tls(conninfo)?;
        let mut config: Config = rest.parse().map_err(ConnError::Parse)?;
        if config.get_password().is_some() {
            return Err(ConnError::PasswordInString);
        }
        apply_env_defaults(&mut config);
        if let Some(pw) = password_for(&config) {
            config.password(pw);
        }
        Ok(Self { config, tls })
    }

    /// Wrap an already-built configuration (the controller builds its own with a password
    /// read from a Secret). TLS as `PGSSLMODE`/`PGSSLROOTCERT` say (an unusable value there
    /// counts as unset), else `prefer`; [`Target::with_tls`] sets it explicitly.
    pub fn from_config(config: Config) -> Self {
        Self {
            config,
            tls: TlsSettings::from_env().unwrap_or_default(),
        }
    }

    /// The same target with these TLS settings.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }

    /// `user@host:port/dbname`, never the password.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(host_name)
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.config.get_user().unwrap_or("postgres"),
            host,
            port,
            self.config.get_dbname().unwrap_or("postgres")
        )
    }

    /// The same target on another database of the same server.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(dbname);
        Self {
            config,
            tls: self.tls.clone(),
        }
    }

    /// Open a connection, giving up after `timeout`. The connection task runs on the current
    /// runtime and ends when the client is dropped. Unix-socket connections never use TLS
    /// (as with libpq); TCP ones as [`Target::tls`] says.
    pub async fn connect(&self, timeout: Duration) -> Result<Client, ConnError> {
        use tokio_postgres::config::SslMode as Wire;
        let mut config = self.config.clone();
        config.connect_timeout(timeout);
        let unix_only = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)));
        if unix_only || self.tls.mode == SslMode::Disable {
            config.ssl_mode(Wire::Disable);
            return self.open(config, NoTls, timeout).await;
        }
        config.ssl_mode(match self.tls.mode {
            SslMode::Prefer => Wire::Prefer,
            _ => Wire::Require,
        });
        let tls = tls::connector(&self.tls)?;
        self.open(config, tls, timeout).await
    }

    async fn open<T>(&self, config: Config, tls: T, timeout: Duration) -> Result<Client, ConnError>
    where
        T: MakeTlsConnect<Socket> + Send + 'static,
        T::TlsConnect: Send,
        T::Stream: Send + 'static,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
    {
        let target = self.describe();
        let fut = config.connect(tls);
        let (client, connection) = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => return Err(ConnError::Connect { target, source }),
            Err(_) => {
                return Err(ConnError::Timeout {
                    target,
                    after: timeout,
                })
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
        Ok(client)
    }
}

/// A tokio-postgres error as a person needs it: the server's message and SQLSTATE for database
/// errors (whose `Display` is only "db error"), else the error and its cause.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn host_name(h: &Host) -> String {
    match h {
        Host::Tcp(s) => s.clone(),
        Host::Unix(p) => p.display().to_string(),
    }
}

/// libpq reads PGHOST, PGPORT, PGUSER and PGDATABASE when the string does not say; so do we.
fn apply_env_defaults(config: &mut Config) {
    if config.get_hosts().is_empty() {
        config.host(std::env::var("PGHOST").as_deref().unwrap_or("localhost"));
    }
    if config.get_ports().is_empty() {
        if let Some(port) = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()) {
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        config.user(std::env::var("PGUSER").as_deref().unwrap_or("postgres"));
    }
    if config.get_dbname().is_none() {
        if let Ok(db) = std::env::var("PGDATABASE") {
            config.dbname(&db);
        }
    }
}

fn password_for(config: &Config) -> Option<String> {
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return Some(pw);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = config
        .get_hosts()
        .first()
        .map(host_name)
        .unwrap_or_default();
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or(user);
    passfile_lookup(&text, &host, &port, db, user)
}

/// Find the password for (host, port, database, user) in passfile text, libpq's format:
/// `hostname:port:database:username:password`, `*` matches anything, `\` escapes `:` and `\`.
pub fn passfile_lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let fields = split_passfile_line(line);
            (fields.len() == 5).then_some(fields)
        })
        .find(|f| {
            let m = |pat: &str, val: &str| pat == "*" || pat == val;
            let host_ok = m(&f[0], host) || (f[0] == "localhost" && host.starts_with('/'));
            host_ok && m(&f[1], port) && m(&f[2], db) && m(&f[3], user)
        })
        .map(|f| f[4].clone())
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => {
                if let Some(f) = fields.last_mut() {
                    f.push(c)
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_matches_wildcards_and_escapes() {
        let text = "# comment\nother:5432:*:postgres:nope\n*:5433:app:repl:s\\:ecret\n";
        assert_eq!(
            passfile_lookup(text, "db1", "5433", "app", "repl").as_deref(),
            Some("s:ecret")
        );
        assert_eq!(passfile_lookup(text, "db1", "5432", "app", "repl"), None);
        assert_eq!(
            passfile_lookup(text, "other", "5432", "x", "postgres").as_deref(),
            Some("nope")
        );
    }

    #[test]
    fn password_in_string_is_refused() {
        let err = Target::parse("host=a user=b password=secret").unwrap_err();
        assert!(matches!(err, ConnError::PasswordInString));
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn describe_never_shows_password() {
        let mut cfg = Config::new();
        cfg.host("h")
            .port(6000)
            .user("u")
            .dbname("d")
            .password("hunter2");
        let t = Target::from_config(cfg);
        assert_eq!(t.describe(), "u@h:6000/d");
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn verify_modes_are_read_before_tokio_postgres_parses() {
        let t = Target::parse("host=a user=b sslmode=verify-full sslrootcert=/x/ca.crt").unwrap();
        assert_eq!(t.tls.mode, SslMode::VerifyFull);
        assert_eq!(
            t.tls.root_certs.map(|r| r.label()).as_deref(),
            Some("/x/ca.crt")
        );
        let err = Target::parse("host=a sslmode=bogus").unwrap_err();
        assert!(err.to_string().contains("unsupported sslmode"), "{err}");
    }
}
