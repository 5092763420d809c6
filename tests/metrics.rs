//! The metrics address against a real MariaDB: every DESIGN.md family is
//! scraped and moves as statements run; /readyz follows the backend; the
//! HTTP edge answers bad requests; docs/monitoring passes promtool and
//! names only metrics sqlguard serves; logs are JSON without SQL text.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::mariadb::{BACKEND_PASSWORD, start_fixture};
use common::proxy::*;
use mysql_async::Conn;
use mysql_async::prelude::*;
use sqlguard::frontend::listener::RunningProxy;
use sqlguard::metrics::DESIGN_FAMILIES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Families served besides DESIGN.md's.
const EXTRA_FAMILIES: &[&str] = &[
    "sqlguard_backend_up",
    "sqlguard_build_info",
    "sqlguard_session_panics_total",
];

async fn connect(proxy: &RunningProxy, user: (&str, &str)) -> Conn {
    match Conn::new(proxy_opts(proxy, user)).await {
        Ok(c) => c,
        Err(e) => panic!("cannot log in as {}: {e}", user.0),
    }
}

fn metrics_addr(proxy: &RunningProxy) -> SocketAddr {
    proxy.metrics_addr.expect("metrics address")
}

struct HttpResponse {
    status: u16,
    head: String,
    body: String,
}

/// Sends raw bytes, reads until the server closes.
async fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

/// One scrape: `name{labels}` → value, and the families it declares.
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
    families: BTreeSet<String>,
}

impl Scrape {
    /// The value of one series (labels in the order the encoder writes
    /// them: sorted by name), 0 if the series does not exist yet.
    fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    let mut samples = HashMap::new();
    let mut families = BTreeSet::new();
    for line in r.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap_or("").to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample: {line}"));
        samples.insert(series.to_string(), value);
    }
    Scrape {
        text: r.body,
        samples,
        families,
    }
}

