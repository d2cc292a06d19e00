//! Editing a data directory's configuration: settings files, `pg_hba.conf`, the standby's
//! `standby.signal`, `primary_conninfo` and its replication passfile.
//!
//! Where things go: the port in `postgresql.conf` (pg_basebackup and pg_rewind copy the
//! source's, port included, so it is rewritten after every copy); `primary_conninfo` and
//! `primary_slot_name` in `postgresql.auto.conf`, as `docs/job-interface.md` says. The
//! replication password is in a 0600 passfile *beside* the data directory
//! (`<pgdata>.replication.pgpass`), not inside it: pg_rewind would overwrite it and a clone
//! fallback moves the data directory aside, but the passfile outlives both.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::tls::MemberTls;
use super::MemberError;
use crate::pgbin::hand_to_postgres;

/// Settings `initdb` writes into every member's `postgresql.conf`, before the user's `--set`
/// values (later lines win). Why each:
/// - `wal_level=replica`, `max_wal_senders`, `max_replication_slots`, `hot_standby`: physical
///   streaming replication to a readable standby.
/// - `wal_log_hints=on` (besides data checksums): pg_rewind needs one of them.
/// - `wal_keep_size`: WAL kept for a rewind of a former primary, which has no slot on the new one.
/// - `hot_standby_feedback`: queries on the standby do not get cancelled by vacuum on the primary.
/// - `restart_after_crash=off`: the operator, not PostgreSQL, decides restarts after a crash.
/// - `password_encryption=scram-sha-256`: every password stored as a SCRAM verifier.
pub const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "*"),
    ("password_encryption", "scram-sha-256"),
    ("wal_level", "replica"),
    ("wal_log_hints", "on"),
    ("hot_standby", "on"),
    ("hot_standby_feedback", "on"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("wal_keep_size", "512MB"),
    ("restart_after_crash", "off"),
    // A standby whose node vanished is noticed by its primary's walsender after this long
    // (default 60 s); in synchronous mode commits wait for it until then or until the
    // operator degrades to asynchronous commits, whichever comes first.
    ("wal_sender_timeout", "10s"),
    // How long a standby waits before trying its WAL sources again after streaming stopped
    // (default 5 s). Once its primary is gone, a promotion request was seen to take effect
    // only at the end of that wait (5 s in one switchover of three on PostgreSQL 15): 1 s
    // keeps the promotion inside the failover target.
    ("wal_retrieve_retry_interval", "1s"),
];

/// Settings in `postgresql.auto.conf` that belong to one member and must not travel with a copy
/// (pg_basebackup, pg_rewind): replication wiring, and what the controller sets at run time
/// (a copy of a fenced or synchronous primary's settings would fence the standby or make it wait
/// for itself once promoted).
const MEMBER_LOCAL_AUTO: &[&str] = &[
    "port",
    "primary_conninfo",
    "primary_slot_name",
    "synchronous_standby_names",
    "default_transaction_read_only",
];

