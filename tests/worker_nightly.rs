//! `sameday nightly` end to end: the real binary against the shared MariaDB and moto's Step
//! Functions (record mode: executions stay RUNNING, so names and inputs can be listed).
//! Expected execution names are computed here from hand-written row images with
//! `scheduled_execution`, independently of the batch's SQL row mapping.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::common::{sameday_bin, set_aws_env, WorkerToml};
use jiff::{SignedDuration, Timestamp};
use sameday_core::execution::scheduled_execution;
use sameday_core::rule::ScheduleRule;
use sameday_core::window::parse_due;
use sameday_testkit::{names, wait_until, Fault, FaultProxy, MariaDb, Moto};
use serde_json::{json, Map, Value};

const DEFINITION: &str = include_str!("../deploy/statemachine/schedule.asl.json");
/// A bound on one batch run (a hung run fails the test instead of the whole suite); the
/// largest run here starts ~3,000 executions on a shared, loaded moto.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// One test's database, state machine and config directory.
struct Batch {
    db: String,
    state_machine: String,
    dir: tempfile::TempDir,
    sfn: aws_sdk_sfn::Client,
}

impl Batch {
    async fn new(prefix: &str) -> Self {
        set_aws_env();
        let moto = Moto::shared();
        Self {
            db: MariaDb::shared().create_database(prefix).await,
            state_machine: moto.create_state_machine(&names::unique(prefix), DEFINITION).await,
            dir: tempfile::tempdir().expect("tempdir"),
            sfn: moto.sfn_client().await,
        }
    }

    /// A rule on `table` of this test's database; `extra` overrides or adds fields.
    fn rule(&self, name: &str, table: &str, extra: Value) -> Value {
        let mut rule = json!({
            "name": name, "db": self.db, "table": table, "key_columns": ["id"], "due_column": "due_at",
            "due_type": "timestamp", "time_zone": "UTC", "batch_time": "03:30", "overlap_minutes": 60,
            "grace_seconds": 300, "input_columns": ["user_id", "action"],
            "state_machine_arn": self.state_machine,
        });
        for (k, v) in extra.as_object().expect("extra fields are an object") {
            rule[k] = v.clone();
        }
        rule
    }

    /// A nightly config with `rules` (their `null` fields left out) on the shared MariaDB and moto.
    fn toml(&self, rules: &[&Value], page_size: u32, concurrency: usize, start_rate: u32) -> WorkerToml {
        let toml = WorkerToml::new()
            .start_rate(start_rate, 1)
            .nightly_page_size(page_size)
            .nightly_concurrency(concurrency)
            .nightly_source(MariaDb::shared().port(), 1)
            .endpoint_url(&Moto::shared().endpoint());
        rules.iter().fold(toml, |toml, rule| toml.rule(rule))
    }

    /// Writes a nightly config with `rules`, returns its path.
    fn config(&self, file: &str, rules: &[&Value], page_size: u32, concurrency: usize, start_rate: u32) -> PathBuf {
        self.toml(rules, page_size, concurrency, start_rate).write(self.dir.path().join(file))
    }

    async fn execution_names(&self) -> Vec<String> {
        common::list_executions(&self.sfn, &self.state_machine, None).await.into_keys().collect()
    }

    async fn running_names(&self) -> Vec<String> {
        let running = Some(aws_sdk_sfn::types::ExecutionStatus::Running);
        common::list_executions(&self.sfn, &self.state_machine, running).await.into_keys().collect()
    }

    /// Every execution's input, by name.
    async fn execution_inputs(&self) -> HashMap<String, Value> {
        let mut inputs = HashMap::new();
        for name in self.execution_names().await {
            let arn = sameday_core::execution::execution_arn(&self.state_machine, &name).unwrap();
            let out = self.sfn.describe_execution().execution_arn(arn).send().await.expect("DescribeExecution");
            inputs.insert(name, serde_json::from_str(out.input().expect("input")).expect("JSON input"));
        }
        inputs
    }
}

async fn nightly(config: &PathBuf, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(sameday_bin());
    cmd.arg("nightly").arg("--config").arg(config).args(args).kill_on_drop(true);
    tokio::time::timeout(RUN_LIMIT, cmd.output()).await.expect("nightly finished in time").expect("run sameday")
}

