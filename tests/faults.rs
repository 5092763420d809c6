//! Fault injection through the real proxy on a private MariaDB: the database
//! killed (SIGKILL) mid-query, mid-result and mid-transaction, paused
//! (SIGSTOP) under a statement, clients that vanish mid-result or
//! mid-transaction a thousand times, slowloris handshakes and a client that
//! stops reading a large result. Each fault must end in a clean MySQL error
//! for the one client concerned, a recovered proxy and an audit record.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::mariadb::{direct_opts, start_fixture, t1};
use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use serde_json::Value;
use sha1::{Digest, Sha1};
use sqlguard::config::Config;
use sqlguard::mariadb::PrivateMariaDb;
use tokio::sync::OnceCell;

/// Rows of the large result (the policy's LIMIT maximum).
const BIG_ROWS: usize = 100;

/// Makes `products` of tenant 1 hold `BIG_ROWS` rows with `bytes`-long
/// descriptions (as root: the backend account cannot ALTER), so one SELECT
/// streams far more than the socket buffers between the three processes.
async fn add_big_products(db_port: u16, bytes: usize) {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db_port)
        .user(Some("root"))
        .db_name(Some("shop"))
        .prefer_socket(false);
    let mut root = Conn::new(opts).await.expect("root connection");
    root.query_drop("ALTER TABLE products MODIFY description LONGTEXT")
        .await
        .expect("alter");
    root.query_drop(format!(
        "INSERT INTO products (id, tenant_id, name, price, description) \
         SELECT UUID(), 1, CONCAT('big-', seq), 1.00, REPEAT('x', {bytes}) FROM seq_1_to_{BIG_ROWS}"
    ))
    .await
    .expect("insert big products");
    root.disconnect().await.expect("disconnect");
}

const BIG_SELECT: &str = "SELECT id, description FROM products WHERE name LIKE 'big-%' LIMIT 100";

