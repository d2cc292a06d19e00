//! rejoin falls back to a fresh clone when rewind cannot work: the source lost the WAL since the
//! fork, or the stale directory is another system altogether.

mod member_common;

use std::time::Duration;

use member_common::*;
use receiptdb_postgres::actions::promote;
use receiptdb_postgres::job_report::RejoinMethod;
use receiptdb_postgres::member::{self, RejoinOptions, Secret};
use receiptdb_postgres::testing::{postgres_tempdir, TestCluster};

fn rejoin_options(stale: &TestCluster, source: &TestCluster, name: &str) -> RejoinOptions {
    RejoinOptions {
        pgdata: stale.data_dir(),
        source: source.target("postgres"),
        slot: member::slot_name_for(name),
        port: stale.port,
        replication_user: "replicator".into(),
        replication_password: Secret::new(REPL_PASSWORD),
        application_name: name.into(),
        no_sync: true,
        tls: None,
    }
}

#[tokio::test]
async fn member_rejoin_clones_when_the_source_recycled_the_wal_since_the_fork() {
    let a = primary().await;
    a.client("postgres")
        .await
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('common')")
        .await
        .unwrap();
    let b = standby(&a, "secondary").await;
    wait_in_sync(&a.target("postgres"), &b.target("postgres"), "secondary").await;
    promote(&b.target("postgres"), Duration::from_secs(30))
        .await
        .expect("promote");
    a.client("postgres")
        .await
        .batch_execute("INSERT INTO t SELECT 'lost' FROM generate_series(1, 500)")
        .await
        .unwrap();
    a.stop("fast");

    // b moves on and recycles the WAL since the fork: no slot holds it, wal_keep_size = 0.
    let bc = b.client("postgres").await;
    bc.batch_execute("ALTER SYSTEM SET wal_keep_size = 0")
        .await
        .unwrap();
    bc.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    for _ in 0..2 {
        for _ in 0..3 {
            bc.batch_execute("INSERT INTO t VALUES ('new'); SELECT pg_switch_wal()")
                .await
                .unwrap();
        }
        bc.batch_execute("CHECKPOINT").await.unwrap();
    }

    let rep = member::rejoin(&rejoin_options(&a, &b, "primary"))
        .await
        .expect("rejoin");
    assert_eq!(rep.method, Some(RejoinMethod::Clone), "{rep:?}");
    assert!(rep.reason.contains("no longer has WAL"), "{}", rep.reason);
    assert!(
        rep.lost.bytes > 0 && rep.fork_point.is_some(),
        "the loss is reported before the clone: {rep:?}"
    );
    assert!(
        !a.root().join("data.stale").exists(),
        "the old directory is deleted after a successful clone"
    );

    a.pg_ctl_start();
    wait_in_sync(&b.target("postgres"), &a.target("postgres"), "primary").await;
    let lost: i64 = a
        .client("postgres")
        .await
        .query_one("SELECT count(*) FROM t WHERE v = 'lost'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lost, 0);
    assert_eq!(count(&a, "postgres", "t").await, 7);
}

#[tokio::test]
async fn member_rejoin_clones_a_different_system() {
    let a = primary().await;
    a.client("postgres")
        .await
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('x')")
        .await
        .unwrap();
    // An unrelated cluster in the stale member's place (a replaced disk, another pair's data).
    let dir = postgres_tempdir();
    let mut opts = initdb_options(dir.path().join("data"));
    opts.settings.push(("port".into(), opts.port.to_string()));
    member::initdb(&opts).await.expect("initdb");
    let c = TestCluster::adopt(dir);
    c.stop("fast");

    let rep = member::rejoin(&rejoin_options(&c, &a, "secondary"))
        .await
        .expect("rejoin");
    assert_eq!(rep.method, Some(RejoinMethod::Clone), "{rep:?}");
    assert!(
        rep.reason.contains("different system identifier"),
        "{}",
        rep.reason
    );
    assert_ne!(rep.stale_system_identifier, rep.source_system_identifier);
    c.pg_ctl_start();
    let (pa, pc) = wait_in_sync(&a.target("postgres"), &c.target("postgres"), "secondary").await;
    assert_eq!(pa.system_identifier, pc.system_identifier);
    assert_eq!(count(&c, "postgres", "t").await, 1);
}

/// A standby that stayed away while the primary removed the WAL it would resume from (its slot
/// dropped or invalidated past `max_slot_wal_keep_size`): keeping its data would leave it
/// waiting for a removed segment forever, so rejoin clones it.
#[tokio::test]
async fn member_rejoin_clones_a_standby_whose_resume_wal_was_removed() {
    let a = primary().await;
    a.client("postgres")
        .await
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('before')")
        .await
        .unwrap();
    let b = standby(&a, "secondary").await;
    wait_in_sync(&a.target("postgres"), &b.target("postgres"), "secondary").await;
    b.stop("fast");

    // a goes on without it, and nothing holds the WAL b would need.
    let ac = a.client("postgres").await;
    for sql in [
        "SELECT pg_drop_replication_slot('secondary')",
        "ALTER SYSTEM SET wal_keep_size = 0",
        "SELECT pg_reload_conf()",
    ] {
        ac.batch_execute(sql).await.unwrap();
    }
    for _ in 0..2 {
        for _ in 0..3 {
            ac.batch_execute("INSERT INTO t VALUES ('while away'); SELECT pg_switch_wal()")
                .await
                .unwrap();
        }
        ac.batch_execute("CHECKPOINT").await.unwrap();
    }

    let rep = member::rejoin(&rejoin_options(&b, &a, "secondary"))
        .await
        .expect("rejoin");
    assert_eq!(rep.method, Some(RejoinMethod::Clone), "{rep:?}");
    assert!(rep.reason.contains("would resume from"), "{}", rep.reason);
    assert_eq!(rep.lost.bytes, 0, "a standby behind loses nothing: {rep:?}");
    b.pg_ctl_start();
    wait_in_sync(&a.target("postgres"), &b.target("postgres"), "secondary").await;
    assert_eq!(count(&b, "postgres", "t").await, 7);
}
