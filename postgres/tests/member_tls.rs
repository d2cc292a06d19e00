//! Members with TLS on, against real PostgreSQL: `hostssl` only (plain text refused), clients
//! verifying the server (wrong CA and wrong host name refused), a standby streaming over TLS
//! with `sslmode=verify-full`, and a re-issued certificate picked up by a reload, no restart.

mod member_common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use member_common::*;

use receiptdb_postgres::actions::{promote, reload_config};
use receiptdb_postgres::conn::{RootCerts, SslMode, Target, TlsSettings};
use receiptdb_postgres::job_report::RejoinMethod;
use receiptdb_postgres::member::{self, MemberTls, Secret};
use receiptdb_postgres::pki;
use receiptdb_postgres::testing::tls::{test_names, test_pki, verify_full, write_member_files};
use receiptdb_postgres::testing::{postgres_tempdir, TestCluster, TEST_PASSWORD};

/// A primary made by `member::initdb` with TLS files laid out as a Secret volume.
async fn tls_primary(ca: &pki::CertAndKey, server: &pki::CertAndKey) -> (TestCluster, MemberTls) {
    let dir = postgres_tempdir();
    let tls = write_member_files(&dir.path().join("tls"), &ca.cert_pem, server);
    let mut opts = initdb_options(dir.path().join("data"));
    opts.tls = Some(tls.clone());
    member::initdb(&opts).await.expect("initdb with TLS");
    (TestCluster::adopt(dir), tls)
}

/// A target parsed from a libpq connection string (the Job and by-hand path), password set.
fn parsed(conninfo: &str) -> Target {
    let mut t = Target::parse(conninfo).expect("parse the connection string");
    t.config.password(TEST_PASSWORD);
    t
}

async fn connect_err(t: &Target) -> String {
    match t.connect(T).await {
        Ok(_) => panic!("connecting to {} with {:?} succeeded", t.describe(), t.tls),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn tls_member_refuses_plain_text_a_wrong_ca_and_a_wrong_host() {
    let (ca, server) = test_pki();
    let (c, tls) = tls_primary(&ca, &server).await;
    let base = c.conninfo("postgres");
    let ca_file = tls.ca_file.display().to_string();

    // (a) Plain text is refused by pg_hba (hostssl only), before any password is checked.
    let err = connect_err(&parsed(&format!("{base} sslmode=disable"))).await;
    assert!(err.contains("no encryption"), "{err}");

    // (b) verify-full against the pair's CA: connected, and the session is encrypted.
    let good = parsed(&format!("{base} sslmode=verify-full sslrootcert={ca_file}"));
    assert_eq!(good.tls.mode, SslMode::VerifyFull);
    let client = good
        .connect(T)
        .await
        .expect("verify-full with the right CA");
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "session not encrypted");
    assert!(row.get::<_, Option<String>>(1).is_some());
    // The CA held in memory (as the operator holds it, read from a Secret) works the same.
    let in_memory = c
        .target("postgres")
        .with_tls(TlsSettings::verify_full(RootCerts::Pem {
            label: "the test CA".into(),
            pem: Arc::new(ca.cert_pem.clone().into_bytes()),
        }));
    in_memory
        .connect(T)
        .await
        .expect("verify-full with the CA in memory");
    let other_in_memory = c
        .target("postgres")
        .with_tls(TlsSettings::verify_full(RootCerts::Pem {
            label: "another CA".into(),
            pem: Arc::new(
                pki::issue_ca("another", SystemTime::now())
                    .unwrap()
                    .cert_pem
                    .into_bytes(),
            ),
        }));
    let err = connect_err(&other_in_memory).await;
    assert!(err.contains("not trusted by another CA"), "{err}");
    // The default (prefer) also gets TLS from this server.
    let prefer = c.target("postgres").with_tls(TlsSettings::default());
    let ssl: bool = prefer
        .connect(T)
        .await
        .expect("prefer")
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);

    // (c) Another CA is refused, naming the CA file.
    let other = pki::issue_ca("someone else's CA", SystemTime::now()).unwrap();
    let other_dir = postgres_tempdir();
    let other_file = other_dir.path().join("other-ca.crt");
    std::fs::write(&other_file, &other.cert_pem).unwrap();
    let err = connect_err(&parsed(&format!(
        "{base} sslmode=verify-full sslrootcert={}",
        other_file.display()
    )))
    .await;
    assert!(
        err.contains(&format!("not trusted by {}", other_file.display())),
        "{err}"
    );
    // verify-ca checks the chain too.
    let err = connect_err(&parsed(&format!(
        "{base} sslmode=verify-ca sslrootcert={}",
        other_file.display()
    )))
    .await;
    assert!(err.contains("not trusted by"), "{err}");

    // (d) A host name the certificate does not carry is refused under verify-full (the TCP
    // connection goes to the right server through hostaddr), accepted under verify-ca.
    let wrong_host = format!(
        "host=db.wrong.example hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslrootcert={ca_file}",
        c.port
    );
    let err = connect_err(&parsed(&format!("{wrong_host} sslmode=verify-full"))).await;
    assert!(
        err.contains("not valid for host") && err.contains("db.wrong.example"),
        "{err}"
    );
    parsed(&format!("{wrong_host} sslmode=verify-ca"))
        .connect(T)
        .await
        .expect("verify-ca does not check the host name");

    // A verifying client refuses a server without TLS.
    let plain = TestCluster::start();
    let err = connect_err(&verify_full(plain.target("postgres"), &tls.ca_file)).await;
    assert!(err.contains("does not support TLS"), "{err}");
}

