//! Prepared statements through sqlguard (binary protocol) with mysql_async's
//! `exec`: the same guard as text queries at prepare time, bound values
//! checked at execute time, binary results identical to MariaDB's, and a
//! bounded number of statements per session.

mod common;

use common::mariadb::{backend_opts_at, t1, t2};
use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

async fn connect(user: (&str, &str)) -> (sqlguard::frontend::listener::RunningProxy, Conn) {
    let proxy = shared_proxy().await;
    let conn = Conn::new(proxy_opts(&proxy, user)).await.expect("login");
    (proxy, conn)
}

#[tokio::test]
async fn seed_workflow_with_bound_parameters() {
    let (_proxy, mut conn) = connect(CLAWDBOT).await;
    let names: Vec<(String, String)> = conn
        .exec(
            "SELECT name, CAST(price AS CHAR) FROM products WHERE status = ? LIMIT ?",
            ("active", 5),
        )
        .await
        .unwrap();
    assert!(!names.is_empty() && names.len() <= 5);
    let prices: Vec<String> = conn
        .exec(
            "SELECT CAST(price AS CHAR) FROM products WHERE name LIKE ?",
            ("%Montre%",),
        )
        .await
        .unwrap();
    assert_eq!(prices, vec!["549.00".to_string()]);
    let stock: Option<i64> = conn
        .exec_first(
            "SELECT stock FROM products WHERE id = ?",
            (t1::PRODUCT_EARBUDS,),
        )
        .await
        .unwrap();
    assert_eq!(stock, Some(25));
    let customer: Option<Row> = conn
        .exec_first(
            "SELECT * FROM customers WHERE phone = ?",
            (t1::CUSTOMER_PHONE,),
        )
        .await
        .unwrap();
    assert!(customer.is_some());
    conn.exec_drop(
        "INSERT INTO customers (phone, created_at) VALUES (?, NOW())",
        ("+212688880001",),
    )
    .await
    .unwrap();
    let customer_id = conn.last_insert_id().expect("insert id");
    conn.exec_drop(
        "INSERT INTO orders (id, customer_id, product_data, total_price, status) VALUES (?, ?, ?, ?, ?)",
        (
            "aaaaaaaa-bbbb-4ccc-8ddd-000000000001",
            customer_id,
            r#"[{"product_id": "3f2504e0-4f89-41d3-9a0c-0305e82c1001", "quantity": 1, "price": 299.00}]"#,
            "299.00",
            "En attente",
        ),
    )
    .await
    .unwrap();
    conn.exec_drop(
        "UPDATE orders SET status = ?, address = ?, city = ? WHERE id = ?",
        (
            "Confirmé",
            "12 Rue Tarik",
            "Casablanca",
            "aaaaaaaa-bbbb-4ccc-8ddd-000000000001",
        ),
    )
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let mut direct = Conn::new(backend_opts_at(shared_db_port())).await.unwrap();
    let row: Option<(u64, String, String)> = direct
        .query_first("SELECT tenant_id, status, city FROM orders WHERE id = 'aaaaaaaa-bbbb-4ccc-8ddd-000000000001'")
        .await
        .unwrap();
    assert_eq!(row, Some((1, "Confirmé".into(), "Casablanca".into())));
}

#[tokio::test]
async fn bound_values_are_checked_and_tenants_stay_apart() {
    let (_proxy, mut conn) = connect(CLAWDBOT).await;
    // Another tenant's product through a bound UUID: no row, not an error.
    let stock: Option<i64> = conn
        .exec_first(
            "SELECT stock FROM products WHERE id = ?",
            (t2::PRODUCT_RUG,),
        )
        .await
        .unwrap();
    assert_eq!(stock, None);
    for bad in [
        "1 OR 1=1",
        "PRODUCT_UUID",
        "3f2504e0-4f89-41d3-9a0c-0305e82c100'",
    ] {
        let (code, message) = server_error(
            conn.exec_first::<i64, _, _>("SELECT stock FROM products WHERE id = ?", (bad,))
                .await,
        );
        assert_eq!(code, 1411, "{bad}: {message}");
        assert!(message.contains("products.id"), "{message}");
    }
    let (code, message) = server_error(
        conn.exec_drop(
            "INSERT INTO orders (tenant_id, id, customer_id, total_price) VALUES (?, UUID(), 1, 1)",
            (2,),
        )
        .await,
    );
    assert_eq!(code, 1142, "{message}");
    // LIMIT ? is clamped to the policy's maximum (100).
    let rows: Vec<u32> = conn
        .exec(
            "SELECT id FROM bench_points ORDER BY id LIMIT ?",
            (100_000,),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 100);
    assert!(
        rows.iter().all(|id| id % 2 == 1),
        "tenant 1 owns the odd ids"
    );
    // Denied templates are refused at prepare time with the text-query codes.
    for (sql, expected) in [
        ("DELETE FROM orders WHERE id = ?", 1227),
        ("SELECT api_keys FROM tenants WHERE id = ?", 1142),
        ("SELECT * FROM orders WHERE id = ?; DROP TABLE orders", 1227),
    ] {
        let (code, message) = server_error(conn.prep(sql).await);
        assert_eq!(code, expected, "{sql}: {message}");
    }
}

