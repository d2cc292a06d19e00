//! `restore` refuses corrupt, truncated and undecryptable files before touching anything.

use age::secrecy::ExposeSecret;
use receiptdb_postgres::backup::{self, BackupOptions, RestoreOptions};
use receiptdb_postgres::testing::TestCluster;

async fn marker(c: &TestCluster) -> Vec<String> {
    let client = c.client("target").await;
    let rows = client
        .query("SELECT note FROM marker ORDER BY 1", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn databases(c: &TestCluster) -> Vec<String> {
    let rows = c
        .client("postgres")
        .await
        .query("SELECT datname::text FROM pg_database ORDER BY 1", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn corrupt_truncated_and_wrong_key_files_are_refused_target_untouched() {
    let c = TestCluster::start();
    c.create_db_with(
        "app",
        "CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 20000)",
    )
    .await;
    c.create_db_with(
        "target",
        "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('untouched')",
    )
    .await;
    let dbs_before = databases(&c).await;

    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let recipients = dir.path().join("r.txt");
    std::fs::write(&recipients, id.to_public().to_string()).unwrap();
    let good = dir.path().join("good.rdb");
    let opts = BackupOptions {
        output: good.clone(),
        recipients_file: Some(recipients),
    };
    backup::backup(&c.target("app"), opts).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let wrong = dir.path().join("wrong-id.txt");
    std::fs::write(
        &wrong,
        age::x25519::Identity::generate()
            .to_string()
            .expose_secret(),
    )
    .unwrap();
    let right = dir.path().join("id.txt");
    std::fs::write(&right, id.to_string().expose_secret()).unwrap();

    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x40;
    let cases: Vec<(&str, Vec<u8>, &std::path::Path, &str)> = vec![
        ("corrupt", corrupt, &right, "corrupt"),
        (
            "truncated",
            bytes[..bytes.len() * 2 / 3].to_vec(),
            &right,
            "truncated",
        ),
        (
            "cut-trailer",
            bytes[..bytes.len() - 3].to_vec(),
            &right,
            "truncated",
        ),
        ("wrong-key", bytes.clone(), &wrong, "cannot decrypt"),
        (
            "garbage",
            b"hello".to_vec(),
            &right,
            "not a receiptdb backup",
        ),
    ];
    for (name, content, identity, expect) in cases {
        let path = dir.path().join(format!("{name}.rdb"));
        std::fs::write(&path, content).unwrap();
        let opts = RestoreOptions {
            input: path,
            identity_file: Some(identity.to_path_buf()),
        };
        let err = backup::restore(&c.target("target"), opts)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert_eq!(marker(&c).await, ["untouched"], "{name}");
        assert_eq!(
            databases(&c).await,
            dbs_before,
            "{name}: no scratch database left"
        );
    }
    // Encrypted but no identity.
    let opts = RestoreOptions {
        input: good.clone(),
        identity_file: None,
    };
    let err = backup::restore(&c.target("target"), opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no --identity-file"), "{err}");

    // The intact file restores.
    let opts = RestoreOptions {
        input: good,
        identity_file: Some(right),
    };
    backup::restore(&c.target("target"), opts).await.unwrap();
    let n: i64 = c
        .client("target")
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20000);
    assert_eq!(databases(&c).await, dbs_before);
}
