//! Shared parts of the `sync`/`check` benchmarks (`src/bin/bench-*.rs`): the throwaway
//! clusters, the generated data (20 tables), the runbook's `pg_dump | psql`, and printing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pgbin::client_command_std;
use crate::testing::{ClusterOptions, TestCluster};

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn cluster() -> TestCluster {
    let mut config: Vec<String> = vec![
        "shared_buffers = 256MB".into(),
        "max_wal_size = 4GB".into(),
        "checkpoint_timeout = 30min".into(),
        "maintenance_work_mem = 256MB".into(),
        "synchronous_commit = off".into(),
    ];
    // External replication mode needs no WAL streaming: with wal_level = minimal, data loaded
    // into tables created in the same transaction (sync's rebuild) is not WAL-logged.
    if std::env::var_os("BENCH_WAL_MINIMAL").is_some() {
        config.push("wal_level = minimal".into());
        config.push("max_wal_senders = 0".into());
    }
    TestCluster::start_with(ClusterOptions {
        config,
        checksums: true,
    })
}

pub async fn generate(c: &TestCluster, scale: usize) -> Res<()> {
    let wide_rows = 40_000 * scale;
    let narrow_rows = 150_000 * scale;
    let mut jobs = Vec::new();
    for i in 1..=20 {
        let client = c.client("bench").await;
        let sql = if i <= 6 {
            let parts: Vec<String> = (0..25).map(|_| "md5(random()::text)".to_string()).collect();
            format!(
                "CREATE TABLE t{i:02} (id bigint PRIMARY KEY, created timestamptz NOT NULL, body text);
                 INSERT INTO t{i:02} SELECT g, now() - g * interval '1 s', {} FROM generate_series(1, {wide_rows}) g;",
                parts.join(" || ")
            )
        } else {
            format!(
                "CREATE TABLE t{i:02} (id bigint PRIMARY KEY, patient int NOT NULL, amount numeric(12,2),
                     issued date, at timestamptz, code text, flag bool);
                 CREATE INDEX ON t{i:02} (patient);
                 INSERT INTO t{i:02} SELECT g, (random() * 100000)::int, round((random() * 10000)::numeric, 2),
                     date '2020-01-01' + (g % 1500), now() - g * interval '1 min',
                     substr(md5(g::text), 1, 12), g % 3 = 0
                 FROM generate_series(1, {narrow_rows}) g;"
            )
        };
        jobs.push(tokio::spawn(
            async move { client.batch_execute(&sql).await },
        ));
        if jobs.len() == 2 {
            for j in jobs.drain(..) {
                j.await??;
            }
        }
    }
    for j in jobs {
        j.await??;
    }
    c.client("bench")
        .await
        .batch_execute("VACUUM ANALYZE")
        .await?;
    Ok(())
}

pub fn run_shell(what: &str, mut cmd: Command) -> Res<()> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// The runbook's copy: `pg_dump --clean | psql` into the existing target.
pub fn dump_psql(src: &TestCluster, tgt: &TestCluster) -> Res<Duration> {
    let t = Instant::now();
    let mut dump = client_command_std("pg_dump", &src.target("bench"))
        .args(["--clean", "--if-exists"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = dump.stdout.take().ok_or("no stdout")?;
    let psql = client_command_std("psql", &tgt.target("bench"))
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1"])
        .stdin(stdout)
        .stdout(Stdio::null())
        .status()?;
    let d = dump.wait()?;
    if !psql.success() || !d.success() {
        return Err("pg_dump | psql failed".into());
    }
    Ok(t.elapsed())
}

pub async fn size(c: &TestCluster) -> Res<i64> {
    let row = c
        .client("bench")
        .await
        .query_one("SELECT pg_database_size('bench')", &[])
        .await?;
    Ok(row.get(0))
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn version(p: &std::path::Path) -> String {
    Command::new(p)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// User + system CPU seconds of this process (the COPY relay's cost).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Add `claims` to the `bench` database: one big table of about `mb` MB (heap), the kind of
/// table a re-alignment must not copy whole for a few rows. Filled by two sessions at once,
/// the primary key built afterwards. Returns the row count.
pub async fn generate_claims(c: &TestCluster, mb: usize) -> Res<i64> {
    // About 140 bytes a row on disk (tuple header, 7 columns, the line pointer).
    let rows = i64::try_from(mb * 1_000_000 / 140)?;
    c.client("bench")
        .await
        .batch_execute(
            "CREATE TABLE claims (id bigint NOT NULL, clinic int NOT NULL, patient int NOT NULL,
                 amount numeric(12,2), issued date, code text, body text)",
        )
        .await?;
    let half = rows / 2;
    let mut jobs = Vec::new();
    for (from, to) in [(1, half), (half + 1, rows)] {
        let client = c.client("bench").await;
        let sql = format!(
            "INSERT INTO claims SELECT g, (g % 500)::int, ((g * 7919) % 200000)::int,
                 round(((g * 31) % 1000000)::numeric / 100, 2), date '2020-01-01' + (g % 1500)::int,
                 substr(md5(g::text), 1, 12), md5(g::text) || md5((g + 1)::text)
             FROM generate_series({from}::int8, {to}::int8) g"
        );
        jobs.push(tokio::spawn(
            async move { client.batch_execute(&sql).await },
        ));
    }
    for j in jobs {
        j.await??;
    }
    let client = c.client("bench").await;
    client
        .batch_execute("ALTER TABLE claims ADD PRIMARY KEY (id)")
        .await?;
    client.batch_execute("VACUUM ANALYZE claims").await?;
    Ok(rows)
}
