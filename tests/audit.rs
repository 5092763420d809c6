//! The audit log through the proxy: a record per statement (allowed, denied,
//! failed), per prepare and execute (bound values, phones redacted) and per
//! failed login; the hash chain verified by `sqlguard audit --verify`; and
//! statements refused once the log cannot be written.

mod common;

use std::process::Command;

use common::proxy::*;
use mysql_async::Conn;
use mysql_async::prelude::*;
use serde_json::Value;

/// Removes a test's directory when the test passes (kept for a look if it fails).
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp_log(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlguard-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("audit.log")
}

#[tokio::test]
async fn every_statement_and_failed_login_is_recorded_and_chained() {
    let path = temp_log("records");
    let _cleanup = Cleanup(path.parent().unwrap().to_path_buf());
    let mut config = test_config(shared_db_port());
    config.audit.path = Some(path.clone());
    let proxy = start_proxy(config).await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let _: Vec<String> = conn
        .query("SELECT name FROM products WHERE status = 'active'")
        .await
        .unwrap();
    let _ = conn.query_drop("DELETE FROM orders").await;
    let _: Option<u64> = conn
        .exec_first(
            "SELECT id FROM customers WHERE phone = ?",
            ("+212612345678",),
        )
        .await
        .unwrap();
    let _ = Conn::new(proxy_opts(&proxy, ("clawdbot", "wrong"))).await;
    drop(conn);

    // Records are written once the client has its answer: wait for the last.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&path).unwrap();
        if text.contains("\"command\":\"login\"") && text.contains("\"command\":\"execute\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |pred: &dyn Fn(&Value) -> bool| records.iter().find(|r| pred(r)).cloned();
    let select = find(&|r| {
        r["command"] == "query"
            && r["decision"] == "allow"
            && r["sql"]
                .as_str()
                .is_some_and(|s| s.contains("FROM products"))
    })
    .unwrap_or_else(|| panic!("no allowed select in {text}"));
    assert!(
        select["executed_sql"]
            .as_str()
            .unwrap()
            .contains("products.tenant_id = 1")
    );
    assert!(select["rows"].as_u64().is_some() && select["backend_us"].as_u64().is_some());
    assert_eq!(select["tenant_id"], 1);
    assert_eq!(select["user"], "clawdbot");
    for field in [
        "ts",
        "seq",
        "conn_id",
        "client_addr",
        "sql",
        "duration_us",
        "prev_hash",
        "hash",
    ] {
        assert!(!select[field].is_null(), "{field} missing: {select}");
    }
    let denied =
        find(&|r| r["decision"] == "deny" && r["kind"] == "delete").expect("denied delete");
    assert_eq!(denied["rule"], "statement_not_allowed");
    assert!(denied["executed_sql"].is_null());
    let execute = find(&|r| r["command"] == "execute").expect("execute record");
    assert_eq!(
        execute["params"][0], "<redacted>",
        "phones are redacted: {execute}"
    );
    assert!(find(&|r| r["command"] == "prepare").is_some());
    let login =
        find(&|r| r["command"] == "login").unwrap_or_else(|| panic!("no failed login in {text}"));
    assert_eq!(
        (login["decision"].as_str(), login["user"].as_str()),
        (Some("deny"), Some("clawdbot"))
    );

    let verify = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_sqlguard"))
            .args(["audit", "--verify", "--file"])
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = verify(&path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // Edit one record: the chain names the line.
    let tampered = path.with_file_name("tampered.log");
    std::fs::write(
        &tampered,
        text.replacen("DELETE FROM orders", "SELECT 1", 1),
    )
    .unwrap();
    let broken = verify(&tampered);
    assert_eq!(broken.status.code(), Some(1));
    let line = text
        .lines()
        .position(|l| l.contains("DELETE FROM orders"))
        .unwrap()
        + 1;
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains(&format!("line {line}")),
        "{}",
        String::from_utf8_lossy(&broken.stdout)
    );
    let filtered = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["audit", "--decision", "deny", "--json", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&filtered.stdout);
    assert!(
        out.lines().count() >= 2 && out.lines().all(|l| l.contains("\"decision\":\"deny\"")),
        "{out}"
    );
}

#[tokio::test]
async fn statements_are_refused_when_the_log_cannot_be_written() {
    let mut config = test_config(shared_db_port());
    // Every write to /dev/full fails with ENOSPC.
    config.audit.path = Some("/dev/full".into());
    let proxy = start_proxy(config).await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    // The writer fails on the first record (after its statement ran); from
    // then on nothing runs.
    let _ = conn.query_drop("SELECT 1").await;
    let mut refused = None;
    for _ in 0..100 {
        match conn.query_drop("SELECT name FROM products LIMIT 1").await {
            Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            other => {
                refused = Some(server_error(other));
                break;
            }
        }
    }
    let (code, message) = refused.expect("statements still run while the log fails");
    assert_eq!(code, 1227, "{message}");
    assert!(message.contains("audit_unavailable"), "{message}");
    let (code, _) = server_error(
        conn.exec_drop(
            "SELECT name FROM products WHERE id = ?",
            ("3f2504e0-4f89-41d3-9a0c-0305e82c1001",),
        )
        .await,
    );
    assert_eq!(code, 1227);
}

/// Runs `sqlguard audit ARGS --file FILE` (the real binary): (exit code, stdout).
fn audit_cli(file: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .arg("audit")
        .args(args)
        .arg("--file")
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every record of the log at `path` (rotated files first), parsed.
fn records_of(path: &std::path::Path) -> Vec<Value> {
    try_records_of(path).unwrap_or_else(|out| panic!("sqlguard audit --json failed: {out}"))
}

/// `None` if `sqlguard audit` could not read the log (a file rotated away
/// while it was reading a live log).
fn try_records_of(path: &std::path::Path) -> Result<Vec<Value>, String> {
    let (code, out) = audit_cli(path, &["--json"]);
    if code != 0 {
        return Err(out);
    }
    Ok(out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect())
}

/// Waits until the log at `path` holds a record satisfying `done`.
async fn wait_for(path: &std::path::Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut records = Vec::new();
    for _ in 0..200 {
        if let Ok(now) = try_records_of(path) {
            records = now;
            if done(&records) {
                return records;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the log never got there: {records:?}");
}

/// A bot's conversation, statement by statement, with the decision each must
/// be recorded with: exactly one record per statement, in order, and the
/// chain breaks exactly where a middle line is deleted, edited or moved.
#[tokio::test]
async fn a_scripted_bot_session_has_one_record_per_statement() {
    let path = temp_log("script");
    let _cleanup = Cleanup(path.parent().unwrap().to_path_buf());
    let mut config = test_config(shared_db_port());
    config.audit.path = Some(path.clone());
    let proxy = start_proxy(config).await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let script: &[(&str, &str)] = &[
        (
            "SELECT name, price FROM products WHERE status = 'active'",
            "allow",
        ),
        (
            "SELECT id FROM customers WHERE phone = '+212612345678'",
            "allow",
        ),
        ("DELETE FROM orders", "deny"),
        ("SELECT * FROM mysql.user", "deny"),
        ("SELECT no_such_column FROM products", "error"),
        (
            "UPDATE customers SET phone = '+212600000009' WHERE id = 987654",
            "allow",
        ),
        ("DROP TABLE orders", "deny"),
        ("SELECT COUNT(*) FROM orders", "allow"),
    ];
    for (sql, expected) in script {
        let got = match conn.query_drop(*sql).await {
            Ok(()) => "allow",
            Err(mysql_async::Error::Server(e)) if e.message.starts_with("sqlguard:") => "deny",
            Err(mysql_async::Error::Server(_)) => "error",
            Err(e) => panic!("{sql}: {e}"),
        };
        assert_eq!(got, *expected, "{sql}");
    }
    let conn_id = conn.id();
    drop(conn);
    let mine = |records: &[Value]| -> Vec<Value> {
        records
            .iter()
            // mysql_async's own connect-time query is recorded too; the
            // script's statements are the ones after it.
            .filter(|r| {
                r["conn_id"] == conn_id
                    && r["command"] == "query"
                    && r["sql"] != "SELECT @@max_allowed_packet,@@wait_timeout"
            })
            .cloned()
            .collect()
    };
    let records = wait_for(&path, |r| mine(r).len() >= script.len()).await;
    let mine = mine(&records);
    assert_eq!(mine.len(), script.len(), "{mine:#?}");
    for ((sql, expected), record) in script.iter().zip(&mine) {
        assert_eq!(record["decision"], *expected, "{sql}: {record}");
        if sql.contains("phone") {
            // Redaction: the number is in neither the received nor the executed SQL.
            let text = record.to_string();
            assert!(!text.contains("+2126"), "{text}");
            assert!(
                record["sql"].as_str().unwrap().contains("'<redacted>'"),
                "{record}"
            );
            assert!(
                record["executed_sql"]
                    .as_str()
                    .unwrap()
                    .contains("'<redacted>'"),
                "{record}"
            );
        } else {
            assert_eq!(record["sql"], *sql);
        }
        assert_eq!(
            record["executed_sql"].is_null(),
            *expected == "deny",
            "{record}"
        );
    }
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let (code, out) = audit_cli(&path, &["--verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: {} records", records.len())),
        "{out}"
    );

    // Tampering with a middle line: --verify names that line (1-based).
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    let tampered = path.with_file_name("tampered.log");
    let check = |lines: Vec<&str>, line: usize, why: &str| {
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let (code, out) = audit_cli(&tampered, &["--verify"]);
        assert_eq!(code, 1, "{why}: {out}");
        assert!(
            out.contains(&format!("tampered.log line {line}:")),
            "{why}: {out}"
        );
    };
    let mut deleted = lines.clone();
    deleted.remove(middle);
    check(deleted, middle + 1, "deleted");
    let edited_line = lines[middle].replacen("\"rows\":", "\"rows\":1", 1);
    let edited_line = if edited_line == lines[middle] {
        lines[middle].replacen("\"conn_id\":", "\"conn_id\":9", 1)
    } else {
        edited_line
    };
    let mut edited = lines.clone();
    edited[middle] = &edited_line;
    check(edited, middle + 1, "edited");
    let mut reordered = lines.clone();
    reordered.swap(middle, middle + 1);
    check(reordered, middle + 1, "reordered");

    // The table and the summary a DBA reads.
    let (code, table) = audit_cli(&path, &["--decision", "deny"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("statement_not_allowed") && l.contains("DELETE FROM orders")),
        "{table}"
    );
    let (code, summary) = audit_cli(&path, &["--summary", "--user", "clawdbot"]);
    assert_eq!(code, 0);
    for needle in [
        "by decision:",
        "deny",
        "top denied rules:",
        "statement_not_allowed",
        "top tables",
        "products",
        "slowest statements:",
    ] {
        assert!(summary.contains(needle), "{needle}: {summary}");
    }
}

/// Size-based rotation and logrotate's way (move the file, SIGHUP): the
/// chain continues across files and `--verify` checks it across them.
#[tokio::test]
async fn rotated_logs_verify_across_files() {
    let path = temp_log("rotate");
    let _cleanup = Cleanup(path.parent().unwrap().to_path_buf());
    let dir = path.parent().unwrap().to_path_buf();
    let mut config = test_config(shared_db_port());
    config.audit.path = Some(path.clone());
    // Every write rotates; the client waits for each record (and for the
    // rotation after it: a new, empty audit.log), so each is a write of its own.
    config.audit.rotate_bytes = Some(1);
    config.audit.rotate_keep = 100;
    let proxy = start_proxy(config).await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let rotated_files = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("audit.log.")
            })
            .count()
    };
    let mut run = async |sql: String| {
        let before = rotated_files();
        conn.query_drop(&sql).await.unwrap();
        wait_for(&path, |r| {
            r.iter().any(|r| r["sql"] == sql.as_str())
                && std::fs::metadata(&path).is_ok_and(|m| m.len() == 0)
                && rotated_files() > before
        })
        .await
    };
    for i in 0..6 {
        run(format!("SELECT name FROM products WHERE price > {i}")).await;
    }
    let rotated = rotated_files();
    assert!(rotated >= 6, "{rotated} rotated files");
    let (code, out) = audit_cli(&path, &["--verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" file(s), hash chain intact"), "{out}");

    // logrotate: move every file one up, then SIGHUP (handled, not fatal).
    for n in (1..=rotated).rev() {
        std::fs::rename(
            dir.join(format!("audit.log.{n}")),
            dir.join(format!("audit.log.{}", n + 1)),
        )
        .unwrap();
    }
    std::fs::rename(&path, dir.join("audit.log.1")).unwrap();
    // SAFETY: sending a signal to this process; listener::start installed its handler.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    let mut records = Vec::new();
    for i in 0..3 {
        records = run(format!(
            "SELECT name FROM products WHERE price > {}",
            100 + i
        ))
        .await;
    }
    let (code, out) = audit_cli(&path, &["--verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: {} records", records.len())),
        "{out}"
    );
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // A rotated file removed from the middle (.3 holds the first record
    // after the SIGHUP; .2 the next) is named by --verify.
    std::fs::remove_file(dir.join("audit.log.3")).unwrap();
    let (code, out) = audit_cli(&path, &["--verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit.log.2 line 1: prev_hash"), "{out}");
}

/// 100 clients × 200 statements at once: one record each, seq without gaps,
/// every line whole JSON; all written by the time shutdown returns.
#[tokio::test]
async fn concurrent_clients_get_one_record_per_statement() {
    const CLIENTS: usize = 100;
    const STATEMENTS: usize = 200;
    let path = temp_log("concurrent");
    let _cleanup = Cleanup(path.parent().unwrap().to_path_buf());
    let mut config = test_config(shared_db_port());
    config.audit.path = Some(path.clone());
    // The per-user limits would refuse part of this load (that is their job).
    for user in &mut config.users {
        user.limits.max_user_connections = 1000;
        user.limits.max_concurrent_statements = 1000;
        user.limits.statements_per_second = 1e9;
        user.limits.statement_burst = u32::MAX;
    }
    let proxy = start_proxy(config).await;
    let opts = proxy_opts(&proxy, CLAWDBOT);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(opts).await.unwrap();
            for s in 0..STATEMENTS {
                let tag = c * 1000 + s;
                if s % 10 == 0 {
                    let _ = conn
                        .query_drop(format!("DELETE FROM orders WHERE total = {tag}"))
                        .await;
                } else {
                    conn.query_drop(format!("SELECT id FROM products WHERE price = {tag}"))
                        .await
                        .unwrap();
                }
            }
            conn.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Graceful shutdown writes what is queued: no waiting after it.
    proxy.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let mut tags = std::collections::HashMap::new();
    let mut last_seq = 0;
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let seq = record["seq"].as_u64().unwrap();
        assert_eq!(seq, last_seq + 1, "{line}");
        last_seq = seq;
        let sql = record["sql"].as_str().unwrap_or("");
        if let Some(tag) = sql.rsplit(' ').next().and_then(|t| t.parse::<usize>().ok()) {
            if sql.contains("total =") || sql.contains("price =") {
                *tags.entry(tag).or_insert(0) += 1;
                let expected = if sql.starts_with("DELETE") {
                    "deny"
                } else {
                    "allow"
                };
                assert_eq!(record["decision"], expected, "{line}");
            }
        }
    }
    assert_eq!(tags.len(), CLIENTS * STATEMENTS);
    assert!(tags.values().all(|&n| n == 1));
    let (code, out) = audit_cli(&path, &["--verify"]);
    assert_eq!(code, 0, "{out}");
}

async fn scrape_write_errors(proxy: &sqlguard::frontend::listener::RunningProxy) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.metrics_addr.expect("metrics address");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .lines()
        .find_map(|l| l.strip_prefix("sqlguard_audit_write_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no sqlguard_audit_write_errors_total in {response}")) as u64
}