#[tokio::test]
async fn binary_results_match_mariadb() {
    let (_proxy, mut proxied) = connect(CLAWDBOT).await;
    let mut direct = Conn::new(backend_opts_at(shared_db_port())).await.unwrap();
    for sql in [
        "SELECT * FROM type_probe WHERE tenant_id = ? ORDER BY id",
        "SELECT id, c_bigint, c_ubigint, c_decimal, c_float, c_double, c_datetime, c_time, c_json, c_uuid FROM type_probe WHERE tenant_id = ? ORDER BY id",
        "SELECT id, name, price, images, created_at FROM products WHERE tenant_id = ? ORDER BY id",
    ] {
        let expected: Vec<Row> = direct.exec(sql, (1,)).await.unwrap();
        let got: Vec<Row> = proxied.exec(sql, (1,)).await.unwrap();
        assert_eq!(got.len(), expected.len(), "{sql}");
        for (g, e) in got.iter().zip(&expected) {
            let gv: Vec<Value> = (0..g.len())
                .map(|i| g.as_ref(i).cloned().unwrap_or(Value::NULL))
                .collect();
            let ev: Vec<Value> = (0..e.len())
                .map(|i| e.as_ref(i).cloned().unwrap_or(Value::NULL))
                .collect();
            assert_eq!(gv, ev, "{sql}");
            let gc: Vec<(String, u8, u16, u16)> = g
                .columns_ref()
                .iter()
                .map(|c| {
                    (
                        c.name_str().into_owned(),
                        c.column_type() as u8,
                        c.flags().bits(),
                        c.character_set(),
                    )
                })
                .collect();
            let ec: Vec<(String, u8, u16, u16)> = e
                .columns_ref()
                .iter()
                .map(|c| {
                    (
                        c.name_str().into_owned(),
                        c.column_type() as u8,
                        c.flags().bits(),
                        c.character_set(),
                    )
                })
                .collect();
            assert_eq!(gc, ec, "{sql}");
        }
    }
}

