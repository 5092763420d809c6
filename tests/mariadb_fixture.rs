//! The private MariaDB launcher and the demo fixture: the schema loads, both
//! tenants have consistent data everywhere, the backend account has exactly
//! the privileges the proxy needs, and fault injection (kill/restart) works.

mod common;

use std::time::Instant;

use common::mariadb::{BACKEND_PASSWORD, backend_opts, direct_opts, start_fixture, t1, t2};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use sqlguard::mariadb::PrivateMariaDb;

/// Tables with a `tenant_id` column, and the rows each tenant has in each.
const TENANT_TABLES: &[(&str, u64, u64)] = &[
    ("users", 2, 2),
    ("customers", 5, 5),
    ("conversations", 4, 4),
    ("products", 7, 6),
    ("orders", 5, 4),
    ("packs", 2, 2),
    ("categories", 3, 4),
    ("home_univers", 2, 2),
    ("home_collections", 3, 2),
    ("type_probe", 3, 3),
    ("bench_points", 500, 500),
];

async fn connect(opts: mysql_async::Opts) -> Conn {
    Conn::new(opts).await.expect("connect")
}

async fn count(conn: &mut Conn, sql: &str) -> u64 {
    conn.query_first::<u64, _>(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("one row")
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(se) => Some(se.code),
        _ => None,
    }
}

