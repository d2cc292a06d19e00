//! One container instance: its launch spec built from the pod spec and the image, its process
//! (started through `container-init`), its exit, its graceful stop, and commands run inside it
//! (exec probes and hooks).

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use super::cgroup;
use super::env::{command_line, environment, Lookup};
use super::images::Image;
use super::launch::{LaunchSpec, Mount, Rootfs, START_ERROR_EXIT, START_ERROR_PREFIX};
use super::volumes::PodVolumes;
use super::Agent;
use crate::layout::{CLUSTER_DOMAIN, DNS_SERVICE_IP};

/// Where a container writes its termination message unless it says otherwise.
pub const DEFAULT_TERMINATION_PATH: &str = "/dev/termination-log";
/// A termination message's limit (a kubelet's).
const MESSAGE_LIMIT: usize = 4096;

/// Who a container's processes run as, and with what, inside it: what an exec needs again.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub no_new_privs: bool,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub cgroup: PathBuf,
}

/// A container ready to start.
pub struct Prepared {
    pub spec: LaunchSpec,
    pub identity: Identity,
    pub stop_signal: Signal,
    pub log: PathBuf,
    pub termination_log: PathBuf,
    pub fallback_to_logs: bool,
}

/// A started container.
pub struct Running {
    pub pid: i32,
    child: Child,
    pub started_at: Timestamp,
}

/// How a container ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub finished_at: Timestamp,
    /// Its termination message (file, or the log's end on error when the policy says so).
    pub message: Option<String>,
    /// The container never ran its command (`StartError`).
    pub start_error: bool,
}