/// The `key=value` fields of the summary line for `rule` (or `total`).
fn summary(out: &Output, rule: &str) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = if rule == "total" { "nightly total ".to_string() } else { format!("nightly rule={rule:?} ") };
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no summary for {rule}; stdout:\n{stdout}\nstderr:\n{}", stderr(out)));
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

fn stderr(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    text.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect()
}

fn counts(out: &Output, rule: &str, keys: &[&str]) -> Vec<u64> {
    let s = summary(out, rule);
    keys.iter().map(|k| s.get(*k).unwrap_or_else(|| panic!("{k} in {s:?}")).parse().expect("number")).collect()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

fn sql_utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// The execution name of a row image under `rule` (as the worker computes it).
fn name_of(rule: &Value, row: Value) -> String {
    let rule: ScheduleRule = serde_json::from_value(rule.clone()).expect("valid rule");
    let row: Map<String, Value> = row.as_object().expect("row object").clone();
    let due = parse_due(&rule, &row[&rule.due_column]).expect("due");
    scheduled_execution(&rule, &row, due).expect("execution").name
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap()
}

const SCHEDULE_DDL: &str = "(id INT PRIMARY KEY, due_at TIMESTAMP(3) NULL, user_id BIGINT, action VARCHAR(20), \
     status VARCHAR(10), INDEX (due_at))";

#[tokio::test]
async fn nightly_starts_only_rows_due_in_the_window() {
    let b = Batch::new("nightly_window").await;
    let now = whole_seconds(Timestamp::now());
    // The last batch ran two hours ago: the window is [now - 2h, now + 22h + 1h overlap).
    let batch_at = now - SignedDuration::from_hours(2);
    let start = Timestamp::from_second(batch_at.as_second() - batch_at.as_second() % 60).unwrap();
    let end = start + SignedDuration::from_hours(25);
    let batch_time = batch_at.strftime("%H:%M").to_string();
    let rule = b.rule("reminders", "t", json!({"batch_time": batch_time, "predicate": "status = 'pending'"}));
    // A future day's run: its own window, nothing late.
    let day = (now + SignedDuration::from_hours(24 * 3)).strftime("%Y-%m-%d").to_string();
    let day_start: Timestamp = format!("{day}T{batch_time}:00Z").parse().unwrap();

    let rows: Vec<(i64, Option<Timestamp>, &str)> = vec![
        (1, Some(now + SignedDuration::from_hours(1)), "pending"), // in window
        (2, Some(end + SignedDuration::from_hours(1)), "pending"), // tomorrow, beyond the window
        (3, Some(now + SignedDuration::from_hours(24 * 30)), "pending"), // +30 days
        (4, Some(now - SignedDuration::from_secs(60)), "pending"), // late, within grace
        (5, Some(now - SignedDuration::from_hours(1)), "pending"), // late, beyond grace
        (6, None, "pending"),                                      // not scheduled
        (7, Some(now + SignedDuration::from_hours(2)), "done"),    // predicate excludes it
        (8, Some(end - SignedDuration::from_secs(1)), "pending"),  // last second of the window
        (9, Some(end), "pending"),                                 // the window's end is exclusive
        (10, Some(day_start + SignedDuration::from_hours(5)), "pending"), // the future day's run
        (11, Some(day_start - SignedDuration::from_secs(1)), "pending"), // before that run
    ];
    let values: Vec<String> = rows
        .iter()
        .map(|(id, due, status)| {
            let due = due.map(|d| format!("'{}'", sql_utc(d))).unwrap_or_else(|| "NULL".into());
            format!("({id}, {due}, {}, 'email', '{status}')", 100 + id)
        })
        .collect();
    let db = &b.db;
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.t {SCHEDULE_DDL}; SET time_zone = '+00:00'; INSERT INTO {db}.t VALUES {};",
            values.join(", ")
        ))
        .await;
    let expected = |ids: &[i64]| -> BTreeSet<String> {
        ids.iter()
            .map(|id| {
                let (_, due, _) = rows.iter().find(|r| r.0 == *id).unwrap();
                let due = format!("{}Z", due.unwrap().strftime("%Y-%m-%dT%H:%M:%S%.3f"));
                name_of(&rule, json!({"id": id, "due_at": due, "user_id": 100 + id, "action": "email"}))
            })
            .collect()
    };

    let config = b.config("nightly.toml", &[&rule], 1000, 4, 1000);
    let out = nightly(&config, &[]).await;
    assert_success(&out);
    let names: BTreeSet<String> = b.execution_names().await.into_iter().collect();
    assert_eq!(names, expected(&[1, 4, 8]));
    assert_eq!(
        counts(&out, "reminders", &["selected", "started", "already_existed", "skipped_late", "failed"]),
        vec![4, 3, 0, 1, 0]
    );
    // The input is what the state machine's Wait reads.
    let inputs = b.execution_inputs().await;
    let one = inputs.values().find(|i| i["key"]["id"] == 1).expect("row 1's execution");
    assert_eq!(one["columns"], json!({"user_id": 101, "action": "email"}));
    assert_eq!(one["due"], json!(sameday_core::execution::rfc3339_utc(rows[0].1.unwrap())));

    let out = nightly(&config, &["--date", &day]).await;
    assert_success(&out);
    assert_eq!(counts(&out, "total", &["selected", "started", "skipped_late", "failed"]), vec![1, 1, 0, 0]);
    let names: BTreeSet<String> = b.execution_names().await.into_iter().collect();
    assert_eq!(names, expected(&[1, 4, 8, 10]));
}

