//! The consumer's Prometheus metrics (names from `sameday_core::metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sameday_core::metrics::{self as names, MetricsRegistry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Shard {
    pub(crate) shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LeaseEvent {
    /// taken, stolen, lost, released, finished
    pub(crate) event: String,
}

#[derive(Clone, Default)]
pub(crate) struct ConsumerMetrics {
    pub(crate) records: Counter,
    pub(crate) forwarded: Counter,
    pub(crate) skipped: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) dead_letters: Counter,
    pub(crate) sqs_requests: Counter,
    pub(crate) sqs_retries: Counter,
    pub(crate) checkpoints: Counter,
    pub(crate) lease_renewals: Counter,
    pub(crate) leases_held: Gauge,
    pub(crate) lease_events: Family<LeaseEvent, Counter>,
    pub(crate) millis_behind: Family<Shard, Gauge>,
    pub(crate) arrival_lag_seconds: Family<Shard, Gauge<f64, AtomicU64>>,
}

impl ConsumerMetrics {
    pub(crate) fn new(registry: &MetricsRegistry) -> Self {
        let m = Self::default();
        registry.register(names::CONSUMER_RECORDS, "Kinesis records read", m.records.clone());
        registry.register(names::CONSUMER_FORWARDED, "Messages accepted by SQS", m.forwarded.clone());
        registry.register(
            names::CONSUMER_SKIPPED,
            "Records not forwarded: no route, or due outside the current window",
            m.skipped.clone(),
        );
        registry.register(
            names::CONSUMER_COALESCED,
            "Changes folded into a waiting message of their row instead of a message of their own",
            m.coalesced.clone(),
        );
        registry.register(
            names::CONSUMER_DEAD_LETTERS,
            "Records written to the dead-letter file or queue instead of their route",
            m.dead_letters.clone(),
        );
        registry.register(names::CONSUMER_SQS_REQUESTS, "SendMessageBatch requests", m.sqs_requests.clone());
        registry.register(
            names::CONSUMER_SQS_RETRIES,
            "Messages sent again after a throttled or failed entry",
            m.sqs_retries.clone(),
        );
        registry.register(names::CONSUMER_CHECKPOINTS, "Shard checkpoint writes to DynamoDB", m.checkpoints.clone());
        registry.register(
            names::CONSUMER_LEASE_RENEWALS,
            "Lease renewals written to DynamoDB",
            m.lease_renewals.clone(),
        );
        registry.register(names::CONSUMER_LEASES_HELD, "Shard leases this task holds", m.leases_held.clone());
        registry.register(
            names::CONSUMER_LEASE_EVENTS,
            "Shard leases taken, stolen, lost, released",
            m.lease_events.clone(),
        );
        registry.register(
            names::CONSUMER_MILLIS_BEHIND,
            "MillisBehindLatest of the shard's last GetRecords (the iterator age)",
            m.millis_behind.clone(),
        );
        registry.register(
            names::CONSUMER_ARRIVAL_LAG_SECONDS,
            "Seconds between the newest record's arrival in Kinesis and its reading",
            m.arrival_lag_seconds.clone(),
        );
        m
    }

    pub(crate) fn lease_event(&self, event: &str) {
        self.lease_events.get_or_create(&LeaseEvent { event: event.to_owned() }).inc();
    }
}
