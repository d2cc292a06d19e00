//! The receipt writer: one client inserting receipts through the client Service, one transaction per
//! receipt with an id chosen by the client, as the receipt software would.
//!
//! What it does on errors follows the Symfoware guide (runbook 002, docs/design.md section 1): SQLSTATE 57P01 (admin
//! shutdown) or 08006 (connection failure) while connected, 08001 (cannot connect) while the
//! switch is under way, or a broken or refused connection, mean "reconnect and retry". The
//! retry reuses the same id with `ON CONFLICT DO NOTHING`, so a commit whose acknowledgement was
//! lost (the server committed, then died before answering) is not inserted twice. Any other
//! error is retried too (after a reconnect) and counted as unexpected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use receiptdb_postgres::conn::MakeRustlsConnect;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use crate::clock::Timeline;

/// SQLSTATEs the guide says mean "reconnect and retry".
pub const RECONNECT_CODES: &[&str] = &["57P01", "08006", "08001"];

/// The table the writer fills.
pub const TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS receipts (
    id bigint PRIMARY KEY,
    clinic text NOT NULL,
    amount integer NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
)";

/// An acknowledged commit.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Ack {
    pub id: i64,
    pub t_ms: u64,
}

/// An error the writer saw.
#[derive(Debug, Clone, Serialize)]
pub struct WriteError {
    pub t_ms: u64,
    /// SQLSTATE, or `connection` for a broken/refused connection, `timeout`.
    pub code: String,
    /// Whether the guide lists it as "reconnect and retry".
    pub expected: bool,
    pub message: String,
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The client Service's address (its ClusterIP, reached through kube-proxy).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    /// Pause between receipts.
    pub interval: Duration,
    /// External replication mode: the receipt software's redirector writes every receipt to
    /// the other member too (directly, at this address). Failures there are counted, not
    /// retried.
    pub mirror: Option<(String, u16)>,
    /// TLS: the host names the certificate must carry for `host` and for the mirror (the
    /// addresses are IPs, which the certificate does not name), and the connector verifying
    /// them against the pair's CA (`verify-full`). None: plain text (a pair without TLS).
    pub tls: Option<WriterTls>,
}

/// How the writer verifies the members, like a well-configured client.
#[derive(Clone)]
pub struct WriterTls {
    /// The client Service's DNS name.
    pub server_name: String,
    /// The mirror member's DNS name (external replication mode).
    pub mirror_name: Option<String>,
    /// A connector verifying against the pair's CA, host name included.
    pub connector: MakeRustlsConnect,
}

impl std::fmt::Debug for WriterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterTls")
            .field("server_name", &self.server_name)
            .field("mirror_name", &self.mirror_name)
            .finish_non_exhaustive()
    }
}

/// The running writer.
pub struct Writer {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<Vec<WriteError>>>,
}

