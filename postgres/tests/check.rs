//! `check` against real PostgreSQL: one throwaway cluster, source and target as two databases.

use std::process::ExitCode;

use receiptdb_postgres::cli::{self, CheckArgs, Connections, Reporting};
use receiptdb_postgres::compare::{self, CompareOptions, CompareReport, Method, Rate};
use receiptdb_postgres::job_report::{CheckReport, JobReport};
use receiptdb_postgres::schema::SequenceStatus;
use receiptdb_postgres::testing::{TestCluster, TEST_PASSWORD};

const SCHEMA: &str = "
    CREATE TABLE public.receipts (id bigint PRIMARY KEY, patient text, amount numeric(10,2),
                                  issued timestamptz DEFAULT '2024-01-01 00:00+09');
    CREATE TABLE public.events (kind text, payload text);  -- no key: duplicates possible
    CREATE SCHEMA \"Odd Schema\";
    CREATE TABLE \"Odd Schema\".\"Mixed \"\"Case\"\"\" (x int);
    INSERT INTO public.receipts SELECT g, 'p' || g, g * 1.5 FROM generate_series(1, 500) g;
    INSERT INTO public.events VALUES ('a', 'one'), ('b', 'two'), ('c', 'three');
    INSERT INTO \"Odd Schema\".\"Mixed \"\"Case\"\"\" SELECT generate_series(1, 10);
";

async fn pair(c: &TestCluster) {
    for db in ["src", "tgt"] {
        c.create_db_with(db, SCHEMA).await;
    }
}

fn opts(method: Method) -> CompareOptions {
    CompareOptions {
        method,
        jobs: 2,
        max_rate: None,
    }
}

