//! The operator's binlog commands: `sameday tail` (print change records as they happen) and
//! `sameday replay` (re-emit a range, from the server or from binlog files, with the live
//! stream's ids). Both register with a replica server id of their own ([`SourceArgs`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::ValueEnum;
use sameday_core::aws::AwsConfig;
use sameday_core::daemon;
use sameday_core::s3::S3Location;
use sameday_core::BinlogPosition;
use sameday_core::StartPosition;
use sameday_mysql::{Session, SourceConfig};
use sameday_reader::{
    fetch_objects, fetch_range, kinesis_sink, prepare_source, publisher_config, replay, resolve_start, CountingSink,
    FetchedFiles, FileRange, FileReplay, FilterConfig, NullSink, PublisherConfig, ReaderConfig, ReplaySource,
    SourceRun, StdoutSink,
};

#[derive(clap::Args)]
pub(crate) struct SourceArgs {
    /// Reader config file (its [source] and [filter] are used).
    #[arg(long, env = "SAMEDAY_CONFIG")]
    config: Option<PathBuf>,
    /// mysql://USER:PASS@HOST:PORT, instead of a config file.
    #[arg(long)]
    source: Option<String>,
    /// Tables to include (`db.table`, wildcards allowed), comma-separated.
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Replica server id to register with (must be unique among the source's replicas).
    /// Default: a random id in the upper half of the id space, said in the first log line,
    /// so several tails and replays run side by side.
    #[arg(long)]
    server_id: Option<u32>,
    /// Record format: sameday's envelope or AWS DMS's Kinesis JSON.
    #[arg(long, value_enum, default_value = "sameday")]
    format: FormatArg,
}

impl SourceArgs {
    /// Fixes the replica id for this run (see `--server-id`) and says which it is.
    fn choose_server_id(&mut self, command: &str, from_server: bool) -> u32 {
        let id = *self.server_id.get_or_insert_with(|| {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            // Daemons use small configured ids; operator commands take the upper half.
            0x8000_0000 | ((std::process::id().wrapping_mul(2_654_435_761) ^ nanos) & 0x7fff_ffff)
        });
        if from_server {
            tracing::info!(
                server_id = id,
                "{command}: registering with the source as replica server_id {id} (choose one with --server-id)"
            );
        }
        id
    }
}

/// A clearer error when the source refused the replica id because another replica uses it.
fn explain_server_id_clash(err: anyhow::Error, id: u32) -> anyhow::Error {
    let text = format!("{err:#}");
    if text.contains("4052") || text.contains("same server_uuid/server_id") || text.contains("same server_id") {
        anyhow::anyhow!(
            "the source already has a replica connected with server_id {id} (another tail, replay or a reader); \
             choose another id with --server-id ({text})"
        )
    } else {
        err
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Sameday,
    Dms,
}

impl From<FormatArg> for sameday_reader::RecordFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Sameday => Self::Sameday,
            FormatArg::Dms => Self::Dms,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Where to start: latest (default), earliest, FILE:POS or a MariaDB GTID list.
    #[arg(long, default_value = "latest")]
    from: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum SinkKind {
    Stdout,
    Kinesis,
    /// Decode and encode, then drop (measures the reader's own cost).
    Null,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Binlog files, in order, instead of the server: paths on disk, or archived objects
    /// (s3://bucket/prefix/mysql-bin.000042), downloaded and checked against their SHA-256.
    #[arg(long = "binlog-file", num_args = 1..)]
    binlog_files: Vec<String>,
    /// Replay from the binlog archive at s3://bucket/prefix/ (without a value: the config's
    /// [archive] location), the files from --from's to --to's (default: the newest archived).
    #[arg(long, num_args = 0..=1, default_missing_value = "", conflicts_with = "binlog_files")]
    archive: Option<String>,
    /// Start: FILE:POS on a server or in the archive; a byte offset of the first file with
    /// --binlog-file.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive): FILE:POS on a server or in the archive; a byte offset of the last
    /// file with --binlog-file.
    #[arg(long)]
    to: Option<String>,
    #[arg(long, value_enum, default_value = "stdout")]
    sink: SinkKind,
    /// Print per-table counts of what would be emitted, emit nothing.
    #[arg(long)]
    dry_run: bool,
}

impl ReplayArgs {
    /// Whether the records go to a sink that takes them in order on the decoder's thread
    /// (stdout, null, `--dry-run`), not through the publisher to Kinesis.
    pub(crate) fn writes_in_order(&self) -> bool {
        self.dry_run || !matches!(self.sink, SinkKind::Kinesis)
    }
}

/// The source and filter from `--source`/`--tables` or from a config file.
fn source_of(args: &SourceArgs) -> anyhow::Result<(SourceConfig, FilterConfig, Option<ReaderConfig>)> {
    let server_id = args.server_id.context("the replica server id is chosen before the source is opened")?;
    match (&args.source, &args.config) {
        (Some(url), _) => {
            let src = SourceConfig::from_url(url, server_id).map_err(anyhow::Error::msg)?;
            Ok((src, FilterConfig { include: args.tables.clone(), ..Default::default() }, None))
        }
        (None, Some(path)) => {
            let cfg = daemon::load_config::<ReaderConfig>(path)?;
            let mut filter = cfg.filter.clone();
            if !args.tables.is_empty() {
                filter.include = args.tables.clone();
            }
            let mut src = cfg.source.clone();
            // Never register with the live reader's id: the server would disconnect it.
            src.server_id = server_id;
            Ok((src, filter, Some(cfg)))
        }
        (None, None) => bail!("give --source mysql://USER:PASS@HOST:PORT or --config FILE"),
    }
}

pub(crate) async fn tail(mut args: TailArgs) -> anyhow::Result<ExitCode> {
    let id = args.source.choose_server_id("tail", true);
    tail_from(args).await.map_err(|e| explain_server_id_clash(e, id))
}

async fn tail_from(args: TailArgs) -> anyhow::Result<ExitCode> {
    let (src, filter, _) = source_of(&args.source)?;
    let start: StartPosition = args.from.parse()?;
    let info = prepare_source(&src, &filter).await?;
    let start = resolve_start(&src, &info, &start).await?;
    let format = args.source.format.into();
    let run = SourceRun { cfg: src, info, filter, start, gtid_set: None, stop_at: None, non_blocking: false, format };
    let shutdown = sameday_core::shutdown::on_signals();
    replay(ReplaySource::Server(run), Arc::new(StdoutSink::default()), publisher_config(false), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Archived files fetched for a replay; kept until the replay ends.
type Fetched = Option<FetchedFiles>;

/// What to replay: files on disk or in the archive, or a range of the server's binlog.
async fn replay_source(args: &ReplayArgs) -> anyhow::Result<(ReplaySource, Fetched)> {
    if let Some(location) = &args.archive {
        let (location, aws) = archive_location(args, location)?;
        let position = |arg: &Option<String>, name: &str| {
            arg.as_deref()
                .map(str::parse::<BinlogPosition>)
                .transpose()
                .with_context(|| format!("{name} must be FILE:POS with --archive"))
        };
        let from = position(&args.from, "--from")?.context("--archive needs --from FILE:POS")?;
        let to = position(&args.to, "--to")?;
        let fetched = fetch_range(&aws, &location, &from, to.as_ref()).await?;
        let range = FileRange { from: Some(from.pos), to: to.map(|t| t.pos) };
        let replay = file_replay(args, fetched.files.clone(), range).await?;
        return Ok((ReplaySource::Files(replay), Some(fetched)));
    }
    if !args.binlog_files.is_empty() {
        let offset = |arg: &Option<String>, name: &str| {
            arg.as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| format!("{name} must be a byte offset with --binlog-file"))
        };
        let range = FileRange { from: offset(&args.from, "--from")?, to: offset(&args.to, "--to")? };
        let in_s3 = args.binlog_files.iter().filter(|f| f.starts_with("s3://")).count();
        let (files, fetched) = match in_s3 {
            0 => (args.binlog_files.iter().map(PathBuf::from).collect(), None),
            n if n == args.binlog_files.len() => {
                let aws = config_of(args)?.map(|c| c.aws).unwrap_or_default();
                let fetched = fetch_objects(&aws, &args.binlog_files).await?;
                (fetched.files.clone(), Some(fetched))
            }
            _ => bail!("--binlog-file takes either local files or s3:// objects, not both"),
        };
        return Ok((ReplaySource::Files(file_replay(args, files, range).await?), fetched));
    }
    let (src, filter, _) = source_of(&args.source)?;
    let from: StartPosition =
        args.from.as_deref().context("--from FILE:POS is required when replaying from a server")?.parse()?;
    let stop_at = args.to.as_deref().map(str::parse).transpose().context("--to must be FILE:POS")?;
    let info = prepare_source(&src, &filter).await?;
    let start = resolve_start(&src, &info, &from).await?;
    let format = args.source.format.into();
    let run = SourceRun { cfg: src, info, filter, start, gtid_set: None, stop_at, non_blocking: true, format };
    Ok((ReplaySource::Server(run), None))
}

/// The reader config of `--config`, when given.
fn config_of(args: &ReplayArgs) -> anyhow::Result<Option<ReaderConfig>> {
    args.source.config.as_deref().map(daemon::load_config::<ReaderConfig>).transpose().map_err(Into::into)
}

/// `--archive`'s location (the config's `[archive] location` when it has no value) and the
/// AWS settings to read it with.
fn archive_location(args: &ReplayArgs, given: &str) -> anyhow::Result<(S3Location, AwsConfig)> {
    let config = config_of(args)?;
    let aws = config.as_ref().map(|c| c.aws.clone()).unwrap_or_default();
    let location = match (given, config.and_then(|c| c.archive)) {
        ("", Some(archive)) => archive.location,
        ("", None) => bail!("--archive without a location needs --config with an [archive] section"),
        (url, _) => url.parse::<S3Location>().map_err(anyhow::Error::msg)?,
    };
    Ok((location, aws))
}

/// Local (or fetched) binlog files through the file source.
async fn file_replay(args: &ReplayArgs, files: Vec<PathBuf>, range: FileRange) -> anyhow::Result<FileReplay> {
    // With a server at hand, MariaDB JSON columns come out as JSON, as in the live run.
    let json_columns = match source_of(&args.source) {
        Ok((src, _, _)) => {
            let mut session = Session::connect(&src).await?;
            let columns = match session.server_info().await?.mariadb {
                true => session.mariadb_json_columns().await?,
                false => Default::default(),
            };
            session.close().await;
            columns
        }
        Err(_) => Default::default(),
    };
    Ok(FileReplay {
        files,
        range,
        filter: FilterConfig { include: args.source.tables.clone(), ..Default::default() },
        format: args.source.format.into(),
        json_columns,
    })
}

pub(crate) async fn replay_cmd(mut args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let from_server = args.binlog_files.is_empty() && args.archive.is_none();
    let id = args.source.choose_server_id("replay", from_server);
    replay_range(args).await.map_err(|e| explain_server_id_clash(e, id))
}

async fn replay_range(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (source, _fetched) = replay_source(&args).await?;
    // Kinesis batching when replaying a server range into the stream; operator output at once otherwise.
    let cfg = publisher_config(matches!((&source, args.sink), (ReplaySource::Server(_), SinkKind::Kinesis)));
    let shutdown = sameday_core::shutdown::on_signals();
    if args.dry_run {
        let counting = Arc::new(CountingSink::default());
        replay(source, counting.clone(), cfg, shutdown).await?;
        for (k, n) in counting.counts() {
            println!("{k} {n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.sink {
        SinkKind::Stdout => replay(source, Arc::new(StdoutSink::default()), cfg, shutdown).await?,
        SinkKind::Null => replay(source, Arc::new(NullSink::default()), cfg, shutdown).await?,
        SinkKind::Kinesis => {
            let (_, _, config) = source_of(&args.source)?;
            let config = config.context("--sink kinesis needs --config (for the stream name and AWS settings)")?;
            let aws = sameday_core::aws::sdk_config(&config.aws).await;
            // The same sink, claim-check and aggregation as the live reader: same records, same objects.
            let (sink, claim_check) = kinesis_sink(&config, &aws).await?;
            let cfg = PublisherConfig { claim_check, aggregate: config.kinesis.aggregates(), ..cfg };
            replay(source, Arc::new(sink), cfg, shutdown).await?
        }
    };
    Ok(ExitCode::SUCCESS)
}
