//! Assembles one binlog file from the events of a raw dump, byte for byte as the server
//! holds it (what `mysqlbinlog --read-from-remote-server --raw` writes): the 4-byte magic,
//! then every event of the file, and nothing else.
//!
//! - Events the server makes up for the replica (the ROTATE and FORMAT_DESCRIPTION it sends
//!   first, heartbeats, MariaDB's fake GTID_LIST) carry `log_pos` 0, the artificial flag or
//!   the heartbeat type; they are dropped.
//! - Every kept event must end where its header's `log_pos` says, at the copy's length: any
//!   gap, duplicate or reordering is an error naming the offset, never a silent hole.
//! - With CRC32 binlog checksums, every event's checksum is verified.
//! - The copy is complete when it reaches the size `SHOW BINARY LOGS` gave for the (rotated,
//!   so final) file; a stream that moves on or ends before that is an error.

use crc32fast::Hasher;

pub(crate) const MAGIC: &[u8; 4] = b"\xfebin";
const HEADER_LEN: usize = 19;
const FORMAT_DESCRIPTION_EVENT: u8 = 15;
const HEARTBEAT_LOG_EVENT: u8 = 27;
const HEARTBEAT_LOG_EVENT_V2: u8 = 41;
const LOG_EVENT_BINLOG_IN_USE_F: u16 = 0x1;
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
const CHECKSUM_ALG_CRC32: u8 = 1;

/// The common header of a binlog event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub timestamp: u32,
    pub type_code: u8,
    pub size: u32,
    pub log_pos: u32,
    pub flags: u16,
}

impl Header {
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        (bytes.len() >= HEADER_LEN).then(|| Self {
            timestamp: u32_at(0),
            type_code: bytes[4],
            size: u32_at(9),
            log_pos: u32_at(13),
            flags: u16::from_le_bytes([bytes[17], bytes[18]]),
        })
    }

    /// Made up by the server for this connection, not part of the file.
    pub(crate) fn is_artificial(&self) -> bool {
        self.log_pos == 0
            || self.flags & LOG_EVENT_ARTIFICIAL_F != 0
            || matches!(self.type_code, HEARTBEAT_LOG_EVENT | HEARTBEAT_LOG_EVENT_V2)
    }

    pub(crate) fn is_format_description(&self) -> bool {
        self.type_code == FORMAT_DESCRIPTION_EVENT
    }
}

/// After one event: go on, or the file is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    More,
    Complete,
}

/// One binlog file being assembled.
pub(crate) struct RawFile {
    name: String,
    expected: u64,
    bytes: Vec<u8>,
    crc32: bool,
    events: u64,
}

/// A whole binlog file.
#[derive(Debug)]
pub(crate) struct CompleteFile {
    pub bytes: Vec<u8>,
    pub events: u64,
}

impl RawFile {
    /// A file `name` of `expected` bytes (the whole file is allocated at once).
    pub(crate) fn new(name: &str, expected: u64) -> Self {
        let mut bytes = Vec::with_capacity(expected.max(4) as usize);
        bytes.extend_from_slice(MAGIC);
        Self { name: name.to_owned(), expected, bytes, crc32: false, events: 0 }
    }

    /// The buffer the next event is appended to (see [`Self::accept`]).
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    fn err(&self, offset: usize, what: String) -> String {
        format!("{} at offset {offset}: {what}", self.name)
    }

    /// Checks the event appended at `start` and keeps it, or drops it when it is the
    /// server's own (see the module note).
    pub(crate) fn accept(&mut self, start: usize) -> Result<Step, String> {
        let end = self.bytes.len();
        let event = &self.bytes[start..];
        let h = Header::parse(event).ok_or_else(|| self.err(start, format!("an event of {} bytes", event.len())))?;
        if h.size as usize != event.len() {
            return Err(self.err(start, format!("the event header says {} bytes, {} arrived", h.size, event.len())));
        }
        if h.is_artificial() {
            self.bytes.truncate(start);
            return Ok(Step::More);
        }
        if u64::from(h.log_pos) != end as u64 & 0xFFFF_FFFF {
            return Err(self.err(
                start,
                format!(
                    "the event (type {}) ends at {} by its header but at {end} in the copy: events are missing or repeated",
                    h.type_code, h.log_pos
                ),
            ));
        }
        if h.is_format_description() {
            // ... checksum algorithm (1 byte), checksum (4 bytes).
            self.crc32 = event.len() >= HEADER_LEN + 5 && event[event.len() - 5] == CHECKSUM_ALG_CRC32;
            self.check_crc(start, h, true)?;
        } else if self.crc32 {
            self.check_crc(start, h, false)?;
        }
        self.events += 1;
        match (end as u64).cmp(&self.expected) {
            std::cmp::Ordering::Less => Ok(Step::More),
            std::cmp::Ordering::Equal => Ok(Step::Complete),
            std::cmp::Ordering::Greater => Err(self.err(
                start,
                format!("the copy is {end} bytes, longer than the {} bytes SHOW BINARY LOGS gave", self.expected),
            )),
        }
    }

