//! probe, promote, fence/unfence, synchronous standby on/off and replay waits against a real
//! primary/standby pair.

#[path = "member_common/mod.rs"]
mod member_common;

use std::time::Duration;

use member_common::*;
use receiptdb_postgres::actions::{
    fence, probe, promote, set_synchronous_standby, unfence, wait_for_replay,
    wait_for_standby_replay, ActionError,
};
use receiptdb_postgres::testing::{free_port, TestCluster};
use tokio_postgres::Client;

async fn lsn_now(c: &Client) -> receiptdb_postgres::actions::Lsn {
    let s: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    s.parse().unwrap()
}

/// A client writing when the fence comes sees its session end (57P01, or the connection
/// closed), never a write refused as read-only (25006), which clients are not told to retry.
#[tokio::test]
async fn fence_ends_a_busy_writer_s_session_before_it_turns_read_only() {
    let p = primary().await;
    let pt = p.target("postgres");
    let setup = p.client("postgres").await;
    setup.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    for round in 0..3 {
        let writer = p.client("postgres").await;
        let writes = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                match writer.execute("INSERT INTO t VALUES (1)", &[]).await {
                    Ok(_) => n += 1,
                    Err(e) => return (n, e),
                }
            }
        });
        // Let it write for a moment, so the fence meets it mid-stream.
        tokio::time::sleep(Duration::from_millis(200)).await;
        fence(&pt, T).await.expect("fence");
        let (n, err) = writes.await.unwrap();
        assert!(n > 0, "round {round}: the writer never wrote");
        let code = err.code().map(|c| c.code().to_string());
        assert!(
            code.is_none() || code.as_deref() == Some("57P01"),
            "round {round}: the writer's session should end, got {code:?}: {err:?}"
        );
        unfence(&pt, T).await.expect("unfence");
    }
}

