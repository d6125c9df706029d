//! Typed builders for the daemons' TOML config files.
//!
//! The daemons' config structs only derive `Deserialize` (a `Secret` must never gain a
//! `Serialize` impl), so the builders hold a `toml::Table` and write it out; the daemon
//! under test parses the file exactly as in production. A builder only emits the sections
//! a test set, because `sameday check` tells the daemons apart by their sections.

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

/// The TOML document of one config file; setters take dotted paths (`"checkpoint.interval_ms"`).
#[derive(Debug, Clone, Default)]
struct Doc(Table);

impl Doc {
    fn set(&mut self, path: &str, value: impl Into<Value>) {
        let (parents, key) = match path.rsplit_once('.') {
            Some((parents, key)) => (Some(parents), key),
            None => (None, path),
        };
        let mut table = &mut self.0;
        for part in parents.into_iter().flat_map(|p| p.split('.')) {
            table = table
                .entry(part)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{part} in {path} is not a table"));
        }
        table.insert(key.to_owned(), value.into());
    }

    fn remove(&mut self, path: &str) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let key = parts.pop().expect("a path");
        let mut table = &mut self.0;
        for part in parts {
            match table.get_mut(part).and_then(Value::as_table_mut) {
                Some(t) => table = t,
                None => return,
            }
        }
        table.remove(key);
    }

    /// Appends a table to the array of tables `key` (`[[rule]]`, `[[route]]`).
    fn push(&mut self, key: &str, table: Table) {
        let array = self.0.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        array.as_array_mut().unwrap_or_else(|| panic!("{key} is not an array")).push(Value::Table(table));
    }

    fn write(&self, path: PathBuf) -> PathBuf {
        std::fs::write(&path, self.to_string()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl std::fmt::Display for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&toml::to_string(&self.0).expect("a TOML table serializes"))
    }
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String((*s).to_owned())).collect())
}

fn path_value(path: &Path) -> Value {
    Value::String(path.display().to_string())
}

/// A JSON value as TOML; `null` object fields are left out (TOML has no null).
fn toml_of_json(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().expect("a finite number")),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().filter_map(toml_of_json).collect()),
        serde_json::Value::Object(fields) => {
            Value::Table(fields.iter().filter_map(|(k, v)| Some((k.clone(), toml_of_json(v)?))).collect())
        }
    })
}

/// A `[[rule]]` table from a `ScheduleRule` or a JSON object of its fields.
fn rule_table(rule: &impl Serialize) -> Table {
    match toml_of_json(&serde_json::to_value(rule).expect("a rule serializes")) {
        Some(Value::Table(t)) => t,
        other => panic!("a rule is an object, not {other:?}"),
    }
}

/// `[source]`-shaped table for the test MariaDB on loopback as root, without TLS.
fn mariadb_source(port: u16, server_id: u32) -> Table {
    let mut t = Table::new();
    t.insert("host".into(), "127.0.0.1".into());
    t.insert("port".into(), Value::Integer(port.into()));
    t.insert("user".into(), "root".into());
    t.insert("server_id".into(), Value::Integer(server_id.into()));
    t.insert("tls".into(), "disabled".into());
    t
}

/// The source config of the MariaDB on `port` as the daemons' `[source]` sections name it,
/// for tests that open sessions themselves (the batch's reader, RuleTable::check).
pub(crate) fn source_config(port: u16) -> sameday_mysql::SourceConfig {
    Value::Table(mariadb_source(port, 1)).try_into().expect("a valid source config")
}

/// `sameday reader`'s config (`sameday_reader::ReaderConfig`).
#[derive(Debug, Clone)]
pub(crate) struct ReaderToml(Doc);

impl ReaderToml {
    /// A reader of MariaDB on `port` into `stream` from `start_position`, with a file
    /// checkpoint saved every 100 ms, metrics on a free port and region us-east-1.
    pub(crate) fn new(start_position: &str, port: u16, server_id: u32, stream: &str) -> Self {
        let mut doc = Doc::default();
        doc.set("start_position", start_position);
        let mut source = mariadb_source(port, server_id);
        source.insert("heartbeat_secs".into(), Value::Integer(1));
        doc.set("source", source);
        doc.set("kinesis.stream", stream);
        doc.set("kinesis.linger_ms", 5);
        doc.set("checkpoint.kind", "file");
        doc.set("checkpoint.interval_ms", 100);
        doc.set("metrics.listen", "127.0.0.1:0");
        doc.set("aws.region", "us-east-1");
        Self(doc)
    }

    pub(crate) fn dead_letter_path(mut self, path: &Path) -> Self {
        self.0.set("dead_letter_path", path_value(path));
        self
    }

    pub(crate) fn source_port(mut self, port: u16) -> Self {
        self.0.set("source.port", Value::Integer(port.into()));
        self
    }

    /// `filter.include`: `db.table` patterns.
    pub(crate) fn include(mut self, patterns: &[&str]) -> Self {
        self.0.set("filter.include", strings(patterns));
        self
    }

