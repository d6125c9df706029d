//! Heap allocations per row change of the reader, in steady state, counted by a counting
//! global allocator while a binlog file on disk is replayed. Not a test:
//!
//! ```sh
//! BENCH_BINLOG_FILE=mysql-bin.000001 [BENCH_FROM=OFFSET] [BENCH_TO=OFFSET] [BENCH_TABLES='bench.*'] \
//!   [BENCH_JSON_COLUMNS=bench.t.doc,...] cargo bench -p sameday-reader --bench decode_allocs
//! ```
//!
//! Two figures, both over the same range:
//! - decode + encode: the file source and the [`Decoder`] (events to change records, as
//!   `replay --binlog-file`), each event's records handed back to the decoder once seen, as
//!   a sink on the decoder's thread (stdout, null) does. Counted from the row at
//!   `BENCH_WARMUP_PCT` (10) percent of the range to the end, so table maps, buffers growing
//!   to their working size and the first transaction are left out.
//! - the whole replay ([`replay`]: file reader thread, hand-over, publisher, a discarding
//!   sink), as `replay --binlog-file --sink null`: the difference between a run ending at the
//!   first commit past the warm-up and a run over the whole range, divided by the rows between
//!   them. With one transaction only there is no such commit, and the whole run is reported.
//!
//! An allocation is an `alloc` or a `realloc` call; bytes are those allocated plus those a
//! `realloc` grew by. The last line is `key=value` pairs for scripts (`bench_reader.sh`).
//! `BENCH_JSON_COLUMNS` names the MariaDB JSON columns, which the server names in a live run
//! (without them those columns are text).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sameday_reader::{
    publisher_config, replay, replay_file_events, Decoder, FileRange, FileReplay, FilterConfig, NullSink, Output,
    RecordFormat, ReplaySource, TableFilter,
};
use sameday_testkit::bench::{env_or, invoked};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Heap activity between two points.
#[derive(Clone, Copy, Default)]
struct Heap {
    calls: u64,
    bytes: u64,
}

impl Heap {
    fn now() -> Self {
        let s = GLOBAL.stats();
        Self {
            calls: (s.allocations + s.reallocations) as u64,
            bytes: s.bytes_allocated as u64 + s.bytes_reallocated.max(0) as u64,
        }
    }

    fn since(self, earlier: Heap) -> Heap {
        Heap { calls: self.calls - earlier.calls, bytes: self.bytes - earlier.bytes }
    }

    fn per_row(self, rows: u64) -> (f64, f64) {
        let rows = rows.max(1) as f64;
        (self.calls as f64 / rows, self.bytes as f64 / rows)
    }
}

struct Settings {
    files: Vec<PathBuf>,
    range: FileRange,
    filter: FilterConfig,
    json_columns: HashSet<String>,
    warmup_pct: u64,
}

impl Settings {
    fn from_env() -> Self {
        let file = std::env::var("BENCH_BINLOG_FILE").expect("set BENCH_BINLOG_FILE to a binlog file on disk");
        let offset = |name: &str| std::env::var(name).ok().map(|v| v.parse::<u64>().expect(name));
        let tables = std::env::var("BENCH_TABLES").unwrap_or_default();
        let list = |v: &str| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        Settings {
            files: vec![PathBuf::from(file)],
            range: FileRange { from: offset("BENCH_FROM"), to: offset("BENCH_TO") },
            filter: FilterConfig { include: list(&tables), ..Default::default() },
            json_columns: list(&std::env::var("BENCH_JSON_COLUMNS").unwrap_or_default()).into_iter().collect(),
            warmup_pct: env_or("BENCH_WARMUP_PCT", 10),
        }
    }

    fn decoder(&self) -> Decoder {
        let filter = TableFilter::new(&self.filter).expect("BENCH_TABLES");
        let mut decoder = Decoder::new(0, filter, "", None).with_format(RecordFormat::Sameday);
        decoder.set_json_columns(self.json_columns.clone());
        decoder
    }

    fn file_replay(&self, to: Option<u64>) -> FileReplay {
        FileReplay {
            files: self.files.clone(),
            range: FileRange { from: self.range.from, to },
            filter: self.filter.clone(),
            format: RecordFormat::Sameday,
            json_columns: self.json_columns.clone(),
        }
    }
}

/// What one pass of decode + encode saw.
struct Pass {
    rows: u64,
    record_bytes: u64,
    /// (rows so far, position after the commit) per transaction.
    commits: Vec<(u64, u64)>,
    /// Rows and heap activity from the warm-up row to the end.
    steady: (u64, Heap),
    whole: Heap,
    seconds: f64,
}

