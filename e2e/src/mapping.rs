//! How a container command from a pod template becomes a local command: container paths to
//! directories under the work dir, cluster host names to 127.0.0.1 and the right local port,
//! image programs to local programs. Pure; unit-tested below.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The address every mapped host resolves to.
pub const LOOPBACK: &str = "127.0.0.1";

/// A mapping for one container.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// The namespace (for `<name>.<ns>.svc.cluster.local`).
    pub namespace: String,
    /// Host short names (StatefulSet and Service names) to local ports.
    pub hosts: BTreeMap<String, u16>,
    /// Container path prefixes to local paths (volume mounts, `/dev/termination-log`).
    pub paths: Vec<(String, PathBuf)>,
    /// The container's own server port, when it has one: `-c port=N`, `--port N` and
    /// `localhost`/`127.0.0.1` with the container port map to it.
    pub own_port: Option<u16>,
    /// The port the container image listens on (5432): only rewritten in `own_port` contexts.
    pub container_port: u16,
    /// Program names or paths to local programs (`/rdb/bin/receiptdb-operator` → the built
    /// binary; `postgres` → `/usr/lib/postgresql/15/bin/postgres`).
    pub programs: BTreeMap<String, PathBuf>,
    /// Directory with PostgreSQL's programs: any program found there by base name is used.
    pub pg_bindir: Option<PathBuf>,
}

impl Mapping {
    /// The local program for a container's `command[0]`.
    pub fn program(&self, p: &str) -> PathBuf {
        if let Some(local) = self.programs.get(p) {
            return local.clone();
        }
        let base = p.rsplit('/').next().unwrap_or(p);
        if let Some(local) = self.programs.get(base) {
            return local.clone();
        }
        if let Some(dir) = &self.pg_bindir {
            let candidate = dir.join(base);
            if candidate.exists() {
                return candidate;
            }
        }
        PathBuf::from(self.path(p))
    }

    /// Whether the container's program is a PostgreSQL server (`postgres`).
    pub fn is_postgres(p: &str) -> bool {
        p.rsplit('/').next() == Some("postgres")
    }

    /// The local port for a host name as a pod would resolve it: `<name>`, `<name>.<ns>`,
    /// `<name>.<ns>.svc`, `<name>.<ns>.svc.cluster.local`, or a StatefulSet pod's
    /// `<name>-0.<name>...`. `localhost` is the container itself.
    pub fn resolve_host(&self, host: &str) -> Option<u16> {
        if host == "localhost" || host == LOOPBACK {
            return self.own_port;
        }
        let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
        let suffix: Vec<String> = [self.namespace.as_str(), "svc", "cluster", "local"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rest_ok = |rest: &[&str]| {
            rest.len() <= suffix.len() && rest.iter().zip(suffix.iter()).all(|(a, b)| a == b)
        };
        if let Some(p) = self.hosts.get(labels[0]) {
            if rest_ok(&labels[1..]) {
                return Some(*p);
            }
        }
        if labels.len() >= 2 {
            if let Some(p) = self.hosts.get(labels[1]) {
                if labels[0].starts_with(labels[1]) && rest_ok(&labels[2..]) {
                    return Some(*p);
                }
            }
        }
        None
    }

    /// Map container paths inside one string (`/var/lib/postgresql/data/pgdata`,
    /// `--pgdata=/var/...`).
    pub fn path(&self, s: &str) -> String {
        let mut paths: Vec<&(String, PathBuf)> = self.paths.iter().collect();
        paths.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        'outer: while i < s.len() {
            let rest = &s[i..];
            let at_boundary = i == 0
                || matches!(
                    s.as_bytes()[i - 1],
                    b'=' | b' ' | b'\'' | b'"' | b':' | b','
                );
            if at_boundary {
                for (from, to) in &paths {
                    if let Some(after) = rest.strip_prefix(from.as_str()) {
                        let end_ok = after.is_empty()
                            || matches!(after.as_bytes()[0], b'/' | b' ' | b'\'' | b'"' | b',');
                        if end_ok {
                            out.push_str(&to.display().to_string());
                            i += from.len();
                            continue 'outer;
                        }
                    }
                }
            }
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
        out
    }

    /// Map one argument or environment value: paths, then connection strings.
    pub fn value(&self, s: &str) -> String {
        let s = self.path(s);
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return self.uri(&s);
        }
        if s.contains("host=") {
            return self.conninfo(&s);
        }
        s
    }

