//! Prometheus metrics (names from DESIGN.md "Metrics") and the small HTTP
//! endpoint that serves them: `GET /metrics`, `GET /healthz` (alive) and
//! `GET /readyz` (the backend answers). Written by hand: a few counters,
//! gauges and histograms need no framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, Entry};
use crate::backend::Backend;

/// Seconds; from a fast point select (~100 µs) to a statement near the timeout.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Series {
    queries: BTreeMap<(String, &'static str, &'static str), u64>,
    denied: BTreeMap<(String, &'static str), u64>,
    query_duration: BTreeMap<&'static str, Histogram>,
    guard_duration: Histogram,
    backend_duration: Histogram,
    backend_errors: BTreeMap<u16, u64>,
}

/// Every metric of one proxy.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    pub client_connections: AtomicI64,
    pub pinned_backend_connections: AtomicI64,
}

/// Keeps a gauge raised while alive.
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Label values are escaped as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one finished statement (called with its audit entry).
    pub fn observe(&self, entry: &Entry, guard_us: Option<u64>, backend_code: Option<u16>) {
        let mut s = match self.series.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        *s.queries
            .entry((entry.user.clone(), entry.kind, entry.decision))
            .or_default() += 1;
        if let Some(rule) = entry.rule {
            if entry.decision == "deny" {
                *s.denied.entry((entry.user.clone(), rule)).or_default() += 1;
            }
        }
        s.query_duration
            .entry(entry.kind)
            .or_default()
            .observe(entry.duration_us as f64 / 1e6);
        if let Some(us) = guard_us {
            s.guard_duration.observe(us as f64 / 1e6);
        }
        if let Some(us) = entry.backend_us {
            s.backend_duration.observe(us as f64 / 1e6);
        }
        if let Some(code) = backend_code {
            *s.backend_errors.entry(code).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, audit: &AuditLog) -> String {
        let s = match self.series.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::with_capacity(4096);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "sqlguard_queries_total",
            "counter",
            "Statements handled, by user, kind and decision.",
        );
        for ((user, kind, decision), n) in &s.queries {
            let _ = writeln!(
                out,
                "sqlguard_queries_total{{user=\"{}\",kind=\"{kind}\",decision=\"{decision}\"}} {n}",
                escape(user)
            );
        }
        head(
            &mut out,
            "sqlguard_denied_total",
            "counter",
            "Statements refused, by user and rule.",
        );
        for ((user, rule), n) in &s.denied {
            let _ = writeln!(
                out,
                "sqlguard_denied_total{{user=\"{}\",rule=\"{rule}\"}} {n}",
                escape(user)
            );
        }
        head(
            &mut out,
            "sqlguard_query_duration_seconds",
            "histogram",
            "Whole statement, from command to answer.",
        );
        for (kind, h) in &s.query_duration {
            h.render(
                &mut out,
                "sqlguard_query_duration_seconds",
                &format!("kind=\"{kind}\""),
            );
        }
        head(
            &mut out,
            "sqlguard_guard_duration_seconds",
            "histogram",
            "Parse, check and rewrite.",
        );
        s.guard_duration
            .render(&mut out, "sqlguard_guard_duration_seconds", "");
        head(
            &mut out,
            "sqlguard_backend_duration_seconds",
            "histogram",
            "Time in the database.",
        );
        s.backend_duration
            .render(&mut out, "sqlguard_backend_duration_seconds", "");
        head(
            &mut out,
            "sqlguard_client_connections",
            "gauge",
            "Open client connections.",
        );
        let _ = writeln!(
            out,
            "sqlguard_client_connections {}",
            self.client_connections.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "sqlguard_backend_connections",
            "gauge",
            "Backend connections pinned by sessions.",
        );
        let _ = writeln!(
            out,
            "sqlguard_backend_connections{{state=\"pinned\"}} {}",
            self.pinned_backend_connections.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "sqlguard_backend_errors_total",
            "counter",
            "Errors from the database, by MariaDB code (0: connection).",
        );
        for (code, n) in &s.backend_errors {
            let _ = writeln!(out, "sqlguard_backend_errors_total{{code=\"{code}\"}} {n}");
        }
        head(
            &mut out,
            "sqlguard_audit_records_total",
            "counter",
            "Audit records written.",
        );
        let _ = writeln!(
            out,
            "sqlguard_audit_records_total {}",
            audit.records.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "sqlguard_audit_write_errors_total",
            "counter",
            "Audit records that could not be written.",
        );
        let _ = writeln!(
            out,
            "sqlguard_audit_write_errors_total {}",
            audit.write_errors.load(Ordering::Relaxed)
        );
        out
    }
}

/// Readiness: a backend connection answers within this.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves /metrics, /healthz and /readyz until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    audit: std::sync::Arc<AuditLog>,
    backend: Backend,
    shutdown: CancellationToken,
) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let (metrics, audit, backend) = (metrics.clone(), audit.clone(), backend.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body, content_type) = match path {
                "/metrics" => (
                    "200 OK",
                    metrics.render(&audit),
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
                "/healthz" => ("200 OK", "ok\n".to_string(), "text/plain"),
                "/readyz" => match tokio::time::timeout(READY_TIMEOUT, backend.ping()).await {
                    Ok(true) if audit.is_healthy() => {
                        ("200 OK", "ready\n".to_string(), "text/plain")
                    }
                    _ => (
                        "503 Service Unavailable",
                        "not ready\n".to_string(),
                        "text/plain",
                    ),
                },
                _ => ("404 Not Found", "not found\n".to_string(), "text/plain"),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the metrics address, if one is configured.
pub async fn bind(address: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
    match address {
        Some(addr) => TcpListener::bind(addr).await.map(Some),
        None => Ok(None),
    }
}
