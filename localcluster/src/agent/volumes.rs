//! A pod's volumes as directories under its pod directory (or, for claims, the provisioned
//! volume's directory), mounted into its containers by [`super::launch`]:
//! - `emptyDir`: an empty directory (mode 0777);
//! - `secret`, `configMap`, `downwardAPI`, `projected` (ServiceAccount token, ConfigMap,
//!   Secret and downward API sources): files written from the API, with their modes; the
//!   projected token comes from the TokenRequest API, bound to the pod, and is renewed at 80 %
//!   of its lifetime as a kubelet renews it;
//! - `persistentVolumeClaim`: the bound PersistentVolume's `local` or `hostPath` directory;
//! - `hostPath`: the host path.
//!
//! `fsGroup`: files and directories this agent writes get that group (read for read-only
//! volumes, set-group-id directories); a claim's volume gets it on its top directory only,
//! when it differs (like `fsGroupChangePolicy: OnRootMismatch`), never recursively.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
    Volume,
};
use kube::api::{Api, PostParams};
use nix::unistd::{chown, Gid};

use super::env::{field, Lookup};
use super::Agent;

/// A volume that could not be set up (`FailedMount`).
#[derive(Debug, Clone)]
pub struct MountFailure {
    pub volume: String,
    pub message: String,
}

/// A projected ServiceAccount token file to renew.
struct Token {
    path: PathBuf,
    audiences: Vec<String>,
    seconds: i64,
    written: Instant,
    mode: u32,
}

/// The prepared volumes of a pod.
pub struct PodVolumes {
    /// Volume name → host path.
    pub paths: HashMap<String, PathBuf>,
    tokens: Vec<Token>,
}

fn fail(volume: &str, message: impl Into<String>) -> MountFailure {
    MountFailure {
        volume: volume.into(),
        message: message.into(),
    }
}

/// Write `content` at `dir/rel` with `mode` (and `fs_group` read access).
fn write_file(
    dir: &Path,
    rel: &str,
    content: &[u8],
    mode: u32,
    fs_group: Option<i64>,
) -> std::io::Result<()> {
    let path = dir.join(rel.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, content)?;
    let mut mode = mode & 0o7777;
    if let Some(g) = fs_group {
        let _ = chown(&tmp, None, Some(Gid::from_raw(g as u32)));
        mode |= 0o440;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, &path)
}

/// Give a directory (and its subdirectories) the pod's fsGroup.
fn group_dirs(dir: &Path, fs_group: Option<i64>, mode: u32) {
    let Some(g) = fs_group else {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
        return;
    };
    let _ = chown(dir, None, Some(Gid::from_raw(g as u32)));
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o2070));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                group_dirs(&e.path(), fs_group, mode);
            }
        }
    }
}

/// Files of `data`, all keys or the `items` asked for.
fn key_files(
    volume: &str,
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<KeyToPath>>,
    default_mode: u32,
) -> Result<Vec<(String, Vec<u8>, u32)>, MountFailure> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| {
                        (
                            i.path.clone(),
                            v.clone(),
                            i.mode.map(|m| m as u32).unwrap_or(default_mode),
                        )
                    })
                    .ok_or_else(|| fail(volume, format!("{what} has no key {:?}", i.key)))
            })
            .collect(),
    }
}

/// A Secret or a ConfigMap a volume shows (its name, and whether it may be missing).
enum Source<'a> {
    Secret(&'a str, bool),
    ConfigMap(&'a str, bool),
}

impl Source<'_> {
    /// Its files (all keys, or the `items` asked for); none when it is missing and optional.
    async fn files(
        &self,
        lookup: &mut Lookup,
        volume: &str,
        items: &Option<Vec<KeyToPath>>,
        mode: u32,
    ) -> Result<Vec<(String, Vec<u8>, u32)>, MountFailure> {
        let (data, what, kind, optional) = match *self {
            Source::Secret(n, optional) => (
                lookup.secret(n).await,
                format!("Secret {n}"),
                format!("secret \"{n}\""),
                optional,
            ),
            Source::ConfigMap(n, optional) => (
                lookup.config_map(n).await,
                format!("ConfigMap {n}"),
                format!("configmap \"{n}\""),
                optional,
            ),
        };
        match data.map_err(|m| fail(volume, m))? {
            Some(d) => key_files(volume, &what, &d, items, mode),
            None if optional => Ok(Vec::new()),
            None => Err(fail(volume, format!("{kind} not found"))),
        }
    }
}

