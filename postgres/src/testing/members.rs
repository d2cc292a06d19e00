//! A primary and standbys made by the code under test (`member::initdb`, `member::clone`),
//! for the data path's tests and the operator's tests on real servers.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{free_port, postgres_tempdir, TestCluster, TEST_PASSWORD};
use crate::actions::{probe, MemberProbe};
use crate::conn::Target;
use crate::member::{self, CloneOptions, InitdbOptions, Secret};

pub const REPL_PASSWORD: &str = "test-replication-password";
pub const T: Duration = Duration::from_secs(10);

/// Options for `member::initdb` into `<dir>/data`, with test-speed settings.
pub fn initdb_options(pgdata: std::path::PathBuf) -> InitdbOptions {
    InitdbOptions {
        pgdata,
        database: "receipts".into(),
        port: free_port(),
        superuser: "postgres".into(),
        superuser_password: Secret::new(TEST_PASSWORD),
        replication_user: "replicator".into(),
        replication_password: Secret::new(REPL_PASSWORD),
        locale: "C.UTF-8".into(),
        settings: [
            ("fsync", "off"),
            ("shared_buffers", "32MB"),
            ("max_connections", "40"),
            ("listen_addresses", "127.0.0.1"),
            ("wal_keep_size", "64MB"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        no_sync: true,
        tls: None,
    }
}

/// A primary made by `member::initdb`, started.
pub async fn primary() -> TestCluster {
    let dir = postgres_tempdir();
    let rep = member::initdb(&initdb_options(dir.path().join("data")))
        .await
        .expect("initdb");
    assert!(rep.initialized);
    TestCluster::adopt(dir)
}

/// Clone options for a standby of `source` named `name`, in a new temp dir.
pub fn clone_options(source: &TestCluster, name: &str) -> (tempfile::TempDir, CloneOptions) {
    let dir = postgres_tempdir();
    let opts = CloneOptions {
        pgdata: dir.path().join("data"),
        source: source.target("postgres"),
        slot: member::slot_name_for(name),
        port: free_port(),
        replication_user: "replicator".into(),
        replication_password: Secret::new(REPL_PASSWORD),
        application_name: name.into(),
        no_sync: true,
        tls: None,
    };
    (dir, opts)
}

/// A started standby of `source`, made by `member::clone`.
pub async fn standby(source: &TestCluster, name: &str) -> TestCluster {
    let (dir, opts) = clone_options(source, name);
    member::clone(&opts).await.expect("clone");
    TestCluster::adopt(dir)
}

/// Poll `f` until it returns Some, or panic after `within` with the last value.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not reached in {within:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Wait until `standby` streams from `primary` and has replayed everything: zero lag.
pub async fn wait_in_sync(
    primary: &Target,
    standby: &Target,
    name: &str,
) -> (MemberProbe, MemberProbe) {
    eventually(Duration::from_secs(30), "standby in sync", || async {
        let p = probe(primary, T).await;
        let s = probe(standby, T).await;
        let r = p.replica(name).cloned();
        match (&r, s.is_streaming_standby()) {
            (Some(r), true)
                if r.state.as_deref() == Some("streaming")
                    && r.replay_lag_bytes == Some(0)
                    && s.replay_lsn == p.current_lsn =>
            {
                Ok((p, s))
            }
            _ => Err(format!("primary {p:?}\nstandby {s:?}")),
        }
    })
    .await
}

/// Count the rows of `t` on a cluster's `receipts` database.
pub async fn count(c: &TestCluster, db: &str, table: &str) -> i64 {
    c.client(db)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}