/// A proxy config in front of `db_port` with its audit log at a known path.
fn config_with_audit(db_port: u16, name: &str) -> (Config, PathBuf) {
    let mut config = test_config(db_port);
    let path =
        std::env::temp_dir().join(format!("sqlguard-faults-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    config.audit.path = Some(path.clone());
    (config, path)
}

fn audit_records(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (up to a minute: a bound for a stuck test, not a timing claim) until
/// the audit log has a record matching `pred`.
async fn wait_for_record(path: &PathBuf, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        if let Some(r) = audit_records(path).into_iter().find(|r| pred(r)) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no audit record for {what}; log:\n{}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// The (code, message) a statement failed with; panics if it succeeded.
fn failed<T: std::fmt::Debug>(what: &str, r: Result<T, mysql_async::Error>) -> (u16, String) {
    match r {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("{what}: expected a MySQL error packet, got {other:?}"),
    }
}

async fn wait_until_processlist(db: &PrivateMariaDb, condition: &str) {
    let mut root = Conn::new(direct_opts(db)).await.expect("root");
    for _ in 0..600 {
        let n: Option<u64> = root
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE {condition}"
            ))
            .await
            .expect("processlist");
        if n.unwrap_or(0) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("processlist never showed {condition}");
}

async fn notes_of_customer_1(db: &PrivateMariaDb) -> Option<String> {
    let mut root = Conn::new(direct_opts(db)).await.expect("root");
    let notes: Option<Option<String>> = root
        .query_first("SELECT notes FROM customers WHERE id = 1")
        .await
        .expect("notes");
    notes.flatten()
}

/// kill -9 three times: under a result being streamed, under a statement
/// waiting on a lock, and under an open transaction. Each time the client
/// gets an ERR packet (never a result presented as complete, never a COMMIT
/// that "succeeds" for a lost transaction), the proxy serves new statements
/// as soon as the database is back, and the audit log records the failure.
#[tokio::test]
async fn database_killed_mid_result_mid_query_and_mid_transaction() {
    let mut db = start_fixture().await;
    add_big_products(db.port(), 600_000).await;
    let (config, audit) = config_with_audit(db.port(), "kill");
    let proxy = start_proxy(config).await;
    let mut faults = 0;

    // 1. Mid-result: read one row, kill the database, read on.
    let mut client = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let mut rows = 0usize;
    let outcome = {
        let mut result = client
            .query_iter(BIG_SELECT)
            .await
            .expect("big select starts");
        let first: Option<Row> = result.next().await.expect("first row");
        assert!(first.is_some());
        rows += 1;
        db.kill().await;
        faults += 1;
        loop {
            match result.next().await {
                Ok(Some(_)) => rows += 1,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        }
    };
    let (code, message) = failed("result cut by kill -9", outcome);
    assert!(
        rows < BIG_ROWS,
        "all {rows} rows arrived: the kill came too late"
    );
    assert_eq!(code, 1105, "{message}");
    assert!(message.contains("lost"), "{message}");
    db.restart().await.expect("restart");
    // The same client connection goes on: the proxy took a new backend connection.
    let n: Vec<String> = client
        .query("SELECT name FROM products WHERE status = 'active'")
        .await
        .expect("a statement right after the restart");
    assert!(!n.is_empty());
    wait_for_record(&audit, "the cut result", |r| {
        r["decision"] == "error"
            && r["sql"] == BIG_SELECT
            && r["message"].as_str().is_some_and(|m| m.contains("lost"))
    })
    .await;

    // 2. Mid-query: an UPDATE waits on a row lock held by root; kill.
    let mut root = Conn::new(direct_opts(&db)).await.unwrap();
    root.query_drop("BEGIN").await.unwrap();
    root.query_drop("SELECT * FROM customers WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let update = "UPDATE customers SET notes = 'mid-query' WHERE id = 1";
    let mut waiter = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let pending = tokio::spawn(async move {
        let r = waiter.query_drop(update).await;
        (waiter, r)
    });
    wait_until_processlist(&db, "user = 'sqlguard' AND info LIKE 'UPDATE%'").await;
    db.kill().await;
    faults += 1;
    drop(root);
    let (mut waiter, r) = pending.await.unwrap();
    let (code, message) = failed("statement cut by kill -9", r);
    assert_eq!(code, 1105, "{message}");
    db.restart().await.expect("restart");
    waiter
        .query_drop("UPDATE customers SET notes = 'after restart' WHERE id = 1")
        .await
        .expect("the same client after the restart");
    assert_eq!(
        notes_of_customer_1(&db).await.as_deref(),
        Some("after restart")
    );

    // 3. Mid-transaction: an uncommitted UPDATE, kill, COMMIT must fail.
    let mut tx = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    tx.query_drop("START TRANSACTION").await.unwrap();
    tx.query_drop("UPDATE customers SET notes = 'uncommitted' WHERE id = 1")
        .await
        .unwrap();
    db.kill().await;
    faults += 1;
    db.restart().await.expect("restart");
    let (code, message) = failed("COMMIT of a transaction lost with the server", {
        tx.query_drop("COMMIT").await
    });
    assert_eq!(code, 1105, "{message}");
    assert!(message.contains("rolled back"), "{message}");
    assert_eq!(
        notes_of_customer_1(&db).await.as_deref(),
        Some("after restart")
    );
    let names: Vec<String> = tx
        .query("SELECT name FROM products WHERE status = 'active'")
        .await
        .expect("the same client after the failed COMMIT");
    assert!(!names.is_empty());
    wait_for_record(&audit, "the failed COMMIT", |r| {
        r["decision"] == "error" && r["sql"] == "COMMIT"
    })
    .await;

    // A brand-new client after all this: served on its first statement.
    let mut fresh = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let _: Vec<String> = fresh
        .query("SELECT name FROM products LIMIT 1")
        .await
        .expect("a new client after three kills");
    eprintln!("faults injected and survived: {faults} x kill -9");
    proxy.shutdown().await;
}

/// SIGSTOP under a statement: the proxy-side deadline answers 1317 instead
/// of hanging, the backend connection is closed (its open transaction rolled
/// back, never reused), and after SIGCONT the same client goes on.
#[tokio::test]
async fn paused_database_times_out_and_the_connection_is_discarded() {
    let mut db = start_fixture().await;
    let (mut config, audit) = config_with_audit(db.port(), "pause");
    config.backend.query_timeout = Duration::from_secs(1);
    config.backend.connect_timeout = Duration::from_secs(2);
    // The repeated product reads below must reach the (paused) backend; the
    // result cache would answer them from memory.
    config.cache.max_bytes = 0;
    let proxy = start_proxy(config).await;
    let mut faults = 0;

    let mut client = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    client.query_drop("START TRANSACTION").await.unwrap();
    client
        .query_drop("UPDATE customers SET notes = 'paused' WHERE id = 1")
        .await
        .unwrap();
    let stmt = client
        .prep("SELECT name FROM products WHERE id = ?")
        .await
        .expect("prepare");
    db.pause().await;
    faults += 1;
    let (code, message) = failed(
        "a statement on a paused server",
        client.query_drop("SELECT name FROM products").await,
    );
    assert_eq!(code, 1317, "{message}");
    assert!(message.contains("query_timeout"), "{message}");
    // A new session cannot get a connection either: an error, not a hang
    // (mysql_async reads server variables while it connects, so the error
    // may come at connect time).
    let other = async {
        let mut other = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await?;
        other.query_drop("SELECT name FROM products").await
    };
    let (code, message) = failed("a new session on a paused server", other.await);
    assert_eq!(code, 1105, "{message}");
    assert!(message.contains("unavailable"), "{message}");
    db.resume().await;

    // The transaction died with its connection: root can take the row lock
    // (within MariaDB's lock wait timeout) and the UPDATE was never committed.
    let mut root = Conn::new(direct_opts(&db)).await.unwrap();
    root.query_drop("UPDATE customers SET notes = 'root' WHERE id = 1")
        .await
        .expect("the timed-out transaction still holds its row lock");
    assert_eq!(notes_of_customer_1(&db).await.as_deref(), Some("root"));
    // The same client, same connection: text and prepared statements work
    // (the statement is re-prepared on the new backend connection).
    let names: Vec<String> = client
        .query("SELECT name FROM products WHERE status = 'active'")
        .await
        .expect("the same client after SIGCONT");
    assert!(!names.is_empty());
    let name: Option<String> = client
        .exec_first(&stmt, (t1::PRODUCT_EARBUDS,))
        .await
        .expect("prepared statement after SIGCONT");
    assert!(name.is_some());
    let mut other = Conn::new(proxy_opts(&proxy, CLAWDBOT))
        .await
        .expect("a new client after SIGCONT");
    other
        .query_drop("SELECT name FROM products LIMIT 1")
        .await
        .expect("a new client after SIGCONT");

    // A prepared execute under a pause times out the same way.
    db.pause().await;
    faults += 1;
    let (code, message) = failed(
        "a prepared execute on a paused server",
        client
            .exec_first::<String, _, _>(&stmt, (t1::PRODUCT_EARBUDS,))
            .await,
    );
    assert_eq!(code, 1317, "{message}");
    db.resume().await;
    let name: Option<String> = client
        .exec_first(&stmt, (t1::PRODUCT_EARBUDS,))
        .await
        .expect("prepared statement after the second SIGCONT");
    assert!(name.is_some());

    wait_for_record(&audit, "the timed-out statement", |r| {
        r["decision"] == "error"
            && r["sql"] == "SELECT name FROM products"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("query_timeout"))
    })
    .await;
    eprintln!("faults injected and survived: {faults} x SIGSTOP");
    proxy.shutdown().await;
}

// ------------------------------------------------------------ raw clients

/// A minimal MySQL client over a plain socket, for what real drivers never
/// do: vanish mid-result, stop reading, or dribble a handshake.
struct Raw {
    stream: TcpStream,
    seq: u8,
}

fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload)?;
    Ok((header[3], payload))
}

fn native_password(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

impl Raw {
    fn connect(addr: std::net::SocketAddr, (user, password): (&str, &str)) -> Raw {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (_, greeting) = read_packet(&mut stream).expect("greeting");
        // protocol, version\0, id(4), scramble1(8), filler, caps(2), charset,
        // status(2), caps(2), auth len, reserved(10), scramble2(12)\0
        let nul = greeting[1..].iter().position(|&b| b == 0).unwrap() + 1;
        let p = nul + 1 + 4;
        let mut scramble = greeting[p..p + 8].to_vec();
        let p2 = p + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
        scramble.extend_from_slice(&greeting[p2..p2 + 12]);
        const CAPS: u32 = 0x1 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x80000;
        let mut response = CAPS.to_le_bytes().to_vec();
        response.extend_from_slice(&(16u32 << 20).to_le_bytes());
        response.push(45);
        response.extend_from_slice(&[0; 23]);
        response.extend_from_slice(user.as_bytes());
        response.push(0);
        response.push(20);
        response.extend_from_slice(&native_password(password.as_bytes(), &scramble));
        response.extend_from_slice(b"shop\0mysql_native_password\0");
        let mut raw = Raw { stream, seq: 1 };
        raw.send(&response);
        let (_, ok) = read_packet(&mut raw.stream).expect("login answer");
        assert_eq!(ok.get(0), Some(&0), "login failed: {ok:?}");
        raw
    }

    fn send(&mut self, payload: &[u8]) {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(self.seq);
        p.extend_from_slice(payload);
        self.stream.write_all(&p).expect("send");
    }

    fn query(&mut self, sql: &str) {
        self.seq = 0;
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.send(&payload);
    }

    /// Sends a statement whose answer is an OK packet, and checks it is one.
    fn execute(&mut self, sql: &str) {
        self.query(sql);
        let (_, answer) = read_packet(&mut self.stream).expect("answer");
        assert_eq!(answer.get(0), Some(&0), "{sql}: {answer:?}");
    }

    /// Closes with a TCP reset (SO_LINGER 0), as a crashed client does.
    fn abort(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket descriptor and a pointer to a live `linger`
        // of the size passed.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(self);
    }
}

/// The number of backend connections MariaDB sees from the proxy's account.
async fn backend_threads(db_port: u16) -> u64 {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db_port)
        .user(Some("root"))
        .prefer_socket(false);
    let mut root = Conn::new(opts).await.expect("root");
    let n: Option<u64> = root
        .query_first("SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'sqlguard'")
        .await
        .expect("processlist");
    n.unwrap_or(0)
}

/// 1,000 clients that vanish (TCP reset) in the middle of a large result or
/// of an open transaction. After each, the next client must find a clean
/// backend session (no transaction, no half-read result), and at the end the
/// backend holds no more connections than a handful: none leaked.
#[tokio::test]
async fn a_thousand_client_aborts_leave_no_dirty_or_leaked_connection() {
    let db = start_fixture().await;
    add_big_products(db.port(), 60_000).await;
    let (config, audit) = config_with_audit(db.port(), "aborts");
    let proxy = start_proxy(config).await;
    let addr = proxy.addr;
    let notes_before = notes_of_customer_1(&db).await;
    const ABORTS: usize = 1000;
    let checked = tokio::task::spawn_blocking(move || {
        let mut checked = 0;
        for i in 0..ABORTS {
            let mut raw = Raw::connect(addr, CLAWDBOT);
            if i % 2 == 0 {
                raw.query(BIG_SELECT);
                let mut first = [0u8; 8192];
                raw.stream
                    .read_exact(&mut first)
                    .expect("start of the result");
            } else {
                raw.execute("START TRANSACTION");
                raw.execute(&format!(
                    "UPDATE customers SET notes = 'abort {i}' WHERE id = 1"
                ));
            }
            raw.abort();
            if i % 50 == 1 {
                // The next session must not inherit the open transaction: if
                // it did, it would read the uncommitted notes.
                let mut next = Raw::connect(addr, CLAWDBOT);
                next.query("SELECT notes FROM customers WHERE id = 1");
                let mut answer = Vec::new();
                loop {
                    let (_, p) = read_packet(&mut next.stream).expect("answer");
                    let end = p.get(0) == Some(&0xFE) && p.len() < 9;
                    answer.push(p);
                    if end && answer.len() > 3 {
                        break;
                    }
                }
                let text = answer
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect::<String>();
                assert!(
                    !text.contains("abort"),
                    "a new session saw another client's uncommitted write: {text}"
                );
                checked += 1;
            }
        }
        checked
    })
    .await
    .expect("abort loop");

    // Discarded connections close in the background: wait for them to go.
    let mut threads = u64::MAX;
    for _ in 0..600 {
        threads = backend_threads(db.port()).await;
        if threads <= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        threads <= 4,
        "{threads} backend connections left after {ABORTS} aborts"
    );
    assert_eq!(
        notes_of_customer_1(&db).await,
        notes_before,
        "an aborted transaction was committed"
    );
    // The row is not locked by a leftover transaction.
    let mut client = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    client
        .query_drop("UPDATE customers SET notes = 'after the aborts' WHERE id = 1")
        .await
        .expect("update after the aborts");
    let mid_result = wait_for_record(&audit, "a client gone mid-result", |r| {
        r["decision"] == "error"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("mid-response"))
    })
    .await;
    assert_eq!(mid_result["sql"], BIG_SELECT);
    eprintln!(
        "faults injected and survived: {ABORTS} client aborts ({checked} clean-session checks), \
         {threads} backend connections left"
    );
    proxy.shutdown().await;
}

static BIG_SHARED: OnceCell<u16> = OnceCell::const_new();

/// The shared database of this binary, with the large products added once.
async fn shared_big_db() -> u16 {
    *BIG_SHARED
        .get_or_init(|| async {
            let port = shared_db_port();
            add_big_products(port, 200_000).await;
            port
        })
        .await
}

/// Slowloris: clients that dribble their handshake a byte at a time are
/// disconnected at the handshake timeout, and a real client is served
/// meanwhile.
#[tokio::test]
async fn slowloris_handshakes_are_cut_at_the_handshake_timeout() {
    let mut config = test_config(shared_db_port());
    config.listen.handshake_timeout = Duration::from_secs(1);
    let proxy = start_proxy(config).await;
    let addr = proxy.addr;
    const SLOW: usize = 20;
    let slow = tokio::task::spawn_blocking(move || {
        let mut cut = 0;
        let mut sockets: Vec<TcpStream> = (0..SLOW)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                let _ = read_packet(&mut s).expect("greeting");
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                s
            })
            .collect();
        // One byte of a handshake response every 100 ms, for up to a minute.
        for _ in 0..600 {
            for s in sockets.iter_mut() {
                let _ = s.write_all(&[0x55]);
            }
            let mut open = Vec::new();
            for mut s in sockets.drain(..) {
                let mut byte = [0u8; 1];
                match s.read(&mut byte) {
                    Ok(0) => cut += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open.push(s),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => open.push(s),
                    _ => cut += 1,
                }
            }
            sockets = open;
            if sockets.is_empty() {
                break;
            }
        }
        cut
    });
    let mut client = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let _: Vec<String> = client
        .query("SELECT name FROM products LIMIT 1")
        .await
        .expect("a real client beside the slowloris");
    let cut = slow.await.unwrap();
    assert_eq!(cut, SLOW, "slowloris connections left open");
    eprintln!("faults injected and survived: {SLOW} slowloris handshakes");
    proxy.shutdown().await;
}