/// The pod-level files every container sees (`/etc/hosts`, `/etc/hostname`,
/// `/etc/resolv.conf`), written once per pod.
pub fn write_pod_files(pod: &Pod, pod_dir: &Path, pod_ip: Ipv4Addr) -> Result<()> {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let hostname = hostname(pod);
    let fqdn = spec
        .subdomain
        .as_ref()
        .map(|sub| format!("{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN} "))
        .unwrap_or_default();
    let etc = pod_dir.join("etc");
    fs::create_dir_all(&etc)?;
    fs::write(
        etc.join("hosts"),
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{fqdn}{hostname}\n"),
    )?;
    fs::write(etc.join("hostname"), format!("{hostname}\n"))?;
    let resolv = match spec.dns_policy.as_deref() {
        Some("Default") => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        _ => format!(
            "search {ns}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\nnameserver {DNS_SERVICE_IP}\noptions ndots:5\n"
        ),
    };
    fs::write(etc.join("resolv.conf"), resolv)?;
    for f in ["hosts", "hostname", "resolv.conf"] {
        fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// The pod's host name (`spec.hostname`, else its name).
pub fn hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// Everything needed to start container `c` (instance `restart` of it).
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    image: &Image,
    volumes: &PodVolumes,
    lookup: &mut Lookup,
    pod_ip: Ipv4Addr,
    restart: i32,
) -> Result<Prepared, String> {
    let uid_pod = pod.metadata.uid.clone().unwrap_or_default();
    let pod_dir = agent.pod_dir(&uid_pod);
    let cdir = pod_dir.join("containers").join(&c.name);
    let io = |e: std::io::Error| format!("{}: {e}", cdir.display());
    fs::create_dir_all(&cdir).map_err(io)?;
    let spec = pod.spec.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    let csc = c.security_context.clone().unwrap_or_default();
    let uid = csc
        .run_as_user
        .or(psc.run_as_user)
        .map(|u| u as u32)
        .unwrap_or(image.user.0);
    let gid = csc
        .run_as_group
        .or(psc.run_as_group)
        .map(|g| g as u32)
        .unwrap_or(if csc.run_as_user.or(psc.run_as_user).is_some() {
            uid
        } else {
            image.user.1
        });
    if csc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    let mut groups: Vec<u32> = psc
        .supplemental_groups
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(g) = psc.fs_group {
        groups.push(g as u32);
    }
    groups.push(gid);
    groups.sort_unstable();
    groups.dedup();

    let env = environment(
        lookup,
        pod,
        c,
        &image.env,
        &pod_ip.to_string(),
        &agent.node.ip().to_string(),
    )
    .await?;
    let argv = command_line(c, &image.entrypoint, &image.cmd, &env);
    if argv.is_empty() {
        return Err("no command: the container and the image name none".into());
    }

    // /etc/passwd and /etc/group of the image.
    let etc = cdir.join("etc");
    fs::create_dir_all(&etc).map_err(io)?;
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    for l in &image.passwd {
        passwd.push_str(l);
        passwd.push('\n');
    }
    let mut group = String::from("root:x:0:\nnogroup:x:65534:\n");
    for l in &image.group {
        group.push_str(l);
        group.push('\n');
    }
    fs::write(etc.join("passwd"), passwd).map_err(io)?;
    fs::write(etc.join("group"), group).map_err(io)?;
    let termination_log = cdir.join(format!("termination-log.{restart}"));
    fs::write(&termination_log, b"").map_err(io)?;
    fs::set_permissions(&termination_log, fs::Permissions::from_mode(0o666)).map_err(io)?;

    let mut mounts: Vec<Mount> = Vec::new();
    for (host, path) in &image.files {
        mounts.push(Mount {
            source: host.clone(),
            target: path.clone(),
            read_only: true,
        });
    }
    for f in ["passwd", "group"] {
        mounts.push(Mount {
            source: etc.join(f),
            target: format!("/etc/{f}"),
            read_only: true,
        });
    }
    for f in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(Mount {
            source: pod_dir.join("etc").join(f),
            target: format!("/etc/{f}"),
            read_only: false,
        });
    }
    let tpath = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| DEFAULT_TERMINATION_PATH.into());
    mounts.push(Mount {
        source: termination_log.clone(),
        target: tpath,
        read_only: false,
    });
    let mut volume_mounts = c.volume_mounts.clone().unwrap_or_default();
    // Parents before children, as container runtimes mount them.
    volume_mounts.sort_by_key(|m| m.mount_path.trim_end_matches('/').matches('/').count());
    for m in volume_mounts {
        let base = volumes
            .paths
            .get(&m.name)
            .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = base.join(sub);
                if !p.exists() {
                    fs::create_dir_all(&p).map_err(io)?;
                }
                p
            }
            None => base.clone(),
        };
        mounts.push(Mount {
            source,
            target: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    let cgroup = cgroup::create(&agent.name(), &uid_pod, &c.name).map_err(|e| format!("{e:#}"))?;
    let cwd = c.working_dir.clone().unwrap_or_else(|| "/".into());
    let identity = Identity {
        uid,
        gid,
        groups: groups.clone(),
        no_new_privs: csc.allow_privilege_escalation == Some(false),
        env: env.clone(),
        cwd: cwd.clone(),
        cgroup: cgroup.clone(),
    };
    let launch = LaunchSpec {
        netns: Some(PathBuf::from("/run/netns").join(crate::net::pod_netns(&uid_pod))),
        join: None,
        rootfs: Some(Rootfs {
            dir: cdir.join("root"),
            host_paths: image.host_paths.clone(),
            dirs: image.dirs.clone(),
            mounts,
            read_only: csc.read_only_root_filesystem == Some(true),
        }),
        hostname: hostname(pod),
        cgroup: Some(cgroup),
        uid,
        gid,
        groups,
        no_new_privs: identity.no_new_privs,
        env,
        argv,
        cwd,
    };
    Ok(Prepared {
        spec: launch,
        identity,
        stop_signal: image.stop_signal,
        log: pod_dir
            .join("logs")
            .join(format!("{}.{restart}.log", c.name)),
        termination_log,
        fallback_to_logs: c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
    })
}

async fn spawn_init(agent: &Agent, spec: &LaunchSpec, log: Option<&Path>) -> Result<Child> {
    let mut cmd = Command::new(&agent.program);
    cmd.arg("container-init")
        .stdin(Stdio::piped())
        .process_group(0);
    match log {
        Some(path) => {
            if let Some(d) = path.parent() {
                fs::create_dir_all(d)?;
            }
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open {}", path.display()))?;
            cmd.stdout(f.try_clone()?).stderr(f);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
    }
    let mut child = cmd.spawn().context("start container-init")?;
    let json = serde_json::to_vec(spec)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .await
            .context("send the launch spec")?;
        stdin.shutdown().await.ok();
    }
    Ok(child)
}

/// Start the container.
pub async fn start(agent: &Agent, p: &Prepared) -> Result<Running> {
    let child = spawn_init(agent, &p.spec, Some(&p.log)).await?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .context("the container's process has no pid")?;
    Ok(Running {
        pid,
        child,
        started_at: Timestamp::now(),
    })
}

fn tail(path: &Path, max_lines: usize, max_bytes: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(max_lines)..].join("\n");
    if out.len() > max_bytes {
        let cut = out.len() - max_bytes;
        let cut = (cut..out.len())
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(out.len());
        out = out[cut..].to_string();
    }
    out
}

