//! A container's environment and command line, as a kubelet builds them: the image's `ENV`,
//! the `kubernetes` Service's variables, `envFrom`, then `env` in order (values, Secret and
//! ConfigMap keys, pod fields), with `$(VAR)` references expanded in values, command and args.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret};
use kube::api::Api;
use kube::Client;

use crate::layout::KUBERNETES_SERVICE_IP;

/// Why an environment could not be built (the container waits with
/// `CreateContainerConfigError` and this message).
pub type ConfigError = String;

/// Reads Secrets and ConfigMaps of the pod's namespace, each once.
pub struct Lookup {
    client: Client,
    namespace: String,
    secrets: HashMap<String, Option<Secret>>,
    config_maps: HashMap<String, Option<ConfigMap>>,
}

impl Lookup {
    /// A lookup in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            secrets: HashMap::new(),
            config_maps: HashMap::new(),
        }
    }

    /// The Secret's data (`None`: it does not exist).
    pub async fn secret(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api
                .get_opt(name)
                .await
                .map_err(|e| format!("read Secret {name}: {e}"))?;
            self.secrets.insert(name.into(), s);
        }
        Ok(self.secrets[name].as_ref().map(|s| {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.clone().unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            data
        }))
    }

    /// The ConfigMap's data (`None`: it does not exist).
    pub async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let c = api
                .get_opt(name)
                .await
                .map_err(|e| format!("read ConfigMap {name}: {e}"))?;
            self.config_maps.insert(name.into(), c);
        }
        Ok(self.config_maps[name].as_ref().map(|c| {
            let mut data: BTreeMap<String, Vec<u8>> = c
                .data
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in c.binary_data.clone().unwrap_or_default() {
                data.insert(k, v.0);
            }
            data
        }))
    }
}

/// `$(VAR)` → its value when defined; `$$` → `$`; anything else as written.
pub fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a pod field (`fieldRef`).
pub fn field(
    pod: &Pod,
    sel: &ObjectFieldSelector,
    pod_ip: &str,
    host_ip: &str,
) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let path = sel.field_path.as_str();
    let by_key = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k).cloned())
                    .unwrap_or_default()
            })
    };
    if let Some(v) = by_key(&m.labels, "metadata.labels['") {
        return Ok(v);
    }
    if let Some(v) = by_key(&m.annotations, "metadata.annotations['") {
        return Ok(v);
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.into(),
        "status.hostIP" | "status.hostIPs" => host_ip.into(),
        other => return Err(format!("fieldRef {other:?} is not supported")),
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The environment of container `c` of `pod`, after the image's own `image_env`.
pub async fn environment(
    lookup: &mut Lookup,
    pod: &Pod,
    c: &Container,
    image_env: &[(String, String)],
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |k: String, v: String, order: &mut Vec<String>, vars: &mut HashMap<String, String>| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for (k, v) in image_env {
        set(k.clone(), v.clone(), &mut order, &mut vars);
    }
    let ksvc = KUBERNETES_SERVICE_IP.to_string();
    for (k, v) in [
        ("KUBERNETES_SERVICE_HOST", ksvc.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT", format!("tcp://{ksvc}:443")),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{ksvc}:443")),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_PORT", "443".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR", ksvc.clone()),
    ] {
        set(k.into(), v, &mut order, &mut vars);
    }
    set(
        "HOSTNAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
        &mut order,
        &mut vars,
    );
    for from in c.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, what, optional) = if let Some(s) = &from.secret_ref {
            (
                lookup.secret(&s.name).await?,
                format!("Secret {}", s.name),
                s.optional.unwrap_or(false),
            )
        } else if let Some(cm) = &from.config_map_ref {
            (
                lookup.config_map(&cm.name).await?,
                format!("ConfigMap {}", cm.name),
                cm.optional.unwrap_or(false),
            )
        } else {
            continue;
        };
        match data {
            Some(d) => {
                for (k, v) in d {
                    set(format!("{prefix}{k}"), text(&v), &mut order, &mut vars);
                }
            }
            None if optional => {}
            None => return Err(format!("{what} not found")),
        }
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or_default(), &vars),
            Some(src) => {
                if let Some(r) = &src.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match lookup
                        .secret(&r.name)
                        .await?
                        .and_then(|d| d.get(&r.key).cloned())
                    {
                        Some(v) => text(&v),
                        None if optional => continue,
                        None => {
                            return Err(format!("couldn't find key {} in Secret {}", r.key, r.name))
                        }
                    }
                } else if let Some(r) = &src.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match lookup
                        .config_map(&r.name)
                        .await?
                        .and_then(|d| d.get(&r.key).cloned())
                    {
                        Some(v) => text(&v),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}",
                                r.key, r.name
                            ))
                        }
                    }
                } else if let Some(f) = &src.field_ref {
                    field(pod, f, pod_ip, host_ip)?
                } else {
                    return Err(format!("env {}: this valueFrom is not supported", e.name));
                }
            }
        };
        set(e.name.clone(), value, &mut order, &mut vars);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// The command line: the container's `command` (else the image's entrypoint) and `args`
/// (else, without a `command`, the image's cmd), with `$(VAR)` expanded.
pub fn command_line(
    c: &Container,
    entrypoint: &[String],
    image_cmd: &[String],
    env: &[(String, String)],
) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let (cmd, args) = match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => (cmd.clone(), args.clone()),
        (Some(cmd), None) => (cmd.clone(), Vec::new()),
        (None, Some(args)) => (entrypoint.to_vec(), args.clone()),
        (None, None) => (entrypoint.to_vec(), image_cmd.to_vec()),
    };
    cmd.iter()
        .chain(args.iter())
        .map(|a| expand(a, &vars))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_the_kubelet_rules() {
        let vars = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$A $( x", &vars), "$A $( x");
    }

    #[test]
    fn command_line_takes_the_image_defaults() {
        let c = |cmd: Option<&[&str]>, args: Option<&[&str]>| Container {
            name: "c".into(),
            command: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            args: args.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Container::default()
        };
        let ep = vec!["/bin/op".to_string()];
        let cmd = vec!["run".to_string()];
        let env = vec![("PORT".to_string(), "8080".to_string())];
        assert_eq!(
            command_line(&c(None, None), &ep, &cmd, &env),
            ["/bin/op", "run"]
        );
        assert_eq!(
            command_line(&c(None, Some(&["serve", "$(PORT)"])), &ep, &cmd, &env),
            ["/bin/op", "serve", "8080"]
        );
        assert_eq!(
            command_line(&c(Some(&["sh"]), None), &ep, &cmd, &env),
            ["sh"]
        );
    }
}
