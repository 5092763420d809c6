//! The bypass-attempt corpus (tests/data/bypass.toml) through the real proxy
//! to MariaDB, as `clawdbot` of tenant 1: every attempt is refused by the
//! guard or neutralized, no row of tenant 2 ever comes back, and tenant 2's
//! data is the same after the whole corpus (docs/SECURITY.md).

mod common;

use std::collections::BTreeMap;

use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row, Value};

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    class: String,
    sql: String,
    expect: String,
}

async fn root(port: u16) -> Conn {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .db_name(Some("shop"))
        .prefer_socket(false);
    Conn::new(opts).await.expect("root connection")
}

fn text(value: &Value) -> String {
    match value {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::NULL => String::new(),
        other => other.as_sql(true),
    }
}

/// Everything tenant 2 has, table by table, as text (the "before" picture).
async fn tenant2_state(root: &mut Conn) -> BTreeMap<&'static str, Vec<String>> {
    let mut state = BTreeMap::new();
    for (table, query) in [
        ("tenants", "SELECT * FROM tenants WHERE id = 2"),
        (
            "customers",
            "SELECT * FROM customers WHERE tenant_id = 2 ORDER BY id",
        ),
        (
            "products",
            "SELECT * FROM products WHERE tenant_id = 2 ORDER BY id",
        ),
        (
            "orders",
            "SELECT * FROM orders WHERE tenant_id = 2 ORDER BY id",
        ),
        (
            "conversations",
            "SELECT * FROM conversations WHERE tenant_id = 2 ORDER BY id",
        ),
        (
            "messages",
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.tenant_id = 2 ORDER BY m.id",
        ),
    ] {
        let rows: Vec<Row> = root.query(query).await.expect(query);
        let rows = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| text(&r[i]))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        state.insert(table, rows);
    }
    state
}

/// Values that identify tenant 2's rows and appear nowhere in tenant 1's.
async fn tenant2_markers(root: &mut Conn) -> Vec<String> {
    let mut t2: Vec<String> = Vec::new();
    let mut t1: Vec<String> = Vec::new();
    for (column, table) in [
        ("CAST(id AS CHAR)", "products"),
        ("name", "products"),
        ("phone", "customers"),
        ("CAST(id AS CHAR)", "orders"),
        ("name", "tenants"),
        ("slug", "tenants"),
    ] {
        let key = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let q2 = format!("SELECT {column} FROM {table} WHERE {key} = 2");
        let q1 = format!("SELECT {column} FROM {table} WHERE {key} = 1");
        let v2: Vec<Option<String>> = root.query(q2).await.expect("markers");
        let v1: Vec<Option<String>> = root.query(q1).await.expect("markers");
        t2.extend(v2.into_iter().flatten());
        t1.extend(v1.into_iter().flatten());
    }
    let messages: Vec<Option<String>> = root
        .query("SELECT content FROM messages WHERE conversation_id BETWEEN 5 AND 8")
        .await
        .expect("messages");
    t2.extend(messages.into_iter().flatten());
    t2.retain(|m| m.len() >= 8 && !t1.iter().any(|o| o.contains(m.as_str())));
    t2.sort();
    t2.dedup();
    t2
}

#[tokio::test]
async fn bypass_corpus_is_denied_or_neutralized() {
    let path = repo_path("tests/data/bypass.toml");
    let corpus: Corpus = toml::from_str(&std::fs::read_to_string(&path).expect("read corpus"))
        .expect("parse tests/data/bypass.toml");
    let port = shared_db_port();
    let mut root = root(port).await;
    let before = tenant2_state(&mut root).await;
    let markers = tenant2_markers(&mut root).await;
    assert!(markers.len() >= 10, "too few tenant-2 markers: {markers:?}");

    let proxy = shared_proxy().await;
    let mut problems = Vec::new();
    let mut denied = 0;
    let mut neutralized = 0;
    for case in &corpus.case {
        // A fresh connection per attempt: no state carries over.
        let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT))
            .await
            .expect("login");
        let outcome: Result<Vec<Row>, mysql_async::Error> = conn.query(case.sql.as_str()).await;
        let what = format!("[{}] {:?}", case.class, case.sql);
        match (&outcome, case.expect.as_str()) {
            (Err(mysql_async::Error::Server(e)), "deny") if e.message.starts_with("sqlguard:") => {
                denied += 1
            }
            (_, "deny") => problems.push(format!("{what}: not refused by the guard: {outcome:?}")),
            (Ok(rows), "safe") => {
                for row in rows {
                    for i in 0..row.len() {
                        let cell = text(&row[i]);
                        if let Some(m) = markers.iter().find(|m| cell.contains(m.as_str())) {
                            problems.push(format!("{what}: returned tenant 2's {m:?}"));
                        }
                    }
                }
                neutralized += 1;
            }
            (Err(mysql_async::Error::Server(_)), "safe") => neutralized += 1,
            (Err(e), "safe") => problems.push(format!("{what}: not an error packet: {e}")),
            (_, other) => problems.push(format!("{what}: unknown expectation {other:?}")),
        }
        let _ = conn.disconnect().await;
    }
    let after = tenant2_state(&mut root).await;
    for (table, rows) in &before {
        if after.get(table) != Some(rows) {
            problems.push(format!("tenant 2's {table} changed"));
        }
    }
    eprintln!(
        "bypass attempts: {} ({denied} refused by the guard, {neutralized} neutralized)",
        corpus.case.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