#[tokio::test]
async fn actions_on_a_primary_standby_pair() {
    let p = primary().await;
    let s = standby(&p, "secondary").await;
    let (pt, st) = (p.target("postgres"), s.target("postgres"));
    let pc = p.client("postgres").await;
    pc.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let (pp, sp) = wait_in_sync(&pt, &st, "secondary").await;

    // --- probe ---
    assert!(
        pp.is_primary() && pp.reachable && pp.error.is_none(),
        "{pp:?}"
    );
    assert_eq!(pp.timeline, Some(1));
    assert!(pp.current_lsn.is_some() && pp.receive_lsn.is_none());
    assert_eq!(pp.synchronous_standby_names.as_deref(), Some(""));
    assert_eq!(pp.default_transaction_read_only, Some(false));
    let r = pp.replica("secondary").expect("pg_stat_replication row");
    assert_eq!(r.sync_state.as_deref(), Some("async"));
    assert!(pp
        .slots
        .iter()
        .any(|s| s.slot_name == "secondary" && s.active));
    assert!(sp.is_streaming_standby() && !sp.is_primary(), "{sp:?}");
    assert_eq!(sp.system_identifier, pp.system_identifier);
    assert_eq!(sp.timeline, Some(1));
    let w = sp.wal_receiver.as_ref().unwrap();
    assert_eq!(w.sender_port, Some(i32::from(p.port)));
    assert!(sp.replay_lsn.is_some() && sp.receive_lsn.is_some() && sp.current_lsn.is_none());
    let json = serde_json::to_value(&pp).unwrap();
    assert!(json["currentLsn"].as_str().unwrap().contains('/'), "{json}");

    // --- wait for replay, from either side ---
    pc.batch_execute("INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let target = lsn_now(&pc).await;
    assert!(wait_for_replay(&st, target, T).await.unwrap() >= target);
    assert!(
        wait_for_standby_replay(&pt, "secondary", target, T)
            .await
            .unwrap()
            >= target
    );

    // --- fence: writes fail, sessions are killed, the standby keeps streaming ---
    let victim = p.client("postgres").await;
    let out = fence(&pt, T).await.expect("fence");
    assert!(out.terminated_sessions >= 2, "{out:?}"); // `pc` and `victim`
    assert!(
        victim.simple_query("SELECT 1").await.is_err(),
        "the session was terminated"
    );
    let pc = p.client("postgres").await;
    let err = pc
        .batch_execute("INSERT INTO t VALUES (0)")
        .await
        .unwrap_err();
    assert_eq!(
        err.code().map(|c| c.code()),
        Some("25006"),
        "read-only transaction: {err:?}"
    );
    assert_eq!(
        probe(&pt, T).await.default_transaction_read_only,
        Some(true)
    );
    fence(&pt, T).await.expect("fence is idempotent");
    unfence(&pt, T).await.expect("unfence");
    let pc = p.client("postgres").await;
    pc.batch_execute("INSERT INTO t VALUES (0)")
        .await
        .expect("writes again after unfence");
    wait_in_sync(&pt, &st, "secondary").await;

    // --- synchronous standby on: commits wait for it ---
    set_synchronous_standby(&pt, Some("secondary"), T)
        .await
        .unwrap();
    let pp = eventually(Duration::from_secs(10), "sync state", || async {
        let pp = probe(&pt, T).await;
        match pp.replica("secondary").and_then(|r| r.sync_state.clone()) {
            Some(s) if s == "sync" => Ok(pp),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        pp.synchronous_standby_names.as_deref(),
        Some("\"secondary\"")
    );
    tokio::time::timeout(T, pc.batch_execute("INSERT INTO t VALUES (1)"))
        .await
        .expect("commit with a streaming sync standby completes")
        .unwrap();
    s.stop("immediate");
    let waiting = tokio::spawn(async move {
        pc.batch_execute("INSERT INTO t VALUES (2)")
            .await
            .map(|_| pc)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "a commit must wait while the sync standby is away"
    );
    // --- degrade to async: the waiting commit and new ones complete ---
    set_synchronous_standby(&pt, None, T).await.unwrap();
    let pc = tokio::time::timeout(T, waiting)
        .await
        .expect("the waiting commit is released")
        .unwrap()
        .unwrap();
    tokio::time::timeout(T, pc.batch_execute("INSERT INTO t VALUES (3)"))
        .await
        .expect("async commit")
        .unwrap();
    assert_eq!(
        probe(&pt, T).await.synchronous_standby_names.as_deref(),
        Some("")
    );
    s.pg_ctl_start();
    wait_in_sync(&pt, &st, "secondary").await;

    // --- promote: usable at once, idempotent ---
    let out = promote(&st, Duration::from_secs(30))
        .await
        .expect("promote");
    assert!(!out.already_primary);
    assert_eq!(out.timeline, Some(2));
    let sc = s.client("postgres").await;
    sc.batch_execute("INSERT INTO t VALUES (4)")
        .await
        .expect("the new primary takes writes at once");
    let sp = probe(&st, T).await;
    assert!(sp.is_primary() && sp.timeline == Some(2), "{sp:?}");
    let again = promote(&st, Duration::from_secs(30))
        .await
        .expect("promote again");
    assert!(again.already_primary);
    assert_eq!(again.timeline, Some(2));
    // Waiting for replay on a primary is an error, not a hang.
    let err = wait_for_replay(&st, again.lsn.unwrap(), T)
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::State { .. }), "{err}");
}

#[tokio::test]
async fn actions_report_unreachable_members_and_wrong_passwords() {
    // Nothing listens on this port.
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(free_port())
        .user("postgres")
        .password("x");
    let nobody = receiptdb_postgres::conn::Target::from_config(cfg);
    let p = probe(&nobody, Duration::from_secs(2)).await;
    assert!(
        !p.reachable && p.error.is_some() && p.in_recovery.is_none(),
        "{p:?}"
    );
    let err = promote(&nobody, Duration::from_secs(2)).await.unwrap_err();
    assert!(
        err.to_string().contains("127.0.0.1"),
        "errors name the server: {err}"
    );

    let c = TestCluster::start();
    let mut bad = c.target("postgres");
    bad.config.password("wrong");
    let p = probe(&bad, T).await;
    assert!(!p.reachable);
    assert!(
        p.error
            .as_deref()
            .unwrap()
            .contains("password authentication failed"),
        "{p:?}"
    );
    let err = fence(&bad, T).await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    // The good password works and a lone primary has no replicas.
    let p = probe(&c.target("postgres"), T).await;
    assert!(p.is_primary() && p.replicas.is_empty(), "{p:?}");
}
