//! MySQL packet framing on a (plain or TLS) stream: a 3-byte length and a sequence number
//! before every payload, payloads of 16 MiB - 1 bytes continued in the next packet.
//!
//! Event payloads are appended straight into the caller's buffer (no copy per event), so a
//! binlog file is assembled in one allocation.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The largest payload of one packet; a payload this long continues in the next packet.
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Read buffer: large enough that one read system call moves many small events.
const READ_BUFFER: usize = 1 << 20;

/// A byte stream the protocol runs on (TCP, or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the first byte of a reply payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Ok,
    Err,
    /// EOF (or an auth switch request during the handshake).
    Eof,
    /// Anything else (auth data during the handshake).
    Other(u8),
}

impl Marker {
    fn of(byte: u8) -> Self {
        match byte {
            0x00 => Self::Ok,
            0xFF => Self::Err,
            0xFE => Self::Eof,
            b => Self::Other(b),
        }
    }
}

pub(crate) struct Wire<S> {
    io: BufReader<S>,
    seq: u8,
}

impl<S: Io> Wire<S> {
    pub(crate) fn new(io: S) -> Self {
        Self { io: BufReader::with_capacity(READ_BUFFER, io), seq: 0 }
    }

    /// The stream and the next sequence number, for the TLS upgrade (nothing is buffered at
    /// that point of the handshake).
    pub(crate) fn into_io(self) -> (S, u8) {
        (self.io.into_inner(), self.seq)
    }

    pub(crate) fn with_seq(io: S, seq: u8) -> Self {
        let mut wire = Self::new(io);
        wire.seq = seq;
        wire
    }

    /// A new command starts a new sequence.
    pub(crate) fn reset_seq(&mut self) {
        self.seq = 0;
    }

    async fn read_header(&mut self) -> io::Result<usize> {
        let mut header = [0u8; 4];
        self.io.read_exact(&mut header).await?;
        self.seq = header[3].wrapping_add(1);
        Ok(usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16)
    }

    /// Appends the next `len` bytes to `out`, copied once from the read buffer (no zeroing
    /// of `out` first: this is the copy's hot path).
    async fn read_into(&mut self, out: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let mut remaining = len;
        while remaining > 0 {
            let buf = self.io.fill_buf().await?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection mid-packet",
                ));
            }
            let n = buf.len().min(remaining);
            out.extend_from_slice(&buf[..n]);
            self.io.consume(n);
            remaining -= n;
        }
        Ok(())
    }

    /// One whole payload (continuation packets joined).
    pub(crate) async fn read_packet(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let len = self.read_header().await?;
            self.read_into(&mut out, len).await?;
            if len < MAX_PAYLOAD {
                return Ok(out);
            }
        }
    }

    /// Reads one payload: when it starts with 0x00 (an event in a binlog dump) the rest is
    /// appended to `out`; otherwise the whole payload is returned beside the marker.
    pub(crate) async fn read_event_into(&mut self, out: &mut Vec<u8>) -> io::Result<(Marker, Vec<u8>)> {
        let mut len = self.read_header().await?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty packet in the binlog stream"));
        }
        let mut first = [0u8; 1];
        self.io.read_exact(&mut first).await?;
        let marker = Marker::of(first[0]);
        if marker != Marker::Ok {
            let mut rest = vec![first[0]];
            self.read_into(&mut rest, len - 1).await?;
            while len == MAX_PAYLOAD {
                len = self.read_header().await?;
                self.read_into(&mut rest, len).await?;
            }
            return Ok((marker, rest));
        }
        self.read_into(out, len - 1).await?;
        while len == MAX_PAYLOAD {
            len = self.read_header().await?;
            self.read_into(out, len).await?;
        }
        Ok((marker, Vec::new()))
    }

    /// Writes `payload` as one or more packets and flushes.
    pub(crate) async fn write_packet(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut chunks = payload.chunks(MAX_PAYLOAD).peekable();
        if chunks.peek().is_none() {
            self.write_chunk(&[]).await?;
        }
        let mut last_len = 0;
        for chunk in chunks {
            self.write_chunk(chunk).await?;
            last_len = chunk.len();
        }
        if last_len == MAX_PAYLOAD {
            self.write_chunk(&[]).await?;
        }
        self.io.get_mut().flush().await
    }

    async fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        let len = chunk.len();
        let header = [len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq];
        self.seq = self.seq.wrapping_add(1);
        let w = self.io.get_mut();
        w.write_all(&header).await?;
        w.write_all(chunk).await
    }
}

/// `(code, message)` of an ERR payload (0xFF, code, optional `#` + SQL state, message).
pub(crate) fn parse_err(payload: &[u8]) -> (u16, String) {
    let code = match payload {
        [_, lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    };
    let rest = payload.get(3..).unwrap_or_default();
    let message = match rest {
        [b'#', tail @ ..] if tail.len() >= 5 => &tail[5..],
        other => other,
    };
    (code, String::from_utf8_lossy(message).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn payloads_over_16_mib_are_split_and_joined_again() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let payload: Vec<u8> = (0..MAX_PAYLOAD + 10).map(|i| i as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            let mut w = Wire::new(client);
            w.write_packet(&sent).await.unwrap();
            let mut event = vec![0u8];
            event.extend_from_slice(&sent);
            w.write_packet(&event).await.unwrap();
        });
        let mut r = Wire::new(server);
        assert_eq!(r.read_packet().await.unwrap(), payload);
        let mut out = b"prefix".to_vec();
        let (marker, rest) = r.read_event_into(&mut out).await.unwrap();
        assert_eq!((marker, rest.len()), (Marker::Ok, 0));
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(&out[6..], &payload[..]);
        writer.await.unwrap();
    }

    #[test]
    fn error_payloads_give_code_and_message() {
        let mut p = vec![0xFF, 0xD4, 0x04, b'#'];
        p.extend_from_slice(b"HY000Could not find first log file name");
        assert_eq!(parse_err(&p), (1236, "Could not find first log file name".into()));
        assert_eq!(parse_err(&[0xFF, 0x15, 0x04, b'x']), (1045, "x".into()));
    }
}
