//! The deployment artefacts: `deploy/cloudformation/sameday.yaml` passes cfn-lint, is
//! created by moto's CloudFormation with the resources the daemons expect, grants each
//! daemon only the AWS calls its code makes, and wires the containers the way the daemons
//! are configured; `deploy/Dockerfile` keeps its key properties.
//!
//! The template is read through `scripts/cfn_stack.py` (cfn-lint's YAML decoder in the
//! venv from `scripts/prereqs.sh`), so no YAML crate is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use sameday_testkit::Moto;

use crate::common;
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn template_path() -> PathBuf {
    workspace_root().join("deploy/cloudformation/sameday.yaml")
}

/// Runs `scripts/cfn_stack.py ARGS` with the venv's python; (success, stdout, stderr).
fn cfn_stack(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::venv_bin("python"))
        .arg(workspace_root().join("scripts/cfn_stack.py"))
        .args(args)
        .output()
        .expect("running scripts/cfn_stack.py");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// The template as JSON (short-form tags such as `!Ref` become `Ref`/`Fn::*`).
fn template() -> Value {
    let path = template_path();
    let (ok, stdout, stderr) = cfn_stack(&["json", path.to_str().unwrap()]);
    assert!(ok, "cannot read {}: {stderr}", path.display());
    serde_json::from_str(&stdout).unwrap()
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

/// Runs cfn-lint on `file`: `Ok` when it reports nothing (errors and warnings both fail).
fn cfn_lint(file: &Path) -> Result<(), String> {
    let out = Command::new(common::venv_bin("cfn-lint")).arg(file).output().expect("running cfn-lint");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(())
    } else {
        Err(report)
    }
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let dir = workspace_root().join("deploy/cloudformation");
    let mut templates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    templates.sort();
    assert!(!templates.is_empty(), "no template in {}", dir.display());
    let failures: Vec<String> =
        templates.iter().filter_map(|t| cfn_lint(t).err().map(|r| format!("{}:\n{r}", t.display()))).collect();
    assert!(failures.is_empty(), "cfn-lint found problems:\n{}", failures.join("\n"));

    // The check can fail: a Ref to a resource that does not exist is reported.
    let scratch = tempfile::tempdir().unwrap();
    let bad = scratch.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt Missing.Arn\n        maxReceiveCount: 5\n",
    )
    .unwrap();
    let report = cfn_lint(&bad).expect_err("cfn-lint accepted a GetAtt of a missing resource");
    assert!(report.contains("Missing"), "{report}");
}

/// Resource types moto's CloudFormation does not implement: it skips them (and lists them
/// without ids). Everything else in the template must really be created.
const MOTO_SKIPS: [&str; 6] = [
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::Scheduler::Schedule",
    "AWS::CloudWatch::Alarm",
    "AWS::Logs::MetricFilter",
    "AWS::S3::BucketPolicy",
];

