//! Volumes of a pod template, made local: a PersistentVolumeClaim is a directory under
//! `<work>/pvc/<claim>` that outlives pods (like a volume), an emptyDir a scratch directory, a
//! Secret or ConfigMap volume a directory of files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::api::Api;
use kube::ResourceExt;

/// The local directory of a claim (created, owned by the `postgres` user when we are root: the
/// member images run PostgreSQL as a non-root user that owns its volume).
pub fn claim_dir(work: &Path, claim: &str) -> Result<PathBuf> {
    let dir = work.join("pvc").join(claim);
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("create volume {}", dir.display()))?;
        crate::workdir::set_mode(&work.join("pvc"), 0o755)?;
        receiptdb_postgres::pgbin::hand_to_postgres(&dir)
            .with_context(|| format!("chown volume {} to postgres", dir.display()))?;
    }
    Ok(dir)
}

/// A StatefulSet's pod-0 claims: `(template name, claim name)` for each volumeClaimTemplate.
pub fn statefulset_claims(sts: &StatefulSet) -> Vec<(String, String)> {
    let name = sts.name_any();
    sts.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|t| {
            t.iter()
                .filter_map(|c| c.metadata.name.clone())
                .map(|tn| (tn.clone(), format!("{tn}-{name}-0")))
                .collect()
        })
        .unwrap_or_default()
}

/// Resolved mounts of one container: container path → local path, and the claims it uses.
#[derive(Debug, Default)]
pub struct Mounts {
    /// `(mountPath, local path)`.
    pub paths: Vec<(String, PathBuf)>,
    /// Claim names mounted.
    pub claims: Vec<String>,
}

/// Resolve `container`'s volume mounts. `sts_claims` maps StatefulSet volumeClaimTemplate names
/// to claim names (empty for Jobs); `scratch` holds emptyDir, Secret and ConfigMap volumes.
pub async fn resolve_mounts(
    client: &kube::Client,
    namespace: &str,
    work: &Path,
    spec: &PodSpec,
    container: &Container,
    sts_claims: &[(String, String)],
    scratch: &Path,
) -> Result<Mounts> {
    let mut out = Mounts::default();
    let volumes = spec.volumes.clone().unwrap_or_default();
    for m in container.volume_mounts.iter().flatten() {
        let base: PathBuf = if let Some((_, claim)) = sts_claims.iter().find(|(t, _)| *t == m.name)
        {
            out.claims.push(claim.clone());
            claim_dir(work, claim)?
        } else if let Some(v) = volumes.iter().find(|v| v.name == m.name) {
            if let Some(pvc) = &v.persistent_volume_claim {
                out.claims.push(pvc.claim_name.clone());
                claim_dir(work, &pvc.claim_name)?
            } else if v.empty_dir.is_some() {
                let d = scratch.join(&v.name);
                std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
                crate::workdir::set_mode(&d, 0o777)?;
                d
            } else if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                    .get(&name)
                    .await
                    .with_context(|| format!("read Secret {name} for volume {}", v.name))?;
                let d = scratch.join(&v.name);
                std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
                for (k, val) in secret.data.iter().flatten() {
                    write_file(&d.join(k), &val.0, 0o600)?;
                }
                for (k, val) in secret.string_data.iter().flatten() {
                    write_file(&d.join(k), val.as_bytes(), 0o600)?;
                }
                d
            } else if let Some(c) = &v.config_map {
                let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
                    .get(&c.name)
                    .await
                    .with_context(|| format!("read ConfigMap {} for volume {}", c.name, v.name))?;
                let d = scratch.join(&v.name);
                std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
                for (k, val) in cm.data.iter().flatten() {
                    write_file(&d.join(k), val.as_bytes(), 0o644)?;
                }
                d
            } else {
                anyhow::bail!(
                    "volume {} of a pod template has a kind the node shim does not support",
                    v.name
                );
            }
        } else {
            anyhow::bail!("volume mount {} names no volume", m.name);
        };
        let local = match &m.sub_path {
            Some(sub) if !sub.is_empty() => base.join(sub),
            _ => base,
        };
        out.paths.push((m.mount_path.clone(), local));
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))?;
    crate::workdir::set_mode(path, mode)
}
