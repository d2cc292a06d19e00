//! The scenario report: JSON for machines, a timeline on stdout for people, an SVG beside the
//! JSON.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::clock::Event;
use crate::observer::Selection;
use crate::stats::Spread;
use crate::verdict::Check;
use crate::writer::{Ack, WriteError};

/// One run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub passed: bool,
    /// The API server's version (`/version` gitVersion).
    pub server_version: String,
    /// The namespace the scenario ran in.
    pub namespace: String,
    /// Last acknowledged commit before the fault to the first after it.
    pub recovery_ms: Option<u64>,
    /// Acknowledged commits missing from the active member at the end.
    pub lost_acknowledged: usize,
    /// Fault to InSync=True again.
    pub in_sync_ms: Option<u64>,
    /// When the fault was injected (ms since the start).
    pub fault_ms: Option<u64>,
    /// Acknowledged commits in total.
    pub acknowledged: usize,
    /// The longest pause between two acknowledged commits after the fault.
    pub longest_write_gap_ms: u64,
    /// How the stale member was re-aligned (`status.lastSync.method`): `rewind`, `clone`, ...
    pub rejoin_method: Option<String>,
    /// Whether commits waited for the standby.
    pub synchronous: bool,
    /// The member serving at the end.
    pub active_member: Option<String>,
    /// What was checked.
    pub checks: Vec<Check>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// Writer errors, by code.
    pub write_errors: std::collections::BTreeMap<String, usize>,
    /// Errors outside the guide's "reconnect and retry" set.
    pub unexpected_write_errors: Vec<WriteError>,
    /// The writer's errors from the fault on (the first 200): when each attempt failed and
    /// why, to see where the outage's time went.
    pub write_errors_after_fault: Vec<WriteError>,
    pub duration_ms: u64,
    pub timeline: Vec<Event>,
    pub service_history: Vec<Selection>,
    #[serde(skip)]
    pub acks: Vec<Ack>,
}

/// Several runs of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct MultiReport {
    pub scenario: String,
    /// The API server's version (`/version` gitVersion).
    pub server_version: String,
    pub runs: usize,
    pub passed: bool,
    pub passed_runs: usize,
    pub recovery_ms: Spread,
    pub in_sync_ms: Spread,
    pub lost_acknowledged_total: usize,
    pub rejoin_methods: Vec<Option<String>>,
    pub reports: Vec<ScenarioReport>,
}

impl MultiReport {
    /// Summarise runs.
    pub fn of(scenario: &str, reports: Vec<ScenarioReport>) -> Self {
        Self {
            scenario: scenario.to_string(),
            server_version: reports
                .first()
                .map(|r| r.server_version.clone())
                .unwrap_or_default(),
            runs: reports.len(),
            passed: reports.iter().all(|r| r.passed),
            passed_runs: reports.iter().filter(|r| r.passed).count(),
            recovery_ms: Spread::of(reports.iter().map(|r| r.recovery_ms)),
            in_sync_ms: Spread::of(reports.iter().map(|r| r.in_sync_ms)),
            lost_acknowledged_total: reports.iter().map(|r| r.lost_acknowledged).sum(),
            rejoin_methods: reports.iter().map(|r| r.rejoin_method.clone()).collect(),
            reports,
        }
    }
}

/// Write JSON to `path` (pretty).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).context("serialise the report")?;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The timeline as text, one event per line.
pub fn timeline_text(r: &ScenarioReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("== {} ==\n", r.scenario));
    // The JSON has everything; people get the story (conditions other than InSync and the
    // Events repeat what the other entries say) with long details cut.
    for e in r
        .timeline
        .iter()
        .filter(|e| !e.kind.starts_with("condition_") && e.kind != "k8s_event")
    {
        let detail: String = e.detail.chars().take(160).collect();
        let rel = match r.fault_ms {
            Some(f) if e.t_ms >= f => format!("+{:>6}", e.t_ms - f),
            Some(f) => format!("-{:>6}", f - e.t_ms),
            None => format!("{:>7}", e.t_ms),
        };
        out.push_str(&format!(
            "{:>8} ms ({rel}) {:<22} {detail}\n",
            e.t_ms, e.kind
        ));
    }
    out.push_str(&summary_text(r));
    out
}

/// The figures, in a few lines.
pub fn summary_text(r: &ScenarioReport) -> String {
    let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{}: {} | recovery {} (longest write gap {} ms) | lost acknowledged {} | in sync after {} | acknowledged {} | rejoin {} | active {}\n",
        r.scenario,
        if r.passed { "PASSED" } else { "FAILED" },
        ms(r.recovery_ms),
        r.longest_write_gap_ms,
        r.lost_acknowledged,
        ms(r.in_sync_ms),
        r.acknowledged,
        r.rejoin_method.as_deref().unwrap_or("-"),
        r.active_member.as_deref().unwrap_or("-"),
    );
    for c in &r.checks {
        out.push_str(&format!(
            "  [{}] {}: {}\n",
            if c.passed { "ok" } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    if let Some(f) = &r.failure {
        out.push_str(&format!("  failure: {f}\n"));
    }
    out
}

impl ScenarioReport {
    /// A report for a scenario whose world could not even be built.
    pub fn setup_failed(scenario: &str, why: String) -> Self {
        Self {
            scenario: scenario.to_string(),
            passed: false,
            server_version: String::new(),
            namespace: String::new(),
            recovery_ms: None,
            lost_acknowledged: 0,
            in_sync_ms: None,
            fault_ms: None,
            acknowledged: 0,
            longest_write_gap_ms: 0,
            rejoin_method: None,
            synchronous: false,
            active_member: None,
            checks: Vec::new(),
            failure: Some(why),
            write_errors: Default::default(),
            unexpected_write_errors: Vec::new(),
            write_errors_after_fault: Vec::new(),
            duration_ms: 0,
            timeline: Vec::new(),
            service_history: Vec::new(),
            acks: Vec::new(),
        }
    }
}
