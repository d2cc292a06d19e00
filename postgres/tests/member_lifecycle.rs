//! initdb, clone and rejoin (rewind) against real PostgreSQL.

mod member_common;

use std::time::Duration;

use member_common::*;
use receiptdb_postgres::actions::{probe, promote};
use receiptdb_postgres::job_report::RejoinMethod;
use receiptdb_postgres::member::{self, MemberError, Secret};
use receiptdb_postgres::testing::{postgres_tempdir, TestCluster};

#[tokio::test]
async fn member_initdb_clone_and_rewind_after_failover() {
    // --- initdb ---
    let dir = postgres_tempdir();
    let opts = initdb_options(dir.path().join("data"));
    let rep = member::initdb(&opts).await.expect("initdb");
    assert!(
        rep.initialized && rep.system_identifier.is_some(),
        "{rep:?}"
    );
    assert!(
        !dir.path().join("data.initdb").exists(),
        "staging directory left behind"
    );
    let again = member::initdb(&opts).await.expect("initdb again");
    assert!(
        !again.initialized,
        "an initialized directory must be left alone"
    );
    assert_eq!(again.system_identifier, rep.system_identifier);
    // A non-empty directory that is not a data directory is refused, not overwritten.
    let junk = postgres_tempdir();
    std::fs::write(junk.path().join("keep-me"), "x").unwrap();
    let err = member::initdb(&initdb_options(junk.path().to_path_buf()))
        .await
        .unwrap_err();
    assert!(matches!(err, MemberError::Refused(_)), "{err}");
    assert!(junk.path().join("keep-me").exists());

    let a = TestCluster::adopt(dir);
    let client = a.client("receipts").await;
    let row = client
        .query_one(
            "SELECT current_setting('data_checksums'), current_setting('wal_level'),
                    current_setting('wal_log_hints'), current_setting('restart_after_crash'),
                    current_setting('password_encryption'),
                    (SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'),
                    (SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'replicator'),
                    (SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'),
                    (SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256'),
                    (SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database))",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on", "data checksums");
    assert_eq!(row.get::<_, String>(1), "replica");
    assert_eq!(row.get::<_, String>(2), "on");
    assert_eq!(row.get::<_, String>(3), "off");
    assert_eq!(row.get::<_, String>(4), "scram-sha-256");
    assert!(row.get::<_, bool>(5), "replicator has REPLICATION");
    assert!(
        row.get::<_, bool>(6) && row.get::<_, bool>(7),
        "passwords stored as SCRAM"
    );
    assert_eq!(row.get::<_, i64>(8), 0, "pg_hba has only scram rules");
    assert!(row.get::<_, i64>(9) >= 1, "pg_hba has replication rules");
    let mut bad = a.target("receipts");
    bad.config.password("wrong");
    let err = bad.connect(T).await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    client
        .batch_execute("CREATE TABLE receipt (id int PRIMARY KEY, who text)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO receipt SELECT g, 'before' FROM generate_series(1, 100) g")
        .await
        .unwrap();

    // --- clone: a wrong replication password fails clearly and leaves nothing behind ---
    let (bdir, mut bopts) = clone_options(&a, "secondary");
    bopts.replication_password = Secret::new("wrong");
    let err = member::clone(&bopts).await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!bopts.pgdata.exists() && !bdir.path().join("data.clone").exists());
    bopts.replication_password = Secret::new(REPL_PASSWORD);
    let crep = member::clone(&bopts).await.expect("clone");
    assert_eq!(crep.slot, "secondary");
    // Our port, and the source's port commented out (pg_basebackup copied it).
    let conf = std::fs::read_to_string(bopts.pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains(&format!("port = '{}'", bopts.port)), "{conf}");
    assert!(
        conf.contains(&format!("#(receiptdb) port = {}", a.port)),
        "{conf}"
    );
    let auto = std::fs::read_to_string(bopts.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("application_name=secondary")
            && auto.contains("primary_slot_name = 'secondary'")
    );
    assert!(
        !auto.contains(REPL_PASSWORD),
        "password must be in the passfile, not the settings"
    );
    assert!(bopts.pgdata.join("standby.signal").exists());
    let b = TestCluster::adopt(bdir);
    let (pa, pb) = wait_in_sync(&a.target("receipts"), &b.target("receipts"), "secondary").await;
    assert_eq!(pa.system_identifier, pb.system_identifier);
    assert_eq!(
        pb.wal_receiver
            .as_ref()
            .and_then(|w| w.slot_name.as_deref()),
        Some("secondary")
    );
    client
        .batch_execute("INSERT INTO receipt VALUES (101, 'streamed')")
        .await
        .unwrap();
    wait_in_sync(&a.target("receipts"), &b.target("receipts"), "secondary").await;
    assert_eq!(
        count(&b, "receipts", "receipt").await,
        101,
        "new writes replicate"
    );

    // --- failover: promote b while a keeps writing: divergence ---
    promote(&b.target("postgres"), Duration::from_secs(30))
        .await
        .expect("promote");
    client
        .batch_execute("INSERT INTO receipt SELECT g, 'lost' FROM generate_series(1000, 1999) g")
        .await
        .unwrap();
    b.client("receipts")
        .await
        .batch_execute("INSERT INTO receipt VALUES (102, 'after failover')")
        .await
        .unwrap();
    drop(client);
    a.stop("fast");

    // --- rejoin a as a standby of b ---
    let ropts = member::RejoinOptions {
        pgdata: a.data_dir(),
        source: b.target("postgres"),
        slot: "primary".into(),
        port: a.port,
        replication_user: "replicator".into(),
        replication_password: Secret::new(REPL_PASSWORD),
        application_name: "primary".into(),
        no_sync: true,
        tls: None,
    };
    let rep = member::rejoin(&ropts).await.expect("rejoin");
    assert_eq!(rep.method, Some(RejoinMethod::Rewind), "{rep:?}");
    assert_eq!(rep.stale_timeline, Some(1));
    assert_eq!(rep.source_timeline, Some(2));
    let fork = rep.fork_point.expect("fork point");
    let end = rep.stale_end_of_wal.expect("end of WAL");
    assert!(end > fork, "{rep:?}");
    assert_eq!(rep.lost.from, Some(fork));
    assert_eq!(rep.lost.bytes, end.0 - fork.0);
    assert!(
        rep.lost.bytes > 1000,
        "1000 rows were written after the fork: {rep:?}"
    );
    let says = rep.rewind_says.clone().unwrap_or_default();
    assert!(
        says.contains(&fork.to_string()),
        "pg_rewind agrees on the fork point: {says} vs {fork}"
    );
    let line = serde_json::to_string(&rep).unwrap();
    assert!(
        line.len() < 4096 && line.contains("\"method\":\"rewind\""),
        "{line}"
    );

    a.pg_ctl_start();
    let (pb, pa) = wait_in_sync(&b.target("receipts"), &a.target("receipts"), "primary").await;
    assert_eq!(pa.timeline, Some(2));
    assert!(
        pb.slots
            .iter()
            .any(|s| s.slot_name == "primary" && s.active),
        "{pb:?}"
    );
    let rows: Vec<String> = a
        .client("receipts")
        .await
        .query("SELECT who FROM receipt WHERE id >= 101 ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        ["streamed", "after failover"],
        "the old timeline's writes are gone"
    );

    // Rejoining a healthy standby again changes nothing.
    a.stop("fast");
    let rep = member::rejoin(&ropts).await.expect("rejoin again");
    assert_eq!(rep.method, Some(RejoinMethod::None), "{rep:?}");
    assert_eq!(rep.lost.bytes, 0);
    a.pg_ctl_start();
    wait_in_sync(&b.target("receipts"), &a.target("receipts"), "primary").await;
    let _ = probe(&a.target("postgres"), T).await;
}
