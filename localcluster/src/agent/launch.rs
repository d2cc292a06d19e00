//! The process side of a container: `localcluster container-init` reads a [`LaunchSpec`] on
//! stdin and turns itself into the container's first process (or, for exec probes and hooks,
//! into a process inside a running container), then execs the command.
//!
//! A container's root is a fresh tmpfs holding the image's view of the machine: the host's
//! `/usr` subtrees (except `/usr/local`) and `/etc` read-only, the merged-/usr symlinks, the
//! image's own files and writable directories, a private `/dev` with the usual device nodes,
//! `/proc`, `/sys` read-only, and the pod's volumes at their mount paths. Then `pivot_root`, so
//! every path the pod asks for is real and nothing of it is created on the host. It runs in
//! the pod's network namespace, its own mount and UTS namespaces, the container's cgroup, as
//! the pod's user and groups, with no_new_privs when privilege escalation is not allowed.
//!
//! This runs single-threaded, before any runtime exists: `setns` of a mount namespace refuses
//! a multi-threaded caller.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{chdir, execve, pivot_root, setgroups, sethostname, setresgid, setresuid};
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

/// Exit status of `container-init` when the container could not be set up or its command not
/// be executed (the reason is the last line of the container's log).
pub const START_ERROR_EXIT: i32 = 128;
/// Prefix of that last line.
pub const START_ERROR_PREFIX: &str = "container-init: ";

/// Everything a container's first process needs, built by the agent from the pod spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The pod's network namespace (`/run/netns/...`), for a new container.
    pub netns: Option<PathBuf>,
    /// Join the namespaces of this running process instead (exec probes, hooks).
    pub join: Option<i32>,
    /// The container's root (a new container only).
    pub rootfs: Option<Rootfs>,
    /// Host name (the pod's).
    pub hostname: String,
    /// The cgroup directory to enter.
    pub cgroup: Option<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub cwd: String,
}

/// The container's file system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rootfs {
    /// An empty directory on the host where the root is assembled.
    pub dir: PathBuf,
    /// Host paths shown at the same path, read-only (the image's programs and libraries).
    pub host_paths: Vec<String>,
    /// Directories of the image, with owner and mode (writable unless the root is read-only).
    pub dirs: Vec<ImageDir>,
    /// Host files or directories mounted at a path (volumes, the image's own files, the pod's
    /// /etc files, the termination-message file), in the order given.
    pub mounts: Vec<Mount>,
    /// `readOnlyRootFilesystem`.
    pub read_only: bool,
}

/// A directory of the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageDir {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A bind mount into the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// `container-init`: read the spec from stdin, set up, exec. Returns only on failure.
pub fn container_init() -> i32 {
    let spec = match read_spec() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match enter(&spec).and_then(|()| exec(&spec)) {
        Ok(never) => match never {},
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> i32 {
    eprintln!("{START_ERROR_PREFIX}{e:#}");
    START_ERROR_EXIT
}

fn read_spec() -> Result<LaunchSpec> {
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .context("read the launch spec")?;
    let spec: LaunchSpec = serde_json::from_str(&buf).context("parse the launch spec")?;
    // The container's stdin is empty, as a pod's is without `stdin: true`.
    let null = fs::File::open("/dev/null").context("open /dev/null")?;
    nix::unistd::dup2_stdin(&null).context("replace stdin")?;
    Ok(spec)
}

fn enter(spec: &LaunchSpec) -> Result<()> {
    if let Some(cg) = &spec.cgroup {
        fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("enter cgroup {}", cg.display()))?;
    }
    if let Some(pid) = spec.join {
        // Open every namespace first: once in the mount namespace, /proc is the container's.
        let open = |ns: &str| {
            fs::File::open(format!("/proc/{pid}/ns/{ns}"))
                .with_context(|| format!("open the {ns} namespace of pid {pid}"))
        };
        let (net, uts, mnt) = (open("net")?, open("uts")?, open("mnt")?);
        setns(net, CloneFlags::CLONE_NEWNET).context("join the network namespace")?;
        setns(uts, CloneFlags::CLONE_NEWUTS).context("join the UTS namespace")?;
        setns(mnt, CloneFlags::CLONE_NEWNS).context("join the mount namespace")?;
    } else {
        if let Some(ns) = &spec.netns {
            let f = fs::File::open(ns).with_context(|| format!("open {}", ns.display()))?;
            setns(f, CloneFlags::CLONE_NEWNET).context("enter the pod's network namespace")?;
        }
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
            .context("new mount and UTS namespaces")?;
        sethostname(&spec.hostname).context("set the host name")?;
        let root = spec
            .rootfs
            .as_ref()
            .context("a new container needs a root")?;
        build_root(root)?;
    }
    chdir("/").context("chdir /")?;
    let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).context("set supplementary groups")?;
    let gid = Gid::from_raw(spec.gid);
    setresgid(gid, gid, gid).context("set the group")?;
    let uid = Uid::from_raw(spec.uid);
    setresuid(uid, uid, uid).context("set the user")?;
    if spec.no_new_privs {
        nix::sys::prctl::set_no_new_privs().context("set no_new_privs")?;
    }
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    chdir(cwd).with_context(|| format!("chdir {cwd}"))?;
    Ok(())
}

fn ms(flags: &[MsFlags]) -> MsFlags {
    flags.iter().fold(MsFlags::empty(), |a, f| a | *f)
}