    pub(crate) fn stream(mut self, stream: &str) -> Self {
        self.0.set("kinesis.stream", stream);
        self
    }

    pub(crate) fn file_checkpoint(mut self, path: &Path) -> Self {
        self.0.remove("checkpoint.table");
        self.0.remove("checkpoint.key");
        self.0.set("checkpoint.kind", "file");
        self.0.set("checkpoint.path", path_value(path));
        self
    }

    /// A DynamoDB checkpoint (and lease) in `table` under `key`.
    pub(crate) fn dynamodb_checkpoint(mut self, table: &str, key: &str) -> Self {
        self.0.remove("checkpoint.path");
        self.0.set("checkpoint.kind", "dynamodb");
        self.0.set("checkpoint.table", table);
        self.0.set("checkpoint.key", key);
        self
    }

    pub(crate) fn checkpoint_interval_ms(mut self, ms: u64) -> Self {
        self.0.set("checkpoint.interval_ms", Value::Integer(ms as i64));
        self
    }

    pub(crate) fn lease_ms(mut self, ms: u64) -> Self {
        self.0.set("checkpoint.lease_ms", Value::Integer(ms as i64));
        self
    }

    /// `aws.endpoint_url` for every service; `None`: the `AWS_ENDPOINT_URL_<SERVICE>`
    /// variables decide.
    pub(crate) fn endpoint_url(mut self, url: Option<&str>) -> Self {
        match url {
            Some(url) => self.0.set("aws.endpoint_url", url),
            None => self.0.remove("aws.endpoint_url"),
        }
        self
    }

    /// `dead_letter_location` (S3) instead of `dead_letter_path`.
    pub(crate) fn dead_letter_location(mut self, location: &str) -> Self {
        self.0.remove("dead_letter_path");
        self.0.set("dead_letter_location", location);
        self
    }

    /// `[claim_check] location`: changes too large for a Kinesis record go through S3.
    pub(crate) fn claim_check(mut self, location: &str) -> Self {
        self.0.set("claim_check.location", location);
        self
    }

    /// `[archive]` into `location` (`s3://bucket/prefix/`), polling every `poll_interval_ms`,
    /// metrics on a free port.
    pub(crate) fn archive(mut self, location: &str, poll_interval_ms: u64) -> Self {
        self.0.set("archive.location", location);
        self.0.set("archive.poll_interval_ms", Value::Integer(poll_interval_ms as i64));
        self.0.set("archive.metrics_listen", "127.0.0.1:0");
        self
    }

    /// Sets `path` to any value, typed or not: for tests of config errors only.
    pub(crate) fn unchecked(mut self, path: &str, value: impl Into<Value>) -> Self {
        self.0.set(path, value);
        self
    }

    pub(crate) fn write(&self, path: PathBuf) -> PathBuf {
        self.0.write(path)
    }
}

impl std::fmt::Display for ReaderToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One `[[route]]` of the consumer.
#[derive(Debug, Clone)]
pub(crate) struct RouteToml(Table);

impl RouteToml {
    pub(crate) fn new(tables: &[&str], queues: &[&str]) -> Self {
        let mut t = Table::new();
        t.insert("tables".into(), strings(tables));
        t.insert("queues".into(), strings(queues));
        Self(t)
    }

    /// Forwards only changes of rows due within today's window of this rule.
    pub(crate) fn same_day_rule(mut self, rule: &str) -> Self {
        self.0.insert("same_day_rule".into(), rule.into());
        self
    }
}

/// `sameday consumer`'s config (`sameday_consumer::config::ConsumerConfig`).
#[derive(Debug, Clone)]
pub(crate) struct ConsumerToml(Doc);

impl ConsumerToml {
    /// A consumer of `stream` with leases in `lease_table`, dead letters to a file and
    /// region us-east-1; no routes yet.
    pub(crate) fn new(stream: &str, lease_table: &str, dead_letter_path: &Path) -> Self {
        let mut doc = Doc::default();
        doc.set("kinesis.stream", stream);
        doc.set("leases.table", lease_table);
        doc.set("dead_letter.path", path_value(dead_letter_path));
        doc.set("aws.region", "us-east-1");
        Self(doc)
    }

    pub(crate) fn shutdown_timeout_ms(mut self, ms: u64) -> Self {
        self.0.set("shutdown_timeout_ms", Value::Integer(ms as i64));
        self
    }

    pub(crate) fn create_lease_table(mut self, create: bool) -> Self {
        self.0.set("leases.create_table", create);
        self
    }

    pub(crate) fn lease_duration_ms(mut self, ms: u64) -> Self {
        self.0.set("leases.duration_ms", Value::Integer(ms as i64));
        self
    }

    pub(crate) fn checkpoint_interval_ms(mut self, ms: u64) -> Self {
        self.0.set("leases.checkpoint_interval_ms", Value::Integer(ms as i64));
        self
    }

    pub(crate) fn shard_sync_interval_ms(mut self, ms: u64) -> Self {
        self.0.set("leases.shard_sync_interval_ms", Value::Integer(ms as i64));
        self
    }

