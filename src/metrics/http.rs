//! The metrics address: a deliberately small HTTP/1.1 responder for
//! `GET|HEAD /metrics`, `/healthz` (the process answers) and `/readyz` (the
//! backend answers a ping and the audit log is writable). Every request is
//! bounded in size, time and concurrency; one connection, one response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE, Metrics};
use crate::audit::AuditLog;
use crate::backend::Backend;

/// A request head larger than this is refused (431).
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Reading the request and writing the answer each get this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed straight away.
const MAX_CONCURRENT: usize = 32;
/// A successful readiness check is reused for this long, so probes never
/// hammer the database.
const READY_CACHE: Duration = Duration::from_secs(1);
/// A ping (and reconnect) that takes longer than this means not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the metrics address, if one is configured.
pub async fn bind(address: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
    match address {
        Some(addr) => TcpListener::bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// Serves /metrics, /healthz and /readyz until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    audit: Arc<AuditLog>,
    backend: Backend,
    shutdown: CancellationToken,
) {
    let endpoint = Arc::new(Endpoint {
        metrics,
        audit,
        readiness: Readiness::new(backend),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Too many at once (a scraper gone wild, or slow clients):
            // closing is the cheapest answer.
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            endpoint.handle(stream).await;
            drop(permit);
        });
    }
}

struct Endpoint {
    metrics: Arc<Metrics>,
    audit: Arc<AuditLog>,
    readiness: Readiness,
}

/// One answer.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
            allow: false,
        }
    }
}

/// What the request line asked for.
#[derive(Debug, PartialEq)]
enum Request<'a> {
    Get { path: &'a str, head: bool },
    MethodNotAllowed,
    Bad,
}

/// Parses `METHOD SP TARGET SP HTTP/1.x` (the rest of the head is ignored).
fn parse_request_line(head: &[u8]) -> Request<'_> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Request::Bad;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Request::Bad;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    match method {
        "GET" => Request::Get { path, head: false },
        "HEAD" => Request::Get { path, head: true },
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            Request::MethodNotAllowed
        }
        _ => Request::Bad,
    }
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// Reads the request head; `Err(status)` when it is too large, `Ok(None)`
/// when the client went away or was too slow.
async fn read_head(stream: &mut TcpStream) -> Result<Option<Vec<u8>>, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if head_complete(&buf) {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err("431 Request Header Fields Too Large");
        }
    }
}

impl Endpoint {
    async fn handle(&self, mut stream: TcpStream) {
        let (response, head_only) = match read_head(&mut stream).await {
            Ok(None) => return,
            Err(status) => (Response::text(status, "request head too large"), false),
            Ok(Some(head)) => match parse_request_line(&head) {
                Request::Get { path, head } => (self.route(path).await, head),
                Request::MethodNotAllowed => {
                    let mut r = Response::text("405 Method Not Allowed", "use GET or HEAD");
                    r.allow = true;
                    (r, false)
                }
                Request::Bad => (Response::text("400 Bad Request", "bad request"), false),
            },
        };
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            response.status,
            response.content_type,
            response.body.len()
        );
        if response.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !head_only {
            out.push_str(&response.body);
        }
        let _ = tokio::time::timeout(IO_TIMEOUT, async {
            let _ = stream.write_all(out.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }

    async fn route(&self, path: &str) -> Response {
        match path {
            "/metrics" => {
                let up = self.readiness.backend_answers().await;
                self.metrics.backend_up.set(i64::from(up));
                Response {
                    status: "200 OK",
                    content_type: CONTENT_TYPE,
                    body: self
                        .metrics
                        .render(&self.audit, Some(&self.readiness.pool_metrics)),
                    allow: false,
                }
            }
            "/healthz" => Response::text("200 OK", "ok"),
            "/readyz" => {
                let backend = self.readiness.backend_answers().await;
                let audit = self.audit.is_healthy();
                match (backend, audit) {
                    (true, true) => Response::text("200 OK", "ready"),
                    (false, _) => {
                        Response::text("503 Service Unavailable", "not ready: backend unreachable")
                    }
                    (true, false) => Response::text(
                        "503 Service Unavailable",
                        "not ready: audit log not writable",
                    ),
                }
            }
            _ => Response::text("404 Not Found", "not found"),
        }
    }
}

/// Whether the backend answers, checked on a connection of its own (a
/// saturated pool must not look like a dead database). A success is reused
/// for `READY_CACHE`; concurrent probes share one check.
struct Readiness {
    backend: Backend,
    pool_metrics: Arc<mysql_async::Metrics>,
    state: Mutex<ReadyState>,
}

#[derive(Default)]
struct ReadyState {
    checked: Option<(Instant, bool)>,
    conn: Option<Conn>,
}

impl Readiness {
    fn new(backend: Backend) -> Readiness {
        Readiness {
            pool_metrics: backend.pool_metrics(),
            backend,
            state: Mutex::new(ReadyState::default()),
        }
    }

    async fn backend_answers(&self) -> bool {
        let asked = Instant::now();
        let mut state = self.state.lock().await;
        if let Some((at, ready)) = state.checked {
            // A check that ended while this probe waited answers it too; a
            // success is reused for a while, a failure is re-checked (so a
            // database that is back is seen at the next probe).
            if at >= asked || (ready && at.elapsed() < READY_CACHE) {
                return ready;
            }
        }
        let ready = tokio::time::timeout(READY_TIMEOUT, ping(&self.backend, &mut state.conn))
            .await
            .unwrap_or(false);
        if !ready {
            // Possibly mid-exchange after a timeout: never reuse it.
            state.conn = None;
        }
        state.checked = Some((Instant::now(), ready));
        ready
    }
}

async fn ping(backend: &Backend, conn: &mut Option<Conn>) -> bool {
    if let Some(c) = conn.as_mut() {
        if c.ping().await.is_ok() {
            return true;
        }
        *conn = None;
    }
    match backend.connect_unpooled().await {
        Ok(mut c) => {
            let ok = c.ping().await.is_ok();
            if ok {
                *conn = Some(c);
            }
            ok
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Get {
                path: "/metrics",
                head: false
            }
        );
        assert_eq!(
            parse_request_line(b"HEAD /readyz?verbose=1 HTTP/1.0\r\n\r\n"),
            Request::Get {
                path: "/readyz",
                head: true
            }
        );
        assert_eq!(
            parse_request_line(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SMTP/1.1\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"",
        ] {
            assert_eq!(parse_request_line(bad), Request::Bad, "{bad:?}");
        }
    }

    #[test]
    fn head_end() {
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_complete(b"GET / HTTP/1.1\n\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }
}