/// Decodes and encodes the range, dropping each output; heap counted from row `warmup`.
/// `transactions` sizes the list of commits up front, so it does not count.
fn decode_pass(s: &Settings, warmup: u64, transactions: usize) -> Pass {
    let mut decoder = s.decoder();
    let (mut rows, mut record_bytes, mut commits) = (0u64, 0u64, Vec::with_capacity(transactions));
    let mut mark: Option<(u64, Heap)> = None;
    let start = Heap::now();
    let t0 = Instant::now();
    replay_file_events(&s.files, &s.range, &mut decoder, |outputs| {
        for o in outputs.iter() {
            match o {
                Output::Row(r) => {
                    if rows == warmup && mark.is_none() {
                        mark = Some((rows, Heap::now()));
                    }
                    rows += 1;
                    record_bytes += r.data.len() as u64;
                }
                Output::Commit(c) => commits.push((rows, c.next.pos)),
                _ => {}
            }
        }
        // Left in `outputs`: the records go back to the decoder, as a sink on its thread does.
        Ok(true)
    })
    .expect("replay the binlog file");
    let seconds = t0.elapsed().as_secs_f64();
    let end = Heap::now();
    let (at, heap) = mark.unwrap_or((0, start));
    Pass { rows, record_bytes, commits, steady: (rows - at, end.since(heap)), whole: end.since(start), seconds }
}

/// The whole replay into a discarding sink, up to `to`: rows delivered and heap activity.
async fn replay_run(s: &Settings, to: Option<u64>) -> (u64, Heap) {
    let start = Heap::now();
    let summary = replay(
        ReplaySource::Files(s.file_replay(to)),
        Arc::new(NullSink::default()),
        publisher_config(false),
        CancellationToken::new(),
    )
    .await
    .expect("replay");
    (summary.delivered, Heap::now().since(start))
}

fn main() {
    if !invoked() {
        return;
    }
    let s = Settings::from_env();
    // A first pass counts the rows and finds the commits (and warms the page cache).
    let first = decode_pass(&s, u64::MAX, 0);
    let warmup = first.rows * s.warmup_pct / 100;
    let pass = decode_pass(&s, warmup, first.commits.len());
    assert_eq!(pass.rows, first.rows, "two passes over one range");
    let (rows, heap) = pass.steady;
    let (calls, bytes) = heap.per_row(rows);
    let (whole_calls, whole_bytes) = pass.whole.per_row(pass.rows);
    println!(
        "range: {} {}..{} ({} rows, {} transactions, records {:.0} bytes on average)",
        s.files[0].display(),
        s.range.from.unwrap_or(0),
        s.range.to.map(|t| t.to_string()).unwrap_or_default(),
        pass.rows,
        pass.commits.len(),
        pass.record_bytes as f64 / pass.rows.max(1) as f64
    );
    println!(
        "decode + encode, steady state (last {rows} rows): {calls:.2} allocations/row, {bytes:.0} bytes/row \
         (whole range: {whole_calls:.2}/row, {whole_bytes:.0} bytes/row; {:.2} us/row on one thread, counting allocator on)",
        pass.seconds / pass.rows.max(1) as f64 * 1e6
    );

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // The first commit past the warm-up that is not the last one ends the short run.
    let short = pass.commits.iter().find(|(n, _)| *n >= warmup && *n < pass.rows).copied();
    let (full_rows, full) = rt.block_on(replay_run(&s, s.range.to));
    assert_eq!(full_rows, pass.rows, "the replay delivers every row the decoder made");
    let (p_rows, p_heap, how) = match short {
        Some((_, to)) => {
            let (short_rows, short_heap) = rt.block_on(replay_run(&s, Some(to)));
            let heap = Heap {
                calls: full.calls.saturating_sub(short_heap.calls),
                bytes: full.bytes.saturating_sub(short_heap.bytes),
            };
            (full_rows - short_rows, heap, format!("rows {short_rows}..{full_rows}: whole range minus a run to {to}"))
        }
        None => (full_rows, full, "whole range: one transaction, no steady-state split".to_owned()),
    };
    let (p_calls, p_bytes) = p_heap.per_row(p_rows);
    println!("replay --sink null (file, decoder, publisher, sink), {how}: {p_calls:.2} allocations/row, {p_bytes:.0} bytes/row");
    println!(
        "summary rows={} decode_allocs_per_row={calls:.2} decode_bytes_per_row={bytes:.0} \
         pipeline_allocs_per_row={p_calls:.2} pipeline_bytes_per_row={p_bytes:.0}",
        pass.rows
    );
}
