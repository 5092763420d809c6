//! End to end through sqlguard with mysql_async as the client, on a private
//! MariaDB: logins, the first guard's denials, transactions, LAST_INSERT_ID,
//! the paths opensrv intercepts, max_connections, faults and shutdown.

mod common;

use std::time::Duration;

use common::mariadb::{backend_opts_at, start_fixture};
use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

async fn connect(proxy: &listener::RunningProxy, user: (&str, &str)) -> Conn {
    match Conn::new(proxy_opts(proxy, user)).await {
        Ok(c) => c,
        Err(e) => panic!("cannot log in as {}: {e}", user.0),
    }
}

use sqlguard::frontend::listener;

#[tokio::test]
async fn login_with_right_password_works_and_wrong_one_gets_1045() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    for user in [
        ("clawdbot", "wrong"),
        ("nobody", "meyram-demo"),
        ("clawdbot", ""),
    ] {
        let (code, message) = server_error(Conn::new(proxy_opts(&proxy, user)).await);
        assert_eq!(code, 1045, "{user:?}: {message}");
        assert!(
            message.starts_with("sqlguard: Access denied for user"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn each_connection_gets_its_own_id() {
    let proxy = shared_proxy().await;
    let a = connect(&proxy, CLAWDBOT).await;
    let b = connect(&proxy, CLAWDBOT).await;
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), 0);
}

#[tokio::test]
async fn handshake_advertises_the_backend_version() {
    let proxy = shared_proxy().await;
    // The version is learnt from the backend in the background.
    let mut version = proxy.shared.advertised_version();
    for _ in 0..50 {
        if !version.contains("10.11.0-") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        version = proxy.shared.advertised_version();
    }
    assert!(version.ends_with("-MariaDB-sqlguard"), "{version}");
    let mut direct = Conn::new(backend_opts_at(shared_db_port())).await.unwrap();
    let backend: String = direct
        .query_first("SELECT VERSION()")
        .await
        .unwrap()
        .unwrap();
    let core = backend.split('-').next().unwrap();
    assert!(version.contains(core), "{version} vs {backend}");
}

#[tokio::test]
async fn seed_queries_return_rows() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let rows: Vec<(String, String)> = conn
        .query("SELECT name, CAST(price AS CHAR) FROM products WHERE status = 'active' LIMIT 5")
        .await
        .unwrap();
    assert!(!rows.is_empty() && rows.len() <= 5);
    let phones: Vec<Row> = conn
        .query("SELECT * FROM customers WHERE phone LIKE '+212%'")
        .await
        .unwrap();
    assert!(!phones.is_empty());
}

#[tokio::test]
async fn denied_statements_get_their_codes_and_reach_nothing() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let cases: &[(&str, u16)] = &[
        ("DELETE FROM customers WHERE id = 1", 1227),
        ("DROP TABLE customers", 1227),
        ("TRUNCATE TABLE orders", 1227),
        ("SELECT 1; DROP TABLE customers", 1227),
        ("/*M! DROP TABLE customers */ SELECT 1", 1227),
        ("SELEKT * FROM customers", 1064),
        ("SET GLOBAL max_connections = 1", 1227),
        ("SET sql_mode = 'ANSI_QUOTES'", 1227),
    ];
    for (sql, expected) in cases {
        let (code, message) = server_error(conn.query_drop(*sql).await);
        assert_eq!(code, *expected, "{sql}: {message}");
        assert!(message.starts_with("sqlguard: "), "{sql}: {message}");
        assert!(message.contains("rule: "), "{sql}: {message}");
    }
    // The table is still there.
    let mut direct = Conn::new(backend_opts_at(shared_db_port())).await.unwrap();
    let n: Option<i64> = direct
        .query_first("SELECT COUNT(*) FROM customers")
        .await
        .unwrap();
    assert!(n.unwrap_or(0) > 0);
}

#[tokio::test]
async fn read_only_user_cannot_write() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, READONLY).await;
    let (code, message) = server_error(
        conn.query_drop("UPDATE products SET stock = 0 WHERE name = 'nothing'")
            .await,
    );
    assert_eq!(code, 1227, "{message}");
}

