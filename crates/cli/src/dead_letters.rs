//! `sameday dead-letters list|replay --config reader.toml|consumer.toml`: what the daemons
//! could not deliver, and sending it again once the cause is fixed.
//!
//! - Reader dead letters (a file or S3 objects) that carry their change record are published
//!   to the stream again through the reader's own publisher, so a change that was too large
//!   goes through the claim-check now. Rows that were never encoded (undecodable) carry no
//!   record: the listing names the binlog position to replay instead.
//! - Consumer dead letters (a file or an SQS queue) are put back into the stream under their
//!   change's partition key, so the consumer routes them again.
//! - A dead letter is removed only after its record is accepted by Kinesis. Replaying one
//!   twice is harmless: event ids are unchanged, and the worker ignores changes no newer than
//!   the execution they would touch.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use aws_sdk_kinesis::primitives::Blob;
use sameday_consumer::config::ConsumerConfig;
use sameday_consumer::dead_letter::DeadLetterLine;
use sameday_core::envelope::ChangeEnvelope;
use sameday_core::s3::ObjectStore;
use sameday_reader::dead_letter::DeadLetter;
use sameday_reader::{kinesis_sink, Output, Publisher, PublisherConfig, ReaderConfig, Record};
use tokio_util::sync::CancellationToken;

use crate::daemon;
use crate::preflight::{detect_kind, Kind};

#[derive(clap::Subcommand)]
pub(crate) enum DeadLettersCmd {
    /// One line per dead letter: where it is, its table or shard, position, id and reason.
    List {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: std::path::PathBuf,
    },
    /// Send dead letters to the stream again (all that carry a record, or those named with
    /// --id), then remove them.
    Replay {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: std::path::PathBuf,
        /// Only these (the first column of `list`); repeatable.
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

/// Where one dead letter is kept: an S3 key, a file line (1-based) or an SQS message.
#[derive(Debug, Clone)]
enum Handle {
    Object(String),
    Line(usize),
    Message { id: String, receipt: String },
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handle::Object(key) => f.write_str(key),
            Handle::Line(n) => write!(f, "line:{n}"),
            Handle::Message { id, .. } => f.write_str(id),
        }
    }
}

pub(crate) async fn run(cmd: DeadLettersCmd) -> anyhow::Result<std::process::ExitCode> {
    let (config, ids, replay) = match cmd {
        DeadLettersCmd::List { config } => (config, Vec::new(), false),
        DeadLettersCmd::Replay { config, ids } => (config, ids, true),
    };
    match detect_kind(&config)? {
        Kind::Reader => reader(&daemon::load_config::<ReaderConfig>(&config)?, &ids, replay).await,
        Kind::Consumer => consumer(&daemon::load_config::<ConsumerConfig>(&config)?, &ids, replay).await,
        Kind::Worker => anyhow::bail!(
            "the worker's dead letters are messages in its dead-letter queue ([sqs] dead_letter_queue): redrive \
             them with `aws sqs start-message-move-task` (docs/operations.md)"
        ),
    }
}

// ---- reader ----

async fn reader_letters(cfg: &ReaderConfig) -> anyhow::Result<Vec<(Handle, DeadLetter)>> {
    if let Some(location) = &cfg.dead_letter_location {
        let store = ObjectStore::new(sameday_core::s3::client(&cfg.aws).await, location.clone());
        let mut out = Vec::new();
        for o in store.list("").await?.into_iter().filter(|o| o.key.ends_with(".json")) {
            let Some(body) = store.get(&o.key, None).await? else { continue };
            let letter = serde_json::from_slice(&body).with_context(|| location.url_of(&o.key))?;
            out.push((Handle::Object(o.key), letter));
        }
        return Ok(out);
    }
    let path = cfg.dead_letter_path.as_deref().expect("validated: a path or a location");
    file_lines(path)
}

fn file_lines<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<(Handle, T)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("dead-letter file {}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let letter = serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        out.push((Handle::Line(i + 1), letter));
    }
    Ok(out)
}

