//! `sync` against real PostgreSQL: only differing tables are copied, `--force` copies all,
//! triggers and foreign keys are safe, and a failure midway leaves the target as it was.

use std::process::ExitCode;
use std::time::Duration;

use receiptdb_postgres::cli::{self, Connections, Reporting, SyncArgs};
use receiptdb_postgres::compare::{self, CompareOptions, Method};
use receiptdb_postgres::job_report::{JobReport, SyncReport};
use receiptdb_postgres::sync::{self, SyncMode, SyncOptions};
use receiptdb_postgres::testing::{TestCluster, TEST_PASSWORD};

const SCHEMA: &str = "
    CREATE TABLE receipts (id bigint PRIMARY KEY, amount int);
    CREATE TABLE lines (id bigint PRIMARY KEY, receipt bigint REFERENCES receipts (id), what text);
    CREATE INDEX receipts_amount ON receipts (amount DESC) WHERE amount > 0;
    ALTER TABLE receipts ADD CONSTRAINT receipts_id_amount UNIQUE (id, amount);
    CREATE TABLE notes (id serial PRIMARY KEY, body text);
    CREATE TABLE fired (what text);
    CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO fired VALUES (TG_TABLE_NAME); RETURN NEW; END $$;
    CREATE TRIGGER receipts_log AFTER INSERT ON receipts FOR EACH ROW EXECUTE FUNCTION log_insert();
    ALTER TABLE receipts DISABLE TRIGGER receipts_log;
    INSERT INTO receipts SELECT g, g * 10 FROM generate_series(1, 1000) g;
    INSERT INTO lines SELECT g, 1 + g % 1000, 'line ' || g FROM generate_series(1, 3000) g;
    INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 100) g;
    ALTER TABLE receipts ENABLE TRIGGER receipts_log;
";

fn checksums() -> CompareOptions {
    CompareOptions {
        method: Method::Checksums,
        jobs: 2,
        max_rate: None,
    }
}

async fn filenode(c: &TestCluster, db: &str, table: &str) -> u32 {
    let row = c
        .client(db)
        .await
        .query_one("SELECT pg_relation_filenode($1::text::regclass)", &[&table])
        .await
        .unwrap();
    row.get(0)
}

async fn setup() -> TestCluster {
    let c = TestCluster::start();
    for db in ["src", "tgt"] {
        c.create_db_with(db, SCHEMA).await;
    }
    c
}

#[tokio::test]
async fn only_the_differing_table_is_copied_triggers_and_fks_safe() {
    let c = setup().await;
    // A content-only change to a table other tables reference.
    c.client("tgt")
        .await
        .batch_execute("UPDATE receipts SET amount = -1 WHERE id = 7")
        .await
        .unwrap();
    let before_lines = filenode(&c, "tgt", "lines").await;
    let before_notes = filenode(&c, "tgt", "notes").await;
    let before_receipts = filenode(&c, "tgt", "receipts").await;

    // Whole tables: this test covers the reload (sync_rows.rs covers row-level re-alignment).
    let whole = SyncOptions {
        whole_tables: true,
        ..SyncOptions::default()
    };
    let r = sync::sync(&c.target("src"), &c.target("tgt"), whole)
        .await
        .unwrap();
    assert_eq!(r.mode, SyncMode::Tables, "{r:#?}");
    let copied: Vec<&str> = r.tables.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(copied, ["\"public\".\"receipts\""]);
    assert_eq!(r.tables[0].method, "table");
    assert_eq!(r.rows, 1000);
    assert!(r.bytes > 0);
    assert_eq!(
        r.foreign_keys_recreated, 1,
        "lines -> receipts set aside and re-created"
    );
    assert_eq!(
        r.indexes_rebuilt, 3,
        "primary key, unique constraint, partial index"
    );
    // Untouched tables keep their storage; the reloaded one got new storage (TRUNCATE).
    assert_eq!(filenode(&c, "tgt", "lines").await, before_lines);
    assert_eq!(filenode(&c, "tgt", "notes").await, before_notes);
    assert_ne!(filenode(&c, "tgt", "receipts").await, before_receipts);
    // The insert trigger did not fire during the load, and still fires afterwards.
    let tgt = c.client("tgt").await;
    let fired: i64 = tgt
        .query_one("SELECT count(*) FROM fired", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(fired, 0);
    tgt.batch_execute("INSERT INTO receipts VALUES (5000, 1)")
        .await
        .unwrap();
    let fired: i64 = tgt
        .query_one("SELECT count(*) FROM fired", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(fired, 1);
    // The foreign key is back and enforced.
    let err = tgt
        .batch_execute("INSERT INTO lines VALUES (99999, 424242, 'x')")
        .await;
    assert!(err.is_err(), "foreign key must be enforced after the sync");
    tgt.batch_execute("DELETE FROM receipts WHERE id = 5000; DELETE FROM fired")
        .await
        .unwrap();

    let after = compare::compare(&c.target("src"), &c.target("tgt"), checksums())
        .await
        .unwrap();
    assert!(after.equal, "{after:#?}");

    // Equal now: a second sync does nothing.
    let r = sync::sync(&c.target("src"), &c.target("tgt"), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.mode, SyncMode::Nothing);
    assert!(r.tables.is_empty());
}

#[tokio::test]
async fn force_copies_every_table_and_sequences() {
    let c = setup().await;
    c.client("src")
        .await
        .batch_execute("INSERT INTO notes (body) VALUES ('extra')")
        .await
        .unwrap();
    let opts = SyncOptions {
        force: true,
        ..SyncOptions::default()
    };
    let r = sync::sync(&c.target("src"), &c.target("tgt"), opts)
        .await
        .unwrap();
    assert_eq!(r.mode, SyncMode::Rebuild);
    assert!(r.comparison.is_none());
    assert_eq!(r.tables.len(), 4);
    assert!(
        r.sequences_set.iter().any(|s| s.contains("notes_id_seq")),
        "{:?}",
        r.sequences_set
    );
    let after = compare::compare(&c.target("src"), &c.target("tgt"), checksums())
        .await
        .unwrap();
    assert!(after.equal, "{after:#?}");
    let next: i32 = c
        .client("tgt")
        .await
        .query_one("INSERT INTO notes (body) VALUES ('n') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 102);
}

#[tokio::test]
async fn cli_prints_the_runbook_lines_and_exits_0() {
    let c = setup().await;
    c.client("tgt")
        .await
        .batch_execute("DELETE FROM notes WHERE id < 10")
        .await
        .unwrap();
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("termination-log");
    let args = SyncArgs {
        connections: Connections {
            source: c.conninfo("src"),
            target: c.conninfo("tgt"),
        },
        method: Method::Counts,
        force: false,
        verbose: true,
        jobs: 2,
        whole_tables: false,
        max_rate: None,
        reporting: Reporting {
            report: Some(file.clone()),
            json: false,
        },
    };
    // The report the operator reads: every field it uses, as the entrypoint wrote it.
    let report = || -> SyncReport {
        let line = std::fs::read_to_string(&file).unwrap();
        match JobReport::parse(&line) {
            Ok(JobReport::Sync(r)) => r,
            other => panic!("{other:?}: {line}"),
        }
    };
    assert_eq!(cli::sync(args.clone()).await, ExitCode::SUCCESS);
    let r = report();
    assert!(r.ok && r.error.is_none(), "{r:?}");
    assert_eq!(r.mode, Some(SyncMode::Tables), "{r:?}");
    assert_eq!(r.tables_loaded, ["\"public\".\"notes\""], "{r:?}");
    assert_eq!(r.tables_count, 1);
    assert!(r.rows > 0 && !r.reason.is_empty(), "{r:?}");
    let after = compare::compare(&c.target("src"), &c.target("tgt"), checksums())
        .await
        .unwrap();
    assert!(after.equal);
    let mut bad = args;
    bad.connections.source = c.conninfo("missing_db");
    assert_eq!(cli::sync(bad).await, ExitCode::from(2));
    let r = report();
    assert!(
        !r.ok && r.error.as_deref().unwrap().contains("missing_db"),
        "{r:?}"
    );
}

/// Source and target on two servers; a big table so the copy takes a while.
async fn two_servers() -> (TestCluster, TestCluster) {
    let (s, t) = (TestCluster::start(), TestCluster::start());
    for c in [&s, &t] {
        c.create_db_with("app", SCHEMA).await;
    }
    s.client("app")
        .await
        .batch_execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, body text);
             INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 300000) g;",
        )
        .await
        .unwrap();
    t.client("app")
        .await
        .batch_execute("CREATE TABLE big (id bigint PRIMARY KEY, body text); INSERT INTO big VALUES (1, 'old');")
        .await
        .unwrap();
    (s, t)
}

