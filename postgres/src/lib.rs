//! The data path of receiptdb-operator.
//!
//! Everything the operator does to data lives here, with no Kubernetes types, so it can be used
//! by the controller, by the Job entrypoints and by hand against any two PostgreSQL servers.

pub mod conn;
pub mod pgbin;
#[cfg(feature = "testing")]
pub mod testing;
