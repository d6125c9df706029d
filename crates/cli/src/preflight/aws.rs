//! Probes of the AWS resources the daemons use, shared by the per-daemon checks. Each names
//! the config field the resource comes from, so the operator knows what to change.

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_core::aws::describe;

use sameday_core::s3::{ObjectStore, S3Location};

use super::Problem;

/// Kinesis's limit when the stream does not report one.
const DEFAULT_STREAM_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A call that failed for another reason than "not found": the endpoint, the region or the
/// credentials are wrong, or the task role lacks the action.
fn unreachable(what: &str, call: &str, detail: String) -> Problem {
    Problem::error(format!(
        "{what}: {call} failed: {detail}; check [aws] region/endpoint_url, the credentials and that the task \
         role allows {call}"
    ))
}

/// `location` (config field `field`) takes objects: a small probe object is written under its
/// prefix (PutObject is the one S3 call the reader and the consumer make there).
pub(super) async fn writable_location(
    aws: &sameday_core::aws::AwsConfig,
    field: &str,
    location: &S3Location,
) -> Vec<Problem> {
    let store = ObjectStore::new(sameday_core::s3::client(aws).await, location.clone());
    match store.put(".sameday-check", b"written by sameday check".to_vec(), "text/plain").await {
        Ok(_) => Vec::new(),
        Err(e) => vec![Problem::error(format!(
            "{field} {location}: {e}; create the bucket (deploy/cloudformation makes DataBucket) and allow \
             s3:PutObject on {}*",
            location.url_of(&location.prefix).replacen("s3://", "arn:aws:s3:::", 1)
        ))],
    }
}

/// The stream exists, accepts records, and takes records as large as the reader sends.
pub(super) async fn stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    max_record_bytes: Option<usize>,
) -> Vec<Problem> {
    let what = format!("Kinesis stream {name} (kinesis.stream)");
    let out = match client.describe_stream_summary().stream_name(name).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return vec![Problem::error(format!(
                "{what} does not exist; create it (aws kinesis create-stream --stream-name {name} \
                 --stream-mode-details StreamMode=ON_DEMAND, or deploy deploy/cloudformation) or fix kinesis.stream"
            ))]
        }
        Err(e) => return vec![unreachable(&what, "DescribeStreamSummary", describe(&e))],
    };
    let Some(summary) = out.stream_description_summary() else {
        return vec![Problem::error(format!("{what}: DescribeStreamSummary returned no summary"))];
    };
    let mut problems = Vec::new();
    match summary.stream_status() {
        StreamStatus::Active | StreamStatus::Updating => {}
        other => problems.push(Problem::error(format!(
            "{what} is {}, not ACTIVE; wait until it is ACTIVE (or re-create it if it is being deleted)",
            other.as_str()
        ))),
    }
    if let Some(ours) = max_record_bytes {
        let limit = summary
            .max_record_size_in_kib()
            .map(|kib| kib.max(0) as usize * 1024)
            .unwrap_or(DEFAULT_STREAM_MAX_RECORD_BYTES);
        if ours > limit {
            problems.push(Problem::error(format!(
                "kinesis.max_record_bytes = {ours} exceeds {what}'s maximum record size of {limit} bytes: \
                 records in between would be rejected; set kinesis.max_record_bytes = {limit} or raise the \
                 stream's limit (aws kinesis update-max-record-size --stream-arn ARN --max-record-size-in-ki-b {})",
                ours.div_ceil(1024)
            )));
        }
    }
    problems
}

/// The table exists and has exactly one key: a string hash key named `attr`. A missing table
/// is fine when the daemon creates it (`create_ok`).
pub(super) async fn table_key(
    client: &aws_sdk_dynamodb::Client,
    field: &str,
    table: &str,
    attr: &str,
    create_ok: bool,
) -> Vec<Problem> {
    let what = format!("DynamoDB table {table} ({field})");
    let create = format!(
        "aws dynamodb create-table --table-name {table} --attribute-definitions AttributeName={attr},AttributeType=S \
         --key-schema AttributeName={attr},KeyType=HASH --billing-mode PAY_PER_REQUEST"
    );
    let out = match client.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            if create_ok {
                return Vec::new();
            }
            return vec![Problem::error(format!(
                "{what} does not exist; create it ({create}) or deploy deploy/cloudformation"
            ))];
        }
        Err(e) => return vec![unreachable(&what, "DescribeTable", describe(&e))],
    };
    let Some(desc) = out.table() else {
        return vec![Problem::error(format!("{what}: DescribeTable returned no description"))];
    };
    let keys: Vec<String> = desc
        .key_schema()
        .iter()
        .map(|k| {
            let ty = desc
                .attribute_definitions()
                .iter()
                .find(|d| d.attribute_name() == k.attribute_name())
                .map(|d| d.attribute_type().as_str())
                .unwrap_or("?");
            format!("{} {} ({ty})", k.key_type().as_str(), k.attribute_name())
        })
        .collect();
    let hash_ok = desc.key_schema().iter().any(|k| k.key_type() == &KeyType::Hash && k.attribute_name() == attr)
        && desc
            .attribute_definitions()
            .iter()
            .any(|d| d.attribute_name() == attr && d.attribute_type() == &ScalarAttributeType::S);
    if hash_ok && desc.key_schema().len() == 1 {
        return Vec::new();
    }
    vec![Problem::error(format!(
        "{what} has the key {}; sameday needs a single string hash key named {attr:?}; create a table with that \
         key ({create}) and point {field} at it",
        keys.join(", ")
    ))]
}