#[test]
fn cloudformation_stack_creates_in_moto() {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    let path = template_path();
    let params = [
        "Image=123456789012.dkr.ecr.us-east-1.amazonaws.com/sameday:test",
        "MysqlSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:sameday-mysql-AbCdEf",
        "Subnets=subnet-0123456789abcdef0",
        "SecurityGroups=sg-0123456789abcdef0",
        "MaxReceiveCount=7",
        "StreamName=cfn-changes",
        "ScheduleQueueName=cfn-schedules",
    ];
    let mut args = vec!["create", "--endpoint", &endpoint, "--template", path.to_str().unwrap(), "--stack", "sameday"];
    for p in &params {
        args.extend(["--param", p]);
    }
    let (ok, stdout, stderr) = cfn_stack(&args);
    assert!(ok, "moto did not create the stack:\n{stdout}\n{stderr}\nmoto log: {}", moto.log_path().display());
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "CREATE_COMPLETE", "{report:#}");

    // Every resource moto implements is created; the rest are exactly the known skips.
    let t = template();
    let created: BTreeMap<&str, &Value> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["logical_id"].as_str().unwrap(), &r["status"]))
        .collect();
    let mut skipped = 0;
    for (id, r) in resources(&t) {
        let ty = r["Type"].as_str().unwrap();
        if MOTO_SKIPS.contains(&ty) {
            skipped += 1;
            continue;
        }
        assert_eq!(created.get(id.as_str()).copied(), Some(&Value::from("CREATE_COMPLETE")), "{id} ({ty})");
    }
    assert_eq!(report["unidentified_resources"], skipped, "moto skipped other resources than {MOTO_SKIPS:?}");

    let d = &report["described"];
    assert_eq!(d["streams"]["Stream"]["name"], "cfn-changes");
    assert_eq!(d["streams"]["Stream"]["status"], "ACTIVE");

    let queue = &d["queues"]["ScheduleQueue"]["attributes"];
    let dlq = &d["queues"]["ScheduleDeadLetterQueue"]["attributes"];
    assert_eq!(queue["FifoQueue"], "true", "{queue:#}");
    assert!(d["queues"]["ScheduleQueue"]["url"].as_str().unwrap().ends_with("/cfn-schedules.fifo"));
    assert_eq!(queue["ContentBasedDeduplication"], "false", "the consumer sets the deduplication id");
    assert_eq!(dlq["FifoQueue"], "true", "a FIFO queue's dead-letter queue must be FIFO");
    let redrive: Value = serde_json::from_str(queue["RedrivePolicy"].as_str().expect("a redrive policy")).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dlq["QueueArn"]);
    assert_eq!(redrive["maxReceiveCount"].to_string(), "7", "MaxReceiveCount parameter: {redrive}");
    let visibility: u64 = queue["VisibilityTimeout"].as_str().unwrap().parse().unwrap();
    let worker_visibility = parameter_default(&t, "WorkerVisibilityTimeoutSeconds");
    assert!(visibility > worker_visibility, "queue visibility {visibility} s <= the worker's {worker_visibility} s");
    let consumer_dlq = &d["queues"]["ConsumerDeadLetterQueue"]["attributes"];
    assert!(consumer_dlq.get("FifoQueue").is_none_or(|f| f == "false"), "{consumer_dlq:#}");

    for (id, key) in [
        ("CheckpointTable", sameday_core::checkpoint_dynamo::KEY_ATTR),
        ("LeaseTable", sameday_consumer::shard_lease::SHARD_ID_ATTR),
    ] {
        let table = &d["tables"][id];
        assert_eq!(table["key_schema"], serde_json::json!([{"AttributeName": key, "KeyType": "HASH"}]), "{id}");
        assert_eq!(table["attributes"], serde_json::json!([{"AttributeName": key, "AttributeType": "S"}]), "{id}");
        assert_eq!(table["billing_mode"], "PAY_PER_REQUEST", "{id}");
    }

    let sm = &d["state_machines"]["StateMachine"];
    assert_eq!(sm["type"], "STANDARD");
    assert_eq!(report["outputs"]["StateMachineArn"], sm["arn"]);
    let deployed: Value = serde_json::from_str(sm["definition"].as_str().unwrap()).unwrap();
    assert_eq!(deployed, statemachine_file(), "moto holds another definition than deploy/statemachine");

    let containers = |id: &str| d["ecs"][id]["containers"].clone();
    assert_eq!(containers("ReaderTaskDefinition"), serde_json::json!(["reader", "metrics-agent"]));
    assert_eq!(containers("ConsumerTaskDefinition"), serde_json::json!(["consumer"]));
    assert_eq!(containers("WorkerTaskDefinition"), serde_json::json!(["worker"]));
    assert_eq!(containers("NightlyTaskDefinition"), serde_json::json!(["nightly"]));
    assert_eq!(containers("ReconcileTaskDefinition"), serde_json::json!(["reconcile"]));
}

fn statemachine_file() -> Value {
    let file = workspace_root().join("deploy/statemachine/schedule.asl.json");
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn template_state_machine_is_deploy_statemachine_schedule() {
    let t = template();
    let sm = &resources(&t)["StateMachine"]["Properties"];
    assert_eq!(sm["StateMachineType"], "STANDARD");
    let embedded: Value = serde_json::from_str(sm["DefinitionString"].as_str().expect("a literal DefinitionString"))
        .expect("DefinitionString is JSON");
    assert_eq!(
        embedded,
        statemachine_file(),
        "copy deploy/statemachine/schedule.asl.json into the StateMachine's DefinitionString"
    );
}

// ---------------------------------------------------------------------------- IAM

/// A resource in a policy, as written in the template: `Stream.Arn` (GetAtt), `Ref X`,
/// `Sub ...`, or a literal.
fn resource_names(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(resource_names).collect(),
        Value::Object(o) if o.len() == 1 => {
            let (f, arg) = o.iter().next().unwrap();
            match f.as_str() {
                "Ref" if arg == "AWS::NoValue" => vec![],
                "Ref" => vec![format!("Ref {}", arg.as_str().unwrap())],
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = match arg {
                        Value::Array(a) => a.iter().map(|p| p.as_str().unwrap()).collect(),
                        other => other.as_str().unwrap().splitn(2, '.').collect(),
                    };
                    vec![parts.join(".")]
                }
                "Fn::Sub" => vec![format!("Sub {}", arg.as_str().expect("Fn::Sub with a plain string"))],
                // Both branches may be deployed: check each.
                "Fn::If" => arg.as_array().unwrap()[1..].iter().flat_map(resource_names).collect(),
                other => panic!("unexpected {other} in a policy resource"),
            }
        }
        other => panic!("unexpected policy resource {other}"),
    }
}

