//! The desired state of a pair: what the user writes in `spec`.
//!
//! Every field has a safe default, so the smallest useful manifest is `spec: {}`. Doc comments
//! here become `kubectl explain receiptdbpair.spec...` text.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::ReceiptDbPairStatus;
use super::Member;

/// A primary/secondary PostgreSQL pair kept alive and consistent by receiptdb-operator.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "receiptdb.io",
    version = "v1alpha1",
    kind = "ReceiptDbPair",
    namespaced,
    shortname = "rdbp",
    // Default: kube-fake-client's `with_status_subresource` needs it (reconcile tests).
    derive = "Default",
    cel,
    doc = "A primary/secondary PostgreSQL pair kept alive and consistent by receiptdb-operator.",
    status = "ReceiptDbPairStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeMember"),
    printcolumn(name = "Primary ready", type_ = "boolean", json_path = ".status.primary.ready"),
    printcolumn(name = "Secondary ready", type_ = "boolean", json_path = ".status.secondary.ready"),
    printcolumn(
        name = "In sync",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InSync\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40").message(
        "the pair's name must be at most 40 characters: owned objects are named <pair>-secondary-<hash>"
    ),
)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptDbPairSpec {
    /// The PostgreSQL servers of both members.
    #[serde(default)]
    pub postgres: PostgresSpec,
    /// Each member's persistent volume.
    #[serde(default)]
    pub storage: StorageSpec,
    /// How the secondary is kept a copy of the primary.
    #[serde(default)]
    pub replication: ReplicationSpec,
    /// When and how clients are switched to the surviving member.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// The Service clients connect to; it always points at the active member only.
    #[serde(default)]
    pub client_service: ClientServiceSpec,
    /// Periodic comparison of the two databases, and repair of drift.
    #[serde(default)]
    pub consistency_check: ConsistencyCheckSpec,
    /// Scheduled, compressed, optionally encrypted backups.
    #[serde(default)]
    pub backup: BackupSpec,
    /// How a new pair gets its first data.
    #[serde(default)]
    pub bootstrap: BootstrapSpec,
    /// Planned maintenance: pause the operator, or let one member be down.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,
    /// Where the member pods and the Jobs run: by default the two members never share a node.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
    /// TLS on every connection to the members (on by default).
    #[serde(default)]
    pub tls: TlsSpec,
}

/// PostgreSQL settings shared by both members.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Member image: PostgreSQL server and client programs (initdb, pg_basebackup, pg_rewind,
    /// pg_dump) of one major version. Jobs run this image too, so tools match the server.
    /// Its major version (the leading number of the tag, as in `postgres:15-bookworm`) cannot
    /// change once the pair exists: the data directories belong to that major version, and
    /// major upgrades are not done yet. An image named by digest alone, or with a tag that does
    /// not start with a number, is not checked.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(IMAGE_MAJOR_UNCHANGED).message("the image's PostgreSQL major version (the leading number of its tag) cannot change: the members' data belongs to the major version they run, and major upgrades are not supported yet"))]
    pub image: String,
    /// Image pull policy for the member image.
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: PullPolicy,
    /// TCP port PostgreSQL listens on, in the member pods and the Services.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// The application database created at initialisation, compared and synced.
    #[serde(default = "default_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// The superuser role name (created at initialisation).
    #[serde(default = "default_superuser")]
    #[schemars(length(min = 1, max = 63))]
    pub superuser: String,
    /// The replication role name (created at initialisation).
    #[serde(default = "default_replication_user")]
    #[schemars(length(min = 1, max = 63))]
    pub replication_user: String,
    /// Secret holding the superuser's password. When unset, the operator creates
    /// `<pair>-superuser` with a random password (never logged). A referenced Secret that does
    /// not exist yet is looked for every 10 s; labelled `receiptdb.io/pair: <pair name>`, it is
    /// noticed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_secret: Option<SecretKeyRef>,
    /// Secret holding the replication role's password. When unset, the operator creates
    /// `<pair>-replication` with a random password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_secret: Option<SecretKeyRef>,
    /// Extra `postgresql.conf` parameters passed to both servers. Settings the operator owns
    /// (port, listen_addresses, restart_after_crash, hot_standby, wal_level,
    /// synchronous_standby_names, primary_conninfo, ...) cannot be overridden here.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// CPU and memory for each member's PostgreSQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// CPU and memory for the main container of every Job (initdb, clone, rejoin, sync,
    /// restore, check, backup). Unset: none requested, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_resources: Option<ResourceRequirements>,
}

