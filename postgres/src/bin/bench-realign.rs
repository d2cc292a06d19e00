//! Benchmark of re-alignment and comparison on the 20 generated tables plus one `claims` table
//! of about 1 GB (issue: compare and re-align at the speed of the disk, gently):
//! - differential `sync` with 1 of 20 tables differing, and with 10 rows of `claims`
//!   differing, each against a full `sync --force`, the runbook's `pg_dump | psql`, and a
//!   checksum `check` of the same database;
//! - `check` with checksums against counts and against a plain sequential `count(*)` of every
//!   table (the physical floor: every page read once);
//! - a writer's commit latency (p50/p99) with no check, with checks running back to back, and
//!   with rate-limited checks.
//!
//! Not a test: it prints figures, which depend on the machine. Two throwaway clusters here.
//! Run: `cargo run --release -p receiptdb-postgres --features testing --bin bench-realign`
//! (env `BENCH_RUNS` (3), `BENCH_CLAIMS_MB` (1100), `BENCH_RATES` (`64MiB,16MiB`: the limits
//! tried under the writer), `BENCH_WINDOW_S` (20); `BENCH_LATENCY_ONLY=1` skips the runs).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use receiptdb_postgres::compare::{self, CompareOptions, Method, Rate};
use receiptdb_postgres::sync::{self, SyncMode, SyncOptions, SyncOutcome};
use receiptdb_postgres::testing::bench::{
    cluster, dump_psql, env_num, generate, generate_claims, loadavg, median, num_cpus, secs, size,
    Res,
};
use receiptdb_postgres::testing::TestCluster;

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Time `sync` (default options: compare by checksums, re-align rows) after `change` ran on
/// the target; print what it did to `table`.
async fn differential(
    src: &TestCluster,
    tgt: &TestCluster,
    change: &str,
    table: &str,
    label: &str,
) -> Res<(Duration, SyncOutcome)> {
    tgt.client("bench").await.batch_execute(change).await?;
    let t = Instant::now();
    let r = sync::sync(
        &src.target("bench"),
        &tgt.target("bench"),
        SyncOptions::default(),
    )
    .await?;
    let took = t.elapsed();
    assert_eq!(r.mode, SyncMode::Tables, "{label}");
    let c = r
        .tables
        .iter()
        .find(|c| c.table.contains(table))
        .ok_or(format!("{label}: {table} not re-aligned"))?;
    println!(
        "  {label}: {} (compare {} ms, re-align {} ms; {table}: {} {:?})",
        secs(took),
        r.durations.compare_ms,
        r.durations.copy_ms,
        c.method,
        c.chunks
    );
    Ok((took, r))
}

async fn check(
    src: &TestCluster,
    tgt: &TestCluster,
    method: Method,
    rate: Option<Rate>,
) -> Res<Duration> {
    let t = Instant::now();
    let opts = CompareOptions {
        method,
        jobs: 2,
        max_rate: rate,
    };
    compare::compare(&src.target("bench"), &tgt.target("bench"), opts).await?;
    Ok(t.elapsed())
}

