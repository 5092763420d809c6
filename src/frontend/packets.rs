//! Writes query responses (result sets, OK, ERR) to the client ourselves.
//!
//! opensrv-mysql 0.7 writes column definitions with a fixed charset (utf8,
//! 33), length 1024 and 0 decimals, result terminators without status flags,
//! OK packets without warnings, and SQLSTATEs from its own table. Drivers
//! depend on all of these (mysql2 decodes charset 33 as CESU-8 and breaks
//! emoji), so for responses that carry backend results sqlguard writes the
//! packets itself, straight to the socket, byte for byte as MariaDB would.
//! opensrv still handles the handshake and command dispatch; between commands
//! its own buffer is empty, so the two never interleave.

use std::io;
use std::sync::Arc;

use mysql_async::Column;

use crate::cache::CachedRows;

/// Payload size at which a packet is split (2^24 - 1).
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Flush to the socket once this much is buffered: large writes, bounded memory.
const FLUSH_AT: usize = 64 * 1024;
/// A response buffer's first size: a typical bot answer (a few rows) fits,
/// so a point query costs a 4 KiB allocation rather than 65 KiB; a large
/// result grows it (a few times) up to `FLUSH_AT`, then reuses it per row.
const INITIAL_BUFFER: usize = 4 * 1024;

pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;

/// `SERVER_MORE_RESULTS_EXISTS` and `SERVER_SESSION_STATE_CHANGED` describe
/// data sqlguard does not forward, so they are never passed on.
const STATUS_NOT_FORWARDED: u16 = 0x0008 | 0x4000;

pub use crate::frontend::socket::SharedSocket;

/// One response, packet by packet.
pub struct ResponseWriter {
    socket: SharedSocket,
    buf: Vec<u8>,
    seq: u8,
    deprecate_eof: bool,
    /// Payload bytes of every packet so far (the result-size guard reads it).
    bytes: u64,
    /// When the session may store this response in the result cache: the
    /// result set as it is written (session/caching.rs).
    capture: Option<Box<Capture>>,
}

/// A result set being copied for the result cache, as it is written.
struct Capture {
    columns: Option<Arc<[Column]>>,
    payloads: Vec<u8>,
    row_ends: Vec<usize>,
    /// Set by the terminator: the response is complete.
    end_status: Option<(u16, u16)>,
    /// Too big, an error, an OK instead of rows: nothing is kept.
    failed: bool,
    max_bytes: usize,
    max_rows: u64,
}

impl Capture {
    fn row(&mut self, payload: &[u8]) {
        if self.failed {
            return;
        }
        if self.row_ends.len() as u64 >= self.max_rows
            || self.payloads.len() + payload.len() > self.max_bytes
        {
            self.fail();
            return;
        }
        self.payloads.extend_from_slice(payload);
        self.row_ends.push(self.payloads.len());
    }

    fn fail(&mut self) {
        self.failed = true;
        self.payloads = Vec::new();
        self.row_ends = Vec::new();
    }
}

impl ResponseWriter {
    /// `seq` is the sequence id of the first response packet; `client_flags`
    /// what the client announced (opensrv advertises CLIENT_DEPRECATE_EOF).
    pub fn new(socket: SharedSocket, seq: u8, client_flags: u32) -> Self {
        ResponseWriter {
            socket,
            buf: Vec::with_capacity(INITIAL_BUFFER),
            seq,
            deprecate_eof: client_flags & CLIENT_DEPRECATE_EOF != 0,
            bytes: 0,
            capture: None,
        }
    }

    /// Copies the result set written from now on (up to `max_rows` rows and
    /// `max_bytes` of row payloads) for [`ResponseWriter::take_capture`].
    pub fn capture(&mut self, max_rows: u64, max_bytes: usize) {
        self.capture = Some(Box::new(Capture {
            columns: None,
            payloads: Vec::new(),
            row_ends: Vec::new(),
            end_status: None,
            failed: false,
            max_bytes,
            max_rows,
        }));
    }

    /// The captured result set, if it was complete (header, rows, terminator
    /// without warnings) and within the capture's bounds.
    pub fn take_capture(&mut self) -> Option<CachedRows> {
        let capture = self.capture.take()?;
        let Capture {
            columns: Some(columns),
            payloads,
            row_ends,
            end_status: Some((0, end_status)),
            failed: false,
            ..
        } = *capture
        else {
            return None;
        };
        Some(CachedRows {
            columns,
            payloads,
            row_ends,
            end_status,
            response_bytes: self.bytes,
        })
    }