    /// Map a whole argument list (`-c port=`, `-c listen_addresses=`, `--port`, `-h`/`-p`).
    pub fn args(&self, args: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(args.len());
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let next = args.get(i + 1);
            match (a.as_str(), next) {
                ("-c", Some(setting)) => {
                    out.push(a.clone());
                    out.push(self.setting(setting));
                    i += 2;
                    continue;
                }
                ("--port" | "-p", Some(port)) if self.own_port.is_some() => {
                    out.push(a.clone());
                    out.push(self.port_value(port));
                    i += 2;
                    continue;
                }
                ("-h" | "--host", Some(host)) => {
                    out.push(a.clone());
                    out.push(self.host_value(host));
                    i += 2;
                    continue;
                }
                _ => {}
            }
            if let Some(v) = a.strip_prefix("--port=") {
                out.push(format!("--port={}", self.port_value(v)));
            } else if let Some(v) = a.strip_prefix("--host=") {
                out.push(format!("--host={}", self.host_value(v)));
            } else {
                out.push(self.value(a));
            }
            i += 1;
        }
        out
    }

    /// An environment variable's value (`PGHOST`/`PGPORT` are handled by [`Self::env`]).
    fn setting(&self, setting: &str) -> String {
        match setting.split_once('=') {
            Some(("port", v)) => format!("port={}", self.port_value(v)),
            Some(("listen_addresses", _)) => format!("listen_addresses={LOOPBACK}"),
            _ => self.value(setting),
        }
    }

    fn port_value(&self, v: &str) -> String {
        match self.own_port {
            Some(p) if v.trim() == self.container_port.to_string() => p.to_string(),
            _ => v.to_string(),
        }
    }

    fn host_value(&self, h: &str) -> String {
        if self.resolve_host(h).is_some() {
            LOOPBACK.to_string()
        } else {
            h.to_string()
        }
    }

    /// Map an environment: paths and connection strings in values; `PGHOST` with `PGPORT`.
    pub fn env(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        let host_port = env
            .iter()
            .find(|(k, _)| k == "PGHOST")
            .and_then(|(_, h)| self.resolve_host(h));
        let mut out: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| match k.as_str() {
                "PGHOST" if host_port.is_some() => (k.clone(), LOOPBACK.to_string()),
                "PGPORT" => match host_port {
                    Some(p) => (k.clone(), p.to_string()),
                    None => (k.clone(), v.clone()),
                },
                _ => (k.clone(), self.value(v)),
            })
            .collect();
        if let Some(p) = host_port {
            if !env.iter().any(|(k, _)| k == "PGPORT") {
                out.push(("PGPORT".to_string(), p.to_string()));
            }
        }
        out
    }

    /// `host=orca-primary port=5432 user=postgres` → `host=127.0.0.1 port=<local> ...`.
    fn conninfo(&self, s: &str) -> String {
        let pairs = split_conninfo(s);
        let Some(port) = pairs
            .iter()
            .find(|(k, _)| k == "host")
            .and_then(|(_, h)| self.resolve_host(h))
        else {
            return s.to_string();
        };
        let mut out = Vec::new();
        let mut port_done = false;
        for (k, v) in &pairs {
            match k.as_str() {
                "host" => out.push(format!("host={LOOPBACK}")),
                "port" => {
                    out.push(format!("port={port}"));
                    port_done = true;
                }
                _ => out.push(format!("{k}={}", quote_conninfo(v))),
            }
        }
        if !port_done {
            out.push(format!("port={port}"));
        }
        out.join(" ")
    }

    /// `postgresql://user@orca-primary:5432/db` → `postgresql://user@127.0.0.1:<local>/db`.
    fn uri(&self, s: &str) -> String {
        let Some((scheme, rest)) = s.split_once("://") else {
            return s.to_string();
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let host = hostport.split(':').next().unwrap_or(hostport);
        let Some(port) = self.resolve_host(host) else {
            return s.to_string();
        };
        let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}{LOOPBACK}:{port}{tail}")
    }
}