/// Polls the metrics endpoint until `ok` holds (bounded: 15 s).
async fn wait_for<F: Fn(&Scrape) -> bool>(addr: SocketAddr, what: &str, ok: F) -> Scrape {
    for _ in 0..150 {
        let s = scrape(addr).await;
        if ok(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}:\n{}", scrape(addr).await.text);
}

const Q_SELECT_ALLOW: &str =
    "sqlguard_queries_total{decision=\"allow\",kind=\"select\",user=\"clawdbot\"}";
const Q_DELETE_DENY: &str =
    "sqlguard_queries_total{decision=\"deny\",kind=\"delete\",user=\"clawdbot\"}";
const Q_UPDATE_ERROR: &str =
    "sqlguard_queries_total{decision=\"error\",kind=\"update\",user=\"clawdbot\"}";
const DENIED_DELETE: &str =
    "sqlguard_denied_total{rule=\"statement_not_allowed\",user=\"clawdbot\"}";

#[tokio::test]
async fn every_family_is_served_and_moves() {
    let proxy = shared_proxy().await;
    let addr = metrics_addr(&proxy);
    let before = scrape(addr).await;
    for family in DESIGN_FAMILIES.iter().chain(EXTRA_FAMILIES) {
        // Vectors appear with their first series; these exist from the start.
        if ["sqlguard_queries_total", "sqlguard_denied_total"].contains(family) {
            continue;
        }
        assert!(
            before.families.contains(*family),
            "{family} missing:\n{}",
            before.text
        );
    }
    assert!(
        before.families.contains("process_resident_memory_bytes"),
        "{}",
        before.text
    );
    assert_eq!(before.value("sqlguard_client_connections"), 0.0);

    let mut conn = connect(&proxy, CLAWDBOT).await;
    let names: Vec<String> = conn
        .query("SELECT name FROM products ORDER BY name LIMIT 2")
        .await
        .unwrap();
    assert_eq!(names.len(), 2);
    let (code, _) = server_error(conn.query_drop("DELETE FROM orders").await);
    assert_eq!(code, 1227);
    // Allowed by the guard, refused by MariaDB (phone is VARCHAR(20), strict
    // mode): a backend error with MariaDB's code; the row is unchanged.
    let long_phone = "9".repeat(40);
    let (code, _) = server_error(
        conn.query_drop(format!(
            "UPDATE customers SET phone = '{long_phone}' WHERE id = 1"
        ))
        .await,
    );
    assert_eq!(code, 1406);
    // A login with an unknown name must not create a series.
    let stranger = Conn::new(proxy_opts(&proxy, ("mallory_x", "nope"))).await;
    assert!(stranger.is_err());

    let after = scrape(addr).await;
    for family in DESIGN_FAMILIES.iter().chain(EXTRA_FAMILIES) {
        assert!(
            after.families.contains(*family),
            "{family} missing:\n{}",
            after.text
        );
    }
    let moved = |series: &str| after.value(series) - before.value(series);
    assert!(moved(Q_SELECT_ALLOW) >= 1.0, "{}", after.text);
    assert_eq!(moved(Q_DELETE_DENY), 1.0, "{}", after.text);
    assert_eq!(moved(DENIED_DELETE), 1.0, "{}", after.text);
    assert_eq!(moved(Q_UPDATE_ERROR), 1.0, "{}", after.text);
    assert_eq!(
        moved("sqlguard_backend_errors_total{code=\"1406\"}"),
        1.0,
        "{}",
        after.text
    );
    assert!(
        moved("sqlguard_query_duration_seconds_count{kind=\"select\"}") >= 1.0,
        "{}",
        after.text
    );
    assert_eq!(
        moved("sqlguard_query_duration_seconds_count{kind=\"delete\"}"),
        1.0
    );
    assert!(moved("sqlguard_guard_duration_seconds_count") >= 3.0);
    // The denied DELETE never reached the database.
    let backend_runs = moved("sqlguard_backend_duration_seconds_count");
    assert!(backend_runs >= 2.0, "{}", after.text);
    assert!(
        backend_runs < moved("sqlguard_guard_duration_seconds_count"),
        "{}",
        after.text
    );
    // Each statement above has its audit record.
    assert!(
        moved("sqlguard_audit_records_total") >= 3.0,
        "{}",
        after.text
    );
    assert_eq!(after.value("sqlguard_audit_write_errors_total"), 0.0);
    assert_eq!(after.value("sqlguard_client_connections"), 1.0);
    assert_eq!(
        after.value("sqlguard_backend_connections{state=\"pinned\"}"),
        1.0,
        "{}",
        after.text
    );
    assert!(after.value("sqlguard_backend_connections{state=\"open\"}") >= 1.0);
    assert!(after.value("sqlguard_backend_connections{state=\"in_use\"}") >= 1.0);
    assert_eq!(after.value("sqlguard_backend_up"), 1.0);
    assert!(
        after.text.contains(&format!(
            "sqlguard_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        after.text
    );
    assert!(!after.text.contains("mallory_x"), "{}", after.text);
    // Histogram buckets: 50 µs to 10 s, then +Inf.
    assert!(
        after
            .text
            .contains("sqlguard_guard_duration_seconds_bucket{le=\"0.00005\"}")
    );
    assert!(
        after
            .text
            .contains("sqlguard_guard_duration_seconds_bucket{le=\"10\"}")
    );

    // A second client raises the gauge; both leaving lowers it back.
    let second = connect(&proxy, READONLY).await;
    let during = scrape(addr).await;
    assert_eq!(during.value("sqlguard_client_connections"), 2.0);
    second.disconnect().await.unwrap();
    conn.disconnect().await.unwrap();
    wait_for(addr, "client_connections back to 0", |s| {
        s.value("sqlguard_client_connections") == 0.0
            && s.value("sqlguard_backend_connections{state=\"pinned\"}") == 0.0
    })
    .await;
}

#[tokio::test]
async fn http_edge_cases() {
    let proxy = shared_proxy().await;
    let addr = metrics_addr(&proxy);
    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");
    assert_eq!(get(addr, "/readyz").await.status, 200);
    assert_eq!(get(addr, "/nope").await.status, 404);
    assert_eq!(get(addr, "/metrics/").await.status, 404);
    // Query strings are ignored.
    assert_eq!(get(addr, "/healthz?x=1").await.status, 200);

    let head = http_raw(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.body);
    let length: usize = head
        .head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    assert!(length > 1000, "HEAD says the GET body length: {length}");

    let post = http_raw(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(post.status, 405);
    assert!(post.head.contains("Allow: GET, HEAD"), "{}", post.head);
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics HTTP/2.0 extra\r\n\r\n",
    ] {
        assert_eq!(http_raw(addr, garbage).await.status, 400, "{garbage:?}");
    }
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    assert_eq!(http_raw(addr, &huge).await.status, 431);

    // A client that connects and says nothing does not stop others.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn readyz_follows_the_backend() {
    let mut db = start_fixture().await;
    let proxy = start_proxy(test_config(db.port())).await;
    let addr = metrics_addr(&proxy);
    assert_eq!(get(addr, "/readyz").await.status, 200);
    let mut conn = connect(&proxy, CLAWDBOT).await;
    conn.query_drop("SELECT 1").await.unwrap();

    db.stop().await;
    let mut down = None;
    for _ in 0..100 {
        let r = get(addr, "/readyz").await;
        if r.status == 503 {
            down = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = down.expect("/readyz turns 503 once the database is stopped");
    assert!(down.body.contains("backend"), "{}", down.body);
    assert_eq!(
        get(addr, "/healthz").await.status,
        200,
        "alive all the same"
    );
    let (code, _) = server_error(conn.query_drop("SELECT 1").await);
    assert_eq!(code, 1105);
    let s = scrape(addr).await;
    assert_eq!(s.value("sqlguard_backend_up"), 0.0, "{}", s.text);
    assert!(
        s.value("sqlguard_backend_errors_total{code=\"0\"}") >= 1.0,
        "{}",
        s.text
    );

    db.restart().await.expect("restart");
    let mut up = false;
    for _ in 0..150 {
        if get(addr, "/readyz").await.status == 200 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "/readyz answers 200 again once the database is back");
    assert_eq!(scrape(addr).await.value("sqlguard_backend_up"), 1.0);
}

fn monitoring(file: &str) -> std::path::PathBuf {
    repo_path(&format!("docs/monitoring/{file}"))
}

/// promtool from Debian's `prometheus` package; a missing one fails the test.
fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = std::process::Command::new("promtool");
    cmd.args(args)
        .current_dir(repo_path("docs/monitoring"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool not found: install it with `apt-get install prometheus` \
             (Debian's package ships /usr/bin/promtool; .ci/run does this)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    if let Some(text) = stdin {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[tokio::test]
async fn promtool_accepts_the_rules_config_and_a_real_scrape() {
    let rules = promtool(&["check", "rules", "sqlguard-alerts.yml"], None);
    assert!(rules.contains("SUCCESS"), "{rules}");
    promtool(&["test", "rules", "sqlguard-alerts.test.yml"], None);
    promtool(&["check", "config", "prometheus.yml"], None);

    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    conn.query_drop("SELECT id FROM products LIMIT 1")
        .await
        .unwrap();
    let _ = conn.query_drop("DELETE FROM orders").await;
    let body = scrape(metrics_addr(&proxy)).await.text;
    // `check metrics` lints names, types, HELP and units; exit 0 = no problem.
    let lint = promtool(&["check", "metrics"], Some(&body));
    assert!(lint.trim().is_empty(), "promtool lint findings:\n{lint}");
}

/// The metric names an expression file mentions (histogram suffixes dropped).
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["sqlguard_", "process_"] {
        for (start, _) in text.match_indices(prefix) {
            let before = text[..start].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                continue;
            }
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .map(str::to_string)
                .unwrap_or(name);
            names.insert(name);
        }
    }
    names
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_served_metrics() {
    let text = std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON parses");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut exprs = String::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            exprs.push_str(expr);
            exprs.push('\n');
        }
    }
    let alerts = std::fs::read_to_string(monitoring("sqlguard-alerts.yml")).unwrap();

    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let _ = conn.query_drop("DELETE FROM orders").await;
    let served = scrape(metrics_addr(&proxy)).await;
    let design: BTreeSet<&str> = DESIGN_FAMILIES
        .iter()
        .chain(EXTRA_FAMILIES)
        .copied()
        .collect();
    for (what, text) in [("dashboard", &exprs), ("alerts", &alerts)] {
        let names = referenced_metrics(text);
        assert!(
            names.contains("sqlguard_queries_total"),
            "{what}: {names:?}"
        );
        for name in &names {
            assert!(
                served.families.contains(name),
                "{what} uses {name}, which /metrics does not serve"
            );
            if name.starts_with("sqlguard_") {
                assert!(
                    design.contains(name.as_str()),
                    "{what} uses {name}, not a DESIGN.md family"
                );
            }
        }
    }
    // Every DESIGN.md family is on the dashboard.
    let on_dashboard = referenced_metrics(&exprs);
    for family in DESIGN_FAMILIES {
        assert!(
            on_dashboard.contains(*family),
            "{family} not on the dashboard"
        );
    }
}

#[tokio::test]
async fn json_logs_carry_no_sql() {
    let db_port = shared_db_port();
    let audit = std::env::temp_dir().join(format!(
        "sqlguard-metrics-log-audit-{}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&audit);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(repo_path("proxy.toml"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--backend-url")
        .arg(format!("mysql://sqlguard@127.0.0.1:{db_port}/shop"))
        .arg("--audit-log")
        .arg(&audit)
        .env("SQLGUARD_BACKEND_PASSWORD", BACKEND_PASSWORD)
        .env_remove("SQLGUARD_LOG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sqlguard serve");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    // The first line says where it listens.
    let addr: SocketAddr = loop {
        let mut line = String::new();
        let n = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line),
        )
        .await
        .expect("a log line")
        .unwrap();
        assert!(n > 0, "sqlguard exited: {lines:?}");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        lines.push(line);
        if event["message"] == "sqlguard listening" {
            break event["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    let opts = |user: &str, password: &str| {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(addr.port())
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some("shop"))
            .prefer_socket(false)
    };
    let mut conn = Conn::new(opts(CLAWDBOT.0, CLAWDBOT.1)).await.unwrap();
    let _: Vec<String> = conn
        .query("SELECT name FROM products WHERE name = 'LITERAL-ALLOWED-41'")
        .await
        .unwrap();
    let _ = conn
        .query_drop("DELETE FROM orders WHERE id = 'LITERAL-DENIED-42'")
        .await;
    let _ = conn
        .query_drop("SELECT * FROM mysql.user WHERE user = 'LITERAL-DENIED-43'")
        .await;
    conn.disconnect().await.unwrap();
    let _ = Conn::new(opts("bad\nuser", "x")).await;

    // SIGTERM: graceful shutdown, then the rest of the log.
    let pid = child.id().expect("pid");
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(30), stderr.read_to_string(&mut rest))
        .await
        .expect("sqlguard stops")
        .unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_file(&audit);
    lines.extend(rest.lines().map(str::to_string));

    let mut denied = 0;
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "message", "target"] {
            assert!(event.get(field).is_some(), "{field} missing: {line}");
        }
        assert!(!line.contains("LITERAL-"), "SQL text in the log: {line}");
        if event["message"] == "denied" {
            denied += 1;
            assert_eq!(event["user"], "clawdbot", "{line}");
            assert!(event["rule"].is_string(), "{line}");
        }
    }
    assert_eq!(denied, 2, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("login failed")),
        "{lines:#?}"
    );
}

#[test]
fn referenced_metrics_parses_expressions() {
    let names = referenced_metrics(
        "histogram_quantile(0.99, sum by (le) (rate(sqlguard_guard_duration_seconds_bucket[5m]))) \
         / process_cpu_seconds_total + sqlguard-alerts.yml",
    );
    let want: BTreeSet<String> = [
        "sqlguard_guard_duration_seconds",
        "process_cpu_seconds_total",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, want);
    assert!(Path::new(&monitoring("prometheus.yml")).exists());
}
