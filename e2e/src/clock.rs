//! One clock and one timeline for a scenario: every component stamps its events in milliseconds
//! since the scenario started, so the report can line them up.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// One thing that happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Milliseconds since the scenario's start.
    pub t_ms: u64,
    /// Short machine-readable kind: `fault_injected`, `service_switched`, `in_sync`, ...
    pub kind: String,
    /// What exactly, for people.
    pub detail: String,
}

/// The scenario's clock and event log. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// A new timeline starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The instant the timeline started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Milliseconds from the start to `at`.
    pub fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    /// Record an event now and log it.
    pub fn record(&self, kind: &str, detail: impl Into<String>) -> u64 {
        let t_ms = self.now_ms();
        let detail = detail.into();
        tracing::info!(t_ms, kind, "{detail}");
        if let Ok(mut ev) = self.events.lock() {
            ev.push(Event {
                t_ms,
                kind: kind.to_string(),
                detail,
            });
        }
        t_ms
    }

    /// All events so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut ev = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        ev.sort_by_key(|e| e.t_ms);
        ev
    }

    /// The first event of `kind` at or after `from_ms`.
    pub fn first_after(&self, kind: &str, from_ms: u64) -> Option<Event> {
        self.events()
            .into_iter()
            .find(|e| e.kind == kind && e.t_ms >= from_ms)
    }
}
