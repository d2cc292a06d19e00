//! One cgroup (v2) per container under `receiptdb-localcluster/<node>/<pod uid>/<container>`:
//! stopping a container kills everything it started (a server that a Job's `pg_ctl` left
//! running included), the way a container runtime does.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const TOP: &str = "receiptdb-localcluster";

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid hosts), if it is.
pub fn hierarchy() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

/// The cgroup of a container (created).
pub fn create(node: &str, pod_uid: &str, container: &str) -> Result<PathBuf> {
    let root = hierarchy().context("no cgroup v2 hierarchy is mounted")?;
    let dir = root.join(TOP).join(node).join(pod_uid).join(container);
    fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
    Ok(dir)
}

/// Whether any process is left in the cgroup.
pub fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// SIGKILL every process in the cgroup and wait (up to 5 s) until it is empty.
pub fn kill(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    let end = Instant::now() + Duration::from_secs(5);
    while populated(dir) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill and remove a cgroup and its parents up to the pod's (when empty).
pub fn remove(dir: &Path) {
    kill(dir);
    let _ = fs::remove_dir(dir);
    if let Some(pod) = dir.parent() {
        let _ = fs::remove_dir(pod);
    }
}

/// Kill every container of every node and remove the whole tree (cluster teardown).
pub fn remove_all() {
    let Some(root) = hierarchy() else { return };
    let top = root.join(TOP);
    remove_tree(&top);
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    kill(dir);
    let _ = fs::remove_dir(dir);
}

/// SIGKILL every process of every container of a node at once (the node's loss), leaving the
/// cgroups for the next agent to remove.
pub fn kill_node(node: &str) {
    if let Some(root) = hierarchy() {
        kill(&root.join(TOP).join(node));
    }
}

/// Every cgroup of a node (agent start-up: containers of an earlier agent are killed).
pub fn remove_node(node: &str) {
    if let Some(root) = hierarchy() {
        remove_tree(&root.join(TOP).join(node));
    }
}
