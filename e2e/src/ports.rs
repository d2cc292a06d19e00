//! Local ports standing in for the cluster's addresses: one per member (its server's port,
//! stable for the whole scenario, like a Service's cluster IP) and the proxy's.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

/// Pick a loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port on 127.0.0.1")?;
    Ok(l.local_addr().context("read the ephemeral port")?.port())
}

/// Ports by name (StatefulSet name for members, Service name for the client Service).
#[derive(Debug, Clone, Default)]
pub struct Ports {
    inner: Arc<Mutex<BTreeMap<String, u16>>>,
}

impl Ports {
    /// The port for `name`, allocated on first use and stable afterwards.
    pub fn port_for(&self, name: &str) -> Result<u16> {
        let mut map = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("ports lock poisoned"))?;
        if let Some(p) = map.get(name) {
            return Ok(*p);
        }
        let used: Vec<u16> = map.values().copied().collect();
        let mut p = free_port()?;
        while used.contains(&p) {
            p = free_port()?;
        }
        map.insert(name.to_string(), p);
        Ok(p)
    }

    /// Set a known port (the proxy's listener).
    pub fn set(&self, name: &str, port: u16) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(name.to_string(), port);
        }
    }

    /// The port for `name` if one was allocated.
    pub fn get(&self, name: &str) -> Option<u16> {
        self.inner.lock().ok()?.get(name).copied()
    }

    /// Every allocated name and port.
    pub fn all(&self) -> BTreeMap<String, u16> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