/// A queue that exists, with its attributes.
pub(super) struct Queue {
    pub(super) url: String,
    pub(super) attributes: HashMap<QueueAttributeName, String>,
}

impl Queue {
    pub(super) fn fifo(&self) -> bool {
        self.attribute(QueueAttributeName::FifoQueue).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub(super) fn attribute(&self, name: QueueAttributeName) -> Option<&str> {
        self.attributes.get(&name).map(String::as_str)
    }
}

/// Resolves a queue name or URL and reads all its attributes.
pub(super) async fn queue(client: &aws_sdk_sqs::Client, field: &str, name_or_url: &str) -> Result<Queue, Problem> {
    let what = format!("SQS queue {name_or_url} ({field})");
    let url = if name_or_url.starts_with("http://") || name_or_url.starts_with("https://") {
        name_or_url.to_owned()
    } else {
        match client.get_queue_url().queue_name(name_or_url).send().await {
            Ok(out) => out.queue_url().unwrap_or_default().to_owned(),
            Err(e) if is_missing_queue(&e) => return Err(missing_queue(&what, name_or_url)),
            Err(e) => return Err(unreachable(&what, "GetQueueUrl", describe(&e))),
        }
    };
    match client.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All).send().await {
        Ok(out) => Ok(Queue { url, attributes: out.attributes().cloned().unwrap_or_default() }),
        Err(e) if is_missing_queue(&e) => Err(missing_queue(&what, name_or_url)),
        Err(e) => Err(unreachable(&what, "GetQueueAttributes", describe(&e))),
    }
}

fn is_missing_queue<E: ProvideErrorMetadata>(e: &aws_sdk_sqs::error::SdkError<E>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "QueueDoesNotExist" || c.ends_with("NonExistentQueue"))
}

fn missing_queue(what: &str, name: &str) -> Problem {
    let name = name.rsplit('/').next().unwrap_or(name);
    let fifo = if name.ends_with(".fifo") { name.to_owned() } else { format!("{name}.fifo") };
    Problem::error(format!(
        "{what} does not exist; create it (aws sqs create-queue --queue-name {fifo} --attributes FifoQueue=true) \
         or deploy deploy/cloudformation, and fix the name in the config"
    ))
}

/// A standard queue delivers one row's changes in any order.
pub(super) fn fifo_warning(field: &str, queue: &Queue) -> Option<Problem> {
    (!queue.fifo()).then(|| {
        Problem::warning(format!(
            "SQS queue {} ({field}) is a standard queue: a row's changes may arrive out of order and a later \
             schedule can be overtaken by an earlier one; use a FIFO queue (name ending in .fifo, FifoQueue=true)",
            queue.url
        ))
    })
}

/// The daemon will be able to create and append to `file`.
pub(super) fn writable_dir(field: &str, file: &Path) -> Option<Problem> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Some(Problem::error(format!(
            "the directory {} of {field} ({}) does not exist; create it (mkdir -p {}) or change {field}",
            dir.display(),
            file.display(),
            dir.display()
        )));
    }
    let probe = dir.join(format!(".sameday-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(Problem::error(format!(
            "the directory {} of {field} ({}) is not writable by this user: {e}; fix its owner or mode, or \
             change {field}",
            dir.display(),
            file.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_read_only_directory_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(writable_dir("checkpoint.path", &dir.path().join("cp.json")), None);
        let missing = writable_dir("checkpoint.path", &dir.path().join("nope/cp.json")).unwrap();
        assert!(missing.blocking && missing.message.contains("mkdir -p"), "{missing}");
    }

    #[test]
    fn a_standard_queue_is_a_warning() {
        let attrs = |fifo: &str| HashMap::from([(QueueAttributeName::FifoQueue, fifo.to_owned())]);
        let standard = Queue { url: "http://q/1/a".into(), attributes: attrs("false") };
        let p = fifo_warning("route queue", &standard).unwrap();
        assert!(!p.blocking && p.message.contains("standard queue"), "{p}");
        assert!(fifo_warning("route queue", &Queue { url: "u".into(), attributes: attrs("true") }).is_none());
    }
}