impl Writer {
    /// Create the table (through the client Service) and start writing.
    pub async fn start(cfg: WriterConfig, timeline: Timeline) -> Result<Self> {
        // The first connection and the table, retried for a while as the receipt software would
        // (each failure is on the timeline): the Service's first endpoint may have just come up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = async {
                let client = connect(&cfg)
                    .await
                    .context("the writer's first connection through the client Service")?;
                client
                    .batch_execute(TABLE_DDL)
                    .await
                    .context("create the receipts table")
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    timeline.record("writer_setup_retry", format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some((host, port)) = cfg.mirror.clone() {
            let mirror = connect(&WriterConfig {
                host,
                port,
                ..cfg.clone()
            })
            .await
            .context("the writer's first connection to the mirror member")?;
            mirror
                .batch_execute(TABLE_DDL)
                .await
                .context("create the receipts table on the mirror member")?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(cfg, timeline, stop_rx, acks.clone(), errors.clone()));
        Ok(Self {
            stop,
            task: Some(task),
            acks,
            errors,
        })
    }

    /// Acknowledged commits so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Errors so far.
    pub fn errors(&self) -> Vec<WriteError> {
        self.errors.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Stop after the transaction in flight (waits for it, at most 30 s).
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Connect to the configured address, with the client settings the README recommends: a
/// connection attempt gives up after 2 s, and a connection whose server has vanished (its node
/// lost or cut off: no reset ever arrives) is declared broken within about 3 s, whether a
/// request is unacknowledged (`tcp_user_timeout`) or the client waits for an answer
/// (keepalives after 1 s idle, every 1 s, 2 missed). Only a server that accepts writes is
/// kept (`target_session_attrs=read-write`). With TLS configured the server is verified: the
/// TCP connection goes to the address, the certificate is checked against the DNS name.
pub async fn connect(cfg: &WriterConfig) -> Result<Client, tokio_postgres::Error> {
    let mut c = Config::new();
    match (&cfg.tls, cfg.host.parse::<std::net::IpAddr>()) {
        (Some(tls), Ok(ip)) => {
            let name = if cfg.mirror.as_ref().is_some_and(|(h, _)| *h == cfg.host) {
                tls.mirror_name.as_deref().unwrap_or(&tls.server_name)
            } else {
                tls.server_name.as_str()
            };
            c.host(name).hostaddr(ip);
        }
        _ => {
            c.host(&cfg.host);
        }
    }
    c.port(cfg.port)
        .user(&cfg.user)
        .password(&cfg.password)
        .dbname(&cfg.dbname)
        .application_name("receipt-writer")
        .connect_timeout(Duration::from_secs(2))
        .tcp_user_timeout(Duration::from_secs(3))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(1))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(2)
        .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    if let Some(tls) = &cfg.tls {
        c.ssl_mode(SslMode::Require);
        let (client, conn) = c.connect(tls.connector.clone()).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(client);
    }
    let (client, conn) = c.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn run(
    cfg: WriterConfig,
    timeline: Timeline,
    stop: watch::Receiver<bool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<Vec<WriteError>>>,
) {
    let mut id: i64 = 1;
    let mut client: Option<Client> = None;
    let mut mirror: Option<Client> = None;
    let mut failing = false;
    let clinics = ["kita", "minami", "higashi", "nishi"];
    while !*stop.borrow() {
        if client.is_none() {
            match connect(&cfg).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    note_error(&timeline, &errors, &e, &mut failing);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        let clinic = clinics[(id % 4) as usize];
        let amount = (id % 97) as i32 * 10 + 100;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&id, &clinic, &amount];
        let insert = c.execute(
            "INSERT INTO receipts (id, clinic, amount) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &params,
        );
        match tokio::time::timeout(Duration::from_secs(30), insert).await {
            Ok(Ok(_)) => {
                let t_ms = timeline.now_ms();
                if let Some((host, port)) = cfg.mirror.clone() {
                    mirror_write(&cfg, host, port, &mut mirror, &params, &errors, &timeline).await;
                }
                if failing {
                    failing = false;
                    timeline.record("writer_recovered", format!("receipt {id} committed"));
                }
                if let Ok(mut a) = acks.lock() {
                    a.push(Ack { id, t_ms });
                }
                id += 1;
                tokio::time::sleep(cfg.interval).await;
            }
            Ok(Err(e)) => {
                note_error(&timeline, &errors, &e, &mut failing);
                client = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                let t_ms = timeline.now_ms();
                if let Ok(mut v) = errors.lock() {
                    v.push(WriteError {
                        t_ms,
                        code: "timeout".into(),
                        expected: false,
                        message: format!("receipt {id}: no answer in 30 s"),
                    });
                }
                client = None;
            }
        }
    }
}

fn note_error(
    timeline: &Timeline,
    errors: &Arc<Mutex<Vec<WriteError>>>,
    e: &tokio_postgres::Error,
    failing: &mut bool,
) {
    let (code, message) = classify(e);
    let expected = code == "connection" || RECONNECT_CODES.contains(&code.as_str());
    if !*failing {
        *failing = true;
        timeline.record("writer_error", format!("first error: {code} {message}"));
    }
    if let Ok(mut v) = errors.lock() {
        v.push(WriteError {
            t_ms: timeline.now_ms(),
            code,
            expected,
            message,
        });
    }
}

/// SQLSTATE (or `connection`) and message of a client error.
pub fn classify(e: &tokio_postgres::Error) -> (String, String) {
    if let Some(db) = e.as_db_error() {
        return (db.code().code().to_string(), db.message().to_string());
    }
    if let Some(code) = e.code() {
        return (code.code().to_string(), e.to_string());
    }
    let text = match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    ("connection".to_string(), text)
}

/// Write the same receipt to the mirror member (external mode).
async fn mirror_write(
    cfg: &WriterConfig,
    host: String,
    port: u16,
    mirror: &mut Option<Client>,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync); 3],
    errors: &Arc<Mutex<Vec<WriteError>>>,
    timeline: &Timeline,
) {
    if mirror.is_none() {
        *mirror = connect(&WriterConfig {
            host,
            port,
            ..cfg.clone()
        })
        .await
        .ok();
    }
    let Some(m) = mirror.as_ref() else { return };
    let r = m
        .execute(
            "INSERT INTO receipts (id, clinic, amount) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            params,
        )
        .await;
    if let Err(e) = r {
        let (code, message) = classify(&e);
        if let Ok(mut v) = errors.lock() {
            v.push(WriteError {
                t_ms: timeline.now_ms(),
                code: format!("mirror:{code}"),
                expected: true,
                message,
            });
        }
        *mirror = None;
    }
}
