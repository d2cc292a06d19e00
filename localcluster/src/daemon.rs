//! The cluster's long-running processes: started detached (their own session, output to a log
//! file, a pid file), so that `up` can return and leave the cluster running; stopped by `down`
//! through their pid files. Each start also records the process's definition, so that one killed
//! by a test's fault ([`crate::faults`]) can be started again the same way.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::layout::Layout;

/// A process to start: its name (log and pid file stem), program, arguments, environment and
/// the network namespace it runs in (`None`: the root namespace).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Daemon {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub netns: Option<String>,
}

impl Daemon {
    /// `program` with no arguments yet.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            netns: None,
        }
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run inside the network namespace `ns`.
    pub fn in_netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.into());
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Start it detached; returns its pid.
    pub fn start(&self, layout: &Layout) -> Result<i32> {
        fs::create_dir_all(layout.logs())?;
        fs::create_dir_all(layout.run())?;
        let log_path = layout.logs().join(format!("{}.log", self.name));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own session: not killed with the terminal or the caller's process group.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {} ({})", self.name, self.program.display()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        fs::write(pid_file(layout, &self.name), pid.to_string())?;
        fs::write(
            definition_file(layout, &self.name),
            serde_json::to_string(self).context("serialise a process definition")?,
        )?;
        // Not waited for here: `down` stops it, and `up` returns while it runs. The handle is
        // dropped without killing the child.
        drop(child);
        Ok(pid)
    }
}

fn pid_file(layout: &Layout, name: &str) -> PathBuf {
    layout.run().join(format!("{name}.pid"))
}

fn definition_file(layout: &Layout, name: &str) -> PathBuf {
    layout.run().join(format!("{name}.json"))
}

/// Start `name` again as it was last started (it must not be running).
pub fn restart(layout: &Layout, name: &str) -> Result<i32> {
    if let Some(pid) = running_pid(layout, name) {
        bail!("{name} is still running (pid {pid})");
    }
    let path = definition_file(layout, name);
    let d: Daemon = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("read {}", path.display()))?,
    )
    .with_context(|| format!("parse {}", path.display()))?;
    d.start(layout)
}

/// SIGKILL `name` at once (no grace: a machine that loses power) and wait until it is gone.
/// Its pid file stays, naming a dead process, so that `down` still knows of it.
pub fn kill_now(layout: &Layout, name: &str) {
    if let Some(pid) = running_pid(layout, name) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let end = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pid recorded for `name`, when its process is still alive.
pub fn running_pid(layout: &Layout, name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file(layout, name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Stop `name`: SIGTERM, then SIGKILL after `grace`. Removes its pid file.
pub fn stop(layout: &Layout, name: &str, grace: Duration) {
    if let Some(pid) = running_pid(layout, name) {
        terminate(pid, grace);
    }
    let _ = fs::remove_file(pid_file(layout, name));
}

/// SIGTERM `pid`, wait up to `grace`, SIGKILL.
pub fn terminate(pid: i32, grace: Duration) {
    let p = Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(p, Signal::SIGKILL);
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Names of every process with a pid file.
pub fn recorded(layout: &Layout) -> Vec<String> {
    fs::read_dir(layout.run())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".pid")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The last `lines` lines of a log file (for error messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Fail with the end of `name`'s log when its process has exited.
pub fn ensure_running(layout: &Layout, name: &str) -> Result<()> {
    if running_pid(layout, name).is_none() {
        let log = layout.logs().join(format!("{name}.log"));
        bail!(
            "{name} exited; the end of {}:\n{}",
            log.display(),
            log_tail(&log, 15)
        );
    }
    Ok(())
}