/// Split a libpq key=value string (values may be single-quoted with `\` escapes).
pub fn split_conninfo(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '\'' => break,
                    _ => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((key, val));
    }
    out
}

fn quote_conninfo(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\']) {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        let mut m = Mapping {
            namespace: "e2e".into(),
            container_port: 5432,
            ..Default::default()
        };
        m.hosts.insert("orca-primary".into(), 40001);
        m.hosts.insert("orca-secondary".into(), 40002);
        m.paths.push((
            "/var/lib/postgresql/data".into(),
            PathBuf::from("/tmp/w/pvc/data-orca-primary-0"),
        ));
        m.paths.push((
            "/dev/termination-log".into(),
            PathBuf::from("/tmp/w/report"),
        ));
        m
    }

    #[test]
    fn hosts_resolve_in_every_dns_form() {
        let m = mapping();
        for h in [
            "orca-primary",
            "orca-primary.e2e",
            "orca-primary.e2e.svc",
            "orca-primary.e2e.svc.cluster.local",
            "orca-primary-0.orca-primary.e2e.svc.cluster.local",
        ] {
            assert_eq!(m.resolve_host(h), Some(40001), "{h}");
        }
        assert_eq!(m.resolve_host("orca-primary.other.svc"), None);
        assert_eq!(m.resolve_host("example.com"), None);
    }

    #[test]
    fn member_command_gets_local_port_paths_and_loopback() {
        let mut m = mapping();
        m.own_port = Some(40001);
        let args: Vec<String> = [
            "-D",
            "/var/lib/postgresql/data/pgdata",
            "-c",
            "port=5432",
            "-c",
            "listen_addresses=*",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            m.args(&args),
            vec![
                "-D",
                "/tmp/w/pvc/data-orca-primary-0/pgdata",
                "-c",
                "port=40001",
                "-c",
                "listen_addresses=127.0.0.1"
            ]
        );
    }

    #[test]
    fn job_arguments_map_conninfo_uri_and_report() {
        let mut m = mapping();
        m.own_port = Some(40002);
        let args: Vec<String> = [
            "rejoin",
            "--pgdata=/var/lib/postgresql/data/pgdata",
            "--source",
            "host=orca-primary.e2e.svc port=5432 user=postgres dbname=postgres",
            "--port",
            "5432",
            "--report",
            "/dev/termination-log",
            "--target",
            "postgresql://postgres@orca-secondary:5432/receipts?sslmode=disable",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            m.args(&args),
            vec![
                "rejoin",
                "--pgdata=/tmp/w/pvc/data-orca-primary-0/pgdata",
                "--source",
                "host=127.0.0.1 port=40001 user=postgres dbname=postgres",
                "--port",
                "40002",
                "--report",
                "/tmp/w/report",
                "--target",
                "postgresql://postgres@127.0.0.1:40002/receipts?sslmode=disable",
            ]
        );
    }

    #[test]
    fn paths_only_at_boundaries() {
        let m = mapping();
        assert_eq!(
            m.path("/var/lib/postgresql/database"),
            "/var/lib/postgresql/database"
        );
        assert_eq!(
            m.path("PGDATA=/var/lib/postgresql/data"),
            "PGDATA=/tmp/w/pvc/data-orca-primary-0"
        );
    }

    #[test]
    fn env_pghost_takes_the_port_along() {
        let m = mapping();
        let env = vec![
            ("PGHOST".to_string(), "orca-secondary".to_string()),
            ("PGPORT".to_string(), "5432".to_string()),
            (
                "PGDATA".to_string(),
                "/var/lib/postgresql/data/pgdata".to_string(),
            ),
        ];
        let out = m.env(&env);
        assert_eq!(out[0].1, "127.0.0.1");
        assert_eq!(out[1].1, "40002");
        assert_eq!(out[2].1, "/tmp/w/pvc/data-orca-primary-0/pgdata");
    }

    #[test]
    fn conninfo_keeps_quoted_values() {
        let m = mapping();
        assert_eq!(
            m.value("host=orca-secondary application_name='a b' user=x"),
            "host=127.0.0.1 application_name='a b' user=x port=40002"
        );
    }
}