#[tokio::test]
async fn nightly_rerun_starts_nothing_new_and_restores_stopped_executions() {
    let b = Batch::new("nightly_rerun").await;
    let db = &b.db;
    let day = "2031-03-04";
    let values: Vec<String> =
        (1..=40).map(|id| format!("({id}, '{day} 10:{:02}:00', {id}, 'sms', 'pending')", id % 60)).collect();
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.t {SCHEDULE_DDL}; SET time_zone = '+00:00'; INSERT INTO {db}.t VALUES {};",
            values.join(", ")
        ))
        .await;
    let rule = b.rule("rerun", "t", json!({}));
    let config = b.config("nightly.toml", &[&rule], 16, 8, 1000);
    let first = nightly(&config, &["--date", day]).await;
    assert_success(&first);
    assert_eq!(counts(&first, "rerun", &["selected", "started", "already_existed"]), vec![40, 40, 0]);
    let second = nightly(&config, &["--date", day]).await;
    assert_success(&second);
    // Running executions are recognised as existing, not reported as started again.
    assert_eq!(counts(&second, "rerun", &["selected", "started", "already_existed", "failed"]), vec![40, 0, 40, 0]);
    assert_eq!(b.execution_names().await.len(), 40);

    // Stopped executions of rows that still ask for them wait again, under generation 1:
    // re-running the batch restores the schedule.
    let some = b.execution_names().await.into_iter().take(5).collect::<Vec<_>>();
    for name in &some {
        let arn = sameday_core::execution::execution_arn(&b.state_machine, name).unwrap();
        b.sfn.stop_execution().execution_arn(arn).send().await.expect("StopExecution");
    }
    let third = nightly(&config, &["--date", day]).await;
    assert_success(&third);
    assert_eq!(counts(&third, "rerun", &["started", "already_existed", "failed"]), vec![5, 35, 0]);
    let running = b.running_names().await;
    assert_eq!(running.len(), 40);
    for name in &some {
        assert!(running.contains(&format!("{name}-1")), "{name} has no waiting generation 1: {running:?}");
    }
    let fourth = nightly(&config, &["--date", day]).await;
    assert_eq!(counts(&fourth, "rerun", &["started", "already_existed", "failed"]), vec![0, 40, 0]);
}

