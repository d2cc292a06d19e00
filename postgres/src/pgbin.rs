//! Locating PostgreSQL's programs and running them as the right user.

use std::path::PathBuf;
use std::process::Command;

/// Directory holding PostgreSQL's programs: `$PG_BINDIR`, else Debian's PostgreSQL 15, else
/// whatever `pg_config --bindir` would say is left to PATH lookup (an empty path).
pub fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("postgres").exists() {
        return debian;
    }
    PathBuf::new()
}

/// Full path of one PostgreSQL program (`initdb`, `pg_ctl`, `pg_dump`, ...).
pub fn program(name: &str) -> PathBuf {
    let dir = bindir();
    if dir.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// Whether this process runs as root. `initdb` and `postgres` refuse root, so server-side
/// programs are then run as the `postgres` user (only ever the case in tests and the local
/// scenario suite: in a pod the member image runs as a non-root user).
pub fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A command for a server-side PostgreSQL program (initdb, pg_ctl, postgres, pg_rewind,
/// pg_basebackup): run directly, or through `runuser -u postgres --` when this process is root.
/// The working directory is set to `/` so the `postgres` user can always read it.
pub fn server_command(name: &str) -> Command {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program(name));
        c
    } else {
        Command::new(program(name))
    };
    cmd.current_dir("/");
    cmd
}

/// Make `path` owned by the `postgres` user when running as root, so server programs started
/// through [`server_command`] can use it. A no-op for non-root.
pub fn hand_to_postgres(path: &std::path::Path) -> std::io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other("no `postgres` user on this machine"))?;
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(std::io::Error::other)
}

/// A command for a client program (`pg_dump`, `pg_restore`, `psql`) aimed at `target`: host,
/// port, user, database and TLS (`PGSSLMODE`, `PGSSLROOTCERT`) go in `PG*` environment
/// variables and the password, when the
/// target has one, in `PGPASSWORD`, never in arguments (which every local user can read in
/// `ps`).
pub fn client_command_std(name: &str, target: &crate::conn::Target) -> Command {
    use tokio_postgres::config::Host;
    let mut cmd = Command::new(program(name));
    let cfg = &target.config;
    if let Some(host) = cfg.get_hosts().first() {
        match host {
            Host::Tcp(h) => cmd.env("PGHOST", h),
            Host::Unix(p) => cmd.env("PGHOST", p),
        };
    }
    if let Some(port) = cfg.get_ports().first() {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(user) = cfg.get_user() {
        cmd.env("PGUSER", user);
    }
    if let Some(db) = cfg.get_dbname() {
        cmd.env("PGDATABASE", db);
    }
    if let Some(pw) = cfg.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(pw).as_ref());
    }
    // TLS as the target says. A CA held only in memory cannot be handed to a libpq program:
    // it then uses PGSSLROOTCERT from this process's environment, if any.
    cmd.env("PGSSLMODE", target.tls.mode.as_str());
    if let Some(crate::conn::RootCerts::File(ca)) = &target.tls.root_certs {
        cmd.env("PGSSLROOTCERT", ca);
    }
    cmd
}

/// [`client_command_std`] as a tokio command, killed if dropped.
pub fn client_command(name: &str, target: &crate::conn::Target) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(client_command_std(name, target));
    cmd.kill_on_drop(true);
    cmd
}
