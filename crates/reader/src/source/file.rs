//! Binlog files on disk (copied with `mysqlbinlog --read-from-remote-server --raw`, or
//! archived): the way to replay a range the server has already purged.
//!
//! Events go through the same [`Decoder`] as the live stream, so records and event ids
//! are identical to what the live reader emitted for the same range. A truncated or
//! corrupt file is an error naming the file and byte offset, never a silent early end.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use mysql_common::binlog::consts::{BinlogVersion, EventType};
use mysql_common::binlog::events::{Event, TransactionPayloadEvent};
use mysql_common::binlog::EventStreamReader;
use sameday_core::BinlogPosition;

use crate::decoder::{event_name, Decoder, Output};
use crate::error::ReaderError;

const MAGIC: &[u8; 4] = b"\xfebin";

/// Which part of the given files to replay.
#[derive(Debug, Clone, Default)]
pub struct FileRange {
    /// Skip events that start before this position of the first file.
    pub from: Option<u64>,
    /// Stop at the first event that starts at or after this position of the last file.
    pub to: Option<u64>,
}

/// Counts the bytes consumed, so every event's offset is known.
struct Counting<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.offset += amt as u64;
        self.inner.consume(amt);
    }
}

fn file_err(path: &Path, message: impl Into<String>) -> ReaderError {
    ReaderError::File { path: path.display().to_string(), message: message.into() }
}

/// Replays `paths` in order through `decoder`, handing every output to `emit`.
/// `emit` returns `false` to stop early.
pub fn replay_files(
    paths: &[PathBuf],
    range: &FileRange,
    decoder: &mut Decoder,
    mut emit: impl FnMut(Output) -> Result<bool, ReaderError>,
) -> Result<(), ReaderError> {
    replay_file_events(paths, range, decoder, |out| {
        for o in out.drain(..) {
            if !emit(o)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// [`replay_files`], handing the outputs of each event at once: what `emit` leaves in the
/// vector is written and goes back to the decoder for reuse ([`Decoder::recycle`]).
pub fn replay_file_events(
    paths: &[PathBuf],
    range: &FileRange,
    decoder: &mut Decoder,
    mut emit: impl FnMut(&mut Vec<Output>) -> Result<bool, ReaderError>,
) -> Result<(), ReaderError> {
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let from = if i == 0 { range.from.unwrap_or(0) } else { 0 };
        let to = if i + 1 == paths.len() { range.to } else { None };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| file_err(path, "not a file name"))?;
        decoder.set_file(name);
        let file = File::open(path).map_err(|e| file_err(path, e.to_string()))?;
        let mut input = Counting { inner: BufReader::with_capacity(1 << 20, file), offset: 0 };
        let mut magic = [0u8; 4];
        input.read_exact(&mut magic).map_err(|_| file_err(path, "shorter than the 4-byte binlog header"))?;
        if &magic != MAGIC {
            return Err(file_err(path, "not a binlog file (missing the \\xfebin magic header)"));
        }
        let mut esr = EventStreamReader::new(BinlogVersion::Version4);
        loop {
            let start = input.offset;
            if let Some(to) = to {
                if start >= to {
                    break;
                }
            }
            let event = match esr.read(&mut input) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(file_err(
                        path,
                        format!("truncated event at offset {start}: the file ends inside it (copy incomplete?)"),
                    ))
                }
                Err(e) => return Err(file_err(path, format!("unreadable event at offset {start}: {e}"))),
            };
            let skipping = start < from;
            if skipping && !is_context_event(&event) {
                continue;
            }
            decoder.handle(&event, &mut out)?;
            if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
                let at = BinlogPosition::new(decoder.file().to_owned(), start);
                if let Some(inner) = decompress(&event, &at)? {
                    let inner = inner_event(&mut esr, &inner, &at)?;
                    for ev in inner {
                        decoder.handle(&ev, &mut out)?;
                    }
                }
            }
            if skipping {
                out.clear();
                continue;
            }
            if out.is_empty() {
                continue;
            }
            let open = emit(&mut out)?;
            decoder.recycle(&mut out);
            if !open {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Events read before `--from` only to set up context (never emitted).
fn is_context_event(event: &Event) -> bool {
    matches!(
        EventType::try_from(event.header().event_type_raw()),
        Ok(EventType::FORMAT_DESCRIPTION_EVENT | EventType::ROTATE_EVENT | EventType::PREVIOUS_GTIDS_EVENT)
    ) || event.header().event_type_raw() == 163
}

fn decompress(event: &Event, at: &BinlogPosition) -> Result<Option<Vec<u8>>, ReaderError> {
    let err = |reason: String| {
        ReaderError::Decode(crate::error::DecodeError::Event {
            event: event_name(event.header().event_type_raw()),
            position: at.clone(),
            reason,
        })
    };
    let tpe = event.read_event::<TransactionPayloadEvent<'_>>().map_err(|e| err(e.to_string()))?;
    let mut reader = tpe.decompressed().map_err(|e| err(format!("cannot decompress: {e}")))?;
    let mut buf = Vec::with_capacity(tpe.uncompressed_size() as usize);
    reader.read_to_end(&mut buf).map_err(|e| err(format!("cannot decompress: {e}")))?;
    Ok(Some(buf))
}

fn inner_event(esr: &mut EventStreamReader, payload: &[u8], at: &BinlogPosition) -> Result<Vec<Event>, ReaderError> {
    let mut cursor = Cursor::new(payload);
    let mut events = Vec::new();
    loop {
        match esr.read_decompressed(&mut cursor) {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => break,
            Err(e) => {
                return Err(ReaderError::Decode(crate::error::DecodeError::Event {
                    event: "TRANSACTION_PAYLOAD".into(),
                    position: at.clone(),
                    reason: format!("inner event {}: {e}", events.len()),
                }))
            }
        }
    }
    Ok(events)
}
