//! Starting a member's server privately (no TCP, a socket in a private directory) for the few
//! steps that need SQL on a data directory before it goes live, and checking that a data
//! directory's server is not running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cmd::{prepare, run, run_any};
use super::{MemberError, Secret};
use crate::conn::Target;
use crate::pgbin::{hand_to_postgres, server_command};

/// Whether a server runs on `pgdata` (`pg_ctl status`: 0 running, 3 not running).
pub(crate) async fn is_running(pgdata: &Path) -> Result<bool, MemberError> {
    let mut cmd = server_command("pg_ctl");
    cmd.arg("status").arg("-D").arg(pgdata);
    let ran = run_any(prepare(cmd), "pg_ctl status").await?;
    Ok(ran.success)
}

/// A server started on a data directory with `listen_addresses=''` and its socket in a private
/// directory: nothing but this process can reach it. TLS is off (no TCP to protect, and the
/// certificate files are where the member's server finds them, not necessarily here). Stop it with [`PrivateServer::stop`].
pub(crate) struct PrivateServer {
    pgdata: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl PrivateServer {
    /// Start the server and wait until it accepts connections.
    pub async fn start(pgdata: &Path, port: u16) -> Result<Self, MemberError> {
        let socket_dir = std::env::temp_dir().join(format!(
            "rdb-sock-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&socket_dir)
                .map_err(MemberError::io(
                    "create private socket directory",
                    &socket_dir,
                ))?;
        }
        hand_to_postgres(&socket_dir)
            .map_err(MemberError::io("chown socket directory", &socket_dir))?;
        let server = Self {
            pgdata: pgdata.to_path_buf(),
            socket_dir,
            port,
        };
        let log = server.socket_dir.join("server.log");
        let mut cmd = server_command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(pgdata)
            .args(["-w", "-t", "120", "-l"])
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-c listen_addresses='' -c ssl=off -c port={port} -c unix_socket_directories='{}'",
                server.socket_dir.display()
            ));
        if let Err(e) = run(prepare(cmd), "start the server privately").await {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&server.socket_dir);
            return Err(match e {
                MemberError::Command {
                    step,
                    program,
                    status,
                    output,
                } => MemberError::Command {
                    step,
                    program,
                    status,
                    output: format!("{output}\nserver log: {}", super::cmd::tail(&log_text, 800)),
                },
                other => other,
            });
        }
        Ok(server)
    }

    /// A target on the private socket.
    pub fn target(&self, user: &str, password: &Secret, dbname: &str) -> Target {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .password(password.expose());
        Target::from_config(config)
    }

    /// Stop the server (fast: roll back sessions, shutdown checkpoint) and remove the socket
    /// directory.
    pub async fn stop(self) -> Result<(), MemberError> {
        let mut cmd = server_command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "120"]);
        let r = run(prepare(cmd), "stop the private server").await;
        let _ = std::fs::remove_dir_all(&self.socket_dir);
        r.map(|_| ())
    }
}

/// How long to wait for a private server connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
