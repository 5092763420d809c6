//! Wrappers around a client's byte streams that do what opensrv-mysql cannot
//! (ARCHITECTURE.md, "Quirks"): handshake and idle timeouts, graceful
//! shutdown between commands, a cap on packet size, spotting commands opensrv
//! answers by itself, replacing its login-failure packet with error 1045, and
//! the TLS upgrade after the client's SSLRequest (opensrv's own would put TLS
//! above these wrappers, which would then see ciphertext).
//! They follow the packet framing only; they never parse SQL.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// One MySQL command may span several 16 MiB packets; a statement is capped at
/// 64 KiB by the guard, so anything near this size is an attack on memory.
/// The default of `limits.max_packet_bytes` (ConnSignals::set_max_command_bytes).
pub const MAX_COMMAND_BYTES: usize = 16 * 1024 * 1024;

const COM_CHANGE_USER: u8 = 0x11;
const COM_RESET_CONNECTION: u8 = 0x1f;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_RESET: u8 = 0x1a;
/// Capability flag of the greeting (server offers TLS) and of the client's
/// first packet (an SSLRequest: switch to TLS now).
const CLIENT_SSL: u32 = 0x0800;
/// A packet of this payload length continues in the next packet.
const MAX_PACKET_PAYLOAD: usize = 0xFF_FFFF;

/// opensrv parses prepared-statement parameters with `unwrap`s and
/// `panic!`s on client input, and keeps long data to itself; sqlguard reads
/// these commands from the byte stream instead and never asks opensrv.
#[derive(Debug, Default)]
pub struct StatementInput {
    /// The payload of the COM_STMT_EXECUTE being handled (command byte included).
    pub execute: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA chunks by (statement, parameter).
    pub long_data: std::collections::HashMap<(u32, u16), Vec<u8>>,
    long_data_bytes: usize,
}

/// State shared by one connection's reader, writer and shim.
#[derive(Debug)]
pub struct ConnSignals {
    start: Instant,
    authenticated: AtomicBool,
    /// Set by the shim when a login fails: the ERR payload to send instead of opensrv's.
    auth_failure: Mutex<Option<Vec<u8>>>,
    auth_failed: AtomicBool,
    /// The client sent COM_RESET_CONNECTION, which opensrv answers with OK
    /// without telling us; the session resets its backend before the next command.
    reset_requested: AtomicBool,
    /// Milliseconds since `start` at which the last command finished.
    last_command_done_ms: AtomicU64,
    /// Capability flags the client sent in its handshake response.
    client_flags: AtomicU32,
    /// Sequence id of the last packet of the current command; the response
    /// starts at the next one.
    command_seq: AtomicU32,
    statement_input: Mutex<StatementInput>,
    /// `limits.max_packet_bytes`: the largest command (and long data) read.
    max_command_bytes: AtomicUsize,
    /// The greeting advertises CLIENT_SSL (`listen.tls_cert` is set).
    tls_offered: AtomicBool,
    /// The connection was upgraded to TLS before the handshake response.
    tls_active: AtomicBool,
    /// A command went over `max_command_bytes`; the listener says so (1153)
    /// before it closes the connection.
    packet_too_large: AtomicBool,
}

impl Default for ConnSignals {
    fn default() -> Self {
        ConnSignals {
            start: Instant::now(),
            authenticated: AtomicBool::new(false),
            auth_failure: Mutex::new(None),
            auth_failed: AtomicBool::new(false),
            reset_requested: AtomicBool::new(false),
            last_command_done_ms: AtomicU64::new(0),
            client_flags: AtomicU32::new(0),
            command_seq: AtomicU32::new(0),
            statement_input: Mutex::new(StatementInput::default()),
            max_command_bytes: AtomicUsize::new(MAX_COMMAND_BYTES),
            tls_offered: AtomicBool::new(false),
            tls_active: AtomicBool::new(false),
            packet_too_large: AtomicBool::new(false),
        }
    }
}

impl StatementInput {
    /// Moves the input out (the shim must not hold the lock across an await;
    /// the reader is not polled while a command runs, so nothing is lost).
    pub fn take(&mut self) -> StatementInput {
        std::mem::take(self)
    }