/// A client that asks for a large result and stops reading: the proxy's
/// buffers stay bounded (it waits on the socket, it does not queue the
/// result), other clients are served, and the write timeout closes the
/// connection (audited as an error) and releases its backend connection.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_by_the_write_timeout() {
    let port = shared_big_db().await;
    let (mut config, audit) = config_with_audit(port, "stalled");
    config.listen.write_timeout = Duration::from_secs(1);
    let proxy = start_proxy(config).await;
    let addr = proxy.addr;
    let stalled = tokio::task::spawn_blocking(move || {
        let mut stalled = Raw::connect(addr, CLAWDBOT);
        stalled.query(BIG_SELECT);
        stalled
    })
    .await
    .expect("stalled client");
    // Another client is served while that one sits on its result.
    let mut other = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let names: Vec<String> = other
        .query("SELECT name FROM products WHERE status = 'active'")
        .await
        .expect("another client beside the stalled one");
    assert!(!names.is_empty());
    let record = wait_for_record(&audit, "the stalled client", |r| {
        r["decision"] == "error"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("write timeout"))
    })
    .await;
    assert_eq!(record["sql"], BIG_SELECT);
    // What it can still read is a result without its terminator.
    let received = tokio::task::spawn_blocking(move || {
        let mut stalled = stalled;
        let mut received = Vec::new();
        let _ = stalled.stream.read_to_end(&mut received);
        received
    })
    .await
    .expect("read what is left");
    assert!(
        received.len() < BIG_ROWS * 200_000,
        "the whole result ({} bytes) was delivered",
        received.len()
    );
    eprintln!(
        "faults injected and survived: 1 stalled reader ({} of {} bytes delivered)",
        received.len(),
        BIG_ROWS * 200_000
    );
    proxy.shutdown().await;
}
