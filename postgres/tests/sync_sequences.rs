//! Sequences after `sync` are the source's exactly (`last_value` and `is_called`, not only the
//! next value), for called and never-called sequences with increments other than 1 and a cache;
//! `check` reports a sequence whose state differs even when its next value is the same.

use receiptdb_postgres::compare::{self, CompareOptions, Method};
use receiptdb_postgres::schema::sequences::read_sequences;
use receiptdb_postgres::schema::{SequenceState, SequenceStatus};
use receiptdb_postgres::sync::{self, SyncMode, SyncOptions};
use receiptdb_postgres::testing::TestCluster;

const SCHEMA: &str = "
    CREATE TABLE t (id int PRIMARY KEY);
    CREATE SEQUENCE by7 INCREMENT 7 START 4207;
    CREATE SEQUENCE down3 INCREMENT -3 MINVALUE -1000 MAXVALUE -10 START -10;
    CREATE SEQUENCE cached5 INCREMENT 5 CACHE 10;
    CREATE SEQUENCE untouched INCREMENT 2 START 100;
";

async fn states(c: &TestCluster, db: &str) -> Vec<SequenceState> {
    read_sequences(&c.client(db).await).await.unwrap()
}

fn opts() -> SyncOptions {
    SyncOptions {
        method: Method::Counts,
        ..SyncOptions::default()
    }
}

#[tokio::test]
async fn sequences_are_reproduced_exactly_and_compared_exactly() {
    let c = TestCluster::start();
    c.create_db_with("src", SCHEMA).await;
    c.create_db_with("tgt", SCHEMA).await;
    // Source: by7 called up to 4242, down3 never called, cached5 called three times from a
    // session with a cache of 10 (the relation holds the cached end), untouched never called.
    c.client("src")
        .await
        .batch_execute(
            "SELECT nextval('by7') FROM generate_series(1, 6);
             SELECT nextval('cached5') FROM generate_series(1, 3);",
        )
        .await
        .unwrap();
    // Target: by7 at the same next value in the other state (4249 not called), down3 called
    // (ahead), cached5 never called (behind).
    c.client("tgt")
        .await
        .batch_execute(
            "SELECT setval('by7', 4249, false);
             SELECT nextval('down3');",
        )
        .await
        .unwrap();
    let src = states(&c, "src").await;
    let by7 = src.iter().find(|s| s.name.contains("by7")).unwrap();
    assert_eq!((by7.last_value, by7.is_called), (4242, true));

    let before = compare::compare(
        &c.target("src"),
        &c.target("tgt"),
        CompareOptions {
            method: Method::Counts,
            jobs: 1,
            max_rate: None,
        },
    )
    .await
    .unwrap();
    let status = |name: &str| {
        before
            .sequences
            .iter()
            .find(|s| s.sequence.contains(name))
            .map(|s| s.status)
    };
    assert_eq!(
        status("by7"),
        Some(SequenceStatus::StateDiffers),
        "{before:#?}"
    );
    assert_eq!(status("untouched"), None, "equal sequences are not listed");
    assert_eq!(before.sequences.len(), 3, "{:#?}", before.sequences);

    let r = sync::sync(&c.target("src"), &c.target("tgt"), opts())
        .await
        .unwrap();
    assert_eq!(
        r.mode,
        SyncMode::Tables,
        "sequences alone differ: {}",
        r.reason
    );
    assert_eq!(r.sequences_set.len(), 3, "{:?}", r.sequences_set);
    assert_eq!(states(&c, "tgt").await, src, "the source's exact state");
    let after = compare::compare(
        &c.target("src"),
        &c.target("tgt"),
        CompareOptions::default(),
    )
    .await
    .unwrap();
    assert!(after.equal && after.sequences.is_empty(), "{after:#?}");

    // The next values handed out are the source's next values.
    let next: i64 = c
        .client("tgt")
        .await
        .query_one("SELECT nextval('by7')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 4249);

    // A forced sync (schema rebuilt) gives the same exact state.
    let forced = SyncOptions {
        force: true,
        ..opts()
    };
    sync::sync(&c.target("src"), &c.target("tgt"), forced)
        .await
        .unwrap();
    assert_eq!(states(&c, "tgt").await, src);
}

/// What `sync` relies on: its sequence statements are undone by a rollback (a bare `setval`
/// would not be), so a failed sync leaves the target's sequences as they were.
#[tokio::test]
async fn setting_a_sequence_rolls_back_with_the_transaction() {
    let c = TestCluster::start();
    c.create_db_with("src", SCHEMA).await;
    c.create_db_with("tgt", SCHEMA).await;
    c.client("src")
        .await
        .batch_execute("SELECT nextval('by7') FROM generate_series(1, 6)")
        .await
        .unwrap();
    let before = states(&c, "tgt").await;
    let src = states(&c, "src").await;
    let by7 = src.iter().find(|s| s.name.contains("by7")).unwrap();
    let tgt = c.client("tgt").await;
    tgt.batch_execute(&format!(
        "BEGIN; {}; ROLLBACK",
        receiptdb_postgres::schema::sequences::restart_sql(by7)
    ))
    .await
    .unwrap();
    assert_eq!(states(&c, "tgt").await, before, "rolled back");
    tgt.batch_execute(&format!(
        "BEGIN; {}; COMMIT",
        receiptdb_postgres::schema::sequences::restart_sql(by7)
    ))
    .await
    .unwrap();
    let after = states(&c, "tgt").await;
    let set = after.iter().find(|s| s.name.contains("by7")).unwrap();
    assert_eq!((set.last_value, set.is_called), (4242, true));
    // A bare setval is not transactional: the reason for the RESTART before it.
    tgt.batch_execute("BEGIN; SELECT setval('by7', 1, false); ROLLBACK")
        .await
        .unwrap();
    let bare = states(&c, "tgt").await;
    let by7_now = bare.iter().find(|s| s.name.contains("by7")).unwrap();
    assert_eq!((by7_now.last_value, by7_now.is_called), (1, false));
}