#[tokio::test]
async fn nightly_kill_mid_run_then_rerun_leaves_one_execution_per_row() {
    // Thousands of StartExecution calls on the shared moto: alone among the timed scenarios.
    let _slot = common::heavy_scenario_slot().await;
    const ROWS: i64 = 3000;
    let b = Batch::new("nightly_kill").await;
    let db = &b.db;
    let day = "2031-05-06";
    let rule = b.rule("kill", "t", json!({}));
    let mut expected = BTreeSet::new();
    let mut values = Vec::new();
    for id in 1..=ROWS {
        let due = format!("{day} {:02}:{:02}:{:02}", 4 + id % 19, id % 60, (id * 7) % 60);
        values.push(format!("({id}, '{due}', {id}, 'push', 'pending')"));
        let due_json = format!("{}.000Z", due.replace(' ', "T"));
        expected.insert(name_of(&rule, json!({"id": id, "due_at": due_json, "user_id": id, "action": "push"})));
    }
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.t {SCHEDULE_DDL}; SET time_zone = '+00:00'; INSERT INTO {db}.t VALUES {};",
            values.join(", ")
        ))
        .await;

    // Slow enough that the kill lands mid-run.
    let slow = b.config("slow.toml", &[&rule], 500, 16, 200);
    let mut child = tokio::process::Command::new(sameday_bin())
        .args(["nightly", "--date", day, "--config"])
        .arg(&slow)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sameday nightly");
    wait_until(Duration::from_secs(30), "300 executions before the kill", || async {
        b.execution_names().await.len() >= 300
    })
    .await;
    child.start_kill().expect("kill -9"); // SIGKILL on Unix
    let status = child.wait().await.expect("wait");
    assert!(!status.success(), "killed mid-run: {status:?}");
    let after_kill = b.execution_names().await.len();
    assert!((300..ROWS as usize).contains(&after_kill), "the kill landed mid-run ({after_kill} of {ROWS})");

    let fast = b.config("fast.toml", &[&rule], 1000, 32, 5000);
    let out = nightly(&fast, &["--date", day]).await;
    assert_success(&out);
    let [selected, started, existed, failed] =
        counts(&out, "kill", &["selected", "started", "already_existed", "failed"])[..]
    else {
        unreachable!()
    };
    assert_eq!((selected, failed), (ROWS as u64, 0));
    assert_eq!(started + existed, ROWS as u64);
    assert!(existed >= after_kill as u64, "{existed} already existed, {after_kill} existed after the kill");
    let names = b.execution_names().await;
    assert_eq!(names.len(), ROWS as usize, "exactly one execution per row");
    assert_eq!(names.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn nightly_dry_run_calls_nothing() {
    let b = Batch::new("nightly_dry").await;
    let db = &b.db;
    let day = "2031-07-08";
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.t {SCHEDULE_DDL}; SET time_zone = '+00:00';
             INSERT INTO {db}.t VALUES (1, '{day} 09:00:00', 5, 'call', 'pending'), (2, '{day} 10:00:00.250', 6, 'mail', 'pending'),
                                       (3, '2031-09-01 10:00:00', 7, 'mail', 'pending');"
        ))
        .await;
    let rule = b.rule("dry", "t", json!({}));
    let config = b.config("nightly.toml", &[&rule], 1000, 4, 1000);
    let out = nightly(&config, &["--date", day, "--dry-run"]).await;
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let would: Vec<&str> = stdout.lines().filter(|l| l.starts_with("would-start ")).collect();
    let n1 = name_of(&rule, json!({"id": 1, "due_at": format!("{day}T09:00:00.000Z"), "user_id": 5, "action": "call"}));
    let n2 = name_of(&rule, json!({"id": 2, "due_at": format!("{day}T10:00:00.250Z"), "user_id": 6, "action": "mail"}));
    assert_eq!(
        would,
        vec![
            format!("would-start rule=\"dry\" name={n1} due={day}T09:00:00Z key={{\"id\":1}}"),
            format!("would-start rule=\"dry\" name={n2} due={day}T10:00:00.25Z key={{\"id\":2}}"),
        ]
    );
    assert_eq!(counts(&out, "dry", &["selected", "would_start", "failed"]), vec![2, 2, 0]);
    assert!(b.execution_names().await.is_empty(), "a dry run starts nothing");
}

