//! The result cache end to end, on a private MariaDB with real clients
//! (mysql_async, Node's mysql2): a hit is byte for byte what a miss was;
//! writes through sqlguard are seen at once, writes made elsewhere after the
//! TTL; tenants, policies and session settings never share entries; nothing
//! read or written inside a transaction reaches another session; statements
//! that are not provably deterministic are never cached; the audit record
//! and the metrics say what happened.
//!
//! Each test runs its own proxy (so its own cache) in front of the binary's
//! shared MariaDB. Tests that write change `stock` of a product no other
//! test reads the stock of, and the reads compared across tests leave
//! `stock` out.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::mariadb::{t1, t2};
use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Column, Conn, Row, Value};
use serde_json::Value as Json;
use sqlguard::frontend::listener::RunningProxy;

/// The seed's product list (text protocol in these tests).
const LIST: &str = "SELECT id, name, price, compare_at_price, images, created_at FROM products \
                    WHERE status = 'active' ORDER BY name LIMIT 10";
/// The same, never cached.
const LIST_NO_CACHE: &str = "SELECT SQL_NO_CACHE id, name, price, compare_at_price, images, created_at \
                             FROM products WHERE status = 'active' ORDER BY name LIMIT 10";
/// The seed's price question (prepared in these tests).
const PRICE: &str = "SELECT name, price FROM products WHERE name LIKE ? ORDER BY name";
const PRICE_NO_CACHE: &str =
    "SELECT SQL_NO_CACHE name, price FROM products WHERE name LIKE ? ORDER BY name";

/// A proxy with a policy directory of its own and its audit log beside it.
struct Setup {
    proxy: RunningProxy,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Replaces `from` (which must be there) in `text`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "policy text has no {from:?}");
    text.replacen(from, to, 1)
}

/// The shipped policies, except: `products` cached for 60 s (so a stale
/// read within a test is certain) and writable (`stock`), `categories`
/// cached for 1 s, and the readonly policy caching `products` too.
fn write_policies(dir: &Path) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let clawdbot = std::fs::read_to_string(repo_path("policies/clawdbot.toml")).unwrap();
    let clawdbot = edit(
        &clawdbot,
        "cache_ttl = \"10s\"\n",
        "cache_ttl = \"60s\"\nupdate = [\"stock\"]\n",
    );
    let clawdbot = edit(
        &clawdbot,
        "[tables.categories]\nscope = \"tenant\"\ninteger = [\"id\", \"tenant_id\"]\ncache_ttl = \"60s\"",
        "[tables.categories]\nscope = \"tenant\"\ninteger = [\"id\", \"tenant_id\"]\ncache_ttl = \"1s\"",
    );
    std::fs::write(policies.join("clawdbot.toml"), clawdbot).unwrap();
    let readonly = std::fs::read_to_string(repo_path("policies/readonly.toml")).unwrap();
    let readonly = edit(
        &readonly,
        "[tables.products]\nscope = \"tenant\"\n",
        "[tables.products]\nscope = \"tenant\"\ncache_ttl = \"60s\"\n",
    );
    std::fs::write(policies.join("readonly.toml"), readonly).unwrap();
}

/// A user like clawdbot (same tenant, same policy, same password) whose
/// results may have at most 2 rows.
const LIMITED_USER: &str = r#"
[[users]]
name = "limited"
password_hash = "*31AD9B094D70BCEF97AEA558B195784FF25313E5"
tenant_id = 1
policy = "clawdbot"
limits = { max_result_rows = 2 }
"#;
const LIMITED: (&str, &str) = ("limited", "meyram-demo");