#[tokio::test]
async fn standby_streams_over_tls_and_a_reissued_certificate_is_picked_up_by_reload() {
    let (ca, server) = test_pki();
    let (p, p_tls) = tls_primary(&ca, &server).await;
    let p_target = verify_full(p.target("postgres"), &p_tls.ca_file);

    // (e) A standby cloned over TLS (pg_basebackup verifies too), streaming with verify-full.
    let (dir, mut opts) = clone_options(&p, "secondary");
    let standby_server = pki::issue_server(&ca, &test_names(), SystemTime::now()).unwrap();
    let s_tls = write_member_files(&dir.path().join("tls"), &ca.cert_pem, &standby_server);
    opts.source = p_target.clone();
    opts.tls = Some(s_tls.clone());
    member::clone(&opts).await.expect("clone over TLS");
    let s = TestCluster::adopt(dir);
    let s_target = verify_full(s.target("postgres"), &s_tls.ca_file);
    wait_in_sync(&p_target, &s_target, "secondary").await;

    let conninfo: String = s_target
        .connect(T)
        .await
        .unwrap()
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    assert!(conninfo.contains("sslmode=verify-full"), "{conninfo}");
    assert!(
        conninfo.contains(&format!("sslrootcert={}", s_tls.ca_file.display())),
        "{conninfo}"
    );
    let walsender = |client: tokio_postgres::Client| async move {
        let row = client
            .query_one(
                "SELECT r.pid, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid
                 WHERE r.application_name = 'secondary' AND r.state = 'streaming'",
                &[],
            )
            .await
            .expect("one streaming walsender for the standby");
        (row.get::<_, i32>(0), row.get::<_, bool>(1))
    };
    let (sender_pid, ssl) = walsender(p_target.connect(T).await.unwrap()).await;
    assert!(ssl, "the walsender's connection is not encrypted");
    // The standby is hostssl-only too.
    let plain = s
        .target("postgres")
        .with_tls(TlsSettings {
            mode: SslMode::Disable,
            root_certs: None,
        })
        .connect(T)
        .await;
    assert!(plain.is_err(), "plain text accepted by the standby");

    // (f) Re-issue the primary's certificate with one more name and swap the files: the
    // server keeps presenting the old one until a reload, then the new one; no restart, and
    // the standby keeps streaming through the same walsender.
    let mut names = test_names();
    names.push("rotated.example".into());
    let rotated = pki::issue_server(&ca, &names, SystemTime::now()).unwrap();
    let postmaster = p.postmaster_pid();
    write_member_files(p.root().join("tls").as_path(), &ca.cert_pem, &rotated);
    let new_name = parsed(&format!(
        "host=rotated.example hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        p.port,
        p_tls.ca_file.display()
    ));
    let err = connect_err(&new_name).await;
    assert!(err.contains("not valid for host"), "before reload: {err}");
    reload_config(&p_target, T).await.expect("reload");
    eventually(
        Duration::from_secs(10),
        "new certificate presented",
        || async {
            new_name
                .connect(T)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert_eq!(p.postmaster_pid(), postmaster, "the primary restarted");
    let (pid_after, ssl) = walsender(p_target.connect(T).await.unwrap()).await;
    assert_eq!(
        pid_after, sender_pid,
        "the standby reconnected (a new walsender)"
    );
    assert!(ssl);
}

/// A failover and a rejoin with TLS on: pg_rewind reads from the new primary over verified TLS,
/// and the rejoined member streams from it with `verify-full`.
#[tokio::test]
async fn a_stale_member_rejoins_over_tls() {
    let (ca, server) = test_pki();
    let (a, a_tls) = tls_primary(&ca, &server).await;
    let a_target = verify_full(a.target("postgres"), &a_tls.ca_file);
    let (dir, mut opts) = clone_options(&a, "secondary");
    let b_tls = write_member_files(&dir.path().join("tls"), &ca.cert_pem, &server);
    opts.source = a_target.clone();
    opts.tls = Some(b_tls.clone());
    member::clone(&opts).await.expect("clone over TLS");
    let b = TestCluster::adopt(dir);
    let b_target = verify_full(b.target("postgres"), &b_tls.ca_file);
    wait_in_sync(&a_target, &b_target, "secondary").await;

    // Fail over to b while a still takes writes: a diverges and must be rewound.
    promote(&b_target, Duration::from_secs(30))
        .await
        .expect("promote");
    a_target
        .connect(T)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE lost AS SELECT g FROM generate_series(1, 1000) g; CHECKPOINT")
        .await
        .unwrap();
    a.stop("fast");

    let ropts = member::RejoinOptions {
        pgdata: a.data_dir(),
        source: b_target.clone(),
        slot: "primary".into(),
        port: a.port,
        replication_user: "replicator".into(),
        replication_password: Secret::new(REPL_PASSWORD),
        application_name: "primary".into(),
        no_sync: true,
        tls: Some(a_tls.clone()),
    };
    let rep = member::rejoin(&ropts).await.expect("rejoin over TLS");
    assert_eq!(rep.method, Some(RejoinMethod::Rewind), "{rep:?}");
    a.pg_ctl_start();
    wait_in_sync(&b_target, &a_target, "primary").await;
    let ssl: bool = b_target
        .connect(T)
        .await
        .unwrap()
        .query_one(
            "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid
             WHERE r.application_name = 'primary'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the rejoined member streams without TLS");
    let conninfo: String = a_target
        .connect(T)
        .await
        .unwrap()
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    assert!(conninfo.contains("sslmode=verify-full"), "{conninfo}");
}
