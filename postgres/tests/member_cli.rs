//! The initdb / clone / rejoin entrypoints as the Jobs call them: flags per
//! docs/job-interface.md, passwords from the environment, one-line JSON reports, exit codes.
//! (Its own test binary: it sets process environment variables.)

use std::process::ExitCode;

use clap::Parser;
use receiptdb_postgres::cli::{self, CloneArgs, InitdbArgs, RejoinArgs};
use receiptdb_postgres::job_report::{Entrypoint, JobReport};
use receiptdb_postgres::testing::{free_port, postgres_tempdir, TestCluster, TEST_PASSWORD};

#[derive(Parser)]
enum Cli {
    Initdb(InitdbArgs),
    Clone(CloneArgs),
    Rejoin(RejoinArgs),
}

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("receiptdb-operator").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The report file as the operator reads it (one line, under 4 KiB, the typed contract).
fn report(path: &std::path::Path) -> JobReport {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.len() < 4096);
    JobReport::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn member_cli_initdb_clone_rejoin_reports_and_exit_codes() {
    std::env::set_var("RECEIPTDB_SUPERUSER_PASSWORD", TEST_PASSWORD);
    std::env::set_var("RECEIPTDB_REPLICATION_PASSWORD", "cli-replication-password");
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    let dir = postgres_tempdir();
    let pgdata = dir.path().join("data");
    let rep_file = dir.path().join("report.json");
    let port = free_port().to_string();
    let Cli::Initdb(args) = parse(&[
        "initdb",
        "--pgdata",
        pgdata.to_str().unwrap(),
        "--database",
        "receipts",
        "--port",
        &port,
        "--superuser",
        "postgres",
        "--replication-user",
        "replicator",
        "--set",
        "fsync=off",
        "--set",
        "listen_addresses=127.0.0.1",
        "--no-sync",
        "--report",
        rep_file.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    assert_eq!(cli::initdb(args).await, ExitCode::SUCCESS);
    let JobReport::Initdb(r) = report(&rep_file) else {
        panic!("not an initdb report")
    };
    assert!(r.ok && r.initialized, "{r:?}");
    assert!(r.system_identifier.is_some(), "{r:?}");
    let json = std::fs::read_to_string(&rep_file).unwrap();
    assert!(!json.contains(TEST_PASSWORD) && !json.contains("cli-replication-password"));
    let a = TestCluster::adopt(dir);

    let bdir = postgres_tempdir();
    let bdata = bdir.path().join("data");
    let brep = bdir.path().join("report.json");
    let source = a.conninfo("postgres");
    let clone_args = [
        "clone",
        "--pgdata",
        bdata.to_str().unwrap(),
        "--source",
        &source,
        "--port",
        &port,
        "--replication-user",
        "replicator",
        "--application-name",
        "orca-secondary",
        "--no-sync",
        "--report",
        brep.to_str().unwrap(),
    ];
    let Cli::Clone(args) = parse(&clone_args) else {
        unreachable!()
    };
    assert_eq!(cli::clone(args).await, ExitCode::SUCCESS);
    let JobReport::Clone(r) = report(&brep) else {
        panic!("not a clone report")
    };
    assert!(r.ok, "{r:?}");
    assert_eq!(
        r.slot, "orca_secondary",
        "slot derived from the application name"
    );
    // What the operator puts in lastSync.message.
    assert!(r.source.contains("127.0.0.1"), "{r:?}");
    assert_eq!(r.timeline, Some(1), "{r:?}");
    let passfile = bdir.path().join("data.replication.pgpass");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&passfile).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Cloning over a non-empty directory is refused: exit 2, the reason in the report.
    let Cli::Clone(args) = parse(&clone_args) else {
        unreachable!()
    };
    assert_eq!(cli::clone(args).await, ExitCode::from(2));
    let r = report(&brep);
    assert!(!r.ok(), "{r:?}");
    assert!(r.error().unwrap().contains("not empty"), "{r:?}");

    // A password inside the connection string is refused.
    let Cli::Rejoin(args) = parse(&[
        "rejoin",
        "--pgdata",
        bdata.to_str().unwrap(),
        "--source",
        &format!("{source} password=oops"),
        "--report",
        brep.to_str().unwrap(),
        "--json",
    ]) else {
        unreachable!()
    };
    assert_eq!(cli::rejoin(args).await, ExitCode::from(2));
    let r = report(&brep);
    assert_eq!(r.entrypoint(), Entrypoint::Rejoin);
    assert!(r.error().unwrap().contains("carries a password"), "{r:?}");
}
