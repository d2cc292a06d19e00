//! `backup` + `restore` round trips, plain and encrypted, and the file's permissions.

use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

use age::secrecy::ExposeSecret;
use receiptdb_postgres::backup::{self, BackupOptions, RestoreOptions};
use receiptdb_postgres::cli::{self, BackupArgs, Reporting, RestoreArgs};
use receiptdb_postgres::compare::{self, CompareOptions, Method};
use receiptdb_postgres::job_report::{Entrypoint, JobReport};
use receiptdb_postgres::testing::{TestCluster, TEST_PASSWORD};

pub const DATA: &str = "
    CREATE TYPE state AS ENUM ('a', 'b');
    CREATE TABLE receipts (id serial PRIMARY KEY, body text, s state DEFAULT 'a');
    INSERT INTO receipts (body) SELECT md5(g::text) FROM generate_series(1, 5000) g;
";

async fn equal(c: &TestCluster, a: &str, b: &str) -> bool {
    let opts = CompareOptions {
        method: Method::Checksums,
        jobs: 1,
        max_rate: None,
    };
    let r = compare::compare(&c.target(a), &c.target(b), opts)
        .await
        .unwrap();
    r.equal
}

#[tokio::test]
async fn roundtrip_plain_and_encrypted_files_are_0600() {
    let c = TestCluster::start();
    c.create_db_with("app", DATA).await;
    let dir = tempfile::tempdir().unwrap();

    // Plain, even under a permissive umask.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o000));
    let plain = dir.path().join("plain.rdb");
    let opts = BackupOptions {
        output: plain.clone(),
        recipients_file: None,
    };
    let r = backup::backup(&c.target("app"), opts).await.unwrap();
    nix::sys::stat::umask(old);
    assert_eq!(
        std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!r.manifest.encrypted);
    assert_eq!(r.manifest.database, "app");
    assert!(r.manifest.server_version.starts_with("15"));
    assert!(r.manifest.snapshot_lsn.contains('/'));
    assert_eq!(r.manifest.payload_sha256.len(), 64);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no partial file left"
    );

    // Restore into a new database, and over an existing one with a client connected.
    let opts = RestoreOptions {
        input: plain.clone(),
        identity_file: None,
    };
    let r = backup::restore(&c.target("copy"), opts.clone())
        .await
        .unwrap();
    assert!(!r.replaced_existing);
    assert!(equal(&c, "app", "copy").await);
    let connected = c.client("copy").await;
    connected
        .batch_execute("DELETE FROM receipts WHERE id < 100")
        .await
        .unwrap();
    let r = backup::restore(&c.target("copy"), opts).await.unwrap();
    assert!(r.replaced_existing);
    assert_eq!(r.terminated_sessions, 1);
    assert!(
        connected.batch_execute("SELECT 1").await.is_err(),
        "old session terminated"
    );
    assert!(equal(&c, "app", "copy").await);

    // Encrypted to two recipients; the second identity decrypts.
    let (id1, id2) = (
        age::x25519::Identity::generate(),
        age::x25519::Identity::generate(),
    );
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(
        &recipients,
        format!(
            "# backup keys\n{}\n\n{}\n",
            id1.to_public(),
            id2.to_public()
        ),
    )
    .unwrap();
    let identity = dir.path().join("identity.txt");
    std::fs::write(&identity, format!("{}\n", id2.to_string().expose_secret())).unwrap();
    let enc = dir.path().join("enc.rdb");
    let opts = BackupOptions {
        output: enc.clone(),
        recipients_file: Some(recipients),
    };
    let r = backup::backup(&c.target("app"), opts).await.unwrap();
    assert!(r.manifest.encrypted);
    assert_eq!(r.manifest.recipients, 2);
    assert_eq!(
        std::fs::metadata(&enc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = std::fs::read(&enc).unwrap();
    assert!(
        !bytes
            .windows(32)
            .any(|w| w == b"c4ca4238a0b923820dcc509a6f75849b"),
        "plaintext leak"
    );
    let opts = RestoreOptions {
        input: enc,
        identity_file: Some(identity),
    };
    backup::restore(&c.target("copy2"), opts).await.unwrap();
    assert!(equal(&c, "app", "copy2").await);
}

/// A restore pointed at a directory of scheduled backups takes the newest one (what the
/// operator's restore Job does when `bootstrap.fromBackup.file` is unset).
#[tokio::test]
async fn restore_from_a_directory_takes_the_newest_scheduled_backup() {
    let c = TestCluster::start();
    c.create_db("app").await;
    let app = c.client("app").await;
    app.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("backup-20261120T030000Z.rdb", 1),
        ("backup-20261121T030000Z.rdb", 2),
    ] {
        app.batch_execute(&format!("UPDATE t SET v = {value}"))
            .await
            .unwrap();
        let opts = BackupOptions {
            output: dir.path().join(name),
            recipients_file: None,
        };
        backup::backup(&c.target("app"), opts).await.unwrap();
    }
    drop(app);
    c.create_db("restored").await;
    let opts = RestoreOptions {
        input: dir.path().to_path_buf(),
        identity_file: None,
    };
    let r = backup::restore::restore(&c.target("restored"), opts)
        .await
        .unwrap();
    assert!(
        r.input.ends_with("backup-20261121T030000Z.rdb"),
        "{}",
        r.input
    );
    let v: i32 = c
        .client("restored")
        .await
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 2, "the newest backup was restored");
}

