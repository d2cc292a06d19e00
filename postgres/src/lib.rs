//! The data path of receiptdb-operator.
//!
//! Everything the operator does to data lives here, with no Kubernetes types, so it can be used
//! by the controller, by the Job entrypoints and by hand against any two PostgreSQL servers.
//!
//! - [`cli`]: the Job entrypoints (`initdb`, `clone`, `rejoin`, `check`, `sync`, `backup`,
//!   `restore`): their command-line arguments, report line, output and exit code. The modules
//!   below are the library they call, with no command line and no printing.
//! - [`member`]: a member's data directory: `initdb`, `clone`, `rejoin` (physical, pg tools).
//! - [`actions`]: SQL actions the controller takes on a running member: probe, promote, fence,
//!   synchronous replication on/off.
//! - [`compare`]: `check`, per-table comparison of two databases at consistent snapshots.
//! - [`sync`]: re-align a target database to a source (schema and data), only what differs.
//! - [`backup`]: compressed, optionally encrypted dumps with a manifest, and restore.
//! - [`job_report`]: what each entrypoint reports to the operator (the typed contract).
//! - [`conn`]: connections from libpq connection strings, TLS as libpq's `sslmode` says.
//! - [`pki`]: a pair's CA and server certificate: issue, inspect, decide when to re-issue.

pub mod actions;
pub mod backup;
pub mod cli;
pub mod compare;
pub mod conn;
pub mod job_report;
pub mod member;
pub mod pgbin;
pub mod pki;
mod report;
pub mod schema;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
