//! The initdb and clone entrypoints with TLS, configured as the operator's Jobs configure them:
//! only through the environment (`RECEIPTDB_TLS_DIR`, `PGSSLMODE=verify-full`,
//! `PGSSLROOTCERT`). (Its own test binary: it sets process environment variables.)

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use receiptdb_postgres::cli::{self, CloneArgs, InitdbArgs};
use receiptdb_postgres::conn::{SslMode, TlsSettings};
use receiptdb_postgres::job_report::JobReport;
use receiptdb_postgres::testing::members::wait_in_sync;
use receiptdb_postgres::testing::tls::{test_pki, verify_full, write_member_files};
use receiptdb_postgres::testing::{free_port, postgres_tempdir, TestCluster, TEST_PASSWORD};

#[derive(Parser)]
enum Cli {
    Initdb(InitdbArgs),
    Clone(CloneArgs),
}

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("receiptdb-operator").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn report(path: &std::path::Path) -> JobReport {
    let text = std::fs::read_to_string(path).unwrap();
    JobReport::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn member_cli_with_tls_from_the_jobs_environment() {
    let (ca, server) = test_pki();
    // Both members find their files in the same directory, as both pods mount the same Secret
    // at the same path; the Jobs verify against the same CA.
    let shared = postgres_tempdir();
    let tls = write_member_files(&shared.path().join("tls"), &ca.cert_pem, &server);
    std::env::set_var("RECEIPTDB_SUPERUSER_PASSWORD", TEST_PASSWORD);
    std::env::set_var(
        "RECEIPTDB_REPLICATION_PASSWORD",
        "cli-tls-replication-password",
    );
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    std::env::set_var("RECEIPTDB_TLS_DIR", shared.path().join("tls"));
    std::env::set_var("PGSSLMODE", "verify-full");
    std::env::set_var("PGSSLROOTCERT", &tls.ca_file);

    let dir = postgres_tempdir();
    let pgdata = dir.path().join("data");
    let rep = dir.path().join("report.json");
    let Cli::Initdb(args) = parse(&[
        "initdb",
        "--pgdata",
        pgdata.to_str().unwrap(),
        "--port",
        &free_port().to_string(),
        "--set",
        "fsync=off",
        "--set",
        "listen_addresses=127.0.0.1",
        "--no-sync",
        "--report",
        rep.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    assert_eq!(
        cli::initdb(args).await,
        ExitCode::SUCCESS,
        "{:?}",
        report(&rep)
    );
    let a = TestCluster::adopt(dir);
    let plain = a.target("postgres").with_tls(TlsSettings {
        mode: SslMode::Disable,
        root_certs: None,
    });
    assert!(
        plain.connect(Duration::from_secs(5)).await.is_err(),
        "plain text accepted by a member initialized with RECEIPTDB_TLS_DIR"
    );

    // clone: the source string says nothing about TLS; PGSSLMODE/PGSSLROOTCERT make the
    // entrypoint and its pg_basebackup verify the source.
    let bdir = postgres_tempdir();
    let brep = bdir.path().join("report.json");
    let Cli::Clone(args) = parse(&[
        "clone",
        "--pgdata",
        bdir.path().join("data").to_str().unwrap(),
        "--source",
        &a.conninfo("postgres"),
        "--port",
        &free_port().to_string(),
        "--application-name",
        "orca-secondary",
        "--no-sync",
        "--report",
        brep.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    assert_eq!(
        cli::clone(args).await,
        ExitCode::SUCCESS,
        "{:?}",
        report(&brep)
    );
    // The standby's server must not inherit the Job's PGPASSWORD (libpq prefers it to the
    // passfile primary_conninfo names); a member pod has none.
    std::env::remove_var("PGPASSWORD");
    let b = TestCluster::adopt(bdir);
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    let a_target = verify_full(a.target("postgres"), &tls.ca_file);
    let b_target = verify_full(b.target("postgres"), &tls.ca_file);
    wait_in_sync(&a_target, &b_target, "orca-secondary").await;
    let ssl: bool = a_target
        .connect(Duration::from_secs(5))
        .await
        .unwrap()
        .query_one(
            "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid
             WHERE r.application_name = 'orca-secondary'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the standby streams without TLS");

    // A Job given another CA refuses the source, naming the CA file.
    let other = receiptdb_postgres::pki::issue_ca("other", std::time::SystemTime::now()).unwrap();
    let other_file = shared.path().join("other-ca.crt");
    std::fs::write(&other_file, &other.cert_pem).unwrap();
    std::env::set_var("PGSSLROOTCERT", &other_file);
    let cdir = postgres_tempdir();
    let crep = cdir.path().join("report.json");
    let Cli::Clone(args) = parse(&[
        "clone",
        "--pgdata",
        cdir.path().join("data").to_str().unwrap(),
        "--source",
        &a.conninfo("postgres"),
        "--application-name",
        "third",
        "--report",
        crep.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    assert_eq!(cli::clone(args).await, ExitCode::from(2));
    let r = report(&crep);
    let err = r.error().unwrap_or_default().to_string();
    assert!(
        err.contains(&format!("not trusted by {}", other_file.display())),
        "{err}"
    );
}
