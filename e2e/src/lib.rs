//! The local scenario suite of receiptdb-operator (DESIGN section 6).
//!
//! Everything a Kubernetes cluster would provide is simulated in one process, with real
//! PostgreSQL servers and the real operator binary for Jobs:
//! - [`api`]: the in-memory API server (kube-fake-client), shared by everything below;
//! - [`shim`]: a node shim (kubelet + StatefulSet/Job controllers, in miniature) running each
//!   member pod's and Job's container command as a local process, with paths, hosts and ports
//!   mapped by [`mapping`];
//! - [`proxy`]: a kube-proxy for the client Service, following its selector;
//! - [`writer`]: a client inserting receipts throughout, reconnecting like the Symfoware guide
//!   says, recording every acknowledged commit;
//! - [`controller`]: the operator's reconcile loop, run in-process against the in-memory API;
//! - [`scenarios`]: the runbook's situations, each ending in a [`verdict`], reported as JSON and
//!   an SVG timeline ([`report`], [`svg`]).

pub mod api;
pub mod clock;
pub mod controller;
pub mod harness;
pub mod mapping;
pub mod observer;
pub mod ports;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod scenarios;
pub mod shim;
pub mod stats;
pub mod svg;
pub mod verdict;
pub mod workdir;
pub mod writer;