/// A key in a Secret of the pair's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_secret_key")]
    pub key: String,
}

/// When to pull the member image.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// Each member's persistent volume.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.size == oldSelf.size && has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
).message("storage.size and storage.storageClassName cannot change after creation (StatefulSet volume claim templates are immutable)"))]
pub struct StorageSpec {
    /// Size of each member's volume, e.g. `10Gi`. Fixed once the pair exists (StatefulSet
    /// volume claim templates cannot change).
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$"))]
    pub size: String,
    /// Storage class of the volumes; the cluster default when unset. Fixed once the pair exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the pair is deleted. `Retain` (the default) keeps them:
    /// data is never deleted unless asked for.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// Whether member volumes outlive the pair.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReclaimPolicy {
    /// Keep the volumes when the pair is deleted.
    #[default]
    Retain,
    /// Delete the volumes with the pair.
    Delete,
}

/// How the secondary is kept a copy of the primary.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'streaming' || !has(self.synchronous) || !self.synchronous").message("synchronous replication needs mode: streaming"))]
pub struct ReplicationSpec {
    /// `streaming`: the operator runs physical streaming replication, the secondary is a hot
    /// standby. `external`: the workload writes both copies itself; the operator only verifies
    /// and re-aligns them. Fixed once the pair exists: a fence or a failover in progress means
    /// different things in the two modes.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replication.mode cannot change after creation (a fenced member or a failover in progress would be left stuck)"))]
    pub mode: ReplicationMode,
    /// Commits wait until the standby has the WAL (streaming mode only; default on), so a
    /// failover loses no acknowledged commit. While the standby is away the operator degrades to
    /// asynchronous commits and restores synchronous ones when it has caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<bool>,
    /// Asynchronous mode: no automatic failover when the standby is further behind than this
    /// many bytes of WAL (the data a failover would lose).
    #[serde(default = "default_max_lag_bytes")]
    #[schemars(range(min = 0))]
    pub max_lag_bytes: i64,
}

/// Replication modes.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    #[default]
    Streaming,
    External,
}

/// When and how clients are switched to the surviving member.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Fail over automatically when the active member is down.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long the active member must stay unhealthy before failing over.
    #[serde(default = "default_delay_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub delay_seconds: u32,
    /// How often each member is probed.
    #[serde(default = "default_probe_period_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub probe_period_seconds: u32,
    /// How long one probe may take before it counts as failed.
    #[serde(default = "default_probe_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub probe_timeout_seconds: u32,
    /// After a failover and re-alignment: `automatic` switches clients back to `primary` once the
    /// pair has been in sync for `failbackDelaySeconds` (the runbook's two-server operation);
    /// `manual` stays on the survivor until `receiptdb.io/switchover-to` asks.
    #[serde(default)]
    pub failback: FailbackPolicy,
    /// How long the pair must stay in sync before an automatic failback.
    #[serde(default = "default_failback_delay_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub failback_delay_seconds: u32,
}

/// Failback policies.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailbackPolicy {
    #[default]
    Automatic,
    Manual,
}

/// The client Service.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)"
).message("clientService.name cannot change: the old Service would keep selecting a member that may later be stale"))]
pub struct ClientServiceSpec {
    /// Name of the client Service; the pair's name when unset. Fixed once the pair exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Extra annotations on the client Service (e.g. for a load balancer).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Kubernetes Service types offered for the client Service.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Periodic comparison of the two databases.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyCheckSpec {
    /// Seconds between checks; 0 turns periodic checks off.
    #[serde(default = "default_check_interval_seconds")]
    #[schemars(range(min = 0))]
    pub interval_seconds: u32,
    /// `checksums` compares content (catches changed and duplicated rows); `counts` compares
    /// row counts only, like the runbook.
    #[serde(default)]
    pub method: CheckMethod,
    /// Re-align the non-authoritative member when a check finds a difference. Off by default:
    /// a difference is reported (condition and Event) and repaired on request.
    #[serde(default)]
    pub auto_repair: bool,
    /// The most a check reads from each member per second (`32MiB`, `100MB`, `500kB`, bytes
    /// if no unit), so that a check takes a bounded share of the live active member's reads;
    /// `none` for no limit. A check then takes at least the database's size divided by this.
    #[serde(default = "default_check_max_rate")]
    #[schemars(regex(pattern = r"^([1-9][0-9]*(B|kB|KB|KiB|MB|MiB|GB|GiB)?|none)$"))]
    pub max_rate: String,
}