/// A sequential `count(*)` of every table on both servers, two connections each (as `check`
/// uses): every heap page read once, nothing hashed.
async fn count_scan(src: &TestCluster, tgt: &TestCluster) -> Res<Duration> {
    let tables: Vec<String> = src
        .client("bench")
        .await
        .query(
            "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
             ORDER BY pg_relation_size(relid) DESC",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t = Instant::now();
    let mut jobs = Vec::new();
    for c in [src, tgt] {
        // Each server reads every table once, biggest first, by two connections.
        let queue = Arc::new(std::sync::Mutex::new(
            tables
                .iter()
                .cloned()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        for _ in 0..2 {
            let client = c.client("bench").await;
            client
                .batch_execute(
                    "SET enable_indexonlyscan = off; SET enable_bitmapscan = off;
                     SET max_parallel_workers_per_gather = 0",
                )
                .await?;
            let queue = queue.clone();
            jobs.push(tokio::spawn(async move {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(table) = next else { break };
                    client
                        .query_one(&format!("SELECT count(*) FROM ONLY {table}"), &[])
                        .await?;
                }
                Ok::<_, tokio_postgres::Error>(())
            }));
        }
    }
    for j in jobs {
        j.await??;
    }
    Ok(t.elapsed())
}

/// Commit latencies of a writer inserting one row every 5 ms for `window`, while `load` runs.
async fn latencies(src: &TestCluster, window: Duration) -> Res<Vec<Duration>> {
    let client = src.client("bench").await;
    client
        .batch_execute(
            "SET synchronous_commit = on;
             CREATE TABLE IF NOT EXISTS latency_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())",
        )
        .await?;
    let insert = client
        .prepare("INSERT INTO latency_probe DEFAULT VALUES")
        .await?;
    let mut out = Vec::new();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let t = Instant::now();
        client.execute(&insert, &[]).await?;
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(out)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Latencies while checks run back to back (`rate` limited or not); also how many finished.
async fn latency_under_checks(
    src: &TestCluster,
    tgt: &TestCluster,
    rate: Option<Option<Rate>>,
    window: Duration,
) -> Res<(Vec<Duration>, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loader = rate.map(|rate| {
        let (s, t) = (src.target("bench"), tgt.target("bench"));
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let opts = CompareOptions {
                    method: Method::Checksums,
                    jobs: 2,
                    max_rate: rate,
                };
                if compare::compare(&s, &t, opts).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    // Let the checks get going.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = latencies(src, window).await?;
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = loader {
        h.abort();
        let _ = h.await;
    }
    Ok((l, done.load(Ordering::Relaxed)))
}

#[tokio::main]
async fn main() -> Res<()> {
    let runs = env_num("BENCH_RUNS", 3);
    let claims_mb = env_num("BENCH_CLAIMS_MB", 1100);
    let window = Duration::from_secs(env_num("BENCH_WINDOW_S", 20) as u64);
    let rates: Vec<Rate> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "64MiB,16MiB".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let rate = rates.first().copied().ok_or("BENCH_RATES is empty")?;
    let latency_only = std::env::var_os("BENCH_LATENCY_ONLY").is_some();
    let (src, tgt) = (cluster(), cluster());
    src.create_db("bench").await;
    tgt.create_db("bench").await;
    let t = Instant::now();
    generate(&src, 1).await?;
    let claims_rows = generate_claims(&src, claims_mb).await?;
    let claims_bytes: i64 = src
        .client("bench")
        .await
        .query_one("SELECT pg_relation_size('claims')", &[])
        .await?
        .get(0);
    println!("machine: {} cores, load average {}", num_cpus(), loadavg());
    println!(
        "data: 20 tables + claims ({claims_rows} rows, {:.0} MB heap), {:.0} MB on disk, \
         generated in {}",
        claims_bytes as f64 / 1e6,
        size(&src).await? as f64 / 1e6,
        secs(t.elapsed())
    );
    let force = SyncOptions {
        force: true,
        ..SyncOptions::default()
    };
    let t = Instant::now();
    sync::sync(&src.target("bench"), &tgt.target("bench"), force.clone()).await?;
    println!("warm-up sync --force: {}", secs(t.elapsed()));

    let (mut full, mut runbook, mut one_table, mut ten_rows) = (vec![], vec![], vec![], vec![]);
    let (mut counts, mut sums, mut scans) = (vec![], vec![], vec![]);
    for run in (1..=runs).filter(|_| !latency_only) {
        println!("run {run}:");
        let t = Instant::now();
        sync::sync(&src.target("bench"), &tgt.target("bench"), force.clone()).await?;
        full.push(t.elapsed());
        println!("  sync --force: {}", secs(t.elapsed()));
        let d = dump_psql(&src, &tgt)?;
        println!("  pg_dump | psql: {}", secs(d));
        runbook.push(d);

        let change = format!("UPDATE t10 SET code = 'changed {run}' WHERE id = 77");
        let (d, _) = differential(&src, &tgt, &change, "t10", "1 of 20 tables").await?;
        one_table.push(d);
        // Ten rows spread over the whole key range.
        let ids: Vec<String> = (0..10)
            .map(|i| (1 + i * (claims_rows / 10) + run as i64).to_string())
            .collect();
        let change = format!(
            "UPDATE claims SET amount = amount + {run} WHERE id IN ({})",
            ids.join(", ")
        );
        let (d, r) = differential(&src, &tgt, &change, "claims", "10 rows of claims").await?;
        let c = r.tables.iter().find(|c| c.table.contains("claims"));
        assert_eq!(c.map(|c| c.rows), Some(10), "only the 10 rows copied");
        ten_rows.push(d);

        let c = check(&src, &tgt, Method::Counts, None).await?;
        let s = check(&src, &tgt, Method::Checksums, None).await?;
        let n = count_scan(&src, &tgt).await?;
        println!(
            "  check counts {}, check checksums {}, count(*) of every table {}",
            secs(c),
            secs(s),
            secs(n)
        );
        counts.push(c);
        sums.push(s);
        scans.push(n);
    }
    let limited = check(&src, &tgt, Method::Checksums, Some(rate)).await?;
    println!("check checksums --max-rate {rate}: {}", secs(limited));
    let mut lat = Vec::new();
    let mut loads = vec![
        ("no check".to_string(), None),
        ("checks back to back, no limit".to_string(), Some(None)),
    ];
    for r in &rates {
        loads.push((
            format!("checks back to back, --max-rate {r}"),
            Some(Some(*r)),
        ));
    }

    println!("\ncommit latency, one writer (a commit every 5 ms, synchronous_commit on), {window:?} each:");
    for (label, load) in loads {
        let (l, n) = latency_under_checks(&src, &tgt, load, window).await?;
        println!(
            "  {label}: {} commits, p50 {}, p90 {}, p99 {}, max {} ({n} checks finished)",
            l.len(),
            ms(pct(&l, 0.5)),
            ms(pct(&l, 0.9)),
            ms(pct(&l, 0.99)),
            ms(pct(&l, 1.0))
        );
        lat.push((label, l, n));
    }
    if latency_only {
        return Ok(());
    }

    let (full, runbook) = (median(full), median(runbook));
    let (one_table, ten_rows) = (median(one_table), median(ten_rows));
    let (counts, sums, scans) = (median(counts), median(sums), median(scans));
    println!("\n== medians of {runs} runs ==");
    println!("| measurement | median | ratios |");
    println!("| --- | --- | --- |");
    println!("| `sync --force` (full) | {} | |", secs(full));
    println!(
        "| `pg_dump \\| psql` (runbook) | {} | {:.2}x `sync --force` |",
        secs(runbook),
        ratio(runbook, full)
    );
    println!(
        "| `sync`, 1 of 20 tables differs (1 row) | {} | {:.1}x faster than full, {:.1}x faster than the runbook, {:.2}x a checksum check |",
        secs(one_table),
        ratio(full, one_table),
        ratio(runbook, one_table),
        ratio(one_table, sums)
    );
    println!(
        "| `sync`, 10 rows of the 1 GB table differ | {} | {:.1}x faster than full, {:.1}x faster than the runbook, **{:.2}x a checksum check** (target <= 1.2x) |",
        secs(ten_rows),
        ratio(full, ten_rows),
        ratio(runbook, ten_rows),
        ratio(ten_rows, sums)
    );
    println!("| `check --method counts` | {} | |", secs(counts));
    println!(
        "| `check --method checksums` | {} | **{:.2}x counts** (target <= 2x), {:.2}x the count(*) scan |",
        secs(sums),
        ratio(sums, counts),
        ratio(sums, scans)
    );
    println!(
        "| sequential `count(*)` of every table, both servers | {} | |",
        secs(scans)
    );
    println!(
        "| `check --method checksums --max-rate {rate}` | {} | |",
        secs(limited)
    );
    println!("\n| writer during | commits | p50 | p90 | p99 | max | checks finished |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (label, l, n) in &lat {
        println!(
            "| {label} | {} | {} | {} | {} | {} | {n} |",
            l.len(),
            ms(pct(l, 0.5)),
            ms(pct(l, 0.9)),
            ms(pct(l, 0.99)),
            ms(pct(l, 1.0))
        );
    }
    Ok(())
}
