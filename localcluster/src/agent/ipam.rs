//! Pod addresses of one node: 10.244.i.2 to .254, one per pod, recorded as files (address →
//! pod uid) so that an agent that restarts can remove its predecessor's pod networks.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Result};

use crate::layout::NodeSlot;

/// The allocator.
pub struct Ipam {
    node: NodeSlot,
    dir: PathBuf,
    taken: Mutex<BTreeMap<u8, String>>,
}

impl Ipam {
    /// An allocator recording under `dir`.
    pub fn new(node: NodeSlot, dir: PathBuf) -> Self {
        Self {
            node,
            dir,
            taken: Mutex::new(BTreeMap::new()),
        }
    }

    /// Forget every recorded address; returns the pod uids that held one.
    pub fn reset(&self) -> Vec<String> {
        let uids = fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::create_dir_all(&self.dir);
        if let Ok(mut t) = self.taken.lock() {
            t.clear();
        }
        uids
    }

    /// The pod's address (the same one again for a pod that has one).
    pub fn allocate(&self, uid: &str) -> Result<Ipv4Addr> {
        let mut taken = match self.taken.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let base = self.node.pod_network().octets();
        let addr = |host: u8| Ipv4Addr::new(base[0], base[1], base[2], host);
        if let Some((host, _)) = taken.iter().find(|(_, u)| u.as_str() == uid) {
            return Ok(addr(*host));
        }
        let Some(host) = (2..=254u8).find(|h| !taken.contains_key(h)) else {
            bail!("no free pod address on {}", self.node.name());
        };
        taken.insert(host, uid.to_string());
        let _ = fs::create_dir_all(&self.dir);
        fs::write(self.dir.join(addr(host).to_string()), uid)?;
        Ok(addr(host))
    }

    /// Give the pod's address back.
    pub fn release(&self, uid: &str) {
        let mut taken = match self.taken.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let base = self.node.pod_network().octets();
        taken.retain(|host, u| {
            if u == uid {
                let a = Ipv4Addr::new(base[0], base[1], base[2], *host);
                let _ = fs::remove_file(self.dir.join(a.to_string()));
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_stable_and_reused() {
        let dir = std::env::temp_dir().join(format!("ipam-test-{}", std::process::id()));
        let ipam = Ipam::new(NodeSlot { index: 3 }, dir.clone());
        ipam.reset();
        let a = ipam.allocate("pod-a").unwrap();
        let b = ipam.allocate("pod-b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(b, Ipv4Addr::new(10, 244, 3, 3));
        assert_eq!(ipam.allocate("pod-a").unwrap(), a);
        ipam.release("pod-a");
        assert_eq!(ipam.allocate("pod-c").unwrap(), a);
        let mut holders = ipam.reset();
        holders.sort();
        assert_eq!(holders, ["pod-b", "pod-c"]);
        let _ = fs::remove_dir_all(dir);
    }
}
