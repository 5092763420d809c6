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

fn temp_log(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlguard-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("audit.log")
}

#[tokio::test]
async fn every_statement_and_failed_login_is_recorded_and_chained() {
    let path = temp_log("records");
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