/// Keyset paging with a page smaller than the row count and many ties on the due time, a
/// composite primary key, a DATETIME rule in a non-UTC zone across the autumn DST change, and
/// an epoch_millis rule, in one run.
#[tokio::test]
async fn nightly_pages_ties_composite_keys_dst_datetime_and_epoch_millis() {
    let b = Batch::new("nightly_paging").await;
    let db = &b.db;
    // 2030-10-27: Berlin falls back from 03:00 CEST to 02:00 CET. The run of that day starts at
    // 03:30 CET (02:30Z) and ends at 03:30 CET the next day plus one hour (03:30Z).
    let day = "2030-10-27";
    let mut values = Vec::new();
    let mut expected_dst = BTreeSet::new();
    let dst = b.rule(
        "berlin",
        "d",
        json!({"key_columns": ["tenant", "id"], "due_type": "datetime", "time_zone": "Europe/Berlin",
               "input_columns": ["action"]}),
    );
    // 50 rows on 3 due times (ties), two tenants, inside the window.
    for i in 0..50 {
        let tenant = if i % 2 == 0 { "acme" } else { "zeta" };
        let due = ["2030-10-27 12:00:00", "2030-10-27 12:00:01", "2030-10-28 04:29:59"][i % 3];
        values.push(format!("('{tenant}', {i}, '{due}', 'a{i}')"));
        let due_json = due.replace(' ', "T");
        expected_dst
            .insert(name_of(&dst, json!({"tenant": tenant, "id": i, "due_at": due_json, "action": format!("a{i}")})));
    }
    // Around the edges: the fold's 02:30 (read as the earlier 02:30 CEST = 00:30Z) and 03:29
    // are before the run; 04:30 the next day is its end.
    for (i, due) in [(100, "2030-10-27 02:30:00"), (101, "2030-10-27 03:29:59"), (102, "2030-10-28 04:30:00")] {
        values.push(format!("('edge', {i}, '{due}', 'x')"));
    }
    let at = |t: &str| t.parse::<Timestamp>().unwrap().as_millisecond();
    let millis = b.rule("millis", "m", json!({"due_type": "epoch_millis", "due_column": "due_ms"}));
    let m_rows = [
        (1, at("2030-10-27T03:30:00Z")),
        (2, at("2030-10-28T04:29:59.999Z")),
        (3, at("2030-10-28T04:30:00Z")),
        (4, at("2030-10-27T03:29:59.999Z")),
    ];
    let m_values: Vec<String> = m_rows.iter().map(|(id, ms)| format!("({id}, {ms}, {id}, 'ms')")).collect();
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.d (tenant VARCHAR(10), id INT, due_at DATETIME, action VARCHAR(10),
                 PRIMARY KEY (tenant, id), INDEX (due_at));
             INSERT INTO {db}.d VALUES {};
             CREATE TABLE {db}.m (id INT PRIMARY KEY, due_ms BIGINT, user_id INT, action VARCHAR(10), INDEX (due_ms));
             INSERT INTO {db}.m VALUES {};",
            values.join(", "),
            m_values.join(", ")
        ))
        .await;
    let config = b.config("nightly.toml", &[&dst, &millis], 7, 8, 1000);
    let out = nightly(&config, &["--date", day]).await;
    assert_success(&out);
    // 50 rows in pages of 7: 8 SELECTs (the last one short) and 8 re-reads of the started
    // rows on the primary, no COUNT without a terminal.
    assert_eq!(counts(&out, "berlin", &["selected", "started", "failed", "mysql_queries"]), vec![50, 50, 0, 16]);
    assert_eq!(counts(&out, "millis", &["selected", "started", "failed"]), vec![2, 2, 0]);
    let names: BTreeSet<String> = b.execution_names().await.into_iter().collect();
    let mut expected = expected_dst;
    for (id, ms) in [m_rows[0], m_rows[1]] {
        expected.insert(name_of(&millis, json!({"id": id, "due_ms": ms, "user_id": id, "action": "ms"})));
    }
    assert_eq!(names, expected);
}

