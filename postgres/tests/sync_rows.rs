//! Row-level `sync`: a keyed table that differs in a few rows has only those rows replaced
//! (integer keys by key ranges, split until small; other keys by hash buckets); a table
//! without a key, or one where most rows differ, is copied whole; afterwards `check` finds the
//! databases equal.

use receiptdb_postgres::compare::{self, CompareOptions, Method};
use receiptdb_postgres::sync::{self, ChunkFigures, SyncMode, SyncOptions, TableCopy};
use receiptdb_postgres::testing::TestCluster;

const SCHEMA: &str = "
    CREATE TABLE receipts (id bigint PRIMARY KEY, clinic int NOT NULL, amount numeric(12,2),
                           note text);
    CREATE TABLE visits (clinic text, day date, patient text NOT NULL, PRIMARY KEY (clinic, day));
    CREATE TABLE lines (receipt bigint NOT NULL REFERENCES receipts(id), item text);
    CREATE TABLE codes (code int NOT NULL UNIQUE, label text);
";

const DATA: &str = "
    INSERT INTO receipts SELECT g, g % 97, g * 1.25, CASE WHEN g % 3 = 0 THEN 'n' || g END
      FROM generate_series(1, 60000) g;
    INSERT INTO receipts VALUES (-5, 1, 1, 'negative'), (9223372036854775807, 2, 2, 'max');
    INSERT INTO visits SELECT 'clinic-' || (g % 50), date '2020-01-01' + g / 50, 'p' || g
      FROM generate_series(1, 20000) g;
    INSERT INTO lines SELECT g, 'item ' || g FROM generate_series(1, 3000) g;
    INSERT INTO codes SELECT g, 'code ' || g FROM generate_series(1, 20000) g;
";

fn copy_of<'a>(out: &'a sync::SyncOutcome, table: &str) -> Option<&'a TableCopy> {
    out.tables.iter().find(|t| t.table == table)
}

async fn equal(c: &TestCluster) -> bool {
    compare::compare(
        &c.target("src"),
        &c.target("tgt"),
        CompareOptions {
            method: Method::Checksums,
            jobs: 2,
            max_rate: None,
        },
    )
    .await
    .unwrap()
    .equal
}

#[tokio::test]
async fn only_the_rows_that_differ_are_replaced() {
    let c = TestCluster::start();
    c.create_db_with("src", &format!("{SCHEMA}{DATA}")).await;
    c.create_db_with("tgt", &format!("{SCHEMA}{DATA}")).await;
    // `receipts` holds the largest bigint: the first level's key ranges are wide, and the
    // bucket holding the other 60,000 rows is split over the keys it holds.
    c.client("tgt")
        .await
        .batch_execute(
            // receipts: 2 changed (one only in a NULL column), 1 missing (with a line
            // referencing it), 1 extra, the extreme keys changed.
            "UPDATE receipts SET amount = 0 WHERE id = 777;
             UPDATE receipts SET note = NULL WHERE id = 30003;
             DELETE FROM lines WHERE receipt = 1500; DELETE FROM receipts WHERE id = 1500;
             INSERT INTO receipts VALUES (70000, 1, 1, 'extra');
             UPDATE receipts SET note = 'x' WHERE id IN (-5, 9223372036854775807);
             -- visits (composite text key): 1 changed, 1 missing
             UPDATE visits SET patient = 'someone else' WHERE clinic = 'clinic-7' AND day = '2020-01-21';
             DELETE FROM visits WHERE clinic = 'clinic-8' AND day = '2020-02-01';
             -- lines (no key): one changed
             UPDATE lines SET item = 'changed' WHERE receipt = 10;
             -- codes (unique key): most rows differ
             UPDATE codes SET label = 'other' WHERE code > 2000;",
        )
        .await
        .unwrap();
    assert!(!equal(&c).await);

    let out = sync::sync(&c.target("src"), &c.target("tgt"), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(out.mode, SyncMode::Tables, "{out:#?}");

    let receipts = copy_of(&out, "\"public\".\"receipts\"").expect("receipts re-aligned");
    assert_eq!(receipts.method, "rows", "{receipts:#?}");
    let f: &ChunkFigures = receipts.chunks.as_ref().unwrap();
    // Changed rows are deleted and inserted; the missing one inserted; the extra one deleted.
    assert_eq!((f.rows_deleted, f.rows_inserted), (5, 5), "{f:#?}");
    assert_eq!(receipts.rows, 5);
    assert!(f.compared > 1, "the big bucket was split: {f:#?}");
    assert!(
        f.rows_examined < 60_000 / 4,
        "only small buckets listed: {f:#?}"
    );

    let visits = copy_of(&out, "\"public\".\"visits\"").expect("visits re-aligned");
    assert_eq!(visits.method, "rows", "{visits:#?}");
    let f = visits.chunks.as_ref().unwrap();
    assert_eq!((f.rows_deleted, f.rows_inserted), (1, 2), "{f:#?}");

    let lines = copy_of(&out, "\"public\".\"lines\"").expect("lines copied");
    assert_eq!((lines.method, lines.rows), ("table", 3000));
    let codes = copy_of(&out, "\"public\".\"codes\"").expect("codes copied");
    assert_eq!((codes.method, codes.rows), ("table", 20000), "{codes:#?}");

    assert!(equal(&c).await, "equal after sync");
    // The foreign key still holds and is still there.
    let tgt = c.client("tgt").await;
    let orphans: i64 = tgt
        .query_one(
            "SELECT count(*) FROM lines l LEFT JOIN receipts r ON r.id = l.receipt
             WHERE r.id IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    let fks: i64 = tgt
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fks, 1);

    // A second sync finds nothing to do.
    let again = sync::sync(&c.target("src"), &c.target("tgt"), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(again.mode, SyncMode::Nothing, "{again:#?}");
}

#[tokio::test]
async fn analyzed_tables_are_bucketed_from_the_start() {
    let c = TestCluster::start();
    let analyzed = format!("{SCHEMA}{DATA} ANALYZE;");
    c.create_db_with("src", &analyzed).await;
    c.create_db_with("tgt", &analyzed).await;
    c.client("tgt")
        .await
        .batch_execute("UPDATE receipts SET amount = 1 WHERE id IN (10, 40000)")
        .await
        .unwrap();
    let out = sync::sync(&c.target("src"), &c.target("tgt"), SyncOptions::default())
        .await
        .unwrap();
    let receipts = copy_of(&out, "\"public\".\"receipts\"").unwrap();
    let f = receipts.chunks.as_ref().unwrap();
    assert_eq!((f.rows_deleted, f.rows_inserted, f.differing), (2, 2, 2));
    // 60,000 rows at about 1,024 per bucket, in one scan.
    assert!(f.compared >= 32, "{f:#?}");
    assert!(f.rows_examined <= 4 * 2048, "{f:#?}");
    assert!(equal(&c).await);
}