/// Comparison methods.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CheckMethod {
    Counts,
    #[default]
    Checksums,
}

impl CheckMethod {
    /// The name in the spec, status and the `check --method` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckMethod::Counts => "counts",
            CheckMethod::Checksums => "checksums",
        }
    }
}

impl From<CheckMethod> for receiptdb_postgres::compare::Method {
    fn from(m: CheckMethod) -> Self {
        match m {
            CheckMethod::Counts => Self::Counts,
            CheckMethod::Checksums => Self::Checksums,
        }
    }
}

impl From<receiptdb_postgres::compare::Method> for CheckMethod {
    fn from(m: receiptdb_postgres::compare::Method) -> Self {
        match m {
            receiptdb_postgres::compare::Method::Counts => CheckMethod::Counts,
            receiptdb_postgres::compare::Method::Checksums => CheckMethod::Checksums,
        }
    }
}

/// Scheduled backups.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.schedule) || has(self.target)").message("backup.schedule needs backup.target"))]
pub struct BackupSpec {
    /// Cron schedule (`0 3 * * *`); no scheduled backups when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How many backups to keep.
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 1000))]
    pub retention: u32,
    /// Where backups are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<BackupLocation>,
    /// Secret with age recipients (one per line), for client-side encryption. Unencrypted when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_recipients: Option<SecretKeyRef>,
}

/// A place backups live: exactly one of `pvc` or `s3`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pvc) != has(self.s3)").message("set exactly one of pvc or s3"))]
pub struct BackupLocation {
    /// An existing PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcLocation>,
    /// An S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
}

/// Backups on a PersistentVolumeClaim.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcLocation {
    /// Name of the claim (created by you, in the pair's namespace).
    pub claim_name: String,
    /// Directory within the volume.
    #[serde(default)]
    pub path: String,
}

/// Backups in an S3-compatible bucket.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// Endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO address.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix for this pair's backups.
    #[serde(default)]
    pub prefix: String,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub credentials_secret: String,
}

/// How a new pair gets its first data.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Create (or, when both members are lost, re-create) the pair from this backup instead of
    /// an empty database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,
}

/// A backup to bootstrap from.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FromBackup {
    /// Where the backup is.
    pub location: BackupLocation,
    /// The backup file's name within the location; the newest when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Secret with the age identity that decrypts the backup, when it is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<SecretKeyRef>,
}

/// Where the member pods and the Jobs run.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Pod anti-affinity between the two member pods, over `topologyKey`. `required` (the
    /// default): a member pod is never scheduled into the same topology domain (by default:
    /// node) as the other member's pod, and stays Pending rather than share it, so the loss of
    /// one node never takes both copies. `preferred`: spread when possible, share when not.
    /// `none`: no rule from the operator. Jobs that write a member's data directory (initdb,
    /// clone, rejoin) carry the same rule, so a new member's volume is made on a node apart
    /// from the other member. Changing it re-creates the member pods.
    #[serde(default)]
    pub anti_affinity: AntiAffinityMode,
    /// The node label the anti-affinity spreads over: `kubernetes.io/hostname` (one member per
    /// node, the default), or e.g. `topology.kubernetes.io/zone` (one member per zone).
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
    /// Node labels a member or Job pod's node must have (the pod's `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the member and Job pods (e.g. for dedicated database nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the member and Job pods (node affinity, pod affinity, pod anti-affinity).
    /// The operator's member anti-affinity (`antiAffinity`) is added to the pod anti-affinity
    /// terms given here, never replaces them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// How strictly the two member pods are kept apart.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AntiAffinityMode {
    /// Never in the same topology domain (a member stays Pending instead).
    #[default]
    Required,
    /// In different domains when the scheduler can.
    Preferred,
    /// No rule.
    None,
}

