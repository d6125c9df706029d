//! The worker's Prometheus metrics (names from `sameday_core::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sameday_core::metrics::{self as names, MetricsRegistry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Label {
    pub(crate) kind: String,
}

fn label(kind: &str) -> Label {
    Label { kind: kind.to_owned() }
}

#[derive(Clone)]
pub(crate) struct WorkerMetrics {
    pub(crate) messages: Counter,
    /// Messages folded into an earlier message of their group (`sameday_core::coalesce`).
    pub(crate) coalesced: Counter,
    /// started, already_existed, stopped, stop_noop
    pub(crate) effects: Family<Label, Counter>,
    pub(crate) skipped: Family<Label, Counter>,
    pub(crate) dead_letters: Family<Label, Counter>,
    pub(crate) errors: Family<Label, Counter>,
    pub(crate) in_flight: Gauge,
    /// Commit on the source -> effect done (the end-to-end freshness of the CDC path).
    pub(crate) change_age: Histogram,
    /// Message received -> deleted.
    pub(crate) processing: Histogram,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        Self {
            messages: Counter::default(),
            coalesced: Counter::default(),
            effects: Family::default(),
            skipped: Family::default(),
            dead_letters: Family::default(),
            errors: Family::default(),
            in_flight: Gauge::default(),
            change_age: Histogram::new(buckets),
            processing: Histogram::new(buckets),
        }
    }
}

impl WorkerMetrics {
    pub(crate) fn new(registry: &MetricsRegistry) -> Self {
        let m = Self::default();
        registry.register(names::WORKER_MESSAGES, "SQS messages received", m.messages.clone());
        registry.register(
            names::WORKER_COALESCED,
            "Messages folded into an earlier received message of their row (one round of Step Functions calls)",
            m.coalesced.clone(),
        );
        registry.register(
            names::WORKER_EFFECTS,
            "Step Functions effects: started, already_existed, stopped, stop_noop",
            m.effects.clone(),
        );
        registry.register(
            names::WORKER_SKIPPED,
            "Changes with no effect, by reason (outside_window, past_grace, not_scheduled, ...)",
            m.skipped.clone(),
        );
        registry.register(names::WORKER_DEAD_LETTERS, "Poison messages, by reason", m.dead_letters.clone());
        registry.register(
            names::WORKER_ERRORS,
            "Failed calls left for a retry (message stays in the queue), by kind",
            m.errors.clone(),
        );
        registry.register(names::WORKER_IN_FLIGHT, "Messages received and not yet deleted", m.in_flight.clone());
        registry.register(
            names::WORKER_CHANGE_AGE_SECONDS,
            "Seconds from the change's commit on the source to its Step Functions effect",
            m.change_age.clone(),
        );
        registry.register(
            names::WORKER_PROCESSING_SECONDS,
            "Seconds from receiving a message to deleting it",
            m.processing.clone(),
        );
        m
    }

    pub(crate) fn effect(&self, kind: &str) {
        self.effects.get_or_create(&label(kind)).inc();
    }
    pub(crate) fn skip(&self, kind: &str) {
        self.skipped.get_or_create(&label(kind)).inc();
    }
    pub(crate) fn dead_letter(&self, kind: &str) {
        self.dead_letters.get_or_create(&label(kind)).inc();
    }
    pub(crate) fn error(&self, kind: &str) {
        self.errors.get_or_create(&label(kind)).inc();
    }
}