#[tokio::test]
async fn nightly_rule_naming_a_missing_column_fails_before_starting_anything() {
    let b = Batch::new("nightly_badcol").await;
    let db = &b.db;
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.t {SCHEDULE_DDL}; SET time_zone = '+00:00';
             INSERT INTO {db}.t VALUES (1, '2031-02-03 10:00:00', 1, 'a', 'pending');
             CREATE TABLE {db}.u {SCHEDULE_DDL};"
        ))
        .await;
    let good = b.rule("good", "t", json!({}));
    let bad = b.rule("bad", "u", json!({"input_columns": ["user_id", "acton"]}));
    let config = b.config("nightly.toml", &[&good, &bad], 1000, 4, 1000);
    let out = nightly(&config, &["--date", "2031-02-03"]).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: schedule rule \"bad\": table {db}.u has no column \"acton\" (the rule's input_columns)"
        )),
        "{err}"
    );
    assert!(b.execution_names().await.is_empty(), "nothing started for the valid rule either");
    // The valid rule alone runs.
    let out = nightly(&config, &["--date", "2031-02-03", "--rule", "good"]).await;
    assert_success(&out);
    assert_eq!(b.execution_names().await.len(), 1);
}

/// Every column type a schedule row can carry, with a DATETIME(3) due column.
const TYPES_DDL: &str = "(
    id INT PRIMARY KEY, due_at DATETIME(3),
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    dec30 DECIMAL(30,10), dec2 DECIMAL(10,2), f FLOAT, d DOUBLE,
    dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts0 TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
    tm TIME, tm6 TIME(6), y YEAR,
    ch CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(50) CHARACTER SET utf8mb4, tx TEXT CHARACTER SET utf8mb4,
    l1 VARCHAR(20) CHARACTER SET latin1, cyr VARCHAR(20) CHARACTER SET cp1251,
    bn BINARY(4), vb VARBINARY(16), bl BLOB,
    en ENUM('small','medium','large'), st SET('a','b','c','d'),
    b1 BIT(1), b64 BIT(64), js JSON, jsl JSON, pt POINT
)";

