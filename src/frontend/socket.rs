//! The client's connection, plain TCP or upgraded to TLS after the client's
//! SSLRequest, shared by the reader, opensrv's writer and ours. Plain I/O
//! goes through `&TcpStream` without a lock; after the upgrade every read and
//! write goes through the one rustls stream, behind an (uncontended) mutex:
//! all of a connection's I/O runs on its own task.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// One client connection; see the module documentation.
pub struct ClientSocket {
    tcp: Arc<TcpStream>,
    tls: OnceLock<Mutex<TlsStream<TcpIo>>>,
}

impl ClientSocket {
    pub fn new(tcp: TcpStream) -> Arc<ClientSocket> {
        Arc::new(ClientSocket {
            tcp: Arc::new(tcp),
            tls: OnceLock::new(),
        })
    }

    /// Whether the connection has been upgraded to TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.get().is_some()
    }

    /// Runs the TLS handshake as the server. `received` holds bytes already
    /// read from the socket after the SSLRequest (the start of the client's
    /// TLS handshake); they go to rustls, never to the MySQL protocol. From
    /// then on, all I/O is encrypted.
    pub async fn start_tls(
        self: Arc<Self>,
        acceptor: TlsAcceptor,
        received: Vec<u8>,
    ) -> io::Result<()> {
        if self.is_tls() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a second SSLRequest on a TLS connection",
            ));
        }
        let io = TcpIo {
            tcp: self.tcp.clone(),
            received,
            received_pos: 0,
        };
        let stream = acceptor.accept(io).await?;
        self.tls
            .set(Mutex::new(stream))
            .map_err(|_| io::Error::other("TLS started twice"))
    }

    /// Runs `f` on the TLS stream under its lock.
    fn with_tls<T>(
        lock: &Mutex<TlsStream<TcpIo>>,
        f: impl FnOnce(Pin<&mut TlsStream<TcpIo>>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match lock.lock() {
            Ok(mut stream) => f(Pin::new(&mut *stream)),
            Err(_) => Poll::Ready(Err(io::Error::other("TLS stream poisoned"))),
        }
    }

    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.tls.get() {
            Some(tls) => Self::with_tls(tls, |s| s.poll_read(cx, buf)),
            None => poll_read_tcp(&self.tcp, cx, buf),
        }
    }

    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.tls.get() {
            Some(tls) => Self::with_tls(tls, |s| s.poll_write(cx, buf)),
            None => poll_write_tcp(&self.tcp, cx, buf),
        }
    }

    /// rustls may keep encrypted bytes when the socket would block; a flush
    /// sends them. Plain TCP has nothing to flush.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tls.get() {
            Some(tls) => Self::with_tls(tls, |s| s.poll_flush(cx)),
            None => Poll::Ready(Ok(())),
        }
    }
}

fn poll_read_tcp(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_read(buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

fn poll_write_tcp(tcp: &TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

/// The TCP stream under rustls, replaying what was read ahead first.
struct TcpIo {
    tcp: Arc<TcpStream>,
    received: Vec<u8>,
    received_pos: usize,
}

impl AsyncRead for TcpIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.received_pos < this.received.len() {
            let rest = &this.received[this.received_pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.received_pos += n;
            if this.received_pos == this.received.len() {
                this.received = Vec::new();
                this.received_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        poll_read_tcp(&this.tcp, cx, buf)
    }
}

impl AsyncWrite for TcpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_tcp(&self.tcp, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket is closed when the connection's last owner drops it.
        Poll::Ready(Ok(()))
    }
}

/// A handle on the client's connection, shared by opensrv's writer, ours
/// (`frontend/packets.rs`) and the reader. Only one of them does I/O at a
/// time: opensrv's buffer is flushed after every command. A write (or TLS
/// flush) that makes no progress for `write_timeout` (the client stopped
/// reading) fails with `TimedOut`, which ends the connection: buffers stay
/// bounded and the backend connection behind it is released.
pub struct SharedSocket {
    socket: Arc<ClientSocket>,
    write_timeout: Duration,
    /// Armed while a write waits for the socket; each clone has its own.
    stall: Option<Pin<Box<Sleep>>>,
}

impl Clone for SharedSocket {
    fn clone(&self) -> Self {
        SharedSocket::new(self.socket.clone(), self.write_timeout)
    }
}

impl SharedSocket {
    pub fn new(socket: Arc<ClientSocket>, write_timeout: Duration) -> Self {
        SharedSocket {
            socket,
            write_timeout,
            stall: None,
        }
    }

    /// Writes all of `buf` and flushes it (through TLS if the client chose it).
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *self).poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)).await
    }

    /// Passes `result` on; while it is pending, runs the stall timer.
    fn stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stall = None;
            return result;
        }
        let timeout = self.write_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            self.stall = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("write timeout: the client read nothing for {timeout:?}"),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for SharedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.socket.poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = this.socket.poll_write(cx, buf);
        this.stalled(cx, result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = this.socket.poll_flush(cx);
        this.stalled(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket is shut down when the last owner drops it.
        Poll::Ready(Ok(()))
    }
}