    /// The CRC32 over the event without its last 4 bytes; a FORMAT_DESCRIPTION event's is
    /// computed with the in-use flag cleared (the server clears it when it closes the file).
    fn check_crc(&self, start: usize, h: Header, fde: bool) -> Result<(), String> {
        let event = &self.bytes[start..];
        let (body, stored) = event.split_at(event.len() - 4);
        let mut hasher = Hasher::new();
        if fde && h.flags & LOG_EVENT_BINLOG_IN_USE_F != 0 {
            let mut head = body[..HEADER_LEN].to_vec();
            head[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
            hasher.update(&head);
            hasher.update(&body[HEADER_LEN..]);
        } else {
            hasher.update(body);
        }
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if hasher.finalize() != stored {
            return Err(self.err(start, format!("CRC32 mismatch in an event of type {}", h.type_code)));
        }
        Ok(())
    }

    /// The whole file; an error when the stream ended before the file's size.
    pub(crate) fn finish(self) -> Result<CompleteFile, String> {
        if self.bytes.len() as u64 != self.expected {
            return Err(format!(
                "{}: the server sent {} of its {} bytes before moving on; the copy is incomplete",
                self.name,
                self.bytes.len(),
                self.expected
            ));
        }
        Ok(CompleteFile { bytes: self.bytes, events: self.events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROTATE_EVENT: u8 = 4;

    /// An event of `type_code` ending at `log_pos`, with `body` and a CRC32.
    fn event(type_code: u8, log_pos: u32, flags: u16, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + 4) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        e.push(type_code);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&log_pos.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        let crc = crc32fast::hash(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        e
    }

    fn fde(log_pos: u32) -> Vec<u8> {
        let mut body = vec![0u8; 20];
        body.push(CHECKSUM_ALG_CRC32);
        event(FORMAT_DESCRIPTION_EVENT, log_pos, 0, &body)
    }

    fn push(file: &mut RawFile, e: &[u8]) -> Result<Step, String> {
        let start = file.len();
        file.buffer().extend_from_slice(e);
        file.accept(start)
    }

    #[test]
    fn server_made_events_are_dropped_and_the_file_is_the_real_events() {
        let fde = fde(4 + 44);
        let query = event(2, 48 + 30, 0, &[7u8; 7]);
        let rotate = event(ROTATE_EVENT, 78 + 40, 0, &[1u8; 17]);
        let mut file = RawFile::new("mysql-bin.000001", 118);
        assert_eq!(
            push(&mut file, &event(ROTATE_EVENT, 0, LOG_EVENT_ARTIFICIAL_F, b"mysql-bin.000001")),
            Ok(Step::More)
        );
        assert_eq!(push(&mut file, &fde), Ok(Step::More));
        assert_eq!(push(&mut file, &event(HEARTBEAT_LOG_EVENT, 48, 0, b"x")), Ok(Step::More));
        assert_eq!(push(&mut file, &query), Ok(Step::More));
        assert_eq!(push(&mut file, &rotate), Ok(Step::Complete));
        let done = file.finish().unwrap();
        assert_eq!(done.bytes, [&MAGIC[..], &fde, &query, &rotate].concat());
        assert_eq!(done.events, 3);
    }

    #[test]
    fn a_gap_a_bad_checksum_or_a_short_stream_is_an_error() {
        let mut file = RawFile::new("mysql-bin.000001", 200);
        push(&mut file, &fde(48)).unwrap();
        let err = push(&mut file, &event(2, 48 + 30 + 30, 0, &[7u8; 7])).unwrap_err();
        assert!(err.contains("offset 48") && err.contains("missing or repeated"), "{err}");

        let mut file = RawFile::new("mysql-bin.000001", 200);
        push(&mut file, &fde(48)).unwrap();
        let mut bad = event(2, 78, 0, &[7u8; 7]);
        bad[20] ^= 1;
        assert!(push(&mut file, &bad).unwrap_err().contains("CRC32 mismatch"));

        let mut file = RawFile::new("mysql-bin.000001", 200);
        push(&mut file, &fde(48)).unwrap();
        assert!(file.finish().unwrap_err().contains("48 of its 200 bytes"));
    }

    #[test]
    fn a_format_description_written_while_in_use_checks_against_the_closed_flag() {
        let mut e = fde(48);
        e[17] |= LOG_EVENT_BINLOG_IN_USE_F as u8; // the CRC was computed without it
        let mut file = RawFile::new("mysql-bin.000001", 48);
        assert_eq!(push(&mut file, &e), Ok(Step::Complete));
    }
}