#[tokio::test]
async fn rolled_back_transaction_leaves_nothing() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let phone = "+212699990001";
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop(format!(
        "INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '{phone}', 'whatsapp')"
    ))
    .await
    .unwrap();
    let inside: Option<i64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM customers WHERE phone = '{phone}'"
        ))
        .await
        .unwrap();
    assert_eq!(inside, Some(1), "the pinned connection sees its own insert");
    conn.query_drop("ROLLBACK").await.unwrap();
    let mut direct = Conn::new(backend_opts_at(shared_db_port())).await.unwrap();
    let after: Option<i64> = direct
        .query_first(format!(
            "SELECT COUNT(*) FROM customers WHERE phone = '{phone}'"
        ))
        .await
        .unwrap();
    assert_eq!(after, Some(0));
}

#[tokio::test]
async fn last_insert_id_follows_the_session() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    conn.query_drop(
        "INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212699990002', 'whatsapp')",
    )
    .await
    .unwrap();
    let from_ok = conn.last_insert_id().expect("OK packet carries the id");
    assert_eq!(conn.affected_rows(), 1);
    let from_sql: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(from_sql, Some(from_ok));
    let phone: Option<String> = conn
        .query_first(format!("SELECT phone FROM customers WHERE id = {from_ok}"))
        .await
        .unwrap();
    assert_eq!(phone.as_deref(), Some("+212699990002"));
}

#[tokio::test]
async fn select_at_at_and_use_paths() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    // Answered by opensrv itself (quirk 2).
    let packet: Option<u64> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .unwrap();
    assert!(packet.is_some());
    // Reaches the guard and the backend.
    let comment: Option<String> = conn
        .query_first("SELECT @@version_comment LIMIT 1")
        .await
        .unwrap();
    assert!(comment.is_some());
    // All spellings of USE reach the guard (quirk 3).
    for ok in [
        "USE shop",
        "use shop",
        "USE `shop`",
        "Use shop",
        "/* c */ USE shop",
    ] {
        conn.query_drop(ok)
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for denied in [
        "USE mysql",
        "use information_schema",
        "USE `mysql`",
        "Use\tmysql",
    ] {
        let (code, message) = server_error(conn.query_drop(denied).await);
        assert_eq!(code, 1044, "{denied}: {message}");
    }
    let db: Option<String> = conn.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some("shop"));
}

#[tokio::test]
async fn handshake_database_must_be_the_configured_one() {
    let proxy = shared_proxy().await;
    let opts =
        mysql_async::OptsBuilder::from_opts(proxy_opts(&proxy, CLAWDBOT)).db_name(Some("mysql"));
    let (code, message) = server_error(Conn::new(opts).await);
    assert_eq!(code, 1044, "{message}");
}

