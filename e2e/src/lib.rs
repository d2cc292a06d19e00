//! The end-to-end scenario suite of receiptdb-operator (docs/design.md section 6), on a real Kubernetes
//! control plane on this machine (the `localcluster` crate):
//! - [`cluster`]: the local cluster (started or reused) and the operator installed into it by
//!   its Helm chart, running as a pod;
//! - [`harness`]: a scenario's world: its own namespace with the pair, applied like
//!   `kubectl apply`, the faults (SIGKILL of a member's postmaster, pod deletion, the operator
//!   killed), waits and the closing verdict;
//! - [`node_faults`]: a member's node lost or cut off, and brought back;
//! - [`observer`]: watches of the pair, its client Service and EndpointSlices, pods and Events,
//!   narrated as a timeline;
//! - [`writer`]: a client inserting receipts through the client Service throughout, reconnecting
//!   like the Symfoware guide says, recording every acknowledged commit;
//! - [`scenarios`]: the runbook's situations, each ending in a [`verdict`], reported as JSON and
//!   an SVG timeline ([`report`], [`svg`]).

pub mod clock;
pub mod cluster;
pub mod harness;
pub mod node_faults;
pub mod observer;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod svg;
pub mod verdict;
pub mod writer;
