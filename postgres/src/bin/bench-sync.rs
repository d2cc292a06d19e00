//! Benchmark: full `sync --force` against the runbook's `pg_dump | psql` and against
//! `pg_dump -Fd -j2` + `pg_restore -j2`; differential `sync` with 1 of 20 tables differing;
//! `check` with counts against checksums. Two throwaway clusters on this machine, generated
//! data (6 wide random-text tables and 14 narrow receipt-like tables, ~450 MB with indexes).
//! Prints the median of `RUNS` runs of each. Not a test: figures depend on the machine.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-pgb cargo run --release -p receiptdb-postgres
//! --features testing --bin bench-sync` (env `BENCH_RUNS`, `BENCH_SCALE` adjust).

use std::time::{Duration, Instant};

use receiptdb_postgres::compare::{self, CompareOptions, Method};
use receiptdb_postgres::pgbin::{client_command_std, program};
use receiptdb_postgres::sync::{self, SyncMode, SyncOptions};
use receiptdb_postgres::testing::bench::{
    cluster, cpu_seconds, dump_psql, env_num, generate, loadavg, median, num_cpus, run_shell, secs,
    size, version, Res,
};
use receiptdb_postgres::testing::TestCluster;

/// `pg_dump -Fd -j2` then `pg_restore -j2 --clean` into the existing target.
fn dump_dir_restore(src: &TestCluster, tgt: &TestCluster) -> Res<(Duration, Duration)> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("dump");
    let t = Instant::now();
    let mut cmd = client_command_std("pg_dump", &src.target("bench"));
    // No compression: pg_dump's gzip is CPU-bound on random text (46 s instead of ~15 s here).
    cmd.args(["-Fd", "-j2", "--compress=0", "-f"]).arg(&out);
    run_shell("pg_dump -Fd", cmd)?;
    let dumped = t.elapsed();
    let t = Instant::now();
    let mut cmd = client_command_std("pg_restore", &tgt.target("bench"));
    cmd.args(["-j2", "--clean", "--if-exists", "-d", "bench"])
        .arg(&out);
    run_shell("pg_restore", cmd)?;
    Ok((dumped, t.elapsed()))
}