/// Statements of a policy document, with `Fn::If` statements expanded to both branches.
fn statements(doc: &Value) -> Vec<&Value> {
    fn expand<'a>(s: &'a Value, out: &mut Vec<&'a Value>) {
        if let Some(branches) = s.get("Fn::If") {
            for b in &branches.as_array().unwrap()[1..] {
                expand(b, out);
            }
        } else if s.get("Ref").is_some_and(|r| r == "AWS::NoValue") {
        } else {
            out.push(s);
        }
    }
    let mut out = Vec::new();
    match &doc["Statement"] {
        Value::Array(items) => items.iter().for_each(|s| expand(s, &mut out)),
        single => expand(single, &mut out),
    }
    out
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().expect("a string action").to_owned()).collect(),
        other => panic!("unexpected action {other}"),
    }
}

/// The data bucket's large changes (`claim_check.location`).
const CHANGES: &str = "Sub ${DataBucket.Arn}/changes/*";

const EXECUTION_ARN: &str =
    "Sub arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${StateMachineName}:*";

/// What each role may do, (action, resource) — the calls each daemon's code makes (see
/// `sdk_calls_are_in_the_allow_lists`), on this stack's resources.
fn allow_lists() -> BTreeMap<&'static str, BTreeSet<(String, String)>> {
    fn grant(actions: &[&str], resources: &[&str]) -> Vec<(String, String)> {
        actions.iter().flat_map(|a| resources.iter().map(move |r| (a.to_string(), r.to_string()))).collect()
    }
    let mut m: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
    m.insert(
        "ReaderTaskRole",
        [
            grant(&["kinesis:PutRecords", "kinesis:DescribeStreamSummary"], &["Stream.Arn"]),
            // Checkpoints: open (UpdateItem ADD fence), load/explain (GetItem), save (UpdateItem).
            grant(&["dynamodb:GetItem", "dynamodb:UpdateItem"], &["CheckpointTable.Arn"]),
            // Large changes (core's claim_check) and dead letters, through core::s3.
            grant(&["s3:PutObject"], &[CHANGES, "Sub ${DataBucket.Arn}/dead-letters/reader/*"]),
            // The retention headroom lists the binlog archive.
            grant(&["s3:ListBucket"], &["DataBucket.Arn"]),
            // The CloudWatch agent sidecar shares the task role (lag metric as EMF records).
            grant(&["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"], &["MetricsLogGroup.Arn"]),
        ]
        .concat(),
    );
    // `sameday archive` (crates/reader/src/archive/, through core::s3).
    m.insert(
        "ArchiveTaskRole",
        [
            grant(&["s3:ListBucket"], &["DataBucket.Arn"]),
            grant(&["s3:PutObject"], &["Sub ${DataBucket.Arn}/binlogs/*"]),
        ]
        .concat(),
    );
    m.insert(
        "ConsumerTaskRole",
        [
            grant(
                &[
                    "kinesis:DescribeStreamSummary",
                    "kinesis:ListShards",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ],
                &["Stream.Arn"],
            ),
            grant(
                &["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                &["LeaseTable.Arn"],
            ),
            grant(
                &["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:SendMessage"],
                &["ScheduleQueue.Arn", "ConsumerDeadLetterQueue.Arn"],
            ),
            grant(&["s3:PutObject"], &[CHANGES]),
        ]
        .concat(),
    );
    m.insert(
        "WorkerTaskRole",
        [
            grant(
                &[
                    "sqs:GetQueueUrl",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                ],
                &["ScheduleQueue.Arn"],
            ),
            grant(&["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:SendMessage"], &["ScheduleDeadLetterQueue.Arn"]),
            grant(&["s3:GetObject"], &[CHANGES]),
            grant(&["states:StartExecution"], &["Ref StateMachine"]),
            grant(&["states:StopExecution", "states:DescribeExecution"], &[EXECUTION_ARN]),
        ]
        .concat(),
    );
    m.insert(
        "NightlyTaskRole",
        [
            grant(&["states:StartExecution"], &["Ref StateMachine"]),
            grant(&["states:ListExecutions"], &["Ref StateMachine"]),
            grant(&["states:DescribeExecution", "states:StopExecution"], &[EXECUTION_ARN]),
        ]
        .concat(),
    );
    m.insert(
        "TaskExecutionRole",
        [
            grant(
                &["secretsmanager:GetSecretValue"],
                &["Ref MysqlSecretArn", "Ref NightlyMysqlSecretArn", "Ref NightlyPrimarySecretArn"],
            ),
            grant(
                &["logs:CreateLogStream", "logs:PutLogEvents"],
                &[
                    "ReaderLogGroup.Arn",
                    "ConsumerLogGroup.Arn",
                    "WorkerLogGroup.Arn",
                    "NightlyLogGroup.Arn",
                    "ReconcileLogGroup.Arn",
                    "ArchiveLogGroup.Arn",
                ],
            ),
            grant(&["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], &["Ref EcrRepositoryArn"]),
            grant(&["ecr:GetAuthorizationToken"], &["*"]),
        ]
        .concat(),
    );
    m.insert(
        "NightlySchedulerRole",
        [
            grant(&["ecs:RunTask"], &["Ref NightlyTaskDefinition", "Ref ReconcileTaskDefinition"]),
            grant(&["iam:PassRole"], &["NightlyTaskRole.Arn", "TaskExecutionRole.Arn"]),
        ]
        .concat(),
    );
    // Pass and Wait states call nothing.
    m.insert("StateMachineRole", vec![]);
    m.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect()
}

/// Actions that have no resource to name (IAM requires `*`).
const UNSCOPABLE: [&str; 1] = ["ecr:GetAuthorizationToken"];

/// Every (action, resource) a role's inline policies allow; panics on constructs the
/// allow-list cannot judge (NotAction, NotResource, Deny-less wildcards are checked by the caller).
fn granted(role: &Value) -> Result<BTreeSet<(String, String)>, String> {
    let mut out = BTreeSet::new();
    let props = &role["Properties"];
    if props.get("ManagedPolicyArns").is_some() {
        return Err("has ManagedPolicyArns (their contents cannot be checked here)".into());
    }
    for policy in props["Policies"].as_array().map(Vec::as_slice).unwrap_or_default() {
        for s in statements(&policy["PolicyDocument"]) {
            if s.get("NotAction").is_some() || s.get("NotResource").is_some() {
                return Err(format!("NotAction/NotResource in {s}"));
            }
            if s["Effect"] != "Allow" {
                continue;
            }
            let actions = as_list(&s["Action"]);
            let res = resource_names(&s["Resource"]);
            for a in &actions {
                if a.contains('*') || a.contains('?') {
                    return Err(format!("wildcard action {a}"));
                }
                for r in &res {
                    if r == "*" && !UNSCOPABLE.contains(&a.as_str()) {
                        return Err(format!("{a} on every resource (\"*\") though its resource can be named"));
                    }
                    out.insert((a.clone(), r.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// The allow-list check, on any template: one message per problem.
fn iam_problems(t: &Value) -> Vec<String> {
    let lists = allow_lists();
    let mut problems = Vec::new();
    for (id, r) in resources(t) {
        match r["Type"].as_str().unwrap() {
            "AWS::IAM::Role" => {}
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::IAM::User" | "AWS::IAM::Group" => {
                problems.push(format!("{id}: standalone IAM resources are not allowed; put inline policies on a role"));
                continue;
            }
            _ => continue,
        }
        let Some(allowed) = lists.get(id.as_str()) else {
            problems.push(format!("{id}: a role without an allow-list in tests/deploy_cloudformation.rs"));
            continue;
        };
        match granted(r) {
            Err(e) => problems.push(format!("{id}: {e}")),
            Ok(granted) => {
                for extra in granted.difference(allowed) {
                    problems.push(format!("{id} grants {} on {} (not in its allow-list)", extra.0, extra.1));
                }
                for missing in allowed.difference(&granted) {
                    problems.push(format!("{id} lacks {} on {} (its daemon calls it)", missing.0, missing.1));
                }
            }
        }
    }
    for id in lists.keys() {
        if !resources(t).contains_key(*id) {
            problems.push(format!("{id}: no such role in the template"));
        }
    }
    problems
}

#[test]
fn iam_roles_grant_only_what_each_daemon_needs() {
    let t = template();
    let problems = iam_problems(&t);
    assert!(problems.is_empty(), "IAM problems:\n{}", problems.join("\n"));

    // Each daemon's task runs with its own role.
    for (task, role) in [
        ("ReaderTaskDefinition", "ReaderTaskRole"),
        ("ConsumerTaskDefinition", "ConsumerTaskRole"),
        ("WorkerTaskDefinition", "WorkerTaskRole"),
        ("NightlyTaskDefinition", "NightlyTaskRole"),
        ("ReconcileTaskDefinition", "NightlyTaskRole"),
    ] {
        let props = &resources(&t)[task]["Properties"];
        assert_eq!(props["TaskRoleArn"], serde_json::json!({"Fn::GetAtt": [role, "Arn"]}), "{task}");
        assert_eq!(props["ExecutionRoleArn"], serde_json::json!({"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}));
    }

    // The check can fail: a wildcard action, a "*" resource, an extra action and a
    // missing one are each reported.
    let mut bad = t.clone();
    let stmts = |b: &Value, role: &str| {
        b["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap().clone()
    };
    let mut reader = stmts(&bad, "ReaderTaskRole");
    reader.push(
        serde_json::json!({"Effect": "Allow", "Action": "kinesis:*", "Resource": {"Fn::GetAtt": ["Stream", "Arn"]}}),
    );
    bad["Resources"]["ReaderTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] = reader.into();
    let mut worker = stmts(&bad, "WorkerTaskRole");
    worker.retain(|s| s["Sid"] != "StartExecutions");
    worker.push(
        serde_json::json!({"Effect": "Allow", "Action": "states:ListExecutions", "Resource": {"Ref": "StateMachine"}}),
    );
    bad["Resources"]["WorkerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] = worker.into();
    let problems = iam_problems(&bad).join("\n");
    for expected in [
        "ReaderTaskRole: wildcard action kinesis:*",
        "WorkerTaskRole grants states:ListExecutions on Ref StateMachine",
        "WorkerTaskRole lacks states:StartExecution on Ref StateMachine",
    ] {
        assert!(problems.contains(expected), "not reported: {expected}\n{problems}");
    }
    let mut star = t.clone();
    let mut reader = stmts(&star, "ReaderTaskRole");
    reader.push(serde_json::json!({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}));
    star["Resources"]["ReaderTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] = reader.into();
    let problems = iam_problems(&star).join("\n");
    assert!(problems.contains("dynamodb:GetItem on every resource"), "{problems}");
}

/// The AWS SDK crates the daemons use, with the IAM service prefix of their actions.
const SDKS: [(&str, &str); 5] = [
    ("aws-sdk-kinesis", "kinesis"),
    ("aws-sdk-s3", "s3"),
    ("aws-sdk-dynamodb", "dynamodb"),
    ("aws-sdk-sqs", "sqs"),
    ("aws-sdk-sfn", "states"),
];

/// The source folder of `krate` at the version in Cargo.lock, in cargo's registry.
fn registry_source(krate: &str) -> PathBuf {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find_map(|p| {
            let mut lines = p.lines().map(str::trim);
            let name = lines.find_map(|l| l.strip_prefix("name = "))?;
            let version = p.lines().map(str::trim).find_map(|l| l.strip_prefix("version = "))?;
            (name.trim_matches('"') == krate).then(|| version.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("{krate} is not in Cargo.lock"));
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registries = home.join("registry/src");
    std::fs::read_dir(&registries)
        .unwrap_or_else(|e| panic!("{}: {e}", registries.display()))
        .map(|e| e.unwrap().path().join(format!("{krate}-{version}")))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("{krate} {version} not found under {}", registries.display()))
}

/// Every operation of those SDKs (the fluent builder's method, e.g. `put_records`) with the
/// IAM actions it may need (an operation name can exist in several services). Read from
/// the SDK sources' `src/operation/` folders, so a call the test has never heard of is
/// still recognised.
fn sdk_operations() -> BTreeMap<String, BTreeSet<String>> {
    let mut ops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (krate, service) in SDKS {
        let dir = registry_source(krate).join("src/operation");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if !path.is_dir() {
                continue;
            }
            let op = path.file_name().unwrap().to_str().unwrap().to_owned();
            // SQS authorises its *Batch calls with the single-message action.
            let base = if service == "sqs" { op.strip_suffix("_batch").unwrap_or(&op) } else { &op };
            let pascal: String =
                base.split('_').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect::<Vec<_>>().join("");
            ops.entry(op.clone()).or_default().insert(format!("{service}:{pascal}"));
        }
    }
    assert!(ops.contains_key("put_records") && ops.contains_key("start_execution"), "SDK operations not found");
    ops
}

/// Calls made only on request of a local set-up (`leases.create_table`, tests), never
/// granted in production: CloudFormation creates the tables.
const NOT_GRANTED: [&str; 1] = ["dynamodb:CreateTable"];

/// Methods that share an SDK operation's name but call no AWS API: (file, method, why).
const NOT_SDK_CALLS: [(&str, &str, &str); 1] =
    [("crates/reader/src/decoder/mod.rs", "query", "the SQL text of a binlog QUERY_EVENT")];

/// SDK operations called (`.op()`) in `files`, with the files that call them.
fn sdk_calls(files: &[PathBuf], ops: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests build requests with the SDK's builders and call emulators; a `#[cfg(test)]`
        // on a single item inside the code does not end the production part.
        let code = text.split("\n#[cfg(test)]\nmod ").next().unwrap();
        for op in ops.keys() {
            let excluded = NOT_SDK_CALLS.iter().any(|(f, m, _)| file.ends_with(f) && m == op);
            if !excluded && code.contains(&format!(".{op}()")) {
                found.entry(op.clone()).or_default().push(file.display().to_string());
            }
        }
    }
    found
}

/// A file of unit tests (`tests.rs` beside a module, `publisher_tests.rs`).
fn is_test_module(path: &Path) -> bool {
    path.file_stem().and_then(|s| s.to_str()).is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && !is_test_module(&path) {
            out.push(path);
        }
    }
    out
}

#[test]
fn sdk_calls_are_in_the_allow_lists() {
    let root = workspace_root();
    let checkpoint = root.join("crates/core/src/checkpoint_dynamo.rs");
    // The consumer and the worker find their queues through core's shared lookup.
    let queue_lookup = root.join("crates/core/src/sqs.rs");
    let lists = allow_lists();
    let actions = |role: &str| -> BTreeSet<String> { lists[role].iter().map(|(a, _)| a.clone()).collect() };
    let daemons = [
        ("reader", "ReaderTaskRole", [rust_files(&root.join("crates/reader/src")), vec![checkpoint.clone()]].concat()),
        // The consumer shares checkpoint_dynamo's ensure_string_key_table (CreateTable only).
        (
            "consumer",
            "ConsumerTaskRole",
            [rust_files(&root.join("crates/consumer/src")), vec![checkpoint.clone(), queue_lookup.clone()]].concat(),
        ),
        // The nightly batch lives in the worker crate (nightly/), sharing sfn.rs.
        (
            "worker",
            "WorkerTaskRole",
            rust_files(&root.join("crates/worker/src"))
                .into_iter()
                .filter(|p| !p.starts_with(root.join("crates/worker/src/nightly")))
                .chain([queue_lookup.clone()])
                .collect(),
        ),
        ("nightly", "NightlyTaskRole", rust_files(&root.join("crates/worker/src/nightly"))),
    ];
    // Calls a daemon makes through shared code outside its files: the nightly batch (and
    // reconcile, which runs with its role) starts, describes and stops executions through the
    // worker's sfn.rs.
    let through_shared_code = |daemon: &str| -> &[&str] {
        match daemon {
            "nightly" => &["states:StartExecution", "states:DescribeExecution", "states:StopExecution"],
            // Large changes go through core's claim_check (core::s3).
            "reader" => &["s3:PutObject", "s3:ListBucket"],
            "consumer" => &["s3:PutObject"],
            "worker" => &["s3:GetObject"],
            _ => &[],
        }
    };
    let ops = sdk_operations();
    let mut problems = Vec::new();
    for (daemon, role, files) in &daemons {
        let calls = sdk_calls(files, &ops);
        assert!(!calls.is_empty(), "no SDK call found in the {daemon}'s code: is the scan broken?");
        let allowed = actions(role);
        let mut used: BTreeSet<String> = through_shared_code(daemon).iter().map(|a| a.to_string()).collect();
        for (op, wherein) in &calls {
            let needs = &ops[op];
            used.extend(needs.iter().cloned());
            if !needs.iter().any(|a| allowed.contains(a) || NOT_GRANTED.contains(&a.as_str())) {
                let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
                problems.push(format!(
                    "the {daemon} calls {op} ({}) but {role} allows none of {}",
                    wherein.join(", "),
                    needs.join(", ")
                ));
            }
        }
        // The reader's allow-list also has the sidecar's logs actions; the rest must be used.
        for action in allowed.iter().filter(|a| !a.starts_with("logs:")) {
            if !used.contains(action) {
                problems.push(format!("{role} allows {action} but the {daemon}'s code never calls it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------- containers

fn parameter_default(t: &Value, name: &str) -> u64 {
    let d = &t["Parameters"][name]["Default"];
    d.as_u64().or_else(|| d.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("parameter {name}"))
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["Environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["Name"].as_str().unwrap().to_owned(), e["Value"].clone()))
        .collect()
}

#[test]
fn task_definitions_match_the_daemons() {
    let t = template();
    // (task, container, command, metrics port, drain on SIGTERM in seconds)
    let daemons = [
        // The reader drains for PublisherConfig::drain_timeout (7 s), not configurable.
        ("ReaderTaskDefinition", "reader", 9464, 7),
        ("ConsumerTaskDefinition", "consumer", 9465, 20),
        ("WorkerTaskDefinition", "worker", 9466, 20),
    ];
    for (task, name, port, drain_secs) in daemons {
        let containers = resources(&t)[task]["Properties"]["ContainerDefinitions"].as_array().unwrap();
        let c = containers.iter().find(|c| c["Name"] == name).unwrap_or_else(|| panic!("{task}: no {name}"));
        assert_eq!(c["Command"], serde_json::json!([name]), "{task}");
        assert_eq!(c["Essential"], true, "{task}");
        let env = env_of(c);
        assert_eq!(env["SAMEDAY_CONFIG"], serde_json::json!({"Fn::Sub": format!("${{ConfigDir}}/{name}.toml")}));
        assert_eq!(env["SAMEDAY__METRICS__LISTEN"], format!("0.0.0.0:{port}"), "{task}");
        assert_eq!(
            c["HealthCheck"]["Command"],
            serde_json::json!([
                "CMD",
                "/usr/local/bin/sameday",
                "health",
                "--url",
                format!("http://127.0.0.1:{port}/healthz")
            ]),
            "{task}: the health check must ask the daemon's own listener"
        );
        if let Some(ms) = env.get("SAMEDAY__SHUTDOWN_TIMEOUT_MS") {
            assert_eq!(ms.as_str().unwrap().parse::<u64>().unwrap(), drain_secs * 1000, "{task}");
        }
        // Drain, then the checkpoint write and exit, well inside ECS's SIGKILL.
        let stop = c["StopTimeout"].as_u64().unwrap_or(30);
        assert!(stop >= drain_secs + 10 && stop <= 120, "{task}: StopTimeout {stop} s vs a {drain_secs} s drain");
    }

    // Names the stack owns reach the daemons through overrides.
    let env = |task: &str, name: &str| {
        let containers = resources(&t)[task]["Properties"]["ContainerDefinitions"].as_array().unwrap();
        env_of(containers.iter().find(|c| c["Name"] == name).unwrap())
    };
    let reader = env("ReaderTaskDefinition", "reader");
    assert_eq!(reader["SAMEDAY__KINESIS__STREAM"], serde_json::json!({"Ref": "Stream"}));
    assert_eq!(reader["SAMEDAY__CHECKPOINT__TABLE"], serde_json::json!({"Ref": "CheckpointTable"}));
    let consumer = env("ConsumerTaskDefinition", "consumer");
    assert_eq!(consumer["SAMEDAY__LEASES__TABLE"], serde_json::json!({"Ref": "LeaseTable"}));
    let worker = env("WorkerTaskDefinition", "worker");
    assert_eq!(worker["SAMEDAY__SQS__QUEUE"], serde_json::json!({"Fn::GetAtt": ["ScheduleQueue", "QueueName"]}));
    assert_eq!(
        worker["SAMEDAY__SQS__DEAD_LETTER_QUEUE"],
        serde_json::json!({"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]})
    );
    // The queue hides a message longer than the worker asks for, and longer than its drain.
    let queue_visibility = parameter_default(&t, "ScheduleQueueVisibilityTimeoutSeconds");
    assert!(queue_visibility > parameter_default(&t, "WorkerVisibilityTimeoutSeconds") && queue_visibility > 20);

    // The MySQL password comes from Secrets Manager as a task secret, never as plain env.
    let reader_c = &resources(&t)["ReaderTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert_eq!(reader_c["Secrets"][0]["Name"], "SAMEDAY__SOURCE__PASSWORD");
    let nightly_c = &resources(&t)["NightlyTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert_eq!(nightly_c["Secrets"][0]["Name"], "SAMEDAY__NIGHTLY__SOURCE__PASSWORD");
    for (id, r) in resources(&t) {
        for c in r["Properties"]["ContainerDefinitions"].as_array().map(Vec::as_slice).unwrap_or_default() {
            assert!(!env_of(c).keys().any(|k| k.contains("PASSWORD")), "{id}: a password in plain environment");
        }
    }

    // On-demand stream by default, and the reader's record limit follows the stream's.
    assert_eq!(t["Parameters"]["StreamMode"]["Default"], "ON_DEMAND");
    let sizes = &t["Mappings"]["RecordSize"];
    for kib in t["Parameters"]["MaxRecordSizeKiB"]["AllowedValues"].as_array().unwrap() {
        let kib = kib.as_str().unwrap();
        assert_eq!(sizes[kib]["Bytes"].as_u64(), Some(kib.parse::<u64>().unwrap() * 1024), "RecordSize {kib}");
    }
    assert_eq!(
        reader["SAMEDAY__KINESIS__MAX_RECORD_BYTES"],
        serde_json::json!({"Fn::FindInMap": ["RecordSize", {"Ref": "MaxRecordSizeKiB"}, "Bytes"]})
    );
}

// ---------------------------------------------------------------------------- Dockerfile

/// Problems with the Dockerfile's key properties, one line each.
fn dockerfile_problems(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut problems = Vec::new();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    if froms.len() < 2 {
        problems.push("not a multi-stage build (one FROM)".to_owned());
    }
    let last_stage = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap_or(0);
    let runtime = &lines[last_stage..];
    match runtime.iter().rev().find(|l| l.starts_with("USER ")) {
        None => problems.push("the runtime stage has no USER (it would run as root)".to_owned()),
        Some(u) => {
            let user = u["USER ".len()..].split(':').next().unwrap().trim();
            if user == "root" || user == "0" {
                problems.push(format!("the runtime stage runs as {user}"));
            }
        }
    }
    if !runtime.contains(&"STOPSIGNAL SIGTERM") {
        problems.push("no STOPSIGNAL SIGTERM in the runtime stage".to_owned());
    }
    if !runtime.iter().any(|l| l.starts_with("ENTRYPOINT") && l.contains("sameday")) {
        problems.push("the ENTRYPOINT is not the sameday binary".to_owned());
    }
    if !runtime.iter().any(|l| l.starts_with("COPY --from=") && l.ends_with("/usr/local/bin/sameday")) {
        problems.push("the runtime stage does not copy the binary to /usr/local/bin/sameday".to_owned());
    }
    let builds: Vec<&&str> = lines.iter().filter(|l| l.contains("cargo build")).collect();
    if !builds.iter().any(|l| l.contains("--release") && l.contains("--locked") && l.contains("-p sameday")) {
        problems.push("no `cargo build --release --locked -p sameday`".to_owned());
    }
    problems
}

#[test]
fn dockerfile_builds_one_locked_binary_for_a_non_root_user() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    let problems = dockerfile_problems(&text);
    assert!(problems.is_empty(), "deploy/Dockerfile:\n{}", problems.join("\n"));
    let image = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("ARG {key}="))).unwrap_or_else(|| panic!("ARG {key}"))
    };
    assert!(image("RUNTIME_IMAGE").starts_with("gcr.io/distroless/cc"), "runtime image: {}", image("RUNTIME_IMAGE"));
    // The Rust image can build this workspace (its rust-version).
    let rust_version = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = ").map(|v| v.trim_matches('"').to_owned()))
        .unwrap();
    let tag = image("RUST_IMAGE").trim_start_matches("rust:").split('-').next().unwrap().to_owned();
    let parse = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(parse(&tag) >= parse(&rust_version), "rust:{tag} < rust-version {rust_version}");

    // The build context leaves out what the image must not carry or wait for.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for entry in ["target", ".cache", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }

    // The check can fail: each property removed is reported.
    for (from, to, expected) in [
        ("STOPSIGNAL SIGTERM", "", "STOPSIGNAL"),
        ("USER 65532:65532", "USER root", "runs as root"),
        (" --locked", "", "--locked"),
        ("FROM ${RUST_IMAGE} AS builder", "", "multi-stage"),
    ] {
        let broken = text.replace(from, to);
        assert_ne!(broken, text, "{from} not in the Dockerfile");
        let problems = dockerfile_problems(&broken).join("\n");
        assert!(problems.contains(expected), "removing {from:?} went unnoticed: {problems}");
    }
}