#[tokio::test]
async fn max_connections_refuses_the_next_client_with_1040() {
    let mut config = test_config(shared_db_port());
    config.listen.max_connections = 2;
    let proxy = start_proxy(config).await;
    let a = connect(&proxy, CLAWDBOT).await;
    let b = connect(&proxy, CLAWDBOT).await;
    let (code, message) = server_error(Conn::new(proxy_opts(&proxy, CLAWDBOT)).await);
    assert_eq!(code, 1040, "{message}");
    drop(a);
    // The slot is free again once the first client has gone.
    let mut c = None;
    for _ in 0..50 {
        match Conn::new(proxy_opts(&proxy, CLAWDBOT)).await {
            Ok(conn) => {
                c = Some(conn);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(c.is_some(), "a slot should free up after a client leaves");
    drop(b);
}

#[tokio::test]
async fn idle_client_is_disconnected() {
    let mut config = test_config(shared_db_port());
    config.listen.idle_timeout = Duration::from_millis(300);
    let proxy = start_proxy(config).await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    conn.query_drop("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(conn.query_drop("SELECT 1").await.is_err());
}

#[tokio::test]
async fn silent_client_is_dropped_after_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let mut config = test_config(shared_db_port());
    config.listen.handshake_timeout = Duration::from_millis(300);
    let proxy = start_proxy(config).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let greeting = stream.read(&mut buf).await.unwrap();
    assert!(greeting > 0);
    // Send nothing: the server must close the connection by itself.
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test]
async fn a_handshake_without_user_name_cannot_run_commands() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = shared_proxy().await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = stream.read(&mut buf).await.unwrap();
    // HandshakeResponse41 cut off right after the fixed part: opensrv parses
    // it with no user name and skips authentication altogether.
    let mut payload = Vec::new();
    payload.extend_from_slice(&(0x0000_0200u32 | 0x0000_8000).to_le_bytes()); // PROTOCOL_41 | SECURE_CONNECTION
    payload.extend_from_slice(&16_777_216u32.to_le_bytes());
    payload.push(33);
    payload.extend_from_slice(&[0u8; 23]);
    let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(1);
    packet.extend_from_slice(&payload);
    stream.write_all(&packet).await.unwrap();
    let query = b"\x03SELECT * FROM customers";
    let mut packet = (query.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(query);
    let _ = stream.write_all(&packet).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut reply)).await;
    // No row data may come back: at most an error packet, then the close.
    let text = String::from_utf8_lossy(&reply);
    assert!(!text.contains("+212"), "customer data leaked: {text}");
    assert!(
        reply.iter().all(|&b| b != 0xfe) || text.contains("not logged in"),
        "{text}"
    );
}

#[tokio::test]
async fn backend_killed_and_restarted_while_the_proxy_runs() {
    let mut db = start_fixture().await;
    let proxy = start_proxy(test_config(db.port())).await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    conn.query_drop("SELECT 1").await.unwrap();

    db.kill().await;
    let metrics = proxy.metrics_addr.expect("metrics address");
    assert_eq!(
        http_get(metrics, "/readyz").await.0,
        503,
        "not ready without a database"
    );
    assert_eq!(http_get(metrics, "/healthz").await.0, 200, "but alive");
    let (code, message) = server_error(conn.query_drop("SELECT 1").await);
    assert_eq!(code, 1105, "{message}");
    assert!(message.starts_with("sqlguard: "), "{message}");
    // While the database is down, logins still work (they are the proxy's)
    // and statements say the database is unavailable. (mysql_async asks for
    // @@max_allowed_packet and @@wait_timeout on connect unless told them.)
    let late_opts = mysql_async::OptsBuilder::from_opts(proxy_opts(&proxy, CLAWDBOT))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28800));
    let mut late = Conn::new(late_opts)
        .await
        .expect("login while the database is down");
    let (_, message) = server_error(late.query_drop("SELECT 1").await);
    assert!(message.contains("unavailable"), "{message}");

    db.restart().await.expect("restart");
    let mut served = false;
    for _ in 0..100 {
        if conn.query_drop("SELECT 1").await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the proxy serves again once the database is back");
    assert_eq!(http_get(metrics, "/readyz").await.0, 200);
    late.query_drop("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_running_statement_finish() {
    let proxy = shared_proxy().await;
    let addr = proxy.addr;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let slow = tokio::spawn(async move {
        let n: Option<i64> = conn
            .query_first(
                // About two seconds of work on the database (tenant 1's rows only).
                "SELECT COUNT(*) FROM bench_points a JOIN bench_points b JOIN bench_points c WHERE c.id <= 160",
            )
            .await
            .unwrap();
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.is_finished(), "the statement should still be running");
    proxy.shutdown().await;
    let n = slow.await.unwrap();
    // Tenant 1 owns the 500 odd ids, 80 of them up to 160: 500 * 500 * 80.
    assert_eq!(n, Some(20_000_000), "the running statement completed");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn com_reset_connection_resets_the_backend_session() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    conn.query_drop("SET autocommit = 0").await.unwrap();
    let before: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(before, Some(0));
    // mysql_async sends COM_RESET_CONNECTION to MariaDB-looking servers.
    let supported = conn.reset().await.unwrap();
    assert!(supported);
    let after: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(after, Some(1));
}

#[tokio::test]
async fn backend_session_keeps_the_pinned_sql_mode() {
    let proxy = shared_proxy().await;
    let mut conn = connect(&proxy, CLAWDBOT).await;
    let mode: Option<String> = conn.query_first("SELECT @@SESSION.sql_mode").await.unwrap();
    let mode = mode.unwrap();
    assert!(
        !mode.contains("ANSI_QUOTES") && !mode.contains("NO_BACKSLASH_ESCAPES"),
        "{mode}"
    );
    assert_eq!(mode, sqlguard::backend::PINNED_SQL_MODE);
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