fn downward_files(
    pod: &Pod,
    volume: &str,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, Vec<u8>, u32)>, MountFailure> {
    items
        .iter()
        .map(|i| {
            let f = i
                .field_ref
                .as_ref()
                .ok_or_else(|| fail(volume, "only fieldRef items are supported"))?;
            let v = field(pod, f, pod_ip, host_ip).map_err(|m| fail(volume, m))?;
            Ok((
                i.path.clone(),
                v.into_bytes(),
                i.mode.map(|m| m as u32).unwrap_or(default_mode),
            ))
        })
        .collect()
}

impl PodVolumes {
    /// Set up every volume of `pod` under `pod_dir/volumes`.
    pub async fn prepare(
        agent: &Agent,
        pod: &Pod,
        pod_dir: &Path,
        lookup: &mut Lookup,
        pod_ip: &str,
    ) -> Result<Self, MountFailure> {
        let spec = pod.spec.clone().unwrap_or_default();
        let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
        let mut out = Self {
            paths: HashMap::new(),
            tokens: Vec::new(),
        };
        let host_ip = agent.node.ip().to_string();
        for v in spec.volumes.clone().unwrap_or_default() {
            let dir = pod_dir.join("volumes").join(&v.name);
            let path = out
                .prepare_one(agent, pod, &v, &dir, lookup, fs_group, pod_ip, &host_ip)
                .await?;
            out.paths.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn prepare_one(
        &mut self,
        agent: &Agent,
        pod: &Pod,
        v: &Volume,
        dir: &Path,
        lookup: &mut Lookup,
        fs_group: Option<i64>,
        pod_ip: &str,
        host_ip: &str,
    ) -> Result<PathBuf, MountFailure> {
        let name = v.name.as_str();
        let io = |e: std::io::Error| fail(name, format!("{}: {e}", dir.display()));
        if v.empty_dir.is_some() {
            fs::create_dir_all(dir).map_err(io)?;
            group_dirs(dir, fs_group, 0o777);
            return Ok(dir.to_path_buf());
        }
        if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            if matches!(hp.type_.as_deref(), Some("DirectoryOrCreate")) {
                fs::create_dir_all(&p).map_err(io)?;
            }
            if !p.exists() {
                return Err(fail(name, format!("hostPath {} does not exist", hp.path)));
            }
            return Ok(p);
        }
        if let Some(c) = &v.persistent_volume_claim {
            return claim_path(agent, pod, name, &c.claim_name, fs_group).await;
        }
        let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
        let mode_of = |m: Option<i32>| m.map(|m| m as u32).unwrap_or(0o644);
        if let Some(s) = &v.secret {
            let secret = s.secret_name.clone().unwrap_or_default();
            let from = Source::Secret(&secret, s.optional.unwrap_or(false));
            files = from
                .files(lookup, name, &s.items, mode_of(s.default_mode))
                .await?;
        } else if let Some(c) = &v.config_map {
            let from = Source::ConfigMap(&c.name, c.optional.unwrap_or(false));
            files = from
                .files(lookup, name, &c.items, mode_of(c.default_mode))
                .await?;
        } else if let Some(d) = &v.downward_api {
            let mode = mode_of(d.default_mode);
            files = downward_files(
                pod,
                name,
                &d.items.clone().unwrap_or_default(),
                mode,
                pod_ip,
                host_ip,
            )?;
        } else if let Some(p) = &v.projected {
            let mode = mode_of(p.default_mode);
            for src in p.sources.clone().unwrap_or_default() {
                if let Some(t) = &src.service_account_token {
                    let audiences = t.audience.clone().into_iter().collect::<Vec<_>>();
                    let seconds = t.expiration_seconds.unwrap_or(3600);
                    let token = request_token(agent, pod, &audiences, seconds)
                        .await
                        .map_err(|m| fail(name, m))?;
                    files.push((t.path.clone(), token.into_bytes(), mode));
                    self.tokens.push(Token {
                        path: dir.join(&t.path),
                        audiences,
                        seconds,
                        written: Instant::now(),
                        mode,
                    });
                }
                if let Some(c) = &src.config_map {
                    let from = Source::ConfigMap(&c.name, c.optional.unwrap_or(false));
                    files.extend(from.files(lookup, name, &c.items, mode).await?);
                }
                if let Some(s) = &src.secret {
                    let from = Source::Secret(&s.name, s.optional.unwrap_or(false));
                    files.extend(from.files(lookup, name, &s.items, mode).await?);
                }
                if let Some(d) = &src.downward_api {
                    files.extend(downward_files(
                        pod,
                        name,
                        &d.items.clone().unwrap_or_default(),
                        mode,
                        pod_ip,
                        host_ip,
                    )?);
                }
            }
        } else {
            return Err(fail(
                name,
                "this volume type is not supported by the local node agent",
            ));
        }
        fs::create_dir_all(dir).map_err(io)?;
        for (rel, content, mode) in files {
            write_file(dir, &rel, &content, mode, fs_group).map_err(io)?;
        }
        group_dirs(dir, fs_group, 0o755);
        Ok(dir.to_path_buf())
    }

    /// Renew projected tokens past 80 % of their lifetime.
    pub async fn refresh_tokens(&mut self, agent: &Agent, pod: &Pod, fs_group: Option<i64>) {
        for t in &mut self.tokens {
            let due = Duration::from_secs((t.seconds.max(600) as u64) * 8 / 10);
            if t.written.elapsed() < due {
                continue;
            }
            match request_token(agent, pod, &t.audiences, t.seconds).await {
                Ok(token) => {
                    let (dir, rel) = match (t.path.parent(), t.path.file_name()) {
                        (Some(d), Some(f)) => (d.to_path_buf(), f.to_string_lossy().into_owned()),
                        _ => continue,
                    };
                    if write_file(&dir, &rel, token.as_bytes(), t.mode, fs_group).is_ok() {
                        t.written = Instant::now();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renew a projected token"),
            }
        }
    }
}

/// A token for the pod's ServiceAccount, bound to the pod.
async fn request_token(
    agent: &Agent,
    pod: &Pod,
    audiences: &[String],
    seconds: i64,
) -> Result<String, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audiences.to_vec()),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(agent.client.clone(), &ns);
    let resp = api
        .create_token_request(&sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("request a token for ServiceAccount {sa}: {e}"))?;
    resp.status
        .and_then(|s| s.token)
        .ok_or_else(|| format!("the token request for ServiceAccount {sa} returned no token"))
}

/// The directory of the volume bound to claim `claim`.
async fn claim_path(
    agent: &Agent,
    pod: &Pod,
    volume: &str,
    claim: &str,
    fs_group: Option<i64>,
) -> Result<PathBuf, MountFailure> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pvc = Api::<PersistentVolumeClaim>::namespaced(agent.client.clone(), &ns)
        .get_opt(claim)
        .await
        .map_err(|e| fail(volume, format!("read PersistentVolumeClaim {claim}: {e}")))?
        .ok_or_else(|| {
            fail(
                volume,
                format!("persistentvolumeclaim \"{claim}\" not found"),
            )
        })?;
    let pv_name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            fail(
                volume,
                format!("persistentvolumeclaim \"{claim}\" is not bound"),
            )
        })?;
    let pv = Api::<PersistentVolume>::all(agent.client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| fail(volume, format!("read PersistentVolume {pv_name}: {e}")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .local
        .map(|l| l.path)
        .or(spec.host_path.map(|h| h.path))
        .ok_or_else(|| {
            fail(
                volume,
                format!("PersistentVolume {pv_name} is neither local nor hostPath"),
            )
        })?;
    let p = PathBuf::from(path);
    if !p.is_dir() {
        return Err(fail(
            volume,
            format!(
                "the directory of PersistentVolume {pv_name} ({}) is missing on {}",
                p.display(),
                agent.name()
            ),
        ));
    }
    if let Some(g) = fs_group {
        use std::os::unix::fs::MetadataExt;
        if fs::metadata(&p).is_ok_and(|m| i64::from(m.gid()) != g) {
            let _ = chown(&p, None, Some(Gid::from_raw(g as u32)));
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o2777));
        }
    }
    Ok(p)
}
