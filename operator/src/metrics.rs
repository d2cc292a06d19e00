//! Prometheus metrics: how often pairs are reconciled, how long a pass takes, which errors
//! happen, and how many failovers the operator carried out.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

/// The operator's metrics and the registry `/metrics` encodes.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    failovers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("receiptdb");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 10 ms .. ~40 s: a pass is a few API calls plus probes with a timeout.
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        let failovers = Counter::default();
        registry.register("reconciles", "Reconcile passes started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed, by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            duration.clone(),
        );
        registry.register(
            "failovers",
            "Failovers recorded in pair status",
            failovers.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            failovers,
        }
    }
}

/// Observes a pass's duration when dropped, so every exit path (errors included) counts.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// A shared instance.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Count a pass.
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    /// Start timing a pass.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Count a failed pass by [`crate::controller::Error::metric_label`].
    pub fn error(&self, label: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                error: label.to_string(),
            })
            .inc();
    }

    /// Count a failover.
    pub fn failover(&self) {
        self.failovers.inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times() {
        let m = Metrics::default();
        m.reconciled();
        m.error("kube");
        m.failover();
        drop(m.reconcile_timer());
        let text = m.encode().unwrap();
        assert!(text.contains("receiptdb_reconciles_total 1"), "{text}");
        assert!(
            text.contains("receiptdb_reconcile_errors_total{error=\"kube\"} 1"),
            "{text}"
        );
        assert!(text.contains("receiptdb_failovers_total 1"), "{text}");
        assert!(
            text.contains("receiptdb_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
