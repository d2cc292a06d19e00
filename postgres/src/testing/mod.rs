//! Throwaway PostgreSQL clusters for tests: `initdb` in a temporary directory, a free port,
//! scram-sha-256 over TCP, started with `pg_ctl`, stopped and removed on drop.
//!
//! Run as the `postgres` user when the tests run as root (initdb and postgres refuse root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_postgres::Client;

use crate::conn::Target;
use crate::pgbin::{hand_to_postgres, server_command};

pub mod bench;
pub mod members;
pub mod tls;

/// The superuser password every test cluster is created with (tests also exercise a wrong one).
pub const TEST_PASSWORD: &str = "test-superuser-password";

/// Options for a new test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Extra `postgresql.conf` lines, appended after the harness's own.
    pub config: Vec<String>,
    /// `initdb --data-checksums`.
    pub checksums: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            config: Vec::new(),
            checksums: true,
        }
    }
}

/// One throwaway PostgreSQL cluster. Dropping it stops the server (immediate mode) and
/// removes its files.
pub struct TestCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// Pick a TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A fresh temporary directory the `postgres` user owns (when running as root).
pub fn postgres_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rdb-test-")
        .tempdir()
        .expect("create a temp dir");
    hand_to_postgres(dir.path()).expect("chown the temp dir to postgres");
    dir
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCluster {
    /// initdb and start a new cluster with default options.
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default())
    }

    /// initdb and start a new cluster.
    pub fn start_with(opts: ClusterOptions) -> Self {
        let dir = postgres_tempdir();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, TEST_PASSWORD).expect("write the password file");
        hand_to_postgres(&pwfile).expect("chown the password file");
        let mut initdb = server_command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--locale=C.UTF-8"])
            .arg(format!("--pwfile={}", pwfile.display()));
        if opts.checksums {
            initdb.arg("--data-checksums");
        }
        run(initdb, "initdb");
        let _ = std::fs::remove_file(&pwfile);
        let port = free_port();
        let mut conf = vec![
            format!("port = {port}"),
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("unix_socket_directories = '{}'", dir.path().display()),
            "fsync = off".to_string(),
            "shared_buffers = 32MB".to_string(),
            "max_connections = 40".to_string(),
        ];
        conf.extend(opts.config);
        append_conf(&data, &conf);
        let cluster = Self { dir, port };
        cluster.pg_ctl_start();
        cluster
    }

    /// Wrap an existing data directory under `dir` (made by the code under test, e.g. a clone),
    /// setting its port and socket directory, and start it.
    pub fn adopt(dir: tempfile::TempDir) -> Self {
        let port = free_port();
        let data = dir.path().join("data");
        append_conf(
            &data,
            &[
                format!("port = {port}"),
                format!("unix_socket_directories = '{}'", dir.path().display()),
            ],
        );
        let cluster = Self { dir, port };
        cluster.pg_ctl_start();
        cluster
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory holding the data directory, socket and logs.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq connection string (no password: tests set it with [`Self::target`]).
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// A connection target with the superuser password set.
    pub fn target(&self, dbname: &str) -> Target {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(dbname);
        config.password(TEST_PASSWORD);
        Target::from_config(config)
    }

    /// Connect as the superuser to `dbname`.
    pub async fn client(&self, dbname: &str) -> Client {
        self.target(dbname)
            .connect(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("connect to test cluster: {e}"))
    }

    /// Create a database.
    pub async fn create_db(&self, name: &str) {
        self.client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
    }

    /// Create a database and run `sql` (a script) in it.
    pub async fn create_db_with(&self, name: &str, sql: &str) {
        self.create_db(name).await;
        self.client(name)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("setting up database {name}: {e}"));
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Start the server (again) and wait until it accepts connections.
    pub fn pg_ctl_start(&self) {
        let log = self.log_file();
        let mut cmd = server_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-l"])
            .arg(&log)
            .arg("start");
        let out = cmd.stdin(Stdio::null()).output().expect("run pg_ctl start");
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n--- server log ---\n{tail}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Stop the server in `mode` (`fast`, `immediate`, `smart`); errors are ignored (already down).
    pub fn stop(&self, mode: &str) {
        let mut cmd = server_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", mode, "stop"]);
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Kill the postmaster with SIGKILL, as a crash would (children exit when it dies).
    pub fn kill(&self) {
        if let Some(pid) = self.postmaster_pid() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            for _ in 0..100 {
                if nix::sys::signal::kill(pid, None).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The postmaster's pid from `postmaster.pid`, when running.
    pub fn postmaster_pid(&self) -> Option<nix::unistd::Pid> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        Some(nix::unistd::Pid::from_raw(pid))
    }

    /// The server log so far (for assertion messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

/// Append lines to a data directory's `postgresql.conf` (later settings win).
pub fn append_conf(data: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("open postgresql.conf");
    for line in lines {
        writeln!(f, "{line}").expect("append to postgresql.conf");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cluster_starts_accepts_password_and_refuses_a_wrong_one() {
        let c = TestCluster::start();
        let client = c.client("postgres").await;
        let v: String = client
            .query_one("SHOW server_version", &[])
            .await
            .unwrap()
            .get(0);
        assert!(v.starts_with("15"), "server version {v}");
        let mut bad = c.target("postgres");
        bad.config.password("wrong");
        let err = bad.connect(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            err.to_string().contains("password authentication failed"),
            "{err}"
        );
    }
}
