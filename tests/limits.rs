//! `[limits]` through the proxy with a real client (mysql_async): each limit
//! answers its documented MySQL error, the connection stays usable, and one
//! user's limit never touches another user.

mod common;

use std::time::Duration;

use common::mariadb::backend_opts_at;
use common::proxy::{
    CLAWDBOT, READONLY, config_from_toml, proxy_opts, server_error, shared_db_port, start_proxy,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use sqlguard::frontend::listener::RunningProxy;

/// The demo proxy.toml with `limits` (an inline table) for clawdbot only.
async fn proxy_with_clawdbot_limits(limits: &str) -> RunningProxy {
    let toml = sqlguard::DEMO_PROXY_TOML.replacen(
        "policy = \"clawdbot\"",
        &format!("policy = \"clawdbot\"\nlimits = {{ {limits} }}"),
        1,
    );
    start_proxy(config_from_toml(&toml, shared_db_port())).await
}

async fn connect(proxy: &RunningProxy, user: (&str, &str)) -> Conn {
    match Conn::new(proxy_opts(proxy, user)).await {
        Ok(c) => c,
        Err(e) => panic!("{} cannot connect: {e}", user.0),
    }
}

async fn one(conn: &mut Conn, sql: &str) -> i64 {
    match conn.query_first::<i64, _>(sql).await {
        Ok(Some(v)) => v,
        other => panic!("{sql}: {other:?}"),
    }
}

#[tokio::test]
async fn max_user_connections_answers_1203_for_that_user_only() {
    let proxy = proxy_with_clawdbot_limits("max_user_connections = 2").await;
    let a = connect(&proxy, CLAWDBOT).await;
    let _b = connect(&proxy, CLAWDBOT).await;
    let (code, message) = server_error(Conn::new(proxy_opts(&proxy, CLAWDBOT)).await);
    assert_eq!(code, 1203, "{message}");
    assert!(message.contains("max_user_connections"), "{message}");
    // Another user is not affected.
    let mut other = connect(&proxy, READONLY).await;
    assert_eq!(one(&mut other, "SELECT 1").await, 1);
    // A closed connection gives its slot back (once the proxy has seen it go).
    a.disconnect().await.unwrap_or_else(|e| panic!("{e}"));
    let mut again = None;
    for _ in 0..100 {
        match Conn::new(proxy_opts(&proxy, CLAWDBOT)).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let mut again = again.unwrap_or_else(|| panic!("the slot was never given back"));
    assert_eq!(one(&mut again, "SELECT 1").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_1226_with_a_usable_retry_hint() {
    let proxy = proxy_with_clawdbot_limits("statements_per_second = 5, statement_burst = 2").await;
    let mut bot = connect(&proxy, CLAWDBOT).await;
    let mut other = connect(&proxy, READONLY).await;
    // The burst is spent, then the next statement is refused.
    let mut allowed = 0;
    let (code, message) = loop {
        match bot.query_first::<i64, _>("SELECT 1").await {
            Ok(_) => allowed += 1,
            Err(mysql_async::Error::Server(e)) => break (e.code, e.message),
            Err(e) => panic!("{e}"),
        }
        assert!(allowed <= 2, "more statements than the burst were allowed");
    };
    assert_eq!(code, 1226, "{message}");
    assert!(message.contains("statements_per_second"), "{message}");
    // The other user still runs as fast as it likes.
    for _ in 0..10 {
        assert_eq!(one(&mut other, "SELECT 1").await, 1);
    }
    // Waiting as the hint says is enough.
    let retry_ms: u64 = message
        .split("retry after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry hint in {message}"));
    assert!((1..=200).contains(&retry_ms), "{message}");
    tokio::time::sleep(Duration::from_millis(retry_ms + 10)).await;
    assert_eq!(one(&mut bot, "SELECT 1").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn max_concurrent_statements_counts_across_connections() {
    let proxy = proxy_with_clawdbot_limits("max_concurrent_statements = 1").await;
    // A row lock held outside the proxy keeps one of the bot's UPDATEs running.
    let mut locker = Conn::new(backend_opts_at(shared_db_port()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    locker
        .query_drop("BEGIN")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    locker
        .query_drop("SELECT id FROM customers WHERE id = 1 FOR UPDATE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut blocked = connect(&proxy, CLAWDBOT).await;
    // Connected first: the driver's connect-time statements count too.
    let mut second = connect(&proxy, CLAWDBOT).await;
    let update = tokio::spawn(async move {
        let r = blocked
            .query_drop("UPDATE customers SET notes = 'limits test' WHERE id = 1")
            .await;
        (blocked, r)
    });
    // Wait until the UPDATE waits for the lock in MariaDB.
    let mut waiting = false;
    for _ in 0..500 {
        let n: Option<i64> = locker
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'UPDATE customers SET notes%'",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if n == Some(1) {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the UPDATE never reached MariaDB");
    let (code, message) = server_error(second.query_first::<i64, _>("SELECT 1").await);
    assert_eq!(code, 1226, "{message}");
    assert!(
        message.contains("max_concurrent_statements") && message.contains("retry after"),
        "{message}"
    );
    // Another user is not affected.
    let mut other = connect(&proxy, READONLY).await;
    assert_eq!(one(&mut other, "SELECT 1").await, 1);
    locker
        .query_drop("ROLLBACK")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_blocked, r) = update.await.unwrap_or_else(|e| panic!("{e}"));
    r.unwrap_or_else(|e| panic!("the UPDATE failed: {e}"));
    // The permit is given back when the statement is done.
    assert_eq!(one(&mut second, "SELECT 1").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn statement_size_answers_1153_before_parsing() {
    let proxy = proxy_with_clawdbot_limits("max_statement_bytes = 100").await;
    let long = format!(
        "SELECT id FROM products WHERE name = '{}' LIMIT 1",
        "x".repeat(100)
    );
    let mut bot = connect(&proxy, CLAWDBOT).await;
    let (code, message) = server_error(bot.query_drop(&long).await);
    assert_eq!(code, 1153, "{message}");
    assert!(message.contains("max_statement_bytes (100)"), "{message}");
    // Prepared statements are held to the same size.
    let (code, _) = server_error(bot.prep(&long).await);
    assert_eq!(code, 1153);
    // The connection stays usable; another user may send the long statement.
    assert_eq!(one(&mut bot, "SELECT 1").await, 1);
    let mut other = connect(&proxy, READONLY).await;
    other
        .query_drop(&long)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn max_packet_bytes_answers_1153_and_closes_the_connection() {
    let toml = format!(
        "{}\n[limits]\nmax_packet_bytes = 4096\nmax_statement_bytes = 4096\n",
        sqlguard::DEMO_PROXY_TOML
    );
    let proxy = start_proxy(config_from_toml(&toml, shared_db_port())).await;
    let mut bot = connect(&proxy, CLAWDBOT).await;
    let huge = format!("SELECT '{}'", "x".repeat(10_000));
    let (code, message) = server_error(bot.query_drop(&huge).await);
    assert_eq!(code, 1153, "{message}");
    assert!(message.contains("max_packet_bytes = 4096"), "{message}");
    // The proxy serves new connections as before.
    let mut again = connect(&proxy, CLAWDBOT).await;
    assert_eq!(one(&mut again, "SELECT 1").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn result_size_guard_ends_with_1104_never_a_complete_result() {
    let proxy = proxy_with_clawdbot_limits("max_result_rows = 3").await;
    let mut bot = connect(&proxy, CLAWDBOT).await;
    // Exactly the limit is fine.
    let rows: Vec<Row> = bot
        .query("SELECT id FROM products ORDER BY id LIMIT 3")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 3);
    // One more row: an error, not four rows (nor three presented as all).
    let (code, message) = server_error(
        bot.query::<Row, _>("SELECT id FROM products ORDER BY id LIMIT 7")
            .await,
    );
    assert_eq!(code, 1104, "{message}");
    assert!(message.contains("NOT the complete result"), "{message}");
    // Prepared statements too.
    let (code, _) = server_error(
        bot.exec::<Row, _, _>("SELECT id FROM products ORDER BY id LIMIT 7", ())
            .await,
    );
    assert_eq!(code, 1104);
    // The connection is usable afterwards, and another user is not limited.
    assert_eq!(one(&mut bot, "SELECT 1").await, 1);
    let mut other = connect(&proxy, READONLY).await;
    let rows: Vec<Row> = other
        .query("SELECT id FROM products ORDER BY id LIMIT 7")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 7);
    proxy.shutdown().await;
}

#[tokio::test]
async fn result_bytes_guard() {
    let proxy = proxy_with_clawdbot_limits("max_result_bytes = 300").await;
    let mut bot = connect(&proxy, CLAWDBOT).await;
    let (code, message) = server_error(
        bot.query::<Row, _>("SELECT id, name, description FROM products LIMIT 7")
            .await,
    );
    assert_eq!(code, 1104, "{message}");
    assert!(message.contains("max_result_bytes (300)"), "{message}");
    assert_eq!(one(&mut bot, "SELECT 1").await, 1);
    proxy.shutdown().await;
}