/// The batch's SQL row mapping gives, for every column, exactly the JSON value the binlog
/// reader puts in the envelope's after image, and so the same execution name.
#[tokio::test]
async fn nightly_rows_equal_cdc_envelope_images_and_names() {
    use sameday_worker::nightly::table::{open_session, RuleTable, TableReader};

    let env = common::Env::new("nightly_cdc", 1).await;
    let b = Batch::new("nightly_cdc").await;
    let db = &env.db;
    let maria = MariaDb::shared();
    maria.exec(&format!("CREATE TABLE {db}.t {TYPES_DDL}")).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let start = common::current_position().await;
    let reader = tokio::spawn(sameday_reader::run_reader(env.config(&start), shutdown.clone()));
    maria
        .exec(&format!(
            "SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00';
             INSERT INTO {db}.t VALUES (1, '2031-01-15 12:00:00.123',
                -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
                -9223372036854775808, 18446744073709551615,
                '-12345678901234567890.0123456789', '-0.50', 1.1, -2.5e-300,
                '2024-02-29', '2024-02-29 23:59:59', '1000-01-01 00:00:00.000001', '2001-02-03 04:05:06',
                '2038-01-19 03:14:07.999999',
                '-838:59:59', '100:00:00.5', 2155,
                'ch😀  ', 'vc 🎉 ünï ', 'text 👩‍💻 done', 'café é €', 'Привет',
                X'DEADBEEF', X'0102', X'00FF80FE',
                'medium', 'b,d', b'1', 0xFFFFFFFFFFFFFFFF,
                '{{\"a\": [1, 2.5, {{\"b\": null}}], \"s\": \"é\", \"big\": 18446744073709551615}}',
                '{{\n  \"multi\": [\n    true\n  ]\n}}',
                ST_GeomFromText('POINT(1 2)'));
             INSERT INTO {db}.t VALUES (2, '2031-01-15 23:59:59.999',
                127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0,
                '12345678901234567890.0123456789', 7, -0.25, 1.2345678901234567e3,
                '0000-00-00', '0000-00-00 00:00:00', '2000-01-01 00:00:00.5', '0000-00-00 00:00:00',
                '1970-01-01 00:00:01.000001',
                '838:59:59', '-00:00:00.000001', 0,
                '', '', '', '', '',
                X'00000000', X'', X'',
                'small', '', b'0', 0,
                '[]', 'null', NULL);
             INSERT INTO {db}.t (id, due_at, mi, dec30, tm6) VALUES (3, '2031-01-16 04:29:59', -1, '-0.0000000001', '-100:00:00.5');"
        ))
        .await;
    let records = env.wait_for_records(3, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let envelope_after = |id: i64| -> Map<String, Value> {
        records
            .iter()
            .find(|(_, e)| e.key["id"] == id)
            .and_then(|(_, e)| e.after.clone())
            .unwrap_or_else(|| panic!("no after image for row {id}"))
    };

    // The rule passes every column to the execution.
    let columns = [
        "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "dec30", "dec2", "f", "d", "dt", "dtm", "dtm6",
        "ts0", "ts6", "tm", "tm6", "y", "ch", "vc", "tx", "l1", "cyr", "bn", "vb", "bl", "en", "st", "b1", "b64", "js",
        "jsl", "pt",
    ];
    let rule_json = json!({
        "name": "types", "db": db, "table": "t", "key_columns": ["id"], "due_column": "due_at",
        "due_type": "datetime", "time_zone": "UTC", "batch_time": "03:30", "overlap_minutes": 60,
        "input_columns": columns.to_vec(), "state_machine_arn": b.state_machine,
    });
    let rule: ScheduleRule = serde_json::from_value(rule_json.clone()).unwrap();

    // The batch's reader, on the same rows.
    let source = common::source_config(maria.port());
    let mut conn = open_session(&source).await.unwrap();
    let table = RuleTable::check(&mut conn, &rule, 1000, true).await.unwrap();
    let mut pages = TableReader::new(&source, &table);
    let lower = mysql_async::Value::Date(2031, 1, 1, 0, 0, 0, 0);
    let upper = mysql_async::Value::Date(2031, 2, 1, 0, 0, 0, 0);
    let page = pages.page(&lower, &upper, None).await.unwrap();
    pages.close().await;
    assert_eq!(page.rows.len(), 3);

    let mut cdc_names = BTreeSet::new();
    for row in &page.rows {
        let id = row["id"].as_i64().expect("id");
        let after = envelope_after(id);
        for (col, value) in &after {
            assert_eq!(row.get(col), Some(value), "row {id}, column {col}: SQL vs envelope");
        }
        assert_eq!(row.len(), after.len(), "row {id}: same columns");
        let due = sameday_core::window::due_of_row(&rule, &after).unwrap();
        let from_cdc = scheduled_execution(&rule, &after, due).unwrap();
        assert_eq!(scheduled_execution(&rule, row, due).unwrap(), from_cdc, "row {id}: same execution");
        cdc_names.insert(from_cdc.name);
    }

    // And the whole batch starts exactly those executions.
    let config = b.config("nightly.toml", &[&rule_json], 1000, 4, 1000);
    let out = nightly(&config, &["--date", "2031-01-15"]).await;
    assert_success(&out);
    let names: BTreeSet<String> = b.execution_names().await.into_iter().collect();
    assert_eq!(names, cdc_names);
}

#[tokio::test]
async fn nightly_start_execution_throttling_is_retried_without_failure_or_loss() {
    let b = Batch::new("nightly_throttle").await;
    let db = &b.db;
    let day = "2031-03-05";
    let values: Vec<String> =
        (1..=30).map(|id| format!("({id}, '{day} 11:{:02}:00', {id}, 'push', 'pending')", id % 60)).collect();
    MariaDb::shared()
        .exec(&format!(
            "CREATE TABLE {db}.t {SCHEDULE_DDL}; SET time_zone = '+00:00'; INSERT INTO {db}.t VALUES {};",
            values.join(", ")
        ))
        .await;
    let rule = b.rule("throttled", "t", json!({}));
    // Every second StartExecution is answered with ThrottlingException.
    let fault =
        Fault { operation: "StartExecution".into(), every: 2, status: 400, error_type: "ThrottlingException".into() };
    let proxy = FaultProxy::start(&Moto::shared().endpoint(), fault).await;
    let config = b.toml(&[&rule], 16, 8, 1000).endpoint_url(proxy.endpoint()).write(b.dir.path().join("nightly.toml"));
    let out = nightly(&config, &["--date", day]).await;
    assert_success(&out);
    assert_eq!(counts(&out, "throttled", &["selected", "started", "failed"]), vec![30, 30, 0]);
    assert!(proxy.injected() >= 15, "throttling was injected {} times", proxy.injected());
    assert_eq!(b.execution_names().await.len(), 30, "one execution per row");
}
