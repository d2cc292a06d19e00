//! receiptdb-operator: keeps a primary/secondary PostgreSQL pair alive and correct.

pub mod crd;
pub mod pair;
pub mod resources;
