//! The seven Job entrypoints (`initdb`, `clone`, `rejoin`, `check`, `sync`, `backup`,
//! `restore`): their command-line arguments and how each one ends. The operator binary makes
//! them its subcommands; the contract is `docs/job-interface.md`.
//!
//! Each entrypoint parses its arguments, calls the library ([`crate::member`],
//! [`crate::compare`], [`crate::sync`], [`crate::backup`]) and hands the outcome to
//! `finish::finish`: the report line to `--report FILE`, the result printed, the exit code.
//!
//! Files: `member` (`initdb`, `clone`, `rejoin`), `check`, `sync`, `backup` (`backup`,
//! `restore`); [`args`], the argument groups they share (`--report`/`--json`,
//! `--source`/`--target`); `finish`, how all seven end.

pub mod args;
mod backup;
mod check;
mod finish;
mod member;
mod sync;

pub use args::{Connections, Reporting};
pub use backup::{backup, restore, BackupArgs, RestoreArgs};
pub use check::{check, CheckArgs};
pub use finish::EXIT_DIFFERENT;
pub use member::{
    clone, initdb, parse_setting, rejoin, CloneArgs, InitdbArgs, RejoinArgs, StandbyArgs,
};
pub use sync::{sync, SyncArgs};
