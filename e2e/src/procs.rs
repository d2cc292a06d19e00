//! Child processes of the scenario: each in its own process group, registered so that every
//! group is killed on exit, on panic and on Ctrl-C, and stoppable like a kubelet stops a
//! container (a stop signal, then SIGKILL after the grace period).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{oneshot, watch};

/// Process groups started by this process and not yet reaped.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn register(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.insert(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.remove(&pgid);
    }
}

/// SIGKILL every registered process group (at exit, on panic, on Ctrl-C).
pub fn kill_all() {
    let groups: Vec<i32> = GROUPS
        .lock()
        .map(|g| g.iter().copied().collect())
        .unwrap_or_default();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Kill every PostgreSQL server whose data directory lies under `root` (servers started by Job
/// entrypoints through `pg_ctl` run in their own session, outside our process groups).
pub fn kill_postmasters_under(root: &Path) {
    fn walk(dir: &Path, depth: usize) {
        if depth > 6 {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == "postmaster.pid" {
                if let Some(pid) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                {
                    if pid > 1 {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&p, depth + 1);
            }
        }
    }
    walk(root, 0);
}

/// Kill every child group when the process panics (the default hook still prints).
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        previous(info);
    }));
}

/// How a container process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when it exited rather than died by a signal.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
}

impl Exit {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Kubernetes' convention: the code, or 128 + signal.
    pub fn k8s_code(&self) -> i32 {
        self.code.or(self.signal.map(|s| 128 + s)).unwrap_or(255)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Program.
    pub program: std::path::PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment (added to a minimal base: PATH, HOME, LANG).
    pub env: Vec<(String, String)>,
    /// Run as the `postgres` user (when we are root).
    pub as_postgres: bool,
    /// stdout and stderr go here.
    pub log: std::path::PathBuf,
    /// Signal a stop starts with (SIGINT for PostgreSQL: the postgres image's STOPSIGNAL, a
    /// fast shutdown; SIGTERM otherwise).
    pub stop_signal: Signal,
}

/// A running container process.
pub struct Container {
    /// The process id (also its process group id).
    pub pid: i32,
    stop: Option<oneshot::Sender<Duration>>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Container {
    /// Start `spec` in its own process group.
    pub fn start(spec: &Spec) -> Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("open log {}", spec.log.display()))?;
        let log2 = log
            .try_clone()
            .with_context(|| format!("dup log {}", spec.log.display()))?;
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .kill_on_drop(true);
        if spec.as_postgres && receiptdb_postgres::pgbin::running_as_root() {
            // setuid directly rather than through `runuser`: runuser stays as a parent that turns
            // a stop signal into SIGTERM + SIGKILL, while a kubelet's signal reaches the server.
            let user = nix::unistd::User::from_name("postgres")
                .context("look up the postgres user")?
                .context("no `postgres` user on this machine (apt-get install postgresql-15)")?;
            cmd.uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &user.dir)
                .env("USER", "postgres");
        } else {
            cmd.env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            );
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", spec.program.display()))?;
        let pid = child.id().context("the started process has no pid")? as i32;
        register(pid);
        let (stop_tx, stop_rx) = oneshot::channel::<Duration>();
        let (exit_tx, exit_rx) = watch::channel(None);
        let stop_signal = spec.stop_signal;
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                grace = stop_rx => {
                    let grace = grace.unwrap_or(Duration::from_secs(1));
                    let _ = kill(Pid::from_raw(pid), stop_signal);
                    match tokio::time::timeout(grace, child.wait()).await {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                            child.wait().await
                        }
                    }
                }
            };
            // Whatever is left of the group (backends of a killed postmaster) goes too.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            unregister(pid);
            let exit = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    Exit {
                        code: s.code(),
                        signal: s.signal(),
                    }
                }
                Err(_) => Exit {
                    code: None,
                    signal: None,
                },
            };
            let _ = exit_tx.send(Some(exit));
        });
        Ok(Self {
            pid,
            stop: Some(stop_tx),
            exit: exit_rx,
        })
    }

    /// How it ended, once it has.
    pub fn exited(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Ask it to stop: the stop signal now, SIGKILL to the whole group after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(grace);
        }
    }

    /// SIGKILL the main process only (a crash: PostgreSQL's backends notice their postmaster is
    /// gone and exit; `restart_after_crash` never gets a say).
    pub fn crash(&self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
    }

    /// Wait until it has exited.
    pub async fn wait(&mut self) -> Exit {
        loop {
            if let Some(e) = self.exit.borrow().clone() {
                return e;
            }
            if self.exit.changed().await.is_err() {
                return self.exit.borrow().clone().unwrap_or(Exit {
                    code: None,
                    signal: None,
                });
            }
        }
    }
}
