//! The `sameday` command. Each subcommand parses arguments and wires stages together; the
//! logic lives in the crates.

mod dead_letters;
mod preflight;
mod tail_replay;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sameday_consumer::config::ConsumerConfig;
use sameday_consumer::shard_lease::LeaseTable;
use sameday_core::checkpoint::{Checkpoint, CheckpointStore};
use sameday_core::clock::now_ms;
use sameday_core::daemon;
use sameday_core::StartPosition;
use sameday_reader::ReaderConfig;
use sameday_reader::Start;
use sameday_reader::{prepare_source, resolve_start};
use sameday_worker::config::WorkerConfig;

#[derive(Parser)]
#[command(
    name = "sameday",
    version,
    about = "Change data capture from MySQL/MariaDB to same-day Step Functions executions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the binlog reader daemon: MySQL/MariaDB row changes to Kinesis.
    Reader {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
    },
    /// Run the binlog archive daemon: copies each binlog file the source rotates to S3, byte
    /// for byte, as the reader config's [archive] section says (docs/archive.md).
    Archive {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
        /// Copy what is pending once and exit (exit 1 on a failure) instead of running as a daemon.
        #[arg(long)]
        once: bool,
    },
    /// Run the consumer daemon: Kinesis shards (leases shared by every consumer task) to SQS.
    Consumer {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
    },
    /// Run the worker daemon: SQS change messages to Step Functions executions.
    Worker {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
    },
    /// Show the consumer's shard leases: owner, expiry, checkpoint, parents.
    Leases {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
    },
    /// Check everything a daemon's config needs (source, stream, tables, queues, state
    /// machines) and print one line per problem with its fix; exits 2 on a blocking one.
    Check {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
        /// Which daemon the config is for; by default told from its sections.
        #[arg(long, value_enum)]
        kind: Option<preflight::Kind>,
    },
    /// Print change records as JSON lines; no AWS and no config file needed with --source.
    Tail(tail_replay::TailArgs),
    /// Re-emit a binlog range with the same event ids as the live stream. Never moves the
    /// live checkpoint.
    Replay(tail_replay::ReplayArgs),
    /// Start the Step Functions executions of the rows due in the run's window (the daily
    /// batch). Safe to re-run; exits 1 if any row failed.
    Nightly {
        /// Worker config file (its [[rule]], [nightly] and [step_functions] are used).
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
        /// Run for this local day (YYYY-MM-DD, in each rule's time zone); default: the
        /// window containing now.
        #[arg(long)]
        date: Option<jiff::civil::Date>,
        /// Print what would be started, per rule; no Step Functions calls.
        #[arg(long)]
        dry_run: bool,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
    },
    /// Compare the rows due in the current window with the waiting executions, per rule:
    /// in_sync, missing, extra, stale. Exits 0 when in sync, 1 on drift (with --fix: on
    /// drift it could not fix).
    Reconcile {
        /// Worker config file (its [[rule]], [nightly] and [step_functions] are used).
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Start the missing executions, stop the extra and stale ones (never one whose due
        /// time has passed).
        #[arg(long)]
        fix: bool,
        /// Print one JSON document instead of key=value lines.
        #[arg(long)]
        json: bool,
        /// Also print CloudWatch embedded-metric lines (sameday/ReconcileDrift per rule).
        #[arg(long)]
        cloudwatch_metrics: bool,
        /// Seconds between the two looks that confirm drift (changes in flight are not drift).
        #[arg(long, default_value_t = 10)]
        settle_seconds: u64,
    },
    /// What the reader or the consumer could not deliver: list it, or send it again after a fix.
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLettersCmd),
    /// Show (or, with --set, move) the reader's stored checkpoint.
    Positions {
        #[arg(long, env = "SAMEDAY_CONFIG")]
        config: PathBuf,
        /// New position: FILE:POS, earliest or latest (resolved on the source). Moving it
        /// backwards replays; forwards skips changes. Stop the reader first.
        #[arg(long)]
        set: Option<String>,
    },
    /// Query a daemon's /healthz (for container health checks; the image has no curl).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
}

