//! A container's environment as a kubelet builds it: literal values, `valueFrom.secretKeyRef`,
//! `configMapKeyRef` and `fieldRef`, and `envFrom` Secrets and ConfigMaps.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::Api;

/// Facts `fieldRef` can name.
pub struct PodFacts<'a> {
    pub namespace: &'a str,
    pub pod_name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The environment of `container`, in order (later entries win, as in Kubernetes).
pub async fn resolve_env(
    client: &kube::Client,
    container: &Container,
    pod: &PodFacts<'_>,
) -> Result<Vec<(String, String)>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), pod.namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), pod.namespace);
    let mut out = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(s) = &from.secret_ref {
            let secret = secrets
                .get(&s.name)
                .await
                .with_context(|| format!("envFrom Secret {}", s.name))?;
            for (k, v) in secret.data.iter().flatten() {
                out.push((
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v.0).into_owned(),
                ));
            }
        }
        if let Some(c) = &from.config_map_ref {
            let cm = maps
                .get(&c.name)
                .await
                .with_context(|| format!("envFrom ConfigMap {}", c.name))?;
            for (k, v) in cm.data.iter().flatten() {
                out.push((format!("{prefix}{k}"), v.clone()));
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.secret_key_ref {
                let secret = secrets.get(&r.name).await.with_context(|| {
                    format!("env {}: read Secret {} (key {})", e.name, r.name, r.key)
                })?;
                let bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&r.key))
                    .map(|b| b.0.clone())
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|d| d.get(&r.key))
                            .map(|s| s.clone().into_bytes())
                    });
                match bytes {
                    Some(b) => String::from_utf8_lossy(&b).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => anyhow::bail!("env {}: Secret {} has no key {}", e.name, r.name, r.key),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let cm = maps
                    .get(&r.name)
                    .await
                    .with_context(|| format!("env {}: read ConfigMap {}", e.name, r.name))?;
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None => {
                        anyhow::bail!("env {}: ConfigMap {} has no key {}", e.name, r.name, r.key)
                    }
                }
            } else if let Some(f) = &from.field_ref {
                match f.field_path.as_str() {
                    "metadata.namespace" => pod.namespace.to_string(),
                    "metadata.name" => pod.pod_name.to_string(),
                    "status.podIP" | "status.hostIP" => crate::mapping::LOOPBACK.to_string(),
                    p => {
                        if let Some(key) = p
                            .strip_prefix("metadata.labels['")
                            .and_then(|k| k.strip_suffix("']"))
                        {
                            pod.labels.get(key).cloned().unwrap_or_default()
                        } else {
                            anyhow::bail!("env {}: fieldRef {p} is not supported", e.name)
                        }
                    }
                }
            } else {
                anyhow::bail!("env {}: valueFrom kind not supported", e.name)
            }
        } else {
            String::new()
        };
        out.push((e.name.clone(), value));
    }
    Ok(out)
}