#[tokio::test]
async fn fixture_loads_with_rows_for_both_tenants_everywhere() {
    let started = Instant::now();
    let db = start_fixture().await;
    eprintln!(
        "private MariaDB started and loaded in {:?}",
        started.elapsed()
    );
    let mut conn = connect(direct_opts(&db)).await;

    let tenants: Vec<(i64, String)> = conn
        .query("SELECT id, name FROM tenants ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        tenants,
        vec![
            (1, "Demo Store Maroc".to_string()),
            (2, "Atlas Souk".to_string())
        ]
    );

    for &(table, t1_rows, t2_rows) in TENANT_TABLES {
        for (tenant, expected) in [(1, t1_rows), (2, t2_rows)] {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = {tenant}");
            assert_eq!(count(&mut conn, &sql).await, expected, "{sql}");
        }
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id NOT IN (1, 2)");
        assert_eq!(count(&mut conn, &sql).await, 0, "{sql}");
    }

    // messages have no tenant_id: each tenant's come through its conversations.
    for (tenant, expected) in [(1, 9), (2, 9)] {
        let sql = format!(
            "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.tenant_id = {tenant}"
        );
        assert_eq!(count(&mut conn, &sql).await, expected, "{sql}");
    }
    let sql = "SELECT COUNT(*) FROM conversations c \
               WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)";
    assert_eq!(
        count(&mut conn, sql).await,
        0,
        "every conversation has messages"
    );

    // What the bot's rules are about exists for both tenants.
    for tenant in [1, 2] {
        for (what, sql) in [
            (
                "active conversation",
                "SELECT COUNT(*) FROM conversations WHERE status = 'active' AND tenant_id = ",
            ),
            (
                "closed conversation",
                "SELECT COUNT(*) FROM conversations WHERE status = 'closed' AND tenant_id = ",
            ),
            (
                "out-of-stock product",
                "SELECT COUNT(*) FROM products WHERE stock = 0 AND status = 'active' AND tenant_id = ",
            ),
            (
                "draft product",
                "SELECT COUNT(*) FROM products WHERE status = 'draft' AND tenant_id = ",
            ),
            (
                "pending order",
                "SELECT COUNT(*) FROM orders WHERE status = 'En attente' AND tenant_id = ",
            ),
            (
                "cancelled order",
                "SELECT COUNT(*) FROM orders WHERE status = 'Annulé' AND tenant_id = ",
            ),
        ] {
            let sql = format!("{sql}{tenant}");
            assert!(
                count(&mut conn, &sql).await >= 1,
                "tenant {tenant}: no {what}"
            );
        }
    }

    // Cross-table references never cross tenants.
    for (what, sql) in [
        (
            "conversation of another tenant's customer",
            "SELECT COUNT(*) FROM conversations c JOIN customers cu ON cu.id = c.customer_id \
             WHERE cu.tenant_id <> c.tenant_id",
        ),
        (
            "order of another tenant's customer",
            "SELECT COUNT(*) FROM orders o JOIN customers cu ON cu.id = o.customer_id \
             WHERE cu.tenant_id <> o.tenant_id",
        ),
        (
            "order line naming another tenant's product (or none)",
            "SELECT COUNT(*) FROM orders o CROSS JOIN JSON_TABLE(o.product_data, '$[*]' \
             COLUMNS (pid VARCHAR(36) PATH '$.product_id')) j \
             LEFT JOIN products p ON p.id = j.pid AND p.tenant_id = o.tenant_id WHERE p.id IS NULL",
        ),
        (
            "pack naming another tenant's product (or none)",
            "SELECT COUNT(*) FROM packs k CROSS JOIN JSON_TABLE(k.product_ids, '$[*]' \
             COLUMNS (pid VARCHAR(36) PATH '$')) j \
             LEFT JOIN products p ON p.id = j.pid AND p.tenant_id = k.tenant_id WHERE p.id IS NULL",
        ),
        (
            "home collection under another tenant's univers",
            "SELECT COUNT(*) FROM home_collections h JOIN home_univers u ON u.id = h.univers_id \
             WHERE u.tenant_id <> h.tenant_id",
        ),
    ] {
        assert_eq!(count(&mut conn, sql).await, 0, "{what}");
    }

    // The ids the other tests name exist with the expected owner.
    for (id, tenant) in [
        (t1::PRODUCT_EARBUDS, 1),
        (t1::PRODUCT_WATCH, 1),
        (t1::PRODUCT_OUT_OF_STOCK, 1),
        (t1::PRODUCT_DRAFT, 1),
        (t2::PRODUCT_RUG, 2),
        (t2::PRODUCT_BABOUCHES, 2),
        (t2::PRODUCT_OUT_OF_STOCK, 2),
        (t2::PRODUCT_DRAFT, 2),
    ] {
        let owner: Option<i64> = conn
            .exec_first("SELECT tenant_id FROM products WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(owner, Some(tenant), "product {id}");
    }
}

#[tokio::test]
async fn type_probe_holds_the_extremes() {
    let db = start_fixture().await;
    let mut conn = connect(direct_opts(&db)).await;

    let (ubig_max, ubig_min, big_max, big_min): (u64, u64, i64, i64) = conn
        .query_first(
            "SELECT (SELECT c_ubigint FROM type_probe WHERE id = 1), \
                    (SELECT c_ubigint FROM type_probe WHERE id = 2), \
                    (SELECT c_bigint FROM type_probe WHERE id = 1), \
                    (SELECT c_bigint FROM type_probe WHERE id = 2)",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ubig_max, u64::MAX);
    assert_eq!(ubig_min, 0);
    assert_eq!(big_max, i64::MAX);
    assert_eq!(big_min, i64::MIN);

    let decimals: Vec<String> = conn
        .query("SELECT CAST(c_decimal AS CHAR) FROM type_probe WHERE c_decimal < 0 ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        decimals,
        [
            "-99999999999999.999999",
            "-0.000001",
            "-12345678901234.567890"
        ]
    );

    // Text: accents, Darija in Arabic script, emoji survive as utf8mb4.
    let (varchar, text): (String, String) = conn
        .query_first("SELECT c_varchar, c_text FROM type_probe WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert!(varchar.contains("Crème brûlée à Fès"), "{varchar}");
    assert!(
        text.contains("شحال الثمن؟") && text.contains("🛒✅"),
        "{text}"
    );

    // Binary: 0x00 and 0xFF bytes.
    let (blob, varbinary, bit): (Vec<u8>, Vec<u8>, Vec<u8>) = conn
        .query_first("SELECT c_blob, c_varbinary, c_bit FROM type_probe WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blob, [0x00, 0xFF, 0x00, 0xFF, 0x7F, 0x80]);
    assert_eq!(varbinary, [0x00, 0xFF, 0x7F, 0x80]);
    assert_eq!(bit, [0xFF]);

    // Fractional seconds.
    let (datetime, time): (String, String) = conn
        .query_first(
            "SELECT CAST(c_datetime AS CHAR), CAST(c_time AS CHAR) FROM type_probe WHERE id = 4",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(datetime, "2024-03-15 10:30:45.123456");
    assert_eq!(time, "-00:00:00.000001");

    // One row per tenant is NULL in every nullable column.
    let rows: Vec<Row> = conn
        .query("SELECT * FROM type_probe WHERE id IN (3, 6) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let columns = row.columns();
        for (i, column) in columns.iter().enumerate().skip(2) {
            assert_eq!(row.as_ref(i), Some(&Value::NULL), "{}", column.name_str());
        }
    }
}

#[tokio::test]
async fn backend_user_can_read_insert_update_but_not_delete_or_ddl() {
    let db = start_fixture().await;
    let mut conn = connect(backend_opts(&db)).await;

    let price: Option<String> = conn
        .exec_first(
            "SELECT price FROM products WHERE id = ?",
            (t1::PRODUCT_EARBUDS,),
        )
        .await
        .unwrap();
    assert_eq!(price.as_deref(), Some("299.00"));

    // The seed's own statements, with the tenant column the proxy adds.
    conn.query_drop(
        "INSERT INTO customers (tenant_id, phone, created_at) VALUES (1, '+212611111111', NOW())",
    )
    .await
    .unwrap();
    let customer = conn.last_insert_id().expect("auto-increment id");
    assert!(customer > 10);
    conn.query_drop(format!(
        "INSERT INTO orders (id, tenant_id, customer_id, total_price, status) \
         VALUES (UUID(), 1, '{customer}', '299', 'En attente')"
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "UPDATE orders SET status = 'Confirmé', address = '5 Bd Zerktouni', city = 'Casablanca' \
         WHERE customer_id = {customer} AND tenant_id = 1"
    ))
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let product_data: Option<String> = conn
        .query_first(format!(
            "SELECT product_data FROM orders WHERE customer_id = {customer}"
        ))
        .await
        .unwrap();
    assert_eq!(product_data.as_deref(), Some("[]"));

    for sql in [
        "DELETE FROM messages WHERE id = 1",
        "DROP TABLE products",
        "TRUNCATE TABLE orders",
        "CREATE TABLE shop.evil (id INT)",
        "ALTER TABLE customers ADD COLUMN x INT",
    ] {
        let err = conn
            .query_drop(sql)
            .await
            .expect_err(&format!("{sql} must be refused"));
        assert_eq!(server_code(&err), Some(1142), "{sql}: {err}");
    }
    let err = conn
        .query_drop("SELECT user FROM mysql.user")
        .await
        .expect_err("no access to mysql.*");
    assert_eq!(server_code(&err), Some(1142), "{err}");

    // Wrong password is refused.
    let wrong = mysql_async::OptsBuilder::from_opts(backend_opts(&db)).pass(Some("nope"));
    let err = Conn::new(wrong).await.expect_err("wrong password");
    assert_eq!(server_code(&err), Some(1045), "{err}");
    assert_ne!(BACKEND_PASSWORD, "nope");
}

#[tokio::test]
async fn load_demo_again_resets_the_data() {
    let db = start_fixture().await;
    let mut conn = connect(direct_opts(&db)).await;
    conn.query_drop("UPDATE products SET stock = 999")
        .await
        .unwrap();
    drop(conn);
    db.load_demo("another-pw").await.unwrap();
    let mut conn = connect(direct_opts(&db)).await;
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) FROM products WHERE stock = 999").await,
        0
    );
    let opts = mysql_async::OptsBuilder::from_opts(backend_opts(&db)).pass(Some("another-pw"));
    Conn::new(opts).await.expect("new backend password works");
}

#[tokio::test]
async fn kill_then_restart_on_the_same_port() {
    let mut db = start_fixture().await;
    let port = db.port();
    let mut conn = connect(direct_opts(&db)).await;
    conn.query_drop(format!(
        "UPDATE products SET stock = 7 WHERE id = '{}'",
        t2::PRODUCT_RUG
    ))
    .await
    .unwrap();

    db.kill().await;
    assert!(!db.is_running());
    conn.query_drop("SELECT 1")
        .await
        .expect_err("an open connection fails after kill");
    Conn::new(direct_opts(&db))
        .await
        .expect_err("new connections fail after kill");

    let started = Instant::now();
    db.restart().await.expect("restart");
    eprintln!("restart after kill -9 took {:?}", started.elapsed());
    assert_eq!(db.port(), port);
    assert!(db.is_running());
    let mut conn = connect(direct_opts(&db)).await;
    let stock: Option<i64> = conn
        .exec_first(
            "SELECT stock FROM products WHERE id = ?",
            (t2::PRODUCT_RUG,),
        )
        .await
        .unwrap();
    assert_eq!(stock, Some(7), "committed data survives kill -9");
    connect(backend_opts(&db)).await;

    // Graceful stop, then restart.
    drop(conn);
    db.stop().await;
    assert!(!db.is_running());
    Conn::new(direct_opts(&db))
        .await
        .expect_err("connections fail after stop");
    db.restart().await.expect("restart after stop");
    connect(direct_opts(&db)).await;
}

#[tokio::test]
async fn two_instances_run_side_by_side_and_clean_up() {
    let (a, b) = tokio::join!(PrivateMariaDb::start(), PrivateMariaDb::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.socket_path(), b.socket_path());
    a.load_demo("pw-a").await.unwrap();
    b.load_demo("pw-b").await.unwrap();

    let mut ca = connect(direct_opts(&a)).await;
    let mut cb = connect(direct_opts(&b)).await;
    ca.query_drop("UPDATE tenants SET status = 'suspended' WHERE id = 2")
        .await
        .unwrap();
    let status: Option<String> = cb
        .query_first("SELECT status FROM tenants WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("active"), "instances share nothing");
    assert_eq!(
        a.root_url(),
        format!("mysql://root@127.0.0.1:{}/", a.port())
    );

    drop(ca);
    let dir = a.socket_path().parent().unwrap().to_path_buf();
    assert!(dir.is_dir());
    let port = a.port();
    drop(a);
    assert!(!dir.exists(), "drop removes the instance directory");
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "drop stops the server");
    cb.query_drop("SELECT 1")
        .await
        .expect("the other instance is unaffected");
}
