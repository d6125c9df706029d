//! The `sameday` command. Each subcommand only parses arguments and wires stages together;
//! the logic lives in the crates.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sameday_reader::decoder::{Decoder, Output};
use sameday_reader::filter::{FilterConfig, TableFilter};
use sameday_reader::source::file::{replay_files, FileRange};

#[derive(Parser)]
#[command(name = "sameday", version, about = "Change data capture from MySQL/MariaDB to same-day Step Functions executions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-emit a binlog range with the same event ids as the live stream.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Binlog files on disk, in order.
    #[arg(long = "binlog-file", required = true, num_args = 1..)]
    binlog_files: Vec<PathBuf>,
    /// Start at this byte offset of the first file.
    #[arg(long)]
    from: Option<u64>,
    /// Stop before this byte offset of the last file.
    #[arg(long)]
    to: Option<u64>,
    /// Tables to include (`db.table`, wildcards allowed), comma-separated.
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Print per-table counts instead of the records.
    #[arg(long)]
    dry_run: bool,
    /// Source server id written into the envelopes.
    #[arg(long, default_value_t = 0)]
    server_id: u32,
}

fn main() -> anyhow::Result<()> {
    sameday_core::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => replay(args),
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let filter = TableFilter::new(&FilterConfig { include: args.tables, ..Default::default() })
        .map_err(anyhow::Error::msg)?;
    let mut decoder = Decoder::new(args.server_id, filter, "", None);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let range = FileRange { from: args.from, to: args.to };
    replay_files(&args.binlog_files, &range, &mut decoder, |o| {
        match o {
            Output::Row(r) if args.dry_run => *counts.entry(format!("{} {}", r.table, r.op.as_str())).or_default() += 1,
            Output::Row(r) => {
                out.write_all(&r.data).and_then(|_| out.write_all(b"\n")).map_err(|e| {
                    sameday_reader::error::ReaderError::Sink { stream: "stdout".into(), message: e.to_string() }
                })?;
            }
            Output::DeadLetter(d) => {
                tracing::warn!(table = %d.table, position = %d.position, reason = %d.reason, "row could not be decoded")
            }
            _ => {}
        }
        Ok(true)
    })
    .context("replay failed")?;
    for (k, n) in counts {
        writeln!(out, "{k} {n}")?;
    }
    out.flush()?;
    Ok(())
}