/// A fingerprint of the whole target database (every table's rows as text).
async fn fingerprint(c: &TestCluster) -> Vec<(String, i64, i64)> {
    let client = c.client("app").await;
    let mut out = Vec::new();
    for t in ["receipts", "lines", "notes", "fired", "big"] {
        let row = client
            .query_one(
                &format!("SELECT count(*), coalesce(sum(hashtext(t::text)), 0)::int8 FROM {t} t"),
                &[],
            )
            .await
            .unwrap();
        out.push((t.to_string(), row.get(0), row.get(1)));
    }
    out
}

/// Wait until the target runs our COPY ... FROM STDIN into `big`.
async fn wait_for_copy(t: &TestCluster) {
    let watcher = t.client("postgres").await;
    for _ in 0..2000 {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE query LIKE 'COPY \"public\".\"big\"%FROM STDIN%' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the copy of big never started");
}

#[tokio::test]
async fn a_server_killed_mid_copy_leaves_the_target_as_it_was() {
    let (s, t) = two_servers().await;
    t.client("app")
        .await
        .batch_execute("UPDATE receipts SET amount = 0 WHERE id = 1")
        .await
        .unwrap();
    let before = fingerprint(&t).await;

    // The source dies while the target loads `big`.
    let (src, tgt) = (s.target("app"), t.target("app"));
    let run = tokio::spawn(async move { sync::sync(&src, &tgt, SyncOptions::default()).await });
    wait_for_copy(&t).await;
    s.kill();
    let err = run.await.unwrap().expect_err("the sync must fail");
    assert!(err.to_string().contains("copying"), "{err}");
    assert_eq!(
        fingerprint(&t).await,
        before,
        "target changed by a failed sync"
    );

    // The target dies while loading: after restart, nothing of the sync is visible.
    s.pg_ctl_start();
    let (src, tgt) = (s.target("app"), t.target("app"));
    let run = tokio::spawn(async move { sync::sync(&src, &tgt, SyncOptions::default()).await });
    wait_for_copy(&t).await;
    t.kill();
    assert!(run.await.unwrap().is_err());
    t.pg_ctl_start();
    assert_eq!(
        fingerprint(&t).await,
        before,
        "target changed by a sync killed mid-copy"
    );

    // And a complete sync then succeeds.
    let r = sync::sync(&s.target("app"), &t.target("app"), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.mode, SyncMode::Tables);
    assert_eq!(r.tables.len(), 2, "{:?}", r.tables);
}