/// Rewrites `path` without the lines in `done` (atomically: a new file renamed over it).
fn remove_lines(path: &Path, done: &[usize]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let kept: String =
        text.lines().enumerate().filter(|(i, _)| !done.contains(&(i + 1))).map(|(_, l)| format!("{l}\n")).collect();
    let tmp = path.with_extension("replayed.tmp");
    std::fs::write(&tmp, kept)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn reader(cfg: &ReaderConfig, ids: &[String], replay: bool) -> anyhow::Result<std::process::ExitCode> {
    let letters = reader_letters(cfg).await?;
    if !replay {
        for (handle, d) in &letters {
            println!(
                "{handle}\t{}\t{}\t{}\t{}\t{}",
                d.table,
                d.position,
                d.id.as_deref().unwrap_or("-"),
                if d.record_base64.is_some() { "record" } else { "no-record" },
                d.reason
            );
        }
        println!("{} dead letter(s)", letters.len());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let chosen: Vec<&(Handle, DeadLetter)> =
        letters.iter().filter(|(h, _)| ids.is_empty() || ids.contains(&h.to_string())).collect();
    let mut outputs = Vec::new();
    let mut done = Vec::new();
    for (handle, d) in &chosen {
        let (Some(record), Some(id), Some(key)) = (d.record(), &d.id, &d.partition_key) else {
            println!(
                "{handle}: no change record (never encoded); replay its binlog range: sameday replay --config ... --from {} --sink kinesis",
                d.position
            );
            continue;
        };
        let env = ChangeEnvelope::from_slice(&record).with_context(|| format!("{handle}: the stored record"))?;
        outputs.push(Output::Row(Record {
            partition_key: key.clone(),
            data: record,
            id: id.clone(),
            op: env.op,
            table: d.table.as_str().into(),
            position: std::sync::Arc::new(d.position.parse().map_err(|e| anyhow::anyhow!("{handle}: position: {e}"))?),
        }));
        done.push((*handle).clone());
    }
    if outputs.is_empty() {
        println!("nothing to replay");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let (sink, claim_check) = kinesis_sink(cfg, &aws).await?;
    let publish_cfg = PublisherConfig { claim_check, ..sameday_reader::publisher_config(true) };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(outputs).await.expect("the receiver is here");
    drop(tx);
    let summary = Publisher::new(Arc::new(sink), publish_cfg).run(rx, CancellationToken::new()).await?;
    if summary.dead_lettered > 0 || summary.delivered < done.len() as u64 {
        anyhow::bail!(
            "{} of {} delivered, {} refused again; nothing was removed",
            summary.delivered,
            done.len(),
            summary.dead_lettered
        );
    }
    remove_reader_letters(cfg, &done).await?;
    println!("replayed {} dead letter(s) to {}", done.len(), cfg.kinesis.stream);
    Ok(std::process::ExitCode::SUCCESS)
}

async fn remove_reader_letters(cfg: &ReaderConfig, done: &[Handle]) -> anyhow::Result<()> {
    if let Some(location) = &cfg.dead_letter_location {
        let store = ObjectStore::new(sameday_core::s3::client(&cfg.aws).await, location.clone());
        for h in done {
            if let Handle::Object(key) = h {
                store.delete(key).await?;
            }
        }
        return Ok(());
    }
    let lines: Vec<usize> = done.iter().filter_map(|h| if let Handle::Line(n) = h { Some(*n) } else { None }).collect();
    remove_lines(cfg.dead_letter_path.as_deref().expect("validated"), &lines)
}

// ---- consumer ----

/// How long listed or replayed queue messages stay hidden before they are released or deleted.
const QUEUE_HOLD_SECS: i32 = 60;

/// Every message of the consumer's dead-letter queue, held hidden until [`release`].
async fn queue_letters(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<Vec<(Handle, DeadLetterLine)>> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(QUEUE_HOLD_SECS)
            .wait_time_seconds(1)
            .send()
            .await
            .with_context(|| format!("ReceiveMessage {url}"))?;
        if got.messages().is_empty() {
            return Ok(out);
        }
        for m in got.messages() {
            let (Some(id), Some(receipt), Some(body)) = (m.message_id(), m.receipt_handle(), m.body()) else {
                continue;
            };
            let letter = serde_json::from_str(body).with_context(|| format!("{url}: message {id}"))?;
            out.push((Handle::Message { id: id.to_owned(), receipt: receipt.to_owned() }, letter));
        }
    }
}

/// Makes held queue messages visible again at once.
async fn release(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[&Handle]) {
    for h in handles {
        if let Handle::Message { receipt, .. } = h {
            let _ = sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
}

async fn consumer(cfg: &ConsumerConfig, ids: &[String], replay: bool) -> anyhow::Result<std::process::ExitCode> {
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = match &cfg.dead_letter.queue {
        Some(q) => Some(
            sameday_core::sqs::resolve_queue(&sqs, q)
                .await
                .map_err(|(_, e)| anyhow::anyhow!("dead_letter.queue {q}: {e}"))?
                .url,
        ),
        None => None,
    };
    let letters: Vec<(Handle, DeadLetterLine)> = match (&queue, &cfg.dead_letter.path) {
        (Some(url), _) => queue_letters(&sqs, url).await?,
        (None, Some(path)) => file_lines(path)?,
        (None, None) => unreachable!("validated: a path or a queue"),
    };
    if !replay {
        for (handle, d) in &letters {
            println!("{handle}\t{}\t{}\t{}", d.shard, d.sequence, d.reason);
        }
        println!("{} dead letter(s)", letters.len());
        if let Some(url) = &queue {
            release(&sqs, url, &letters.iter().map(|(h, _)| h).collect::<Vec<_>>()).await;
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let mut done = Vec::new();
    let mut untouched = Vec::new();
    for (handle, d) in &letters {
        let chosen = ids.is_empty() || ids.contains(&handle.to_string());
        let env = d.data().and_then(|data| ChangeEnvelope::from_slice(&data).ok().map(|env| (data, env)));
        let Some((data, env)) = env.filter(|_| chosen) else {
            if chosen {
                println!("{handle}: not a sameday change envelope; left in place ({})", d.reason);
            }
            untouched.push(handle);
            continue;
        };
        kinesis
            .put_record()
            .stream_name(&cfg.kinesis.stream)
            .partition_key(env.partition_key())
            .data(Blob::new(data))
            .send()
            .await
            .with_context(|| format!("{handle}: PutRecord to {}", cfg.kinesis.stream))?;
        done.push(handle);
    }
    match (&queue, &cfg.dead_letter.path) {
        (Some(url), _) => {
            for h in &done {
                if let Handle::Message { receipt, .. } = h {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .context("DeleteMessage")?;
                }
            }
            release(&sqs, url, &untouched).await;
        }
        (None, Some(path)) => {
            let lines: Vec<usize> =
                done.iter().filter_map(|h| if let Handle::Line(n) = h { Some(*n) } else { None }).collect();
            remove_lines(path, &lines)?;
        }
        (None, None) => {}
    }
    println!("replayed {} dead letter(s) to {}", done.len(), cfg.kinesis.stream);
    Ok(std::process::ExitCode::SUCCESS)
}