/// `key = 'value'` as a configuration-file line (any setting accepts a quoted value).
pub(crate) fn setting_line(key: &str, value: &str) -> String {
    format!(
        "{key} = '{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    )
}

/// The setting name an active line sets, lower-cased (None for comments and blank lines).
fn line_key(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let end = t
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(t.len());
    Some(t[..end].to_ascii_lowercase())
}

/// Rewrite a settings file: lines setting any of `remove` or of `set`'s keys are dropped
/// (`comment_out`: turned into comments, for the hand-editable `postgresql.conf`), then `set` is
/// appended. Written to a temporary file and renamed, 0600, owned by the server's user.
pub(crate) fn edit_settings(
    file: &Path,
    remove: &[&str],
    set: &[(String, String)],
    comment_out: bool,
) -> Result<(), MemberError> {
    let old = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(MemberError::io("read settings", file)(e)),
    };
    let drop = |k: &str| remove.contains(&k) || set.iter().any(|(s, _)| s == k);
    let mut out = String::new();
    for line in old.lines() {
        match line_key(line) {
            Some(k) if drop(&k) => {
                if comment_out {
                    out.push_str("#(receiptdb) ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !set.is_empty() {
        out.push_str("# set by receiptdb-operator\n");
        for (k, v) in set {
            out.push_str(&setting_line(k, v));
            out.push('\n');
        }
    }
    write_private(file, out.as_bytes())
}

/// Write `contents` to `path` atomically (temporary file + rename), mode 0600, owned by the
/// server's user.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), MemberError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("receiptdb-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(MemberError::io("create file", &tmp))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(MemberError::io("write file", &tmp))?;
    drop(f);
    hand_to_postgres(&tmp).map_err(MemberError::io("chown to postgres", &tmp))?;
    std::fs::rename(&tmp, path).map_err(MemberError::io("rename into place", path))
}

/// Where the standby's replication passfile lives: beside the data directory.
pub fn passfile_path(pgdata: &Path) -> PathBuf {
    let name = pgdata
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pgdata".into());
    pgdata.with_file_name(format!("{name}.replication.pgpass"))
}

fn passfile_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// A libpq connection-string value, quoted when it needs to be.
pub(crate) use crate::conn::quote_value as conninfo_value;

/// How a standby reaches its primary.
#[derive(Debug, Clone)]
pub(crate) struct StandbyConfig<'a> {
    pub host: String,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub application_name: &'a str,
    pub slot: &'a str,
    /// The port the standby itself listens on.
    pub member_port: u16,
    /// The member's TLS files: the standby verifies its primary (`sslmode=verify-full` against
    /// the pair's CA) and serves TLS itself.
    pub tls: Option<&'a MemberTls>,
}

/// Make `pgdata` a standby: its own port, `primary_conninfo` (password in the passfile beside the
/// data directory, referenced by absolute path; with TLS, `sslmode=verify-full` and the CA),
/// `primary_slot_name`, `standby.signal`; the member-local settings a copy brought from the
/// source are removed.
pub(crate) fn configure_standby(
    pgdata: &Path,
    passfile_for: &Path,
    c: &StandbyConfig<'_>,
) -> Result<(), MemberError> {
    let passfile = passfile_path(passfile_for);
    let passfile =
        std::path::absolute(&passfile).map_err(MemberError::io("absolute path", &passfile))?;
    let line = format!(
        "*:*:*:{}:{}\n",
        passfile_escape(c.user),
        passfile_escape(c.password)
    );
    write_private(&passfile, line.as_bytes())?;
    let mut conninfo = vec![
        ("host", c.host.clone()),
        ("port", c.port.to_string()),
        ("user", c.user.to_string()),
        ("application_name", c.application_name.to_string()),
        ("passfile", passfile.display().to_string()),
        ("connect_timeout", "5".to_string()),
    ];
    if let Some(tls) = c.tls {
        conninfo.extend(tls.standby_conninfo());
        super::tls::apply(pgdata, tls)?;
    }
    let conninfo = conninfo
        .iter()
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ");
    edit_settings(
        &pgdata.join("postgresql.conf"),
        &[],
        &[("port".into(), c.member_port.to_string())],
        true,
    )?;
    edit_settings(
        &pgdata.join("postgresql.auto.conf"),
        MEMBER_LOCAL_AUTO,
        &[
            ("primary_conninfo".into(), conninfo),
            ("primary_slot_name".into(), c.slot.to_string()),
        ],
        false,
    )?;
    let _ = std::fs::remove_file(pgdata.join("recovery.signal"));
    write_private(&pgdata.join("standby.signal"), b"")
}

/// The `pg_hba.conf` of a member: password (SCRAM) authentication for everything, local socket
/// included; no trust, no peer. Replication connections are their own entries (the `all`
/// database keyword does not match them) and only roles with REPLICATION can use them. With
/// `tls`, TCP connections must use TLS (`hostssl`): a plain-text one matches no line and is
/// refused before authentication.
pub(crate) fn pg_hba(tls: bool) -> String {
    let (kind, note) = if tls {
        ("hostssl", "TLS on every TCP connection")
    } else {
        ("host   ", "no TLS required")
    };
    format!(
        "# receiptdb-operator: SCRAM everywhere, no trust; {note}.\n\
         # TYPE  DATABASE     USER  ADDRESS    METHOD\n\
         local   all          all              scram-sha-256\n\
         local   replication  all              scram-sha-256\n\
         {kind} all          all   0.0.0.0/0  scram-sha-256\n\
         {kind} all          all   ::/0       scram-sha-256\n\
         {kind} replication  all   0.0.0.0/0  scram-sha-256\n\
         {kind} replication  all   ::/0       scram-sha-256\n"
    )
}

/// Whether a directory is missing or empty.
pub(crate) fn missing_or_empty(dir: &Path) -> Result<bool, MemberError> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(MemberError::io("read directory", dir)(e)),
    }
}

/// A sibling path: `<dir>.<suffix>`.
pub(crate) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}.{suffix}"))
}

/// Remove a directory tree if it exists.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), MemberError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MemberError::io("remove directory", dir)(e)),
    }
}

/// Move a finished staging directory into place. `target` may exist as an empty directory
/// (a mount point's subdirectory made by someone else); rename(2) replaces an empty directory.
pub(crate) fn move_into_place(staging: &Path, target: &Path) -> Result<(), MemberError> {
    std::fs::rename(staging, target).map_err(MemberError::io(
        "rename staging directory into place",
        target,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_replaced_and_member_local_ones_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("postgresql.auto.conf");
        std::fs::write(
            &f,
            "# Do not edit\nport = 5433\nprimary_slot_name = 'x'\nwork_mem = '8MB'\n",
        )
        .unwrap();
        edit_settings(
            &f,
            MEMBER_LOCAL_AUTO,
            &[("primary_slot_name".into(), "it's".into())],
            false,
        )
        .unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("5433"), "{text}");
        assert!(text.contains("work_mem = '8MB'"), "{text}");
        assert!(text.contains("primary_slot_name = 'it''s'"), "{text}");
        assert_eq!(text.matches("primary_slot_name").count(), 1, "{text}");
    }

    #[test]
    fn postgresql_conf_lines_are_commented_out() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("postgresql.conf");
        std::fs::write(&f, "#port = 5432\nport = 6000 # mine\n").unwrap();
        edit_settings(&f, &[], &[("port".into(), "5432".into())], true).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("#(receiptdb) port = 6000"), "{text}");
        assert!(text.ends_with("port = '5432'\n"), "{text}");
    }

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_value("orca-primary"), "orca-primary");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("it's"), "'it\\'s'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn passfile_beside_the_data_directory() {
        assert_eq!(
            passfile_path(Path::new("/var/lib/postgresql/data/pgdata")),
            Path::new("/var/lib/postgresql/data/pgdata.replication.pgpass")
        );
        assert_eq!(passfile_escape("a:b\\c"), "a\\:b\\\\c");
    }
}