    /// Puts back what an execute did not consume.
    pub fn put_back(&mut self, mut other: StatementInput) {
        for (key, data) in other.long_data.drain() {
            self.long_data_bytes += data.len();
            self.long_data
                .entry(key)
                .or_default()
                .extend_from_slice(&data);
        }
    }

    /// Long data is consumed by an execute, and dropped by COM_STMT_RESET.
    pub fn clear_long_data(&mut self, stmt: u32) {
        let before: usize = self.long_data.values().map(Vec::len).sum();
        self.long_data.retain(|(s, _), _| *s != stmt);
        let after: usize = self.long_data.values().map(Vec::len).sum();
        self.long_data_bytes = self.long_data_bytes.saturating_sub(before - after);
    }
}

impl ConnSignals {
    pub fn set_authenticated(&self) {
        self.authenticated.store(true, Ordering::Release);
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// Whether the client's connection is encrypted (TLS started after its
    /// SSLRequest); what `require_tls` checks at login.
    pub fn is_tls(&self) -> bool {
        self.tls_active.load(Ordering::Acquire)
    }

    fn tls_offered(&self) -> bool {
        self.tls_offered.load(Ordering::Acquire)
    }

    /// The next packet opensrv writes (its login-failure ERR) is replaced by `payload`.
    pub fn replace_auth_failure(&self, payload: Vec<u8>) {
        if let Ok(mut slot) = self.auth_failure.lock() {
            *slot = Some(payload);
        }
        self.auth_failed.store(true, Ordering::Release);
    }

    fn take_auth_failure(&self) -> Option<Vec<u8>> {
        if !self.auth_failed.load(Ordering::Acquire) {
            return None;
        }
        self.auth_failure
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
    }

    /// The client's capability flags, as it sent them in the handshake.
    pub fn client_flags(&self) -> u32 {
        self.client_flags.load(Ordering::Relaxed)
    }

    /// The sequence id the response to the current command starts with.
    pub fn response_seq(&self) -> u8 {
        (self.command_seq.load(Ordering::Relaxed) as u8).wrapping_add(1)
    }

    fn set_client_flags(&self, flags: u32) {
        self.client_flags.store(flags, Ordering::Relaxed);
    }

    /// Whether the client announced CLIENT_SESSION_TRACK. opensrv writes the
    /// OK packet's info as a length-encoded string only then, and raw
    /// otherwise, where MariaDB always length-encodes it.
    pub fn client_tracks_session(&self) -> bool {
        const CLIENT_SESSION_TRACK: u32 = 1 << 23;
        self.client_flags.load(Ordering::Relaxed) & CLIENT_SESSION_TRACK != 0
    }

    /// The current COM_STMT_EXECUTE payload and the long data sent for it.
    pub fn statement_input(&self) -> std::sync::MutexGuard<'_, StatementInput> {
        match self.statement_input.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn deliver(&self, command: &[u8]) -> io::Result<()> {
        let mut input = self.statement_input();
        match command.first() {
            Some(&COM_STMT_EXECUTE) => input.execute = Some(command.to_vec()),
            Some(&COM_STMT_SEND_LONG_DATA) if command.len() >= 7 => {
                let stmt = u32::from_le_bytes([command[1], command[2], command[3], command[4]]);
                let param = u16::from_le_bytes([command[5], command[6]]);
                let data = &command[7..];
                input.long_data_bytes += data.len();
                let max = self.max_command_bytes();
                if input.long_data_bytes > max {
                    self.packet_too_large.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("more than {max} bytes of long data"),
                    ));
                }
                input
                    .long_data
                    .entry((stmt, param))
                    .or_default()
                    .extend_from_slice(data);
            }
            Some(&COM_STMT_RESET) if command.len() >= 5 => {
                let stmt = u32::from_le_bytes([command[1], command[2], command[3], command[4]]);
                input.clear_long_data(stmt);
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets `limits.max_packet_bytes` for this connection (before it starts).
    pub fn set_max_command_bytes(&self, max: usize) {
        self.max_command_bytes.store(max, Ordering::Relaxed);
    }

    /// The largest command read, in bytes.
    pub fn max_command_bytes(&self) -> usize {
        self.max_command_bytes.load(Ordering::Relaxed)
    }

    /// True once a command went over [`Self::max_command_bytes`].
    pub fn packet_too_large(&self) -> bool {
        self.packet_too_large.load(Ordering::Relaxed)
    }

    pub fn take_reset_request(&self) -> bool {
        self.reset_requested.swap(false, Ordering::AcqRel)
    }

    /// Called by the session after each command, so time spent running a
    /// statement does not count as the client being idle.
    pub fn command_done(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_command_done_ms.store(ms, Ordering::Relaxed);
    }

    fn last_command_done(&self) -> Instant {
        self.start + Duration::from_millis(self.last_command_done_ms.load(Ordering::Relaxed))
    }
}

/// Where the reader is in the packet stream.
#[derive(Debug, Default)]
struct Framing {
    header: [u8; 4],
    header_len: usize,
    payload_left: usize,
    /// The next payload byte is the first of a packet with sequence id `seq`.
    at_payload_start: bool,
    seq: u8,
    packet_len: usize,
    command_bytes: usize,
    /// The first four payload bytes of the handshake response (the client's
    /// capability flags), gathered across reads.
    client_flags: [u8; 4],
    client_flags_len: usize,
    /// The payload of a statement command being read (see [`StatementInput`]).
    capture: Option<Vec<u8>>,
    /// The connection switched to TLS; the handshake response then follows
    /// the SSLRequest with sequence id 2.
    upgraded: bool,
    /// The packet just read was an SSLRequest: TLS must start before the
    /// next byte is read.
    ssl_requested: bool,
}

impl Framing {
    /// True between packets: nothing of a packet has been read yet.
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0 && !self.at_payload_start
    }

    /// How many of `bytes` (the next bytes of the stream) belong to the
    /// packet being read, up to and including its last byte.
    fn until_packet_end(&self, bytes: &[u8]) -> usize {
        if self.payload_left > 0 || self.at_payload_start {
            return self.payload_left.min(bytes.len());
        }
        let need = 4 - self.header_len;
        if bytes.len() < need {
            return bytes.len();
        }
        let mut header = self.header;
        header[self.header_len..].copy_from_slice(&bytes[..need]);
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        (need + len).min(bytes.len())
    }

    /// Follows the framing over `bytes`; returns an error to close the connection.
    fn observe(&mut self, mut bytes: &[u8], signals: &ConnSignals) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.payload_left == 0 && !self.at_payload_start {
                let take = (4 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len == 4 {
                    let len =
                        u32::from_le_bytes([self.header[0], self.header[1], self.header[2], 0])
                            as usize;
                    self.seq = self.header[3];
                    signals
                        .command_seq
                        .store(u32::from(self.seq), Ordering::Relaxed);
                    self.header_len = 0;
                    if self.seq == 0 {
                        self.command_bytes = 0;
                    }
                    self.command_bytes += len;
                    let max = signals.max_command_bytes();
                    if self.command_bytes > max {
                        signals.packet_too_large.store(true, Ordering::Relaxed);
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "client command larger than {max} bytes (limits.max_packet_bytes)"
                            ),
                        ));
                    }
                    self.payload_left = len;
                    self.packet_len = len;
                    self.at_payload_start = len > 0;
                }
                continue;
            }
            if self.at_payload_start {
                self.at_payload_start = false;
                if self.seq == 0 && signals.is_authenticated() {
                    inspect_command(bytes[0], signals)?;
                    self.capture = matches!(
                        bytes[0],
                        COM_STMT_EXECUTE | COM_STMT_SEND_LONG_DATA | COM_STMT_RESET
                    )
                    .then(Vec::new);
                }
            }
            let take = self.payload_left.min(bytes.len());
            if let Some(capture) = self.capture.as_mut() {
                capture.extend_from_slice(&bytes[..take]);
            }
            // Sequence 1 before login (2 after an SSLRequest) is the
            // handshake response; it starts with the client's capability flags.
            let pos = self.packet_len - self.payload_left;
            let handshake_seq = if self.upgraded { 2 } else { 1 };
            if self.seq == handshake_seq
                && self.client_flags_len < 4
                && pos < 4
                && !signals.is_authenticated()
            {
                let n = (4 - pos).min(take);
                self.client_flags[pos..pos + n].copy_from_slice(&bytes[..n]);
                self.client_flags_len = pos + n;
                if self.client_flags_len == 4 {
                    signals.set_client_flags(u32::from_le_bytes(self.client_flags));
                }
            }
            self.payload_left -= take;
            bytes = &bytes[take..];
            // A packet shorter than the maximum ends the command.
            if self.payload_left == 0 && self.packet_len < MAX_PACKET_PAYLOAD {
                if let Some(command) = self.capture.take() {
                    signals.deliver(&command)?;
                }
                if self.seq == 1
                    && !self.upgraded
                    && !signals.is_authenticated()
                    && self.client_flags_len == 4
                    && u32::from_le_bytes(self.client_flags) & CLIENT_SSL != 0
                {
                    self.ssl_requested = true;
                    if !bytes.is_empty() {
                        // Bytes after an SSLRequest belong to the TLS handshake.
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "data after the SSLRequest in the same read",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn inspect_command(command: u8, signals: &ConnSignals) -> io::Result<()> {
    match command {
        // opensrv would answer OK and the client would believe it is now
        // another user; the proxy user is fixed for the connection's life.
        COM_CHANGE_USER => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "COM_CHANGE_USER is not supported; reconnect as the other user",
        )),
        COM_RESET_CONNECTION => {
            signals.reset_requested.store(true, Ordering::Release);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Starts TLS on the connection; gets the bytes already read after the
/// SSLRequest (the start of the client's TLS handshake).
pub type StartTls =
    Box<dyn FnOnce(Vec<u8>) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> + Send>;

enum Tls {
    NotOffered,
    Offered(StartTls),
    Handshaking(Pin<Box<dyn Future<Output = io::Result<()>> + Send>>),
    Started,
}

/// The client's read half, with timeouts, shutdown and framing checks.
pub struct GuardedReader<R> {
    inner: R,
    signals: std::sync::Arc<ConnSignals>,
    framing: Framing,
    handshake_deadline: Instant,
    idle_timeout: Duration,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Bytes read from the socket, `ahead[ahead_pos..ahead_len]` not yet
    /// handed to opensrv. Zeroed once and then reused: zeroing 16 KiB before
    /// every read was 2% of the proxy's CPU.
    ahead: Vec<u8>,
    ahead_pos: usize,
    ahead_len: usize,
    tls: Tls,
}

/// How much is read from the socket at once.
const READ_AHEAD_BYTES: usize = 16 * 1024;

impl<R> GuardedReader<R> {
    pub fn new(
        inner: R,
        signals: std::sync::Arc<ConnSignals>,
        handshake_timeout: Duration,
        idle_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let now = Instant::now();
        let handshake_deadline = now + handshake_timeout;
        GuardedReader {
            inner,
            signals,
            framing: Framing::default(),
            handshake_deadline,
            idle_timeout,
            last_read: now,
            timer: Box::pin(tokio::time::sleep_until(handshake_deadline)),
            shutdown: Box::pin(shutdown.cancelled_owned()),
            ahead: Vec::new(),
            ahead_pos: 0,
            ahead_len: 0,
            tls: Tls::NotOffered,
        }
    }

    /// Offers TLS: the greeting advertises CLIENT_SSL, and after the
    /// client's SSLRequest `start` runs the TLS handshake on the socket this
    /// reader (and the writers) read through.
    pub fn with_tls(mut self, start: StartTls) -> Self {
        self.signals.tls_offered.store(true, Ordering::Release);
        self.tls = Tls::Offered(start);
        self
    }

    fn deadline(&self) -> Instant {
        if self.signals.is_authenticated() {
            self.last_read.max(self.signals.last_command_done()) + self.idle_timeout
        } else {
            self.handshake_deadline
        }
    }
}

impl<R: AsyncRead + Unpin> GuardedReader<R> {
    /// Fills the read-ahead buffer from the socket, with the timeouts.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.ahead_pos = 0;
        self.ahead_len = 0;
        if self.ahead.len() < READ_AHEAD_BYTES {
            self.ahead.resize(READ_AHEAD_BYTES, 0);
        }
        let mut buf = ReadBuf::new(&mut self.ahead);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                self.ahead_len = n;
                if n > 0 {
                    self.last_read = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_timeout(cx),
        }
    }

    /// Pending until the handshake or idle deadline, then a timeout error.
    fn poll_timeout<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = self.deadline();
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            let what = if self.signals.is_authenticated() {
                "idle timeout"
            } else {
                "handshake timeout"
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        Poll::Pending
    }

    /// After an SSLRequest: runs the TLS handshake (within the handshake
    /// timeout) before anything else is read. Ready(Ok) once TLS is on or
    /// was never asked for.
    fn poll_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.framing.ssl_requested) {
            match std::mem::replace(&mut self.tls, Tls::Started) {
                Tls::Offered(start) => {
                    let received = self.ahead[self.ahead_pos..self.ahead_len].to_vec();
                    self.ahead_pos = 0;
                    self.ahead_len = 0;
                    self.tls = Tls::Handshaking(start(received));
                }
                Tls::NotOffered => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "client asked for TLS, which is not configured (listen.tls_cert)",
                    )));
                }
                Tls::Handshaking(_) | Tls::Started => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a second SSLRequest",
                    )));
                }
            }
        }
        let Tls::Handshaking(handshake) = &mut self.tls else {
            return Poll::Ready(Ok(()));
        };
        match handshake.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => {
                self.tls = Tls::Started;
                self.framing.upgraded = true;
                self.framing.client_flags_len = 0;
                self.signals.tls_active.store(true, Ordering::Release);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(io::Error::new(
                e.kind(),
                format!("TLS handshake failed: {e}"),
            ))),
            Poll::Pending => self.poll_timeout(cx),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for GuardedReader<R> {
    /// Hands opensrv at most one packet per read: its PacketReader keeps a
    /// borrowed packet across a buffer reallocation when a read holds more
    /// than one (pipelined commands), and then parses freed memory
    /// (ARCHITECTURE.md, quirk 11).
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Shutting down: end the session between commands, never inside one.
        if this.framing.at_boundary() && this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_tls(cx))?;
        if this.ahead_pos >= this.ahead_len {
            match ready!(this.poll_fill(cx))? {
                0 => return Poll::Ready(Ok(())),
                _ => {}
            }
        }
        let available = &this.ahead[this.ahead_pos..this.ahead_len];
        let n = this
            .framing
            .until_packet_end(available)
            .min(buf.remaining())
            .max(1.min(available.len()));
        let chunk = &available[..n];
        this.framing.observe(chunk, &this.signals)?;
        buf.put_slice(chunk);
        this.ahead_pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The client's write half; replaces opensrv's login-failure packet (error
/// 1698, "Authenticate failed") with MariaDB's 1045 "Access denied".
pub struct GuardedWriter<W> {
    inner: W,
    signals: std::sync::Arc<ConnSignals>,
    rewrite: Rewrite,
    pending: Vec<u8>,
    pending_pos: usize,
}

enum Rewrite {
    /// The server greeting has not been written yet.
    Greeting { captured: Vec<u8> },
    /// Watching for a login failure.
    Armed,
    /// Swallowing opensrv's ERR packet until it is complete.
    Capturing {
        replacement: Vec<u8>,
        captured: Vec<u8>,
    },
    /// Login is settled; bytes pass straight through.
    Done,
}

impl<W> GuardedWriter<W> {
    pub fn new(inner: W, signals: std::sync::Arc<ConnSignals>) -> Self {
        GuardedWriter {
            inner,
            signals,
            rewrite: Rewrite::Greeting {
                captured: Vec::new(),
            },
            pending: Vec::new(),
            pending_pos: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> GuardedWriter<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_pos..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_pos += n;
        }
        self.pending.clear();
        self.pending_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Returns true if `buf` was taken by the rewrite.
    fn capture(&mut self, buf: &[u8]) -> bool {
        if let Rewrite::Greeting { captured } = &mut self.rewrite {
            captured.extend_from_slice(buf);
            if let Some(len) = complete_packet_len(captured) {
                let rest = captured.split_off(len);
                patch_greeting(captured, self.signals.tls_offered());
                self.pending.append(captured);
                self.rewrite = Rewrite::Armed;
                if !rest.is_empty() && !self.capture(&rest) {
                    self.pending.extend_from_slice(&rest);
                }
            }
            return true;
        }
        if let Rewrite::Armed = self.rewrite {
            if self.signals.is_authenticated() {
                self.rewrite = Rewrite::Done;
            } else if let Some(replacement) = self.signals.take_auth_failure() {
                self.rewrite = Rewrite::Capturing {
                    replacement,
                    captured: Vec::new(),
                };
            }
        }
        let Rewrite::Capturing {
            replacement,
            captured,
        } = &mut self.rewrite
        else {
            return false;
        };
        captured.extend_from_slice(buf);
        if captured.len() >= 4 {
            let len = u32::from_le_bytes([captured[0], captured[1], captured[2], 0]) as usize;
            if captured.len() >= 4 + len {
                let seq = captured[3];
                let rest = captured.split_off(4 + len);
                let payload_len = (replacement.len() as u32).to_le_bytes();
                self.pending.extend_from_slice(&payload_len[..3]);
                self.pending.push(seq);
                self.pending.extend_from_slice(replacement);
                self.pending.extend_from_slice(&rest);
                self.rewrite = Rewrite::Done;
            }
        }
        true
    }
}

/// Length (header included) of the first packet in `bytes`, once complete.
fn complete_packet_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 4 {
        return None;
    }
    let len = 4 + u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]) as usize;
    (bytes.len() >= len).then_some(len)
}

