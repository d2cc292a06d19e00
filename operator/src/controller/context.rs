//! The reconcile context, built once at startup (or once per test), and the seam that lets the
//! reconcile tests run without PostgreSQL: [`MemberClient`] (SQL on a member).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use receiptdb_postgres::conn::TlsSettings;
use receiptdb_postgres::member::Secret;

use crate::crd::Member;
use crate::metrics::Metrics;
use crate::pair::ServerProbe;
use crate::resources::OperatorConfig;

/// One member's server, as the controller connects to it: superuser, `postgres` database. The
/// password is a [`Secret`], so printing a target never prints it.
#[derive(Debug, Clone)]
pub struct MemberTarget {
    /// Which member.
    pub member: Member,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to connect as (the superuser).
    pub user: String,
    /// Its password, read from the pair's Secret.
    pub password: Secret,
    /// How to verify the member: `verify-full` against the pair's CA when TLS is on.
    pub tls: TlsSettings,
}

/// SQL on a running member. The production implementation
/// ([`super::PostgresMembers`]) uses `receiptdb_postgres::actions`; reconcile tests use a fake.
/// Every method returns a message without secrets on failure, because the message ends up in
/// status, Events and logs.
pub trait MemberClient: Send + Sync {
    /// Observe the server within `timeout`. `Err` means unreachable or misbehaving, which is
    /// an observation (decide may fail over on it), not a reconcile error.
    fn probe<'a>(
        &'a self,
        target: &'a MemberTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ServerProbe, String>>;
    /// Promote a standby and return once it is a usable primary.
    fn promote<'a>(&'a self, target: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>>;
    /// Stop writes without stopping the server (planned switchover).
    fn fence_writes<'a>(&'a self, target: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>>;
    /// Undo [`MemberClient::fence_writes`].
    fn unfence_writes<'a>(&'a self, target: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>>;
    /// Make commits wait for `standby` (its application_name), or for nobody.
    fn set_synchronous_standby<'a>(
        &'a self,
        target: &'a MemberTarget,
        standby: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Reload the server's configuration files and certificates (`pg_reload_conf()`).
    fn reload_config<'a>(&'a self, target: &'a MemberTarget) -> BoxFuture<'a, Result<(), String>>;
}

/// Everything a reconcile pass needs besides the pair itself.
pub struct Context {
    /// The Kubernetes client (a real one, or the in-memory API in tests).
    pub client: Client,
    /// Operator-wide settings, read once.
    pub config: OperatorConfig,
    /// SQL on members.
    pub members: Arc<dyn MemberClient>,
    /// Publishes Events on pairs.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Consecutive failures per pair (`ns/name`), for exponential backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
    /// Per pair (`ns/name`), the user-supplied server Secret's resourceVersion last seen and
    /// when it was first seen (see [`super::tls::user_secret_changed`]).
    pub(crate) tls_seen: Mutex<HashMap<String, (String, Timestamp)>>,
}

impl Context {
    /// A context with the system clock and fresh metrics.
    pub fn new(client: Client, config: OperatorConfig, members: Arc<dyn MemberClient>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: config.field_manager.clone(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            config,
            members,
            recorder,
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(Timestamp::now),
            failures: Mutex::new(HashMap::new()),
            tls_seen: Mutex::new(HashMap::new()),
        }
    }

    /// The test constructor: a fixed test image in the configuration and the given member
    /// client (usually a fake), everything else as [`Context::new`].
    pub fn for_tests(client: Client, members: Arc<dyn MemberClient>) -> Self {
        Self::new(
            client,
            OperatorConfig::new("receiptdb-operator:test"),
            members,
        )
    }

    /// Replace the clock (tests that step time).
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> Timestamp + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// Share a metrics registry (the one `/metrics` serves).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The time a reconcile pass decides at (read once per pass).
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }
}