#[tokio::main]
async fn main() -> Res<()> {
    let runs = env_num("BENCH_RUNS", 3);
    let scale = env_num("BENCH_SCALE", 1);
    let (src, tgt) = (cluster(), cluster());
    src.create_db("bench").await;
    tgt.create_db("bench").await;
    let t = Instant::now();
    generate(&src, scale).await?;
    let bytes = size(&src).await?;
    println!("machine: {} cores, load average {}", num_cpus(), loadavg());
    println!("pg_dump: {}", version(&program("pg_dump")));
    println!(
        "data: 20 tables (6 wide random text, 14 narrow), {:.0} MB on disk, generated in {}",
        bytes as f64 / 1e6,
        secs(t.elapsed())
    );
    let force = SyncOptions {
        force: true,
        ..SyncOptions::default()
    };
    // Warm-up: populate the target.
    sync::sync(&src.target("bench"), &tgt.target("bench"), force.clone()).await?;

    let mut full = Vec::new();
    let mut runbook = Vec::new();
    let mut dir_dump = Vec::new();
    let mut dir_restore = Vec::new();
    let mut diff = Vec::new();
    let mut diff_counts = Vec::new();
    let mut counts = Vec::new();
    let mut sums = Vec::new();
    let mut copied_bytes = 0;
    for run in 1..=runs {
        let t = Instant::now();
        let r = sync::sync(&src.target("bench"), &tgt.target("bench"), force.clone()).await?;
        full.push(t.elapsed());
        copied_bytes = r.bytes;
        let d = &r.durations;
        println!(
            "run {run}: sync --force {} ({} rows, {} MB COPY; schema {} ms, copy {} ms, commit {} ms; \
             this process {:.1} s CPU so far)",
            secs(t.elapsed()),
            r.rows,
            r.bytes / 1_000_000,
            d.schema_ms,
            d.copy_ms,
            d.commit_ms,
            cpu_seconds()
        );

        let d = dump_psql(&src, &tgt)?;
        runbook.push(d);
        println!("run {run}: pg_dump | psql {}", secs(d));

        let (a, b) = dump_dir_restore(&src, &tgt)?;
        dir_dump.push(a);
        dir_restore.push(b);
        println!(
            "run {run}: pg_dump -Fd -j2 {} + pg_restore -j2 {}",
            secs(a),
            secs(b)
        );

        // One of 20 tables differs (content only: counts would not see it).
        let tag = format!("changed {run}");
        tgt.client("bench")
            .await
            .execute("UPDATE t10 SET code = $1 WHERE id = 77", &[&tag])
            .await?;
        let t = Instant::now();
        let r = sync::sync(
            &src.target("bench"),
            &tgt.target("bench"),
            SyncOptions::default(),
        )
        .await?;
        diff.push(t.elapsed());
        assert_eq!(r.mode, SyncMode::Tables);
        println!(
            "run {run}: differential sync {} (copied {:?}; compare {} ms, copy {} ms)",
            secs(t.elapsed()),
            r.tables
                .iter()
                .map(|t| t.table.as_str())
                .collect::<Vec<_>>(),
            r.durations.compare_ms,
            r.durations.copy_ms
        );

        // The runbook's pre-check: counts, with a row missing from one table.
        let id = 1000 + run as i64;
        tgt.client("bench")
            .await
            .execute("DELETE FROM t11 WHERE id = $1", &[&id])
            .await?;
        let t = Instant::now();
        let opts = SyncOptions {
            method: Method::Counts,
            ..SyncOptions::default()
        };
        let r = sync::sync(&src.target("bench"), &tgt.target("bench"), opts).await?;
        diff_counts.push(t.elapsed());
        assert_eq!(r.mode, SyncMode::Tables);
        println!(
            "run {run}: differential sync --method counts {}",
            secs(t.elapsed())
        );

        for (method, into) in [
            (Method::Counts, &mut counts),
            (Method::Checksums, &mut sums),
        ] {
            let t = Instant::now();
            let opts = CompareOptions {
                method,
                jobs: 2,
                max_rate: None,
            };
            let r = compare::compare(&src.target("bench"), &tgt.target("bench"), opts).await?;
            into.push(t.elapsed());
            println!(
                "run {run}: check {method:?} {} (equal: {})",
                secs(t.elapsed()),
                r.equal
            );
        }
    }
    let (full, runbook) = (median(full), median(runbook));
    let (dd, dr) = (median(dir_dump), median(dir_restore));
    let (diff, counts, sums) = (median(diff), median(counts), median(sums));
    println!("\n== medians of {runs} runs ==");
    println!("| measurement | median | ratio |");
    println!("| --- | --- | --- |");
    println!(
        "| sync --force (full, {} MB COPY) | {} | |",
        copied_bytes / 1_000_000,
        secs(full)
    );
    println!(
        "| pg_dump \\| psql (runbook) | {} | sync --force is {:.2}x faster (target >= 1.5x) |",
        secs(runbook),
        runbook.as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "| pg_dump -Fd -j2 + pg_restore -j2 | {} + {} = {} | sync --force is {:.2}x faster |",
        secs(dd),
        secs(dr),
        secs(dd + dr),
        (dd + dr).as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "| sync, 1 of 20 tables differs | {} | {:.1}x faster than full (target >= 10x) |",
        secs(diff),
        full.as_secs_f64() / diff.as_secs_f64()
    );
    let diff_counts = median(diff_counts);
    println!(
        "| sync --method counts, 1 of 20 tables differs | {} | {:.1}x faster than full |",
        secs(diff_counts),
        full.as_secs_f64() / diff_counts.as_secs_f64()
    );
    println!("| check --method counts | {} | |", secs(counts));
    println!(
        "| check --method checksums | {} | {:.2}x counts (target <= 2x) |",
        secs(sums),
        sums.as_secs_f64() / counts.as_secs_f64()
    );
    Ok(())
}