async fn start(name: &str, extra_toml: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("sqlguard-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_policies(&dir);
    let toml = format!("{}\n{extra_toml}", sqlguard::DEMO_PROXY_TOML);
    let mut config = config_with_policies(&toml, shared_db_port(), &dir.join("policies"));
    config.audit.path = Some(dir.join("audit.log"));
    Setup {
        proxy: start_proxy(config).await,
        dir,
    }
}

impl Setup {
    async fn connect(&self, user: (&str, &str)) -> Conn {
        match Conn::new(proxy_opts(&self.proxy, user)).await {
            Ok(c) => c,
            Err(e) => panic!("cannot log in as {}: {e}", user.0),
        }
    }

    fn hits(&self) -> u64 {
        self.proxy.shared.metrics.result_cache.hits.get()
    }

    fn misses(&self) -> u64 {
        self.proxy.shared.metrics.result_cache.misses.get()
    }

    /// Every audit record so far.
    async fn audit(&self) -> Vec<Json> {
        assert!(self.proxy.shared.audit.flush().await, "audit flush");
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// The `cache` field of each record of `user` whose `sql` is `sql`,
    /// in order (`None`: absent).
    async fn cache_fields(&self, user: &str, sql: &str) -> Vec<Option<String>> {
        self.audit()
            .await
            .iter()
            .filter(|r| r["user"] == user && r["sql"] == sql)
            .map(|r| r["cache"].as_str().map(str::to_string))
            .collect()
    }
}

/// Column definitions as the client decoded them, and the rows.
type Table = (Vec<String>, Vec<Vec<Value>>);

fn describe(c: &Column) -> String {
    format!(
        "{}.{}/{}.{} {:?} charset={} len={} flags={:?} decimals={}",
        c.table_str(),
        c.name_str(),
        c.org_table_str(),
        c.org_name_str(),
        c.column_type(),
        c.character_set(),
        c.column_length(),
        c.flags(),
        c.decimals()
    )
}

async fn text(conn: &mut Conn, sql: &str) -> Table {
    let mut result = conn
        .query_iter(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = result
        .columns()
        .map(|c| c.iter().map(describe).collect())
        .unwrap_or_default();
    let rows: Vec<Row> = result.collect().await.unwrap();
    (columns, rows.into_iter().map(Row::unwrap).collect())
}

async fn prepared(conn: &mut Conn, sql: &str, params: impl Into<mysql_async::Params>) -> Table {
    let mut result = conn
        .exec_iter(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = result
        .columns()
        .map(|c| c.iter().map(describe).collect())
        .unwrap_or_default();
    let rows: Vec<Row> = result.collect().await.unwrap();
    (columns, rows.into_iter().map(Row::unwrap).collect())
}

async fn stock(conn: &mut Conn, product: &str) -> i64 {
    let sql = format!("SELECT stock FROM products WHERE id = '{product}'");
    let stock: Option<i64> = conn.query_first(&sql).await.unwrap();
    stock.unwrap_or_else(|| panic!("no stock for {product}"))
}

async fn direct() -> Conn {
    Conn::new(common::mariadb::backend_opts_at(shared_db_port()))
        .await
        .expect("direct connection")
}

async fn scrape(proxy: &RunningProxy) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.metrics_addr.expect("metrics address");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn a_hit_returns_exactly_what_a_miss_returned() {
    let s = start("same", "").await;
    let mut conn = s.connect(CLAWDBOT).await;
    let miss = text(&mut conn, LIST).await;
    assert!(miss.1.len() >= 3, "{miss:?}");
    let hit = text(&mut conn, LIST).await;
    assert_eq!(hit, miss);
    // And what MariaDB answers now, bypassing the cache, is the same.
    assert_eq!(text(&mut conn, LIST_NO_CACHE).await, miss);

    let pmiss = prepared(&mut conn, PRICE, ("%o%",)).await;
    assert!(!pmiss.1.is_empty(), "{pmiss:?}");
    let phit = prepared(&mut conn, PRICE, ("%o%",)).await;
    assert_eq!(phit, pmiss);
    assert_eq!(prepared(&mut conn, PRICE_NO_CACHE, ("%o%",)).await, pmiss);
    // Another bound value is another entry.
    let other = prepared(&mut conn, PRICE, ("%Montre%",)).await;
    assert_eq!(other.1.len(), 1, "{other:?}");
    assert_eq!((s.hits(), s.misses()), (2, 3));

    // A new session (no backend connection yet) gets the same from the cache.
    let mut fresh = s.connect(CLAWDBOT).await;
    assert_eq!(text(&mut fresh, LIST).await, miss);
    assert_eq!(prepared(&mut fresh, PRICE, ("%o%",)).await, pmiss);
    assert_eq!((s.hits(), s.misses()), (4, 3));

    // The audit log: miss, then hits; a hit has the executed text and the
    // rows, and no backend time.
    assert_eq!(
        s.cache_fields("clawdbot", LIST).await,
        vec![Some("miss".into()), Some("hit".into()), Some("hit".into())]
    );
    let records = s.audit().await;
    let list: Vec<&Json> = records.iter().filter(|r| r["sql"] == LIST).collect();
    assert!(list[0]["backend_us"].is_u64(), "{}", list[0]);
    for hit in &list[1..] {
        assert_eq!(hit["decision"], "allow", "{hit}");
        assert!(hit["backend_us"].is_null(), "{hit}");
        assert_eq!(hit["executed_sql"], list[0]["executed_sql"], "{hit}");
        assert_eq!(hit["rows"], miss.1.len() as u64, "{hit}");
    }
    let executes: Vec<&Json> = records
        .iter()
        .filter(|r| r["command"] == "execute" && r["sql"] == PRICE)
        .collect();
    let fields: Vec<&Json> = executes.iter().map(|r| &r["cache"]).collect();
    assert_eq!(fields, vec!["miss", "hit", "miss", "hit"]);
    let no_cache: Vec<&Json> = records
        .iter()
        .filter(|r| r["sql"] == LIST_NO_CACHE)
        .collect();
    assert!(no_cache[0].get("cache").is_none(), "{}", no_cache[0]);

    // The same counts on /metrics.
    let body = scrape(&s.proxy).await;
    assert!(
        body.contains("sqlguard_result_cache_lookups_total{result=\"hit\"} 4"),
        "{body}"
    );
    assert!(
        body.contains("sqlguard_result_cache_lookups_total{result=\"miss\"} 3"),
        "{body}"
    );
    assert!(body.contains("sqlguard_result_cache_entries 3"), "{body}");
}

#[tokio::test]
async fn mysql2_gets_from_the_cache_what_mariadb_answers() {
    let s = start("mysql2", "").await;
    let dir = repo_path("tests/clients");
    assert!(
        dir.join("node_modules/mysql2").exists(),
        "mysql2 is not installed: run `npm ci --prefix tests/clients` (done by .ci/run)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("mysql2_cache.js"))
        .arg(s.proxy.addr.port().to_string());
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("cannot run node");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: Json = serde_json::from_slice(&output.stdout).expect("JSON");
    // Two connections × two rounds: the first of each kind is a miss.
    assert_eq!((s.hits(), s.misses()), (6, 2));
    for kind in ["query", "execute"] {
        let runs = v[kind].as_array().expect("runs");
        assert_eq!(runs.len(), 4);
        assert!(!runs[0]["rows"].as_array().unwrap().is_empty(), "{v}");
        for run in &runs[1..] {
            assert_eq!(run, &runs[0], "{kind}: a hit differs from the miss");
        }
    }
    // What MariaDB itself answers (with the tenant predicate sqlguard adds).
    let mut db = direct().await;
    let names: Vec<String> = db
        .query(
            "SELECT name FROM products WHERE status = 'active' AND tenant_id = 1 \
             ORDER BY name LIMIT 10",
        )
        .await
        .unwrap();
    let seen: Vec<&str> = v["query"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(seen, names);
    let prices: Vec<(String, String)> = db
        .exec(
            "SELECT name, CAST(price AS CHAR) FROM products WHERE name LIKE ? AND tenant_id = 1 \
             ORDER BY name",
            ("%o%",),
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = v["execute"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["price"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen, prices);

    // mysql_async (CLIENT_DEPRECATE_EOF: OK terminators) gets the entry
    // mysql2 (EOF packets) stored, framed for itself.
    let mut conn = s.connect(CLAWDBOT).await;
    let list = "SELECT id, name, price, compare_at_price, images, created_at FROM products \
                WHERE status = 'active' ORDER BY name LIMIT 10";
    let hit = text(&mut conn, list).await;
    assert_eq!(hit.1.len(), names.len());
    assert_eq!(s.hits(), 7);
}

#[tokio::test]
async fn a_write_through_sqlguard_is_seen_at_once() {
    let s = start("write", "").await;
    let mut a = s.connect(CLAWDBOT).await;
    let mut b = s.connect(CLAWDBOT).await;
    let product = t1::PRODUCT_EARBUDS;
    let before = stock(&mut a, product).await;
    assert_eq!(stock(&mut b, product).await, before);
    assert_eq!(s.hits(), 1);
    a.query_drop(format!(
        "UPDATE products SET stock = stock + 1 WHERE id = '{product}'"
    ))
    .await
    .unwrap();
    // The other session, whose read was a hit a moment ago, sees the write.
    assert_eq!(stock(&mut b, product).await, before + 1);
    assert_eq!(stock(&mut a, product).await, before + 1);
    let sql = format!("SELECT stock FROM products WHERE id = '{product}'");
    assert_eq!(
        s.cache_fields("clawdbot", &sql).await,
        ["miss", "hit", "miss", "hit"].map(|c| Some(c.to_string()))
    );

    // The same with prepared statements, for the read and the write.
    let read = "SELECT stock FROM products WHERE id = ?";
    let first = prepared(&mut b, read, (product,)).await;
    assert_eq!(first.1, vec![vec![Value::Int(before + 1)]]);
    assert_eq!(prepared(&mut b, read, (product,)).await, first);
    a.exec_drop(
        "UPDATE products SET stock = ? WHERE id = ?",
        (before + 5, product),
    )
    .await
    .unwrap();
    let after = prepared(&mut b, read, (product,)).await;
    assert_eq!(after.1, vec![vec![Value::Int(before + 5)]]);
    a.query_drop(format!(
        "UPDATE products SET stock = {before} WHERE id = '{product}'"
    ))
    .await
    .unwrap();
    assert_eq!(stock(&mut b, product).await, before);
}

#[tokio::test]
async fn a_direct_write_is_seen_only_after_the_ttl() {
    let s = start("direct", "").await;
    let mut conn = s.connect(CLAWDBOT).await;
    let mut db = direct().await;
    let product = t1::PRODUCT_OUT_OF_STOCK;
    let before = stock(&mut conn, product).await;
    db.query_drop(format!(
        "UPDATE products SET stock = stock + 40 WHERE id = '{product}'"
    ))
    .await
    .unwrap();
    // products: 60 s. The write went around sqlguard, so the cached value
    // stays until the TTL (the documented staleness).
    assert_eq!(stock(&mut conn, product).await, before);
    db.query_drop(format!(
        "UPDATE products SET stock = {before} WHERE id = '{product}'"
    ))
    .await
    .unwrap();

    // categories: 1 s. After the TTL the direct write is visible.
    let sql = "SELECT name FROM categories WHERE slug = 'cache-ttl-test'";
    let none: Vec<String> = conn.query(sql).await.unwrap();
    assert!(none.is_empty());
    db.query_drop(
        "INSERT INTO categories (tenant_id, name, slug) VALUES (1, 'Cache TTL', 'cache-ttl-test')",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<String> = conn.query(sql).await.unwrap();
    assert_eq!(after, vec!["Cache TTL".to_string()]);
}

#[tokio::test]
async fn tenants_policies_and_settings_never_share_an_entry() {
    let s = start("tenants", "").await;
    let mut one = s.connect(CLAWDBOT).await;
    let mut two = s.connect(CLAWDBOT_T2).await;
    let t1_rows = text(&mut one, LIST).await;
    assert_eq!(text(&mut one, LIST).await, t1_rows);
    // Same text, other tenant: its own rows, from MariaDB.
    let t2_rows = text(&mut two, LIST).await;
    let mut db = direct().await;
    let t2_ids: Vec<String> = db
        .query(
            "SELECT id FROM products WHERE status = 'active' AND tenant_id = 2 \
             ORDER BY name LIMIT 10",
        )
        .await
        .unwrap();
    let seen: Vec<String> = t2_rows
        .1
        .iter()
        .map(|r| String::from_utf8(mysql_async::from_value::<Vec<u8>>(r[0].clone())).unwrap())
        .collect();
    assert_eq!(seen, t2_ids);
    assert!(seen.contains(&t2::PRODUCT_RUG.to_string()));
    assert!(!seen.contains(&t1::PRODUCT_EARBUDS.to_string()));
    assert_eq!(
        s.cache_fields("clawdbot_t2", LIST).await,
        vec![Some("miss".to_string())]
    );

    // Same tenant and the same rewritten text (an explicit LIMIT below both
    // policies' max), but another policy: its own entry.
    let mut reader = s.connect(READONLY).await;
    assert_eq!(text(&mut reader, LIST).await.1, t1_rows.1);
    assert_eq!(
        s.cache_fields("readonly", LIST).await,
        vec![Some("miss".to_string())]
    );

    // Other session settings (here the time zone TIMESTAMP columns are
    // shown in; SET NAMES and collations are keyed the same way): their own
    // entry, with their own values.
    let mut zoned = s.connect(CLAWDBOT).await;
    zoned.query_drop("SET time_zone = '+05:00'").await.unwrap();
    let zoned_rows = text(&mut zoned, LIST).await;
    assert_ne!(
        zoned_rows.1, t1_rows.1,
        "created_at moves with the time zone"
    );
    assert_eq!(text(&mut zoned, LIST).await, zoned_rows);
    // Back to the default zone: still not the default session's entry
    // (the key holds every SET the session ran), so a miss, same rows.
    zoned.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let _ = text(&mut zoned, LIST).await;
    assert_eq!(
        s.cache_fields("clawdbot", LIST).await,
        ["miss", "hit", "miss", "hit", "miss"].map(|c| Some(c.to_string()))
    );
    // And the default session still gets its own.
    assert_eq!(text(&mut one, LIST).await, t1_rows);
}

#[tokio::test]
async fn uncommitted_writes_never_reach_another_session() {
    let s = start("txn", "").await;
    let mut a = s.connect(CLAWDBOT).await;
    let mut b = s.connect(CLAWDBOT).await;
    let product = t1::PRODUCT_WATCH;
    let committed = stock(&mut b, product).await;

    a.query_drop("BEGIN").await.unwrap();
    a.query_drop(format!(
        "UPDATE products SET stock = 777 WHERE id = '{product}'"
    ))
    .await
    .unwrap();
    // Inside the transaction: the session's own write, never from or into the cache.
    assert_eq!(stock(&mut a, product).await, 777);
    assert_eq!(stock(&mut a, product).await, 777);
    // Another session sees the committed value, from MariaDB.
    assert_eq!(stock(&mut b, product).await, committed);
    assert_eq!(stock(&mut b, product).await, committed);
    a.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(stock(&mut b, product).await, committed);
    assert_eq!(stock(&mut a, product).await, committed);
    let sql = format!("SELECT stock FROM products WHERE id = '{product}'");
    let fields = s.cache_fields("clawdbot", &sql).await;
    // b: miss (stored); a in its transaction: not consulted (twice); b while
    // a holds the table: miss twice (nothing stored); after: b, a.
    assert_eq!(
        fields,
        vec![
            Some("miss".into()),
            None,
            None,
            Some("miss".into()),
            Some("miss".into()),
            Some("miss".into()),
            Some("hit".into()),
        ]
    );

    // autocommit = 0 (PyMySQL's default): every statement is in a
    // transaction; the commit makes the write visible to the other session
    // at once.
    a.query_drop("SET autocommit = 0").await.unwrap();
    a.query_drop(format!(
        "UPDATE products SET stock = 778 WHERE id = '{product}'"
    ))
    .await
    .unwrap();
    assert_eq!(stock(&mut a, product).await, 778);
    assert_eq!(stock(&mut b, product).await, committed);
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(stock(&mut b, product).await, 778);
    a.query_drop(format!(
        "UPDATE products SET stock = {committed} WHERE id = '{product}'"
    ))
    .await
    .unwrap();
    a.query_drop("COMMIT").await.unwrap();
    a.query_drop("SET autocommit = 1").await.unwrap();
    assert_eq!(stock(&mut b, product).await, committed);
}

#[tokio::test]
async fn a_transaction_reads_its_snapshot_not_the_cache() {
    let s = start("snapshot", "").await;
    let mut a = s.connect(CLAWDBOT).await;
    let mut b = s.connect(CLAWDBOT).await;
    let product = t1::PRODUCT_DRAFT;
    let committed = stock(&mut b, product).await;

    // Repeatable read: inside a transaction, reads come from its snapshot,
    // never from the cache (which holds what others committed since).
    a.query_drop("START TRANSACTION").await.unwrap();
    assert_eq!(stock(&mut a, product).await, committed);
    b.query_drop(format!(
        "UPDATE products SET stock = {} WHERE id = '{product}'",
        committed + 1
    ))
    .await
    .unwrap();
    assert_eq!(stock(&mut b, product).await, committed + 1);
    assert_eq!(stock(&mut b, product).await, committed + 1);
    assert_eq!(stock(&mut a, product).await, committed);
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(stock(&mut a, product).await, committed + 1);
    b.query_drop(format!(
        "UPDATE products SET stock = {committed} WHERE id = '{product}'"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn statements_that_are_not_provably_deterministic_are_not_cached() {
    let s = start("nondeterministic", "").await;
    let mut conn = s.connect(CLAWDBOT).await;
    let statements = [
        "SELECT name, NOW() FROM products LIMIT 3",
        "SELECT name, CURRENT_TIMESTAMP FROM products LIMIT 3",
        "SELECT name FROM products ORDER BY RAND() LIMIT 3",
        "SELECT UUID(), name FROM products LIMIT 3",
        "SELECT name, CONNECTION_ID() FROM products LIMIT 3",
        // A table without cache_ttl, alone or through a tenant lookup.
        "SELECT phone FROM customers LIMIT 3",
        "SELECT content FROM messages WHERE conversation_id = 1",
        "SELECT SQL_NO_CACHE name FROM products LIMIT 3",
    ];
    for sql in statements {
        for _ in 0..2 {
            // CONNECTION_ID() is refused by the guard; the rest run.
            let _ = conn.query_drop(sql).await;
        }
    }
    assert_eq!((s.hits(), s.misses()), (0, 0));
    for sql in statements {
        let fields = s.cache_fields("clawdbot", sql).await;
        assert_eq!(fields, vec![None, None], "{sql}");
    }
    // NOW() moves: two reads a moment apart differ, so it was not cached.
    let sql = "SELECT NOW(6) FROM products LIMIT 1";
    let a: Option<String> = conn.query_first(sql).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b: Option<String> = conn.query_first(sql).await.unwrap();
    assert_ne!(a, b);
}

#[tokio::test]
async fn result_limits_apply_to_cached_rows() {
    let s = start("limits", LIMITED_USER).await;
    let mut bot = s.connect(CLAWDBOT).await;
    let rows = text(&mut bot, LIST).await;
    assert!(rows.1.len() > 2);
    assert_eq!(text(&mut bot, LIST).await, rows);
    // Same tenant, policy and text; a user allowed 2 rows gets the limit's
    // error, as without the cache.
    let mut limited = s.connect(LIMITED).await;
    let (code, message) = server_error(limited.query::<Row, _>(LIST).await);
    assert_eq!(code, 1104, "{message}");
    let fields = s.cache_fields("limited", LIST).await;
    assert_eq!(fields, vec![Some("miss".to_string())]);
}

#[tokio::test]
async fn a_disabled_cache_is_never_consulted() {
    let s = start("disabled", "[cache]\nmax_bytes = 0\n").await;
    let mut conn = s.connect(CLAWDBOT).await;
    let a = text(&mut conn, LIST).await;
    assert_eq!(text(&mut conn, LIST).await, a);
    assert_eq!((s.hits(), s.misses()), (0, 0));
    assert_eq!(s.cache_fields("clawdbot", LIST).await, vec![None, None]);
}