/// opensrv's greeting says status 0; MariaDB's says SERVER_STATUS_AUTOCOMMIT,
/// which is what the backend session has. PyMySQL, for one, decides from it
/// whether it must send `SET AUTOCOMMIT = 0`. With `offer_tls`, CLIENT_SSL is
/// added to the capabilities (opensrv's plain run never sets it).
fn patch_greeting(packet: &mut [u8], offer_tls: bool) {
    const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
    // protocol version (1), server version (NUL-terminated), connection id (4),
    // scramble part 1 (8), filler (1), capabilities low (2), charset (1), status (2).
    let Some(nul) = packet.iter().skip(5).position(|&b| b == 0) else {
        return;
    };
    let capabilities = 5 + nul + 1 + 4 + 8 + 1;
    let status = capabilities + 2 + 1;
    if packet.len() >= status + 2 && packet[4] == 10 {
        packet[status..status + 2].copy_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
        if offer_tls {
            packet[capabilities] |= CLIENT_SSL as u8;
            packet[capabilities + 1] |= (CLIENT_SSL >> 8) as u8;
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GuardedWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !matches!(this.rewrite, Rewrite::Done) && this.capture(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn framing_spots_commands_across_split_reads() {
        let signals = ConnSignals::default();
        signals.set_authenticated();
        let mut framing = Framing::default();
        let mut bytes = packet(0, b"\x03SELECT 1");
        bytes.extend(packet(0, &[COM_RESET_CONNECTION]));
        for chunk in bytes.chunks(3) {
            framing.observe(chunk, &signals).unwrap();
        }
        assert!(framing.at_boundary());
        assert!(signals.take_reset_request());
        assert!(!signals.client_tracks_session());
        let err = framing.observe(&packet(0, &[COM_CHANGE_USER, b'x']), &signals);
        assert!(err.is_err());
    }

    #[test]
    fn framing_reads_the_client_flags_from_the_handshake_response() {
        let signals = ConnSignals::default();
        let mut framing = Framing::default();
        let flags = (1u32 << 23) | 0x200;
        let mut payload = flags.to_le_bytes().to_vec();
        payload.extend_from_slice(b"rest of the handshake");
        for chunk in packet(1, &payload).chunks(2) {
            framing.observe(chunk, &signals).unwrap();
        }
        assert!(signals.client_tracks_session());
    }

    #[test]
    fn framing_ignores_command_bytes_before_login() {
        let signals = ConnSignals::default();
        let mut framing = Framing::default();
        framing
            .observe(&packet(0, &[COM_CHANGE_USER]), &signals)
            .unwrap();
    }

    #[test]
    fn framing_caps_command_size() {
        let signals = ConnSignals::default();
        let mut framing = Framing::default();
        let header = [0xff, 0xff, 0xff, 0];
        framing.observe(&header, &signals).unwrap();
        framing.payload_left = 0;
        framing.at_payload_start = false;
        let err = framing.observe(&[0xff, 0xff, 0xff, 1], &signals);
        assert!(err.is_err());
    }

    fn greeting() -> Vec<u8> {
        let mut payload = vec![10];
        payload.extend_from_slice(b"5.5.5-10.11.19-MariaDB-sqlguard\0");
        payload.extend_from_slice(&[7, 0, 0, 0]); // connection id
        payload.extend_from_slice(b"12345678\0"); // scramble part 1 + filler
        payload.extend_from_slice(&[0xff, 0xf7, 0x21, 0, 0, 0xff, 0x81]);
        payload.extend_from_slice(&[21; 10]);
        packet(0, &payload)
    }

    #[test]
    fn greeting_announces_autocommit() {
        let mut g = greeting();
        patch_greeting(&mut g, false);
        let caps_at = 4 + 1 + "5.5.5-10.11.19-MariaDB-sqlguard".len() + 1 + 4 + 8 + 1;
        let status_at = caps_at + 2 + 1;
        assert_eq!(&g[status_at..status_at + 2], &[2, 0]);
        assert_eq!(g.len(), greeting().len());
        assert_eq!(u16::from_le_bytes([g[caps_at], g[caps_at + 1]]) & 0x0800, 0);
    }

    #[test]
    fn greeting_offers_tls_only_when_configured() {
        let mut g = greeting();
        let caps_at = 4 + 1 + "5.5.5-10.11.19-MariaDB-sqlguard".len() + 1 + 4 + 8 + 1;
        g[caps_at + 1] &= !0x08;
        patch_greeting(&mut g, true);
        assert_eq!(
            u16::from_le_bytes([g[caps_at], g[caps_at + 1]]) & 0x0800,
            0x0800
        );
    }

    #[test]
    fn framing_spots_the_ssl_request_and_reads_flags_after_it() {
        let signals = ConnSignals::default();
        let mut framing = Framing::default();
        let mut ssl_request = (CLIENT_SSL | 0x200).to_le_bytes().to_vec();
        ssl_request.extend_from_slice(&[0; 28]);
        framing.observe(&packet(1, &ssl_request), &signals).unwrap();
        assert!(framing.ssl_requested);
        // TLS started: the handshake response is sequence 2.
        framing.ssl_requested = false;
        framing.upgraded = true;
        framing.client_flags_len = 0;
        let flags = CLIENT_SSL | 0x200 | (1 << 23);
        let mut response = flags.to_le_bytes().to_vec();
        response.extend_from_slice(b"rest of the handshake");
        framing.observe(&packet(2, &response), &signals).unwrap();
        assert!(!framing.ssl_requested);
        assert!(signals.client_tracks_session());
        // Plaintext glued after an SSLRequest is refused.
        let mut framing = Framing::default();
        let mut bytes = packet(1, &ssl_request);
        bytes.extend(packet(2, b"injected"));
        assert!(framing.observe(&bytes, &signals).is_err());
    }

    #[tokio::test]
    async fn login_failure_packet_is_replaced() {
        use tokio::io::AsyncWriteExt;
        let signals = std::sync::Arc::new(ConnSignals::default());
        let mut out = Vec::new();
        {
            let mut w = GuardedWriter::new(&mut out, signals.clone());
            w.write_all(&greeting()).await.unwrap();
            signals.replace_auth_failure(b"\xff\x15\x04#28000denied".to_vec());
            let original = packet(2, b"\xff\xa2\x06#28000Authenticate failed");
            w.write_all(&original[..5]).await.unwrap();
            w.write_all(&original[5..]).await.unwrap();
            w.flush().await.unwrap();
        }
        let mut expected = greeting();
        patch_greeting(&mut expected, false);
        expected.extend(packet(2, b"\xff\x15\x04#28000denied"));
        assert_eq!(out, expected);
    }
}
