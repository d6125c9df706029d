//! The archive daemon's Prometheus metrics (names from `sameday_core::metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sameday_core::metrics::{self as names, MetricsRegistry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    pub kind: String,
}

#[derive(Clone)]
pub(crate) struct ArchiveMetrics {
    pub files: Counter,
    pub bytes: Counter,
    pub pending_files: Gauge,
    pub missing_files: Gauge,
    pub newest_file_age_seconds: Gauge<f64, AtomicU64>,
    pub retention_headroom_seconds: Gauge<f64, AtomicU64>,
    pub errors: Family<Kind, Counter>,
}

impl ArchiveMetrics {
    pub(crate) fn new(registry: &MetricsRegistry) -> Self {
        let m = Self {
            files: Counter::default(),
            bytes: Counter::default(),
            pending_files: Gauge::default(),
            missing_files: Gauge::default(),
            newest_file_age_seconds: Gauge::default(),
            retention_headroom_seconds: Gauge::default(),
            errors: Family::default(),
        };
        registry.register(names::ARCHIVE_FILES, "Binlog files copied to the archive", m.files.clone());
        registry.register(names::ARCHIVE_BYTES, "Bytes of binlog files copied to the archive", m.bytes.clone());
        registry.register(
            names::ARCHIVE_PENDING_FILES,
            "Rotated binlog files on the source not archived yet",
            m.pending_files.clone(),
        );
        registry.register(
            names::ARCHIVE_MISSING_FILES,
            "Binlog files the source purged before they were archived (lost; alarm on > 0)",
            m.missing_files.clone(),
        );
        registry.register(
            names::ARCHIVE_NEWEST_FILE_AGE_SECONDS,
            "Seconds since the newest archived binlog file was rotated on the source",
            m.newest_file_age_seconds.clone(),
        );
        registry.register(
            names::ARCHIVE_RETENTION_HEADROOM_SECONDS,
            "Seconds until the source may purge its oldest rotated binlog not archived yet (the full retention when none is pending); absent when binlogs never expire",
            m.retention_headroom_seconds.clone(),
        );
        registry.register(names::ARCHIVE_ERRORS, "Failed archive rounds, by kind (source, s3, copy)", m.errors.clone());
        m
    }

    pub(crate) fn error(&self, kind: &str) {
        self.errors.get_or_create(&Kind { kind: kind.to_owned() }).inc();
    }
}