    pub(crate) fn worker_id(mut self, id: &str) -> Self {
        self.0.set("leases.worker_id", id);
        self
    }

    /// `sqs.coalesce`: fold a row's waiting changes into one message (on by default).
    pub(crate) fn coalesce(mut self, on: bool) -> Self {
        self.0.set("sqs.coalesce", on);
        self
    }

    /// `[dead_letter] queue` instead of its `path`.
    pub(crate) fn dead_letter_queue(mut self, queue: &str) -> Self {
        self.0.remove("dead_letter.path");
        self.0.set("dead_letter.queue", queue);
        self
    }

    /// `[claim_check] location`: changes too large for an SQS message go through S3.
    pub(crate) fn claim_check(mut self, location: &str) -> Self {
        self.0.set("claim_check.location", location);
        self
    }

    pub(crate) fn route(mut self, route: RouteToml) -> Self {
        self.0.push("route", route.0);
        self
    }

    /// Metrics and health on a free loopback port.
    pub(crate) fn metrics(mut self) -> Self {
        self.0.set("metrics.listen", "127.0.0.1:0");
        self
    }

    /// A `[[rule]]`: a `ScheduleRule` or a JSON object of its fields.
    pub(crate) fn rule(mut self, rule: &impl Serialize) -> Self {
        self.0.push("rule", rule_table(rule));
        self
    }

    pub(crate) fn write(&self, path: PathBuf) -> PathBuf {
        self.0.write(path)
    }
}

/// `sameday worker`'s and `sameday nightly`'s config (`sameday_worker::config::WorkerConfig`).
#[derive(Debug, Clone)]
pub(crate) struct WorkerToml(Doc);

impl Default for WorkerToml {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerToml {
    /// Region us-east-1 and nothing else: add `[sqs]` for the worker, `[nightly]` for the batch.
    pub(crate) fn new() -> Self {
        let mut doc = Doc::default();
        doc.set("aws.region", "us-east-1");
        Self(doc)
    }

    pub(crate) fn shutdown_timeout_ms(mut self, ms: u64) -> Self {
        self.0.set("shutdown_timeout_ms", Value::Integer(ms as i64));
        self
    }

    /// `[sqs]`: the queue the worker reads.
    pub(crate) fn sqs_queue(mut self, queue: &str) -> Self {
        self.0.set("sqs.queue", queue);
        self
    }

    pub(crate) fn sqs_wait_time_seconds(mut self, secs: u32) -> Self {
        self.0.set("sqs.wait_time_seconds", Value::Integer(secs.into()));
        self
    }

    pub(crate) fn sqs_visibility_timeout_seconds(mut self, secs: u32) -> Self {
        self.0.set("sqs.visibility_timeout_seconds", Value::Integer(secs.into()));
        self
    }

    pub(crate) fn sqs_dead_letter_queue(mut self, queue: &str) -> Self {
        self.0.set("sqs.dead_letter_queue", queue);
        self
    }

    /// `step_functions.start_rate`: StartExecution calls per second and burst.
    pub(crate) fn start_rate(mut self, rate_per_second: u32, burst: u32) -> Self {
        self.0.set("step_functions.start_rate.rate_per_second", Value::Integer(rate_per_second.into()));
        self.0.set("step_functions.start_rate.burst", Value::Integer(burst.into()));
        self
    }

    /// `[nightly.source]`: the test MariaDB on `port` as root, without TLS.
    pub(crate) fn nightly_source(mut self, port: u16, server_id: u32) -> Self {
        self.0.set("nightly.source", mariadb_source(port, server_id));
        self
    }

    /// `[nightly.primary]`: where the batch re-reads the rows it started.
    pub(crate) fn nightly_primary(mut self, port: u16, server_id: u32) -> Self {
        self.0.set("nightly.primary", mariadb_source(port, server_id));
        self
    }

    pub(crate) fn nightly_page_size(mut self, rows: u32) -> Self {
        self.0.set("nightly.page_size", Value::Integer(rows.into()));
        self
    }

    pub(crate) fn nightly_concurrency(mut self, n: usize) -> Self {
        self.0.set("nightly.concurrency", Value::Integer(n as i64));
        self
    }

    /// Metrics and health on a free loopback port.
    pub(crate) fn metrics(mut self) -> Self {
        self.0.set("metrics.listen", "127.0.0.1:0");
        self
    }

    /// `aws.endpoint_url` for every service.
    pub(crate) fn endpoint_url(mut self, url: &str) -> Self {
        self.0.set("aws.endpoint_url", url);
        self
    }

    /// A `[[rule]]`: a `ScheduleRule` or a JSON object of its fields (`null` fields left out).
    pub(crate) fn rule(mut self, rule: &impl Serialize) -> Self {
        self.0.push("rule", rule_table(rule));
        self
    }

    pub(crate) fn write(&self, path: PathBuf) -> PathBuf {
        self.0.write(path)
    }
}