fn bind(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        ms(&[MsFlags::MS_BIND, MsFlags::MS_REC]),
        None::<&str>,
    )
    .with_context(|| format!("bind {} at {}", source.display(), target.display()))?;
    if read_only {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            ms(&[MsFlags::MS_BIND, MsFlags::MS_REMOUNT, MsFlags::MS_RDONLY]),
            None::<&str>,
        )
        .with_context(|| format!("make {} read-only", target.display()))?;
    }
    Ok(())
}

fn tmpfs(target: &Path, mode: &str) -> Result<()> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        ms(&[MsFlags::MS_NOSUID, MsFlags::MS_NODEV]),
        Some(mode),
    )
    .with_context(|| format!("mount a tmpfs at {}", target.display()))
}

/// `path` inside the root at `root` (container paths are absolute).
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Make `target` exist as a file or directory, like `source`.
fn mount_point(source: &Path, target: &Path) -> Result<()> {
    let is_dir = fs::metadata(source)
        .with_context(|| format!("{} is missing", source.display()))?
        .is_dir();
    if is_dir {
        fs::create_dir_all(target)
    } else {
        if let Some(d) = target.parent() {
            fs::create_dir_all(d)?;
        }
        if !target.exists() {
            fs::File::create(target).map(|_| ())
        } else {
            Ok(())
        }
    }
    .with_context(|| format!("create the mount point {}", target.display()))
}

fn build_root(r: &Rootfs) -> Result<()> {
    // Nothing done here may reach the host's mount table.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        ms(&[MsFlags::MS_REC, MsFlags::MS_PRIVATE]),
        None::<&str>,
    )
    .context("make mounts private")?;
    let root = &r.dir;
    fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    tmpfs(root, "mode=755")?;
    for d in ["proc", "sys", "dev", "run", "tmp", "var", "usr", "etc"] {
        fs::create_dir_all(inside(root, d))?;
    }
    fs::set_permissions(inside(root, "tmp"), fs::Permissions::from_mode(0o1777))?;
    // The host's top-level symlinks (merged /usr: bin -> usr/bin, ...).
    for entry in fs::read_dir("/").context("read /")?.flatten() {
        let path = entry.path();
        if let Ok(target) = fs::read_link(&path) {
            let link = inside(root, &entry.file_name().to_string_lossy());
            if !link.exists() {
                std::os::unix::fs::symlink(&target, &link)
                    .with_context(|| format!("symlink {}", link.display()))?;
            }
        }
    }
    std::os::unix::fs::symlink("../run", inside(root, "var/run"))?;
    for p in &r.host_paths {
        let host = Path::new(p);
        if !host.exists() {
            continue;
        }
        let t = inside(root, p);
        mount_point(host, &t)?;
        bind(host, &t, true)?;
    }
    mount(
        Some("proc"),
        &inside(root, "proc"),
        Some("proc"),
        ms(&[MsFlags::MS_NOSUID, MsFlags::MS_NODEV, MsFlags::MS_NOEXEC]),
        None::<&str>,
    )
    .context("mount /proc")?;
    bind(Path::new("/sys"), &inside(root, "sys"), true)?;
    build_dev(root)?;
    for d in &r.dirs {
        let t = inside(root, &d.path);
        fs::create_dir_all(&t).with_context(|| format!("create {}", t.display()))?;
        nix::unistd::chown(&t, Some(Uid::from_raw(d.uid)), Some(Gid::from_raw(d.gid)))
            .with_context(|| format!("chown {}", t.display()))?;
        fs::set_permissions(&t, fs::Permissions::from_mode(d.mode))?;
    }
    for m in &r.mounts {
        let t = inside(root, &m.target);
        mount_point(&m.source, &t)?;
        bind(&m.source, &t, m.read_only)?;
    }
    if r.read_only {
        mount(
            None::<&str>,
            root.as_path(),
            None::<&str>,
            ms(&[
                MsFlags::MS_REMOUNT,
                MsFlags::MS_RDONLY,
                MsFlags::MS_NOSUID,
                MsFlags::MS_NODEV,
            ]),
            Some("mode=755"),
        )
        .context("make the root file system read-only")?;
    }
    chdir(root.as_path()).context("chdir to the new root")?;
    pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detach the host's root")?;
    Ok(())
}

/// A private /dev: the usual device nodes bound from the host, /dev/shm, the standard links.
fn build_dev(root: &Path) -> Result<()> {
    let dev = inside(root, "dev");
    tmpfs(&dev, "mode=755")?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(node);
        let t = dev.join(node);
        fs::File::create(&t).with_context(|| format!("create {}", t.display()))?;
        bind(&host, &t, false)?;
    }
    let shm = dev.join("shm");
    fs::create_dir_all(&shm)?;
    tmpfs(&shm, "mode=1777")?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))?;
    }
    Ok(())
}

/// The program `argv[0]` names, looked up in the container's PATH.
fn resolve(argv0: &str, env: &[(String, String)]) -> Result<PathBuf> {
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(argv0);
        if let Ok(md) = fs::metadata(&candidate) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    bail!("exec: {argv0:?}: executable file not found in $PATH")
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"))
}

fn exec(spec: &LaunchSpec) -> Result<std::convert::Infallible> {
    let argv0 = spec.argv.first().context("no command")?;
    let program = resolve(argv0, &spec.env)?;
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<_>>()?;
    let prog = cstr(&program.to_string_lossy())?;
    execve(&prog, &argv, &env).with_context(|| format!("exec {}", program.display()))
}