fn main() -> ExitCode {
    sameday_core::logging::init();
    let cli = Cli::parse();
    // `tail` and `replay` into stdout or nowhere decode and write on one thread (the records
    // never leave it); a second runtime thread would only add wake-ups between them.
    let one_thread = match &cli.command {
        Command::Tail(_) => true,
        Command::Replay(args) => args.writes_in_order(),
        _ => false,
    };
    let rt = if one_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("tokio runtime");
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sameday failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Reader { config } => {
            let (cfg, shutdown) = daemon::launch::<ReaderConfig>(&config)?;
            let summary = sameday_reader::run_reader(cfg, shutdown).await?;
            tracing::info!(delivered = summary.delivered, dead_lettered = summary.dead_lettered, checkpoint = ?summary.last_durable.map(|c| c.next.to_string()), "reader stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Archive { config, once } => {
            let (cfg, shutdown) = daemon::launch::<ReaderConfig>(&config)?;
            let summary = sameday_reader::run_archive(cfg, shutdown, once).await?;
            tracing::info!(files = summary.files, bytes = summary.bytes, "archive done");
            Ok(ExitCode::SUCCESS)
        }
        Command::Consumer { config } => {
            let (cfg, shutdown) = daemon::launch::<ConsumerConfig>(&config)?;
            sameday_consumer::run::run_consumer(cfg, shutdown).await?;
            tracing::info!("consumer stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { config } => {
            let (cfg, shutdown) = daemon::launch::<WorkerConfig>(&config)?;
            sameday_worker::run::run_worker(cfg, shutdown).await?;
            tracing::info!("worker stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Leases { config } => leases(&config).await,
        Command::Check { config, kind } => check(&config, kind).await,
        Command::Tail(args) => tail_replay::tail(args).await,
        Command::Replay(args) => tail_replay::replay_cmd(args).await,
        Command::Nightly { config, date, dry_run, rule } => nightly(&config, date, dry_run, rule).await,
        Command::Reconcile { config, rule, fix, json, cloudwatch_metrics, settle_seconds } => {
            let options = sameday_worker::reconcile::ReconcileOptions {
                rule,
                fix,
                settle: std::time::Duration::from_secs(settle_seconds),
            };
            reconcile(&config, &options, json, cloudwatch_metrics).await
        }
        Command::DeadLetters(cmd) => dead_letters::run(cmd).await,
        Command::Positions { config, set } => positions(&config, set).await,
        Command::Health { url } => health(&url).await,
    }
}

async fn nightly(
    path: &std::path::Path,
    date: Option<jiff::civil::Date>,
    dry_run: bool,
    rule: Option<String>,
) -> anyhow::Result<ExitCode> {
    let cfg = daemon::load_config::<WorkerConfig>(path)?;
    let options = sameday_worker::nightly::NightlyOptions { date, dry_run, rule, now: None };
    let summary = sameday_worker::nightly::run_nightly(&cfg, &options).await?;
    println!("{summary}");
    Ok(if summary.failed() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn reconcile(
    path: &std::path::Path,
    options: &sameday_worker::reconcile::ReconcileOptions,
    json: bool,
    cloudwatch_metrics: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = daemon::load_config::<WorkerConfig>(path)?;
    let summary = sameday_worker::reconcile::run_reconcile(&cfg, options).await?;
    if json {
        println!("{}", summary.to_json());
    } else {
        println!("{summary}");
    }
    if cloudwatch_metrics {
        for line in summary.emf_lines(jiff::Timestamp::now()) {
            println!("{line}");
        }
    }
    Ok(if summary.unresolved() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn leases(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = daemon::load_config::<ConsumerConfig>(path)?;
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let table = LeaseTable::new(aws_sdk_dynamodb::Client::new(&aws), &cfg.leases.table);
    let now = now_ms();
    println!("{:<28} {:<40} {:>10} {:<16} checkpoint", "shard", "owner", "expires_in", "parents");
    for l in table.list().await? {
        let expires = if l.owner.is_some() && l.expires_at_ms > now {
            format!("{} ms", l.expires_at_ms - now)
        } else {
            "-".into()
        };
        let owner = l.live_owner(now).unwrap_or(if l.owner.is_some() { "(expired)" } else { "(free)" });
        println!(
            "{:<28} {:<40} {:>10} {:<16} {}",
            l.shard_id,
            owner,
            expires,
            l.parent_shard_ids.join(","),
            l.checkpoint
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(path: &std::path::Path, kind: Option<preflight::Kind>) -> anyhow::Result<ExitCode> {
    let kind = match kind {
        Some(k) => k,
        None => preflight::detect_kind(path)?,
    };
    let mut notes = Vec::new();
    let problems = match kind {
        preflight::Kind::Reader => {
            let cfg = daemon::load_config::<ReaderConfig>(path)?;
            let mut problems = preflight::reader(&cfg).await;
            let (archive, summary) = preflight::archive(&cfg).await;
            problems.extend(archive);
            notes.extend(summary);
            problems
        }
        preflight::Kind::Consumer => preflight::consumer(&daemon::load_config::<ConsumerConfig>(path)?).await,
        preflight::Kind::Worker => preflight::worker(&daemon::load_config::<WorkerConfig>(path)?).await,
    };
    Ok(preflight::report(kind, path, &problems, &notes))
}

async fn positions(path: &std::path::Path, set: Option<String>) -> anyhow::Result<ExitCode> {
    let cfg = daemon::load_config::<ReaderConfig>(path)?;
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    // Showing must not depose the running reader; only --set takes the fencing token.
    let store = sameday_reader::open_store(&cfg.checkpoint, &aws, set.is_some()).await?;
    let current = store.load().await?;
    match &current {
        Some(cp) => println!(
            "{}: {} (gtid {}) commit_ts_ms {} saved_at_ms {}",
            store.describe(),
            cp.position,
            cp.gtid_set.as_ref().map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
            cp.commit_ts_ms,
            cp.saved_at_ms
        ),
        None => println!("{}: no checkpoint", store.describe()),
    }
    let Some(target) = set else { return Ok(ExitCode::SUCCESS) };
    let start: StartPosition = target.parse()?;
    let info = prepare_source(&cfg.source, &cfg.filter).await?;
    let Start::File(position) = resolve_start(&cfg.source, &info, &start).await? else {
        bail!("--set takes FILE:POS, earliest or latest");
    };
    let cp = Checkpoint { position, gtid_set: None, commit_ts_ms: 0, saved_at_ms: now_ms() };
    store.force_save(&cp).await?;
    println!("checkpoint set to {}", cp.position);
    Ok(ExitCode::SUCCESS)
}

async fn health(url: &str) -> anyhow::Result<ExitCode> {
    let rest = url.strip_prefix("http://").context("--url must be http://HOST:PORT/PATH")?;
    let (hostport, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/healthz".into()));
    let mut stream =
        match tokio::time::timeout(std::time::Duration::from_secs(3), tokio::net::TcpStream::connect(hostport)).await {
            Ok(Ok(s)) => s,
            _ => {
                println!("unhealthy: cannot connect to {hostport}");
                return Ok(ExitCode::FAILURE);
            }
        };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes()).await?;
    let mut resp = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), stream.read_to_string(&mut resp)).await;
    let healthy = resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200");
    println!("{}", resp.split("\r\n\r\n").nth(1).unwrap_or(resp.as_str()));
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
