//! The command line: one binary for the controller, the CRD, and the Job entrypoints (so a
//! Job runs exactly the code version of the controller that created it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::resources::config::{OperatorConfig, FIELD_MANAGER, OPERATOR_BINARY};

/// receiptdb-operator: keeps a primary/secondary PostgreSQL pair alive and correct.
#[derive(Debug, Parser)]
#[command(name = "receiptdb-operator", version)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RECEIPTDB_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the current kubeconfig or the in-cluster configuration.
    Run(RunArgs),
    /// Print the ReceiptDbPair CRD as YAML.
    Crd,
    /// Copy this binary into DIR (the Jobs' init container: the operator image has no `cp`).
    #[command(hide = true)]
    CopyBinary {
        /// Target directory.
        dir: PathBuf,
    },
    /// Initialise a member's data directory.
    Initdb(receiptdb_postgres::cli::InitdbArgs),
    /// Make a member a fresh standby of another.
    Clone(receiptdb_postgres::cli::CloneArgs),
    /// Re-align a stale former primary as a standby (pg_rewind, else a fresh clone).
    Rejoin(receiptdb_postgres::cli::RejoinArgs),
    /// Compare two databases (exit 1 when they differ).
    Check(receiptdb_postgres::cli::CheckArgs),
    /// Re-align a target database to a source, copying only what differs.
    Sync(receiptdb_postgres::cli::SyncArgs),
    /// Write a compressed, optionally encrypted backup.
    Backup(receiptdb_postgres::cli::BackupArgs),
    /// Restore a backup into a database.
    Restore(receiptdb_postgres::cli::RestoreArgs),
}

/// `run`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "RECEIPTDB_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// The operator's own image, for the Jobs' init container (set by the chart).
    #[arg(long, env = "RECEIPTDB_OPERATOR_IMAGE")]
    pub operator_image: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "RECEIPTDB_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Field manager name for server-side apply.
    #[arg(long, default_value = FIELD_MANAGER)]
    pub field_manager: String,
    /// Leader election: the Lease (`coordination.k8s.io/v1`) the replicas of one installation
    /// compete for; only its holder reconciles. Unset: no election, this process always
    /// reconciles (run exactly one then). The chart sets it to its full name.
    #[arg(long, env = "RECEIPTDB_LEADER_ELECTION_LEASE")]
    pub leader_election_lease: Option<String>,
    /// The Lease's namespace (the operator's own; the chart passes the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// This replica's identity in the Lease (the chart passes the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
}

impl RunArgs {
    /// The leader election settings, when a Lease is named. Without an identity (no pod name)
    /// a random one is used.
    pub fn lease(&self) -> Option<crate::controller::leader::LeaseConfig> {
        let name = self
            .leader_election_lease
            .clone()
            .filter(|s| !s.is_empty())?;
        let identity = self
            .leader_election_identity
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("receiptdb-operator-{:016x}", rand::random::<u64>()));
        Some(crate::controller::leader::LeaseConfig {
            name,
            namespace: self.leader_election_namespace.clone(),
            identity,
        })
    }

    /// The operator configuration these options describe (read once, at startup).
    pub fn config(&self) -> OperatorConfig {
        OperatorConfig {
            operator_image: self
                .operator_image
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(OperatorConfig::default_image),
            operator_binary: OPERATOR_BINARY.to_string(),
            field_manager: self.field_manager.clone(),
            namespace: self.namespace.clone().filter(|s| !s.is_empty()),
        }
    }
}

/// `copy-binary`: copy the running executable to `<dir>/receiptdb-operator`, mode 0755,
/// through a temporary name so a half-copied binary is never executed.
pub fn copy_binary(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe()?;
    let target = dir.join("receiptdb-operator");
    let tmp = dir.join(".receiptdb-operator.tmp");
    std::fs::copy(&exe, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults() {
        let cli =
            Cli::try_parse_from(["receiptdb-operator", "run", "--operator-image", "x:1"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let cfg = args.config();
        assert_eq!(cfg.operator_image, "x:1");
        assert_eq!(cfg.field_manager, FIELD_MANAGER);
        assert_eq!(cfg.namespace, None);
        assert_eq!(args.metrics_addr.port(), 8080);
    }

    #[test]
    fn copies_itself() {
        let dir = std::env::temp_dir().join(format!("rdb-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = copy_binary(&dir).unwrap();
        let meta = std::fs::metadata(&t).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert!(meta.len() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
