//! The report of a real `rejoin` reaches status: a primary that went on writing alone after
//! its standby was promoted (asynchronous replication) is rewound by the `rejoin` entrypoint,
//! run as its Job runs it, and the operator derives `status.lastSync` and its Events from the
//! termination message that entrypoint wrote. Real PostgreSQL servers; the pair's other
//! members are the decide tests' model world.
//! (Its own test binary: it sets process environment variables.)

mod decide_support;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use decide_support::*;
use receiptdb_operator::cli::{Cli, Command};
use receiptdb_operator::crd::Member::{Primary as P, Secondary as S};
use receiptdb_operator::pair::{Action, JobKind, JobState, Reported};
use receiptdb_postgres::actions::promote;
use receiptdb_postgres::cli;
use receiptdb_postgres::job_report::{Entrypoint, JobReport, RejoinMethod};
use receiptdb_postgres::testing::members::{primary, standby, wait_in_sync, REPL_PASSWORD};
use receiptdb_postgres::testing::TEST_PASSWORD;

/// Run the `rejoin` entrypoint on `args` as the binary does; its exit code and report line.
async fn rejoin_entrypoint(args: &[&str]) -> (ExitCode, String) {
    let cli = Cli::try_parse_from(["receiptdb-operator", "rejoin"].iter().chain(args))
        .unwrap_or_else(|e| panic!("{e}"));
    let Command::Rejoin(a) = cli.command else {
        unreachable!()
    };
    let report = a.reporting.report.clone().expect("--report");
    let code = cli::rejoin(a).await;
    (code, std::fs::read_to_string(report).unwrap())
}

#[tokio::test]
async fn wal_discarded_by_a_real_rejoin_reaches_last_sync_and_an_event() {
    // A real pair, asynchronous: the secondary is promoted while the primary goes on alone.
    let a = primary().await;
    let b = standby(&a, "secondary").await;
    let writer = a.client("receipts").await;
    writer
        .batch_execute("CREATE TABLE receipt (id int PRIMARY KEY, who text)")
        .await
        .unwrap();
    wait_in_sync(&a.target("receipts"), &b.target("receipts"), "secondary").await;
    promote(&b.target("postgres"), Duration::from_secs(30))
        .await
        .expect("promote");
    writer
        .batch_execute("INSERT INTO receipt SELECT g, 'alone' FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    drop(writer);
    a.stop("fast");

    // The rejoin Job's entrypoint, its report in the file the termination message comes from.
    // (Passwords as the Job passes them; set only now: servers started with PGPASSWORD set
    // would let it override their replication passfile.)
    std::env::set_var("RECEIPTDB_REPLICATION_PASSWORD", REPL_PASSWORD);
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("termination-log");
    let (pgdata, source, port) = (
        a.data_dir().display().to_string(),
        b.conninfo("postgres"),
        a.port.to_string(),
    );
    let (code, message) = rejoin_entrypoint(&[
        "--pgdata",
        &pgdata,
        "--source",
        &source,
        "--slot",
        "primary",
        "--port",
        &port,
        "--application-name",
        "primary",
        "--no-sync",
        "--report",
        report_file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{message}");
    // What the entrypoint says, read as JSON on its own, independently of the operator's types.
    let raw: serde_json::Value = serde_json::from_str(&message).unwrap();
    let lost = &raw["lost"];
    let bytes = lost["bytes"].as_i64().unwrap();
    assert!(bytes > 1000, "1000 rows went past the fork: {message}");
    assert_eq!(raw["method"], "rewind", "{message}");

    // The operator's world: the primary failed over to the secondary and is being re-aligned.
    let mut w = healthy_world(|s| s.replication.synchronous = Some(false));
    w.crash(P);
    assert!(w.run_until(30, |w| w.status().active_member == Some(S)));
    w.repair(P);
    let mut job = None;
    for _ in 0..30 {
        w.pass(None, false);
        job = w.jobs.iter().position(|j| {
            j.kind == JobKind::Rejoin && j.member == P && j.state == JobState::Running
        });
        if job.is_some() {
            break;
        }
        w.tick(500, false);
    }
    let job = job.expect("a rejoin Job for the primary");
    // Its pod ends with the real entrypoint's termination message.
    w.jobs[job].state = JobState::Succeeded;
    w.jobs[job].report = Some(Reported::parse(Entrypoint::Rejoin, &message));
    assert!(
        matches!(w.jobs[job].report.as_ref().and_then(Reported::report), Some(JobReport::Rejoin(r)) if r.method == Some(RejoinMethod::Rewind)),
        "the message parses as the rejoin report"
    );
    let d = w.pass(None, false);

    let sync = d.status.last_sync.clone().expect("lastSync");
    assert_eq!((sync.member, sync.method.as_str()), (P, "rewind"));
    let discarded = sync.discarded.expect("the discarded WAL is in status");
    assert_eq!(discarded.bytes, bytes);
    assert_eq!(discarded.timeline, Some(1), "the old primary's timeline");
    assert_eq!(discarded.from.as_deref(), lost["from"].as_str());
    assert_eq!(discarded.to.as_deref(), lost["to"].as_str());
    assert_eq!(discarded.from.as_deref(), raw["forkPoint"].as_str());
    let event = d.actions.iter().find_map(|a| match a {
        Action::Event {
            reason, message, ..
        } if *reason == "WalDiscarded" => Some(message.clone()),
        _ => None,
    });
    let event = event.expect("a WalDiscarded Event");
    assert!(
        event.contains(&format!("discarded {bytes} bytes"))
            && event.contains(lost["from"].as_str().unwrap()),
        "{event}"
    );
}
