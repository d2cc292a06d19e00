//! A real Kubernetes control plane on one machine, for the project's tests and demo.
//!
//! - [`layout`]: addresses, names, ports and directories;
//! - [`net`]: the bridge and the nodes' and pods' network namespaces;
//! - [`pki`]: certificates and kubeconfigs;
//! - [`control_plane`]: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//!   kube-proxy and CoreDNS, built from their Go modules (`scripts/install-deps kube`);
//! - [`bootstrap`]: what the components need in the API before they start;
//! - [`agent`]: the node agent, a kubelet that runs containers as host processes;
//! - [`cluster`]: `up` and `down`;
//! - [`faults`]: a node lost or cut off, and brought back;
//! - [`testing`]: what tests that need the real API server share.

pub mod agent;
pub mod bootstrap;
pub mod cluster;
pub mod control_plane;
pub mod daemon;
pub mod faults;
pub mod httpget;
pub mod layout;
pub mod net;
pub mod pki;
pub mod testing;
