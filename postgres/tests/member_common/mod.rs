//! Helpers shared by the member tests (in the library, so the operator's tests use them too).
#![allow(unused_imports)]

pub use receiptdb_postgres::testing::members::*;
