//! The workspace's integration tests: one binary (one link step) with a module per area.
//! They run against real MariaDB and AWS emulators that `sameday-testkit` starts on free
//! loopback ports; every module shares the process's servers (`MariaDb::shared()` and the
//! emulators' `shared()`), and each test uses its own database, stream, queue and state
//! machine names, so tests of every module run side by side.

mod common;

mod binlog_archive;
mod binlog_fixtures;
mod checkpoint_dynamodb;
mod consumer_daemon;
mod dead_letters;
mod deploy_cloudformation;
mod hot_rows;
mod kpl_interop;
mod large_changes;
mod object_store;
mod preflight;
mod reader_differential;
mod reader_faults;
mod reader_minimal_metadata;
mod reader_pipeline;
mod reader_standby;
mod reader_types;
mod schedule_scenarios;
mod worker_nightly;
mod worker_pipeline;