impl Running {
    /// Wait for the container's process to end; read its termination message.
    pub async fn wait(&mut self, p: &Prepared) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().await;
        let (code, signal) = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => (c, None),
                (None, Some(sig)) => (128 + sig, Some(sig)),
                _ => (-1, None),
            },
            Err(_) => (-1, None),
        };
        let mut message = fs::read(&p.termination_log)
            .ok()
            .map(|b| {
                let b = &b[..b.len().min(MESSAGE_LIMIT)];
                String::from_utf8_lossy(b).into_owned()
            })
            .filter(|m| !m.is_empty());
        let log_tail = tail(&p.log, 80, 2048);
        let start_error = code == START_ERROR_EXIT
            && log_tail
                .lines()
                .last()
                .is_some_and(|l| l.starts_with(START_ERROR_PREFIX));
        if start_error {
            message = log_tail
                .lines()
                .last()
                .map(|l| l[START_ERROR_PREFIX.len()..].to_string());
        } else if message.is_none() && code != 0 && p.fallback_to_logs {
            message = Some(log_tail).filter(|m| !m.is_empty());
        }
        Exit {
            code,
            signal,
            finished_at: Timestamp::now(),
            message,
            start_error,
        }
    }

    /// Send `sig` to the container's first process.
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid), sig);
    }
}

/// Kill every process of a container (after its grace period, or at once).
pub fn kill_all(p: &Prepared) {
    cgroup::kill(&p.identity.cgroup);
}

/// Run `argv` inside the running container `pid` as the container's user, within `timeout`;
/// returns the exit code and the first part of its output.
pub async fn exec(
    agent: &Agent,
    pid: i32,
    hostname: &str,
    id: &Identity,
    argv: &[String],
    timeout: Duration,
) -> Result<(i32, String)> {
    let vars: HashMap<String, String> = id.env.iter().cloned().collect();
    let spec = LaunchSpec {
        netns: None,
        join: Some(pid),
        rootfs: None,
        hostname: hostname.into(),
        cgroup: Some(id.cgroup.clone()),
        uid: id.uid,
        gid: id.gid,
        groups: id.groups.clone(),
        no_new_privs: id.no_new_privs,
        env: id.env.clone(),
        argv: argv.iter().map(|a| super::env::expand(a, &vars)).collect(),
        cwd: id.cwd.clone(),
    };
    let mut cmd = Command::new(&agent.program);
    cmd.arg("container-init")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("start container-init")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&serde_json::to_vec(&spec)?).await?;
        stdin.shutdown().await.ok();
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("timed out after {timeout:?}"))?
        .context("wait for the command")?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let text: String = text.chars().take(1024).collect();
    Ok((out.status.code().unwrap_or(-1), text))
}
