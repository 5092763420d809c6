//! Hostile input: the fuzzers' findings replayed (tests/data/fuzz-regressions/),
//! extreme statements (deep nesting, 10 MB, a million-element IN list) refused
//! without a stack overflow, both in the guard and through the real proxy, and
//! garbage packets that close one connection while the proxy serves others.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::proxy::*;
use mysql_async::Conn;
use mysql_async::prelude::*;
use sqlguard::guard::{self, Decision, SessionContext};
use sqlguard::policy::Policy;

/// Every file under tests/data/fuzz-regressions/<target>/ through the same
/// entry point the fuzz target uses. A crash the fuzzer found stays here.
#[test]
fn fuzz_regressions_replay() {
    let root = repo_path("tests/data/fuzz-regressions");
    let mut replayed = 0;
    for (target, run) in [
        ("guard", sqlguard::fuzzing::guard_text as fn(&[u8])),
        ("front_door", sqlguard::fuzzing::front_door as fn(&[u8])),
    ] {
        let dir = root.join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let data = std::fs::read(&path).expect("read input");
            run(&data);
            replayed += 1;
        }
    }
    assert!(replayed >= 2, "no regression inputs found");
}

/// The guard runs on the caller's stack; run the checks on a thread with the
/// 2 MiB a test thread has (the proxy's workers have 8 MiB), so a recursion
/// that needed more would crash here first.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("the guard overflowed or panicked")
}

fn deny_reason(sql: String) -> String {
    on_small_stack(move || {
        let policy = Policy::load(&repo_path("policies/clawdbot.toml")).expect("policy");
        let ctx = SessionContext {
            user: "clawdbot",
            tenant_id: 1,
            database: "shop",
            policy: &policy,
        };
        match guard::check(&sql, &ctx) {
            Decision::Deny(d) => d.client_message(),
            other => panic!("allowed a hostile statement: {other:?}"),
        }
    })
}

fn nested_parens(depth: usize) -> String {
    format!(
        "SELECT name FROM products WHERE id = {}1{}",
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

fn in_list(n: usize) -> String {
    let mut sql = String::from("SELECT name FROM products WHERE stock IN (0");
    for i in 1..n {
        sql.push(',');
        sql.push_str(&i.to_string());
    }
    sql.push(')');
    sql
}

#[test]
fn extreme_statements_are_refused_by_the_guard_without_overflow() {
    // Within the 64 KiB cap: depth is what is refused.
    for depth in [200, 1_000, 30_000] {
        let why = deny_reason(nested_parens(depth));
        assert!(!why.is_empty(), "{depth}");
    }
    let deep_subqueries = format!(
        "SELECT name FROM products WHERE id IN {}SELECT id FROM products{}",
        "(SELECT id FROM products WHERE id IN ".repeat(2_000),
        ")".repeat(2_000)
    );
    assert!(!deny_reason(deep_subqueries).is_empty());
    // Past the cap: refused before parsing.
    for sql in [
        nested_parens(100_000),
        format!(
            "SELECT name FROM products WHERE name = '{}'",
            "x".repeat(10 * 1024 * 1024)
        ),
        in_list(1_000_000),
        format!("SELECT {}1", "-".repeat(60_000)),
        format!("SELECT {}", "NOT ".repeat(16_000)),
    ] {
        let why = deny_reason(sql);
        assert!(!why.is_empty());
    }
}

/// The same extremes through the proxy: each gets an error packet, the
/// connection stays usable, and a 20 MB command (over the 16 MiB cap) closes
/// only its own connection.
#[tokio::test]
async fn extreme_statements_through_the_proxy() {
    let proxy = shared_proxy().await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    for (what, sql) in [
        ("100k nested parentheses", nested_parens(100_000)),
        ("30k nested parentheses", nested_parens(30_000)),
        (
            "a 10 MB statement",
            format!(
                "SELECT name FROM products WHERE name = '{}'",
                "x".repeat(10 * 1024 * 1024)
            ),
        ),
        ("a 1M-element IN list", in_list(1_000_000)),
    ] {
        let (code, message) = server_error(conn.query_drop(sql).await);
        assert!(message.starts_with("sqlguard:"), "{what}: {code} {message}");
    }
    let names: Vec<String> = conn
        .query("SELECT name FROM products LIMIT 1")
        .await
        .expect("the connection after the extremes");
    assert_eq!(names.len(), 1);

    // 20 MB in one command: the reader closes this connection.
    let addr = proxy.addr;
    let ended = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut greeting = [0u8; 4];
        s.read_exact(&mut greeting).expect("greeting header");
        // A 16 MiB - 1 packet; the bytes after it read as a 4 MB continuation.
        let _ = s.write_all(&[0xff, 0xff, 0xff, 1]);
        let chunk = vec![0x41u8; 1 << 20];
        for _ in 0..20 {
            if s.write_all(&chunk).is_err() {
                return true;
            }
        }
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    })
    .await
    .unwrap();
    assert!(ended, "the proxy kept a 20 MB command's connection open");
    // Others are served meanwhile and after.
    let mut other = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let names: Vec<String> = other
        .query("SELECT name FROM products LIMIT 1")
        .await
        .expect("another client after the oversized command");
    assert_eq!(names.len(), 1);
}

/// Garbage in place of a handshake response, and garbage commands after a
/// real login: each closes (or errors) only its own connection.
#[tokio::test]
async fn garbage_packets_close_one_connection_only() {
    let proxy = shared_proxy().await;
    let addr = proxy.addr;
    let inputs: Vec<Vec<u8>> = vec![
        vec![0xff; 64],
        vec![0x05, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 1],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        {
            // A handshake response whose lengths point past the end.
            let mut p = vec![0x20, 0, 0, 1];
            p.extend_from_slice(&[0x0d, 0xa2, 0x0a, 0x00]);
            p.extend_from_slice(&[0; 4]);
            p.push(45);
            p.extend_from_slice(&[0; 23]);
            p.push(b'u');
            p
        },
    ];
    let served = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for input in inputs {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let mut header = [0u8; 4];
            s.read_exact(&mut header).expect("greeting");
            let _ = s.write_all(&input);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            n += 1;
        }
        n
    })
    .await
    .unwrap();
    assert_eq!(served, 5);
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let names: Vec<String> = conn
        .query("SELECT name FROM products LIMIT 1")
        .await
        .expect("a real client after the garbage");
    assert_eq!(names.len(), 1);
}