    /// Writes a cached result set as this client expects it (sequence ids,
    /// EOF or OK terminators), and flushes. `status` goes in the EOF after
    /// the column definitions, as the session's status before a statement.
    pub async fn replay(&mut self, rows: &CachedRows, status: u16) -> io::Result<()> {
        self.result_header(&rows.columns, status).await?;
        for payload in rows.rows() {
            let p = self.begin_packet();
            self.buf.extend_from_slice(payload);
            self.end_packet(p).await?;
        }
        self.result_end(0, rows.end_status).await?;
        self.flush().await
    }

    /// Copies the payload of the row packet that starts at `start`.
    fn capture_row(&mut self, start: usize) {
        if let Some(capture) = self.capture.as_deref_mut() {
            capture.row(&self.buf[start + 4..]);
        }
    }

    fn capture_failed(&mut self) {
        if let Some(capture) = self.capture.as_deref_mut() {
            capture.fail();
        }
    }

    /// Payload bytes of the response so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Starts a packet; the payload is appended to `self.buf` until `end_packet`.
    fn begin_packet(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        start
    }

    /// Fills in the header, splitting payloads of 16 MiB or more as the
    /// protocol requires.
    async fn end_packet(&mut self, start: usize) -> io::Result<()> {
        let len = self.buf.len() - start - 4;
        self.bytes += len as u64;
        if len < MAX_PAYLOAD {
            self.buf[start..start + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
            self.buf[start + 3] = self.seq;
            self.seq = self.seq.wrapping_add(1);
        } else {
            let payload = self.buf.split_off(start + 4);
            self.buf.truncate(start);
            for chunk in payload.chunks(MAX_PAYLOAD) {
                self.buf
                    .extend_from_slice(&(chunk.len() as u32).to_le_bytes()[..3]);
                self.buf.push(self.seq);
                self.seq = self.seq.wrapping_add(1);
                self.buf.extend_from_slice(chunk);
                if self.buf.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            if payload.len() % MAX_PAYLOAD == 0 {
                // A payload of an exact multiple of the maximum ends with an empty packet.
                self.buf.extend_from_slice(&[0, 0, 0, self.seq]);
                self.seq = self.seq.wrapping_add(1);
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.socket.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// The column count and the column definitions of a result set.
    pub async fn result_header(&mut self, columns: &[Column], status: u16) -> io::Result<()> {
        if let Some(capture) = self.capture.as_deref_mut() {
            if capture.columns.is_some() {
                capture.fail();
            } else {
                capture.columns = Some(columns.into());
            }
        }
        let p = self.begin_packet();
        put_lenenc_int(&mut self.buf, columns.len() as u64);
        self.end_packet(p).await?;
        for column in columns {
            let p = self.begin_packet();
            put_column_definition(&mut self.buf, column);
            self.end_packet(p).await?;
        }
        if !self.deprecate_eof {
            self.eof(0, status).await?;
        }
        Ok(())
    }

    /// One text-protocol row: each value length-encoded, NULL as 0xFB.
    pub async fn text_row<'v>(
        &mut self,
        values: impl Iterator<Item = Option<&'v [u8]>>,
    ) -> io::Result<()> {
        let p = self.begin_packet();
        for value in values {
            match value {
                Some(bytes) => put_lenenc_bytes(&mut self.buf, bytes),
                None => self.buf.push(0xFB),
            }
        }
        self.capture_row(p);
        self.end_packet(p).await
    }

    /// One binary-protocol row (prepared statements): header, NULL bitmap
    /// (offset 2), then each non-NULL value in its column's encoding.
    pub async fn binary_row(
        &mut self,
        columns: &[Column],
        row: &mysql_async::Row,
    ) -> io::Result<()> {
        let p = self.begin_packet();
        self.buf.push(0x00);
        let bitmap_at = self.buf.len();
        self.buf.resize(bitmap_at + (columns.len() + 7 + 2) / 8, 0);
        for (i, column) in columns.iter().enumerate() {
            match row.as_ref(i) {
                None | Some(mysql_async::Value::NULL) => {
                    self.buf[bitmap_at + (i + 2) / 8] |= 1 << ((i + 2) % 8);
                }
                Some(value) => super::binary::put_value(
                    &mut self.buf,
                    value,
                    column.column_type(),
                    column.flags(),
                ),
            }
        }
        self.capture_row(p);
        self.end_packet(p).await
    }

    /// Ends the rows of a result set.
    pub async fn result_end(&mut self, warnings: u16, status: u16) -> io::Result<()> {
        if let Some(capture) = self.capture.as_deref_mut() {
            capture.end_status = Some((warnings, status));
        }
        if self.deprecate_eof {
            // An OK packet with the EOF header (CLIENT_DEPRECATE_EOF).
            let p = self.begin_packet();
            self.buf.push(0xFE);
            put_lenenc_int(&mut self.buf, 0);
            put_lenenc_int(&mut self.buf, 0);
            self.buf
                .extend_from_slice(&forwarded_status(status).to_le_bytes());
            self.buf.extend_from_slice(&warnings.to_le_bytes());
            self.end_packet(p).await
        } else {
            self.eof(warnings, status).await
        }
    }

    async fn eof(&mut self, warnings: u16, status: u16) -> io::Result<()> {
        let p = self.begin_packet();
        self.buf.push(0xFE);
        self.buf.extend_from_slice(&warnings.to_le_bytes());
        self.buf
            .extend_from_slice(&forwarded_status(status).to_le_bytes());
        self.end_packet(p).await
    }

    /// OK for a statement without rows. The info string is length-encoded,
    /// as MariaDB writes it.
    pub async fn ok(
        &mut self,
        affected_rows: u64,
        last_insert_id: u64,
        status: u16,
        warnings: u16,
        info: &[u8],
    ) -> io::Result<()> {
        self.capture_failed();
        let p = self.begin_packet();
        self.buf.push(0x00);
        put_lenenc_int(&mut self.buf, affected_rows);
        put_lenenc_int(&mut self.buf, last_insert_id);
        self.buf
            .extend_from_slice(&forwarded_status(status).to_le_bytes());
        self.buf.extend_from_slice(&warnings.to_le_bytes());
        if !info.is_empty() {
            put_lenenc_bytes(&mut self.buf, info);
        }
        self.end_packet(p).await
    }

    /// ERR with the code and SQLSTATE given (the backend's own, when forwarding).
    pub async fn err(&mut self, code: u16, sqlstate: &str, message: &str) -> io::Result<()> {
        self.capture_failed();
        let p = self.begin_packet();
        self.buf.push(0xFF);
        self.buf.extend_from_slice(&code.to_le_bytes());
        self.buf.push(b'#');
        let state = sqlstate.as_bytes();
        if state.len() == 5 {
            self.buf.extend_from_slice(state);
        } else {
            self.buf.extend_from_slice(b"HY000");
        }
        self.buf.extend_from_slice(message.as_bytes());
        self.end_packet(p).await
    }
}

impl ResponseWriter {
    /// Ends the response with sqlguard's own error (code and SQLSTATE of
    /// its `ErrorKind`), and flushes it.
    pub async fn client_error(&mut self, e: &crate::error::ClientError) -> io::Result<()> {
        let state = String::from_utf8_lossy(e.kind.sqlstate()).into_owned();
        self.err(e.kind as u16, &state, &e.message).await?;
        self.flush().await
    }
}

fn forwarded_status(status: u16) -> u16 {
    status & !STATUS_NOT_FORWARDED
}

/// Protocol::ColumnDefinition41, with every field as MariaDB sent it.
fn put_column_definition(buf: &mut Vec<u8>, column: &Column) {
    put_lenenc_bytes(buf, b"def");
    put_lenenc_bytes(buf, column.schema_ref());
    put_lenenc_bytes(buf, column.table_ref());
    put_lenenc_bytes(buf, column.org_table_ref());
    put_lenenc_bytes(buf, column.name_ref());
    put_lenenc_bytes(buf, column.org_name_ref());
    put_lenenc_int(buf, 0x0C);
    buf.extend_from_slice(&column.character_set().to_le_bytes());
    buf.extend_from_slice(&column.column_length().to_le_bytes());
    buf.push(column.column_type() as u8);
    buf.extend_from_slice(&column.flags().bits().to_le_bytes());
    buf.push(column.decimals());
    buf.extend_from_slice(&[0, 0]);
}

pub fn put_lenenc_int(buf: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => buf.push(n as u8),
        251..=0xFFFF => {
            buf.push(0xFC);
            buf.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            buf.push(0xFD);
            buf.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            buf.push(0xFE);
            buf.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_lenenc_int(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_boundaries() {
        let enc = |n| {
            let mut b = Vec::new();
            put_lenenc_int(&mut b, n);
            b
        };
        assert_eq!(enc(250), vec![250]);
        assert_eq!(enc(251), vec![0xFC, 251, 0]);
        assert_eq!(enc(0xFFFF), vec![0xFC, 0xFF, 0xFF]);
        assert_eq!(enc(0x1_0000), vec![0xFD, 0, 0, 1]);
        assert_eq!(enc(0x100_0000), vec![0xFE, 0, 0, 0, 1, 0, 0, 0, 0]);
    }
}