/// The log's path turns into a directory while the proxy runs (this fails
/// for root too): statements are refused with 1227 `audit_unavailable`, the
/// write-error counter rises, and service resumes once the path can be
/// written again, with the chain intact across the moved file and the new one.
#[tokio::test]
async fn statements_are_refused_while_the_path_cannot_be_written_and_resume() {
    let path = temp_log("unwritable");
    let _cleanup = Cleanup(path.parent().unwrap().to_path_buf());
    let mut config = test_config(shared_db_port());
    config.audit.path = Some(path.clone());
    let proxy = start_proxy(config).await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    conn.query_drop("SELECT name FROM products LIMIT 1")
        .await
        .unwrap();
    wait_for(&path, |r| !r.is_empty()).await;
    let errors_before = scrape_write_errors(&proxy).await;
    std::fs::rename(&path, path.with_file_name("audit.log.1")).unwrap();
    std::fs::create_dir(&path).unwrap();
    let mut refused = None;
    for _ in 0..200 {
        match conn.query_drop("SELECT name FROM products LIMIT 1").await {
            Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            other => {
                refused = Some(server_error(other));
                break;
            }
        }
    }
    let (code, message) = refused.expect("statements still run while the log cannot be written");
    assert_eq!(code, 1227, "{message}");
    assert!(message.contains("audit_unavailable"), "{message}");
    assert!(scrape_write_errors(&proxy).await > errors_before);

    std::fs::remove_dir(&path).unwrap();
    let mut resumed = false;
    for _ in 0..200 {
        if conn
            .query_drop("SELECT name FROM products LIMIT 1")
            .await
            .is_ok()
        {
            resumed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(resumed, "service did not resume once the log was writable");
    drop(conn);
    proxy.shutdown().await;
    let (code, out) = audit_cli(&path, &["--verify"]);
    assert_eq!(code, 0, "{out}");
    let records = records_of(&path);
    assert!(
        records
            .iter()
            .any(|r| r["rule"] == "audit_unavailable" && r["decision"] == "deny"),
        "the refusals are recorded too"
    );
}