#[tokio::test]
async fn prepared_statements_are_bounded_and_freed() {
    let proxy = shared_proxy().await;
    // No client-side cache: every prep is a COM_STMT_PREPARE.
    let opts = mysql_async::OptsBuilder::from_opts(proxy_opts(&proxy, CLAWDBOT)).stmt_cache_size(0);
    let mut conn = Conn::new(opts).await.unwrap();
    let limit = sqlguard::session::MAX_PREPARED_PER_SESSION;
    let mut statements = Vec::new();
    for i in 0..limit {
        match conn.prep(format!("SELECT {i} + ?")).await {
            Ok(s) => statements.push(s),
            Err(e) => panic!("prepare #{i}: {e:?}"),
        }
    }
    let (code, message) = server_error(conn.prep("SELECT 'one too many' + ?").await);
    assert_eq!(code, 1461, "{message}");
    // Closing frees the slot (here and on the backend).
    conn.close(statements.pop().unwrap()).await.unwrap();
    let again = conn.prep("SELECT 'fits again' + ?").await.unwrap();
    let v: Option<f64> = conn.exec_first(&again, (1,)).await.unwrap();
    assert_eq!(v, Some(1.0));
    drop(proxy);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn ten_thousand_unclosed_prepares_stay_bounded() {
    let db = common::mariadb::start_fixture().await;
    let proxy = start_proxy(test_config(db.port())).await;
    let opts = mysql_async::OptsBuilder::from_opts(proxy_opts(&proxy, CLAWDBOT)).stmt_cache_size(0);
    let mut conn = Conn::new(opts).await.unwrap();
    let mut direct = Conn::new(backend_opts_at(db.port())).await.unwrap();
    let rss_before = rss_kib();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..10_000 {
        match conn
            .prep(format!(
                "SELECT name FROM products WHERE stock > {i} AND id = ?"
            ))
            .await
        {
            // Dropped without COM_STMT_CLOSE: the client "forgets" it.
            Ok(_statement) => ok += 1,
            Err(mysql_async::Error::Server(e)) if e.code == 1461 => refused += 1,
            Err(e) => panic!("prepare #{i}: {e}"),
        }
    }
    assert_eq!(ok, sqlguard::session::MAX_PREPARED_PER_SESSION);
    assert_eq!(refused, 10_000 - ok);
    let count: Option<(String, u64)> = direct
        .query_first("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
        .await
        .unwrap();
    let backend = count.map(|(_, n)| n).unwrap_or(u64::MAX);
    assert!(
        backend <= ok as u64,
        "backend holds {backend} prepared statements"
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "memory grew by {grown} KiB over 10,000 prepares"
    );
    // The session still works, and leaving frees the backend's statements.
    let name: Option<String> = conn
        .query_first("SELECT name FROM products LIMIT 1")
        .await
        .unwrap();
    assert!(name.is_some());
    drop(conn);
    let mut freed = false;
    for _ in 0..50 {
        let count: Option<(String, u64)> = direct
            .query_first("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
            .await
            .unwrap();
        if count.map(|(_, n)| n) == Some(0) {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        freed,
        "the backend statements are freed when the client leaves"
    );
}

#[tokio::test]
async fn sysbench_point_select_with_server_side_prepares() {
    let proxy = shared_proxy().await;
    let port = proxy.addr.port().to_string();
    let args = [
        "oltp_point_select",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        &format!("--mysql-port={port}"),
        "--mysql-user=clawdbot",
        "--mysql-password=meyram-demo",
        "--mysql-db=shop",
        "--tables=1",
        "--table-size=1000",
        "--db-ps-mode=auto",
        "--threads=2",
        "--events=2000",
        "--time=0",
        "--mysql-ignore-errors=none",
        "run",
    ]
    .map(String::from);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sysbench").args(&args).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!("cannot run sysbench ({e}); .ci/run installs it: apt-get install sysbench")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sysbench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every event ran; sysbench stops at the first error (--mysql-ignore-errors=none).
    let stat = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| {
                l.split_whitespace()
                    .find(|w| w.chars().all(|c| c.is_ascii_digit()))
            })
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(stat("total number of events:"), Some(2000), "{stdout}");
    assert_eq!(stat("ignored errors:"), Some(0), "{stdout}");
    assert_eq!(stat("read:"), Some(2000), "{stdout}");
}

#[tokio::test]
async fn writes_naming_another_tenants_row_are_refused_with_an_explanation() {
    let (_proxy, mut conn) = connect(CLAWDBOT).await;
    // An AI reply into a closed conversation of our own tenant...
    let (code, message) = server_error(
        conn.query_drop(format!(
            "INSERT INTO messages (conversation_id, sender, content) VALUES ({}, 'ai', 'Salam')",
            t1::CONVERSATION_CLOSED
        ))
        .await,
    );
    assert_eq!(code, 1048, "{message}");
    assert!(
        message.starts_with("sqlguard: conversation_id must name one of your conversations"),
        "{message}"
    );
    assert!(message.contains("the conversation is closed"), "{message}");
    // ... is fine from the customer, and fine from the AI in an active one.
    conn.query_drop(format!(
        "INSERT INTO messages (conversation_id, sender, content) VALUES ({}, 'customer', 'Salam')",
        t1::CONVERSATION_CLOSED
    ))
    .await
    .unwrap();
    conn.exec_drop(
        "INSERT INTO messages (conversation_id, sender, content) VALUES (?, ?, ?)",
        (
            t1::CONVERSATION_ACTIVE,
            "ai",
            "Merhba, kifach n9der n3awnek?",
        ),
    )
    .await
    .unwrap();
    // Another tenant's conversation, even an active one, is refused.
    let (code, message) = server_error(
        conn.exec_drop(
            "INSERT INTO messages (conversation_id, sender, content) VALUES (?, ?, ?)",
            (t2::CONVERSATION_ACTIVE, "customer", "x"),
        )
        .await,
    );
    assert_eq!(code, 1048, "{message}");
    // An order for another tenant's customer is refused the same way.
    let (code, message) = server_error(
        conn.query_drop(
            "INSERT INTO orders (id, customer_id, total_price) VALUES (UUID(), 6, 10.00)",
        )
        .await,
    );
    assert_eq!(code, 1048, "{message}");
    assert!(
        message.contains("customer_id must name one of your customers rows"),
        "{message}"
    );
}
