//! receiptdb-operator: keeps a primary/secondary PostgreSQL pair alive and correct.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod http;
pub mod metrics;
pub mod pair;
pub mod resources;