/// The `backup` and `restore` entrypoints as their Jobs run them: the reports the operator reads
/// (`lastBackup`, the restore's `lastSync`) carry every field it uses.
#[tokio::test]
async fn entrypoint_reports_carry_what_the_operator_reads() {
    let c = TestCluster::start();
    c.create_db_with("app", DATA).await;
    std::env::set_var("PGPASSWORD", TEST_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("termination-log");
    let read = || {
        let line = std::fs::read_to_string(&file).unwrap();
        assert!(line.len() < 4096 && line.trim_end().lines().count() == 1);
        JobReport::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let output = dir.path().join("backup-20261201T000000Z.rdb");
    let args = BackupArgs {
        source: c.conninfo("app"),
        output: output.clone(),
        recipients_file: None,
        reporting: Reporting {
            report: Some(file.clone()),
            json: false,
        },
        keep: Some(5),
    };
    assert_eq!(cli::backup(args).await, ExitCode::SUCCESS);
    let JobReport::Backup(b) = read() else {
        panic!("not a backup report")
    };
    assert!(b.ok && b.error.is_none(), "{b:?}");
    assert_eq!(b.output.as_deref(), output.to_str());
    assert_eq!(b.file_bytes, std::fs::metadata(&output).unwrap().len());
    assert!(b.snapshot_lsn.is_some() && !b.encrypted, "{b:?}");
    assert_eq!(b.database, "app");

    let args = RestoreArgs {
        input: output.clone(),
        target: c.conninfo("copy"),
        identity_file: None,
        reporting: Reporting {
            report: Some(file.clone()),
            json: false,
        },
    };
    assert_eq!(cli::restore(args).await, ExitCode::SUCCESS);
    let JobReport::Restore(r) = read() else {
        panic!("not a restore report")
    };
    assert!(r.ok && r.error.is_none(), "{r:?}");
    assert_eq!(r.input.as_deref(), output.to_str());
    assert_eq!(
        (r.database.as_str(), r.snapshot_lsn),
        ("app", b.snapshot_lsn)
    );
    assert!(equal(&c, "app", "copy").await);

    // A failure: the error, under the right command.
    let args = BackupArgs {
        source: c.conninfo("no_such_db"),
        output,
        recipients_file: None,
        reporting: Reporting {
            report: Some(file.clone()),
            json: false,
        },
        keep: None,
    };
    assert_eq!(cli::backup(args).await, ExitCode::from(2));
    let r = read();
    assert_eq!(r.entrypoint(), Entrypoint::Backup);
    assert!(r.error().unwrap().contains("no_such_db"), "{r:?}");
}