/// Planned maintenance.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// Both-stop maintenance: the operator observes and reports but changes nothing.
    #[serde(default)]
    pub paused: bool,
    /// Rolling maintenance: this member may be down; the operator never fails over to it and
    /// does not count it as a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
}

/// TLS for the members. On by default: the operator keeps a CA per pair (Secret
/// `<pair>-tls-ca`, read only by the operator) and a server certificate signed by it (Secret
/// `<pair>-tls`, mounted into both members), valid for the client Service's and each member's
/// names, re-issued 30 days before it expires and picked up by a reload (no restart, no
/// failover). Clients find the CA in the Secret `<pair>-ca` (key `ca.crt`) and should connect
/// with `sslmode=verify-full`; the members accept TCP connections with TLS only (`hostssl`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// TLS on. Off: plain-text connections, no certificates (not for patients' data). Fixed
    /// once the pair exists: the members' `pg_hba.conf` is written for one or the other when
    /// their data directories are made.
    #[serde(default = "default_true")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tls.enabled cannot change after creation (the members' pg_hba.conf requires TLS or not from their initialisation)"))]
    pub enabled: bool,
    /// A `kubernetes.io/tls` Secret of your own (e.g. kept by cert-manager) with `tls.crt`,
    /// `tls.key` and `ca.crt`, used instead of the operator's certificates. It must be valid for
    /// `<pair>-primary.<namespace>.svc` and `<pair>-secondary.<namespace>.svc` (the names the
    /// members and the operator connect to) and the names your clients use; the operator and
    /// the Jobs verify against its `ca.crt`. Renewing it is then up to you; when the operator
    /// sees the Secret change it asks the members to reload for five minutes (the kubelet
    /// updates the mounted files within about a minute). A renewal while no operator runs is
    /// picked up at the members' next restart or `SELECT pg_reload_conf()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_secret: Option<String>,
}

/// CEL: the tag's leading number (before any `@digest`) is the same before and after, or one
/// of them has none.
const IMAGE_MAJOR_UNCHANGED: &str = "self == oldSelf \
    || self.find('^[^@]*').find(':[0-9]+[^:/]*$').find('[0-9]+') == '' \
    || oldSelf.find('^[^@]*').find(':[0-9]+[^:/]*$').find('[0-9]+') == '' \
    || self.find('^[^@]*').find(':[0-9]+[^:/]*$').find('[0-9]+') \
       == oldSelf.find('^[^@]*').find(':[0-9]+[^:/]*$').find('[0-9]+')";

fn default_image() -> String {
    "docker.io/library/postgres:15-bookworm".to_string()
}
fn default_pull_policy() -> PullPolicy {
    PullPolicy::IfNotPresent
}
fn default_port() -> i32 {
    5432
}
fn default_database() -> String {
    "receipts".to_string()
}
fn default_superuser() -> String {
    "postgres".to_string()
}
fn default_replication_user() -> String {
    "replicator".to_string()
}
fn default_secret_key() -> String {
    "password".to_string()
}
fn default_storage_size() -> String {
    "10Gi".to_string()
}
fn default_max_lag_bytes() -> i64 {
    16 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_delay_seconds() -> u32 {
    2
}
fn default_probe_period_seconds() -> u32 {
    1
}
fn default_probe_timeout_seconds() -> u32 {
    1
}
fn default_failback_delay_seconds() -> u32 {
    30
}
fn default_check_interval_seconds() -> u32 {
    3600
}
fn default_check_max_rate() -> String {
    "64MiB".into()
}
fn default_retention() -> u32 {
    7
}
fn default_topology_key() -> String {
    "kubernetes.io/hostname".to_string()
}

macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            /// The same defaults the API server fills in from the schema.
            fn default() -> Self {
                serde_json::from_value(serde_json::json!({}))
                    .unwrap_or_else(|e| unreachable!("all fields of {} have defaults: {e}", stringify!($t)))
            }
        }
    )*};
}
default_from_serde!(
    PostgresSpec,
    StorageSpec,
    ReplicationSpec,
    FailoverSpec,
    ConsistencyCheckSpec,
    BackupSpec,
    SchedulingSpec,
    TlsSpec
);

impl ReplicationSpec {
    /// Whether commits wait for the standby (the default in streaming mode).
    pub fn synchronous(&self) -> bool {
        self.mode == ReplicationMode::Streaming && self.synchronous.unwrap_or(true)
    }
}
