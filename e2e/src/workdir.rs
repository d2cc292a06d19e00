//! The scenario's work directory: member volumes, Job scratch space, logs, sockets. Readable by
//! the `postgres` user (servers run as it when we are root); removed at the end unless kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Work directories alive now, with their keep flag (for cleanup on Ctrl-C).
static LIVE: std::sync::Mutex<Vec<(PathBuf, bool)>> = std::sync::Mutex::new(Vec::new());

/// On Ctrl-C: kill servers under every live work directory and remove those not kept.
pub fn cleanup_all() {
    let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for (p, keep) in live {
        crate::procs::kill_postmasters_under(&p);
        if keep {
            eprintln!("work directory kept: {}", p.display());
        } else {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// A scenario work directory.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Create a fresh directory under the system temp dir (`rdb-e2e-<scenario>-XXXX`).
    pub fn create(scenario: &str, keep: bool) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rdb-e2e-{scenario}-"))
            .tempdir()
            .context("create the scenario work directory")?;
        let path = dir.keep();
        set_mode(&path, 0o755)?;
        if let Ok(mut l) = LIVE.lock() {
            l.push((path.clone(), keep));
        }
        Ok(Self { path, keep })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created if missing, owned by the `postgres` user when we are root.
    pub fn subdir_for_postgres(&self, rel: &str) -> Result<PathBuf> {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        set_mode(&p, 0o755)?;
        receiptdb_postgres::pgbin::hand_to_postgres(&p)
            .with_context(|| format!("chown {} to postgres", p.display()))?;
        Ok(p)
    }

    /// A subdirectory, created if missing (owned by us).
    pub fn subdir(&self, rel: &str) -> Result<PathBuf> {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        Ok(p)
    }

    /// Keep the directory after the scenario (for post-mortems).
    pub fn keep(&mut self) {
        self.keep = true;
        if let Ok(mut l) = LIVE.lock() {
            for e in l.iter_mut().filter(|e| e.0 == self.path) {
                e.1 = true;
            }
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Ok(mut l) = LIVE.lock() {
            l.retain(|e| e.0 != self.path);
        }
        if self.keep {
            eprintln!("work directory kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// chmod.
pub fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", p.display()))
}