/// Under a rate limit, `check` reads tables in block slices: the figures are the same as
/// reading each table at once, and reading takes at least what the limit allows.
#[tokio::test]
async fn a_rate_limited_check_gives_the_same_figures_no_faster_than_the_limit() {
    let c = TestCluster::start();
    let data = "CREATE TABLE big (id bigint PRIMARY KEY, body text);
                INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
                CREATE TABLE nokey (v int);
                INSERT INTO nokey SELECT g FROM generate_series(1, 30000) g;";
    c.create_db_with("src", data).await;
    c.create_db_with("tgt", data).await;
    c.client("tgt")
        .await
        .batch_execute("UPDATE big SET body = 'x' WHERE id = 39999")
        .await
        .unwrap();
    let size: i64 = c
        .client("src")
        .await
        .query_one(
            "SELECT pg_relation_size('big') + pg_relation_size('nokey')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let rate = 2u64 << 20;
    for method in [Method::Counts, Method::Checksums] {
        let free = compare::compare(&c.target("src"), &c.target("tgt"), opts(method))
            .await
            .unwrap();
        let limited = CompareOptions {
            max_rate: Some(Rate(rate)),
            ..opts(method)
        };
        let started = std::time::Instant::now();
        let slow = compare::compare(&c.target("src"), &c.target("tgt"), limited)
            .await
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        let figures = |r: &CompareReport| {
            r.tables
                .iter()
                .map(|t| (t.table.clone(), t.source.clone(), t.target.clone(), t.equal))
                .collect::<Vec<_>>()
        };
        assert_eq!(figures(&free), figures(&slow), "{method:?}");
        assert_eq!(free.equal, method == Method::Counts);
        // Each server starts a slice only when what it read before fits the rate: the
        // last slice (at most 1 MiB here) may start at the end.
        let floor = (size as f64 - (1 << 20) as f64) / rate as f64;
        assert!(
            took >= floor,
            "{method:?}: {size} bytes at {rate} B/s took {took:.2} s, under {floor:.2} s"
        );
    }
}

#[tokio::test]
async fn equal_databases_are_equal_with_both_methods() {
    let c = TestCluster::start();
    pair(&c).await;
    for method in [Method::Counts, Method::Checksums] {
        let r = compare::compare(&c.target("src"), &c.target("tgt"), opts(method))
            .await
            .unwrap();
        assert!(r.equal, "{method:?}: {r:#?}");
        assert_eq!(r.summary.tables_compared, 3);
        assert!(r
            .tables
            .iter()
            .any(|t| t.table == "\"Odd Schema\".\"Mixed \"\"Case\"\"\""));
    }
}

#[tokio::test]
async fn content_only_and_duplicate_row_differences_need_checksums() {
    let c = TestCluster::start();
    pair(&c).await;
    c.client("tgt")
        .await
        .batch_execute(
            "UPDATE receipts SET amount = amount + 1 WHERE id = 250;
             DELETE FROM events WHERE kind = 'b'; INSERT INTO events VALUES ('a', 'one');",
        )
        .await
        .unwrap();
    let counts = compare::compare(&c.target("src"), &c.target("tgt"), opts(Method::Counts))
        .await
        .unwrap();
    assert!(
        counts.equal,
        "counts cannot see content-only or duplicate differences: {counts:#?}"
    );
    let sums = compare::compare(&c.target("src"), &c.target("tgt"), opts(Method::Checksums))
        .await
        .unwrap();
    assert!(!sums.equal);
    let mut differing = sums.differing_tables();
    differing.sort();
    assert_eq!(
        differing,
        ["\"public\".\"events\"", "\"public\".\"receipts\""]
    );
    assert_eq!(sums.summary.tables_differing, 2);
    assert!(sums.schema_differences.is_empty());
}

#[tokio::test]
async fn missing_tables_schema_and_sequence_differences_are_reported() {
    let c = TestCluster::start();
    pair(&c).await;
    c.client("src")
        .await
        .batch_execute("CREATE TABLE only_here (a int); CREATE SEQUENCE s; SELECT nextval('s');")
        .await
        .unwrap();
    c.client("tgt")
        .await
        .batch_execute("ALTER TABLE receipts ADD COLUMN note text; CREATE SEQUENCE s;")
        .await
        .unwrap();
    let r = compare::compare(&c.target("src"), &c.target("tgt"), opts(Method::Checksums))
        .await
        .unwrap();
    assert!(!r.equal);
    assert_eq!(r.only_in_source, ["\"public\".\"only_here\""]);
    let receipts = r
        .tables
        .iter()
        .find(|t| t.table == "\"public\".\"receipts\"")
        .unwrap();
    assert!(receipts.columns_differ && !receipts.equal);
    let objects: Vec<&str> = r
        .schema_differences
        .iter()
        .map(|d| d.object.as_str())
        .collect();
    assert!(objects.contains(&"table public.receipts"), "{objects:?}");
    assert!(objects.contains(&"table public.only_here"), "{objects:?}");
    // Source handed out 1 (next 2); the target would hand out 1 again: behind, a difference.
    assert_eq!(r.summary.sequences_behind, 1, "{:?}", r.sequences);
    assert_eq!(r.sequences[0].status, SequenceStatus::TargetBehind);
    // Ahead is harmless: move the target past the source.
    c.client("tgt")
        .await
        .batch_execute("SELECT setval('s', 100)")
        .await
        .unwrap();
    let r = compare::compare(&c.target("src"), &c.target("tgt"), opts(Method::Counts))
        .await
        .unwrap();
    assert_eq!(r.sequences[0].status, SequenceStatus::TargetAhead);
    assert_eq!(r.summary.sequences_behind, 0);
}

#[tokio::test]
async fn wrong_password_is_a_clear_error() {
    let c = TestCluster::start();
    let mut bad = c.target("postgres");
    bad.config.password("not-the-password");
    let err = compare::compare(&bad, &c.target("postgres"), opts(Method::Counts))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[tokio::test]
async fn cli_exit_codes() {
    let c = TestCluster::start();
    pair(&c).await;
    // Both servers' password from PGPASSWORD (every test uses the same value).
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("termination-log");
    let args = |method| CheckArgs {
        connections: Connections {
            source: c.conninfo("src"),
            target: c.conninfo("tgt"),
        },
        method,
        jobs: 2,
        max_rate: None,
        reporting: Reporting {
            report: Some(file.clone()),
            json: true,
        },
    };
    // The report the operator reads: every field it uses, as the entrypoint wrote it.
    let report = || -> CheckReport {
        let line = std::fs::read_to_string(&file).unwrap();
        match JobReport::parse(&line) {
            Ok(JobReport::Check(r)) => r,
            other => panic!("{other:?}: {line}"),
        }
    };
    assert_eq!(cli::check(args(Method::Checksums)).await, ExitCode::SUCCESS);
    let r = report();
    assert!(r.ok && r.error.is_none(), "{r:?}");
    assert_eq!((r.method, r.equal), (Some(Method::Checksums), Some(true)));
    assert!(
        r.differing_tables.is_empty() && r.tables_compared == 3,
        "{r:?}"
    );
    c.client("tgt")
        .await
        .batch_execute("UPDATE events SET payload = 'x' WHERE kind = 'c'")
        .await
        .unwrap();
    assert_eq!(cli::check(args(Method::Checksums)).await, ExitCode::from(1));
    let r = report();
    assert!(r.ok, "a difference is a verdict, not an error: {r:?}");
    assert_eq!(r.equal, Some(false));
    assert_eq!(r.differing_tables, ["\"public\".\"events\""]);
    assert_eq!(r.differing_count, 1);
    assert_eq!(cli::check(args(Method::Counts)).await, ExitCode::SUCCESS);
    assert_eq!(report().method, Some(Method::Counts));
    let mut bad = args(Method::Counts);
    bad.connections.target = format!("{} password=secret", c.conninfo("tgt"));
    assert_eq!(cli::check(bad).await, ExitCode::from(2));
    let r = report();
    assert!(!r.ok && r.equal.is_none(), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("password"), "{r:?}");
    let mut gone = args(Method::Counts);
    gone.connections.target = c.conninfo("no_such_db");
    assert_eq!(cli::check(gone).await, ExitCode::from(2));
    let r = report();
    assert!(
        !r.ok && r.error.as_deref().unwrap().contains("no_such_db"),
        "{r:?}"
    );
}
