//! Measures the result cache (issue 6's target: the repeated product-list and
//! price queries through sqlguard at ≥ 2 × direct MariaDB QPS).
//!
//! `cache_measure CONNS SECONDS ROUNDS [text|prepared]` starts a private
//! MariaDB with the demo data and two proxies in front of it (result cache
//! on, and off), then runs, from CONNS connections, the seed's product list
//! and price question alternately for SECONDS against each target in turn,
//! ROUNDS times: MariaDB directly (the SQL sqlguard would forward, tenant
//! predicate and LIMIT included, so MariaDB does the same work), the proxy
//! without the cache, the proxy with it. Prints statements per second.
//! Release build: `cargo run --release --example cache_measure -- 8 5 3`.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;

const BACKEND_PASSWORD: &str = "sqlguard-measure";

/// What the bot sends (through the proxy).
const LIST: &str = "SELECT id, name, price, compare_at_price, images FROM products \
                    WHERE status = 'active' ORDER BY name";
const PRICE: &str = "SELECT name, price, stock FROM products WHERE name LIKE ?";
/// What sqlguard forwards for them (what a client sends directly).
const LIST_DIRECT: &str = "SELECT id, name, price, compare_at_price, images FROM products \
                           WHERE (status = 'active') AND products.tenant_id = 1 ORDER BY name LIMIT 20";
const PRICE_DIRECT: &str = "SELECT name, price, stock FROM products \
                            WHERE (name LIKE ?) AND products.tenant_id = 1 LIMIT 20";
/// The price questions, in turn.
const NAMES: &[&str] = &["%Montre%", "%Écouteurs%", "%Chargeur%", "%Sac%"];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Text,
    Prepared,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cache_measure CONNS SECONDS ROUNDS [text|prepared]";
    if !(4..=5).contains(&args.len()) {
        return Err(usage.into());
    }
    let conns: usize = args[1].parse()?;
    let seconds: u64 = args[2].parse()?;
    let rounds: usize = args[3].parse()?;
    let mode = match args.get(4).map(String::as_str) {
        None | Some("text") => Mode::Text,
        Some("prepared") => Mode::Prepared,
        Some(_) => return Err(usage.into()),
    };

    let db = sqlguard::mariadb::PrivateMariaDb::start().await?;
    db.load_demo(BACKEND_PASSWORD).await?;
    let dir = std::env::temp_dir().join(format!("sqlguard-cache-measure-{}", std::process::id()));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (stem, text) in sqlguard::DEMO_POLICIES {
        std::fs::write(policies.join(format!("{stem}.toml")), text)?;
    }
    let mut targets = vec![(
        "direct MariaDB  ".to_string(),
        format!(
            "mysql://sqlguard:{BACKEND_PASSWORD}@127.0.0.1:{}/shop",
            db.port()
        ),
        true,
    )];
    let mut proxies = Vec::new();
    for cache_on in [false, true] {
        let overrides = sqlguard::config::Overrides {
            listen: Some("127.0.0.1:0".into()),
            backend_url: Some(format!("mysql://sqlguard@127.0.0.1:{}/shop", db.port())),
            backend_password: Some(BACKEND_PASSWORD.into()),
            audit_log: Some(dir.join(format!("audit-{cache_on}.log"))),
            ..Default::default()
        };
        let mut config = sqlguard::config::load_str(
            sqlguard::DEMO_PROXY_TOML,
            std::path::Path::new("proxy.toml"),
            &policies,
            &overrides,
        )?;
        config.metrics.address = None;
        if !cache_on {
            config.cache.max_bytes = 0;
        }
        for user in &mut config.users {
            user.limits.statements_per_second = 1e9;
            user.limits.statement_burst = u32::MAX;
            user.limits.max_concurrent_statements = 10_000;
            user.limits.max_user_connections = 10_000;
        }
        let proxy = sqlguard::frontend::listener::start(config).await?;
        targets.push((
            format!("sqlguard, cache {}", if cache_on { "on " } else { "off" }),
            format!(
                "mysql://clawdbot:meyram-demo@127.0.0.1:{}/shop",
                proxy.addr.port()
            ),
            false,
        ));
        proxies.push(proxy);
    }
    println!(
        "{conns} connections, {seconds} s per target, {} protocol, product list and price query alternately",
        if mode == Mode::Text {
            "text"
        } else {
            "prepared"
        }
    );
    let mut sums = vec![0.0; targets.len()];
    for round in 1..=rounds {
        for (i, (label, url, direct)) in targets.iter().enumerate() {
            let qps = run(url, *direct, mode, conns, Duration::from_secs(seconds)).await?;
            sums[i] += qps;
            println!("round {round}: {label}: {qps:8.0} statements/s");
        }
    }
    let means: Vec<f64> = sums.iter().map(|s| s / rounds as f64).collect();
    for ((label, _, _), mean) in targets.iter().zip(&means) {
        println!(
            "mean {label}: {mean:8.0} statements/s ({:.2} × direct)",
            mean / means[0]
        );
    }
    let cache = &proxies[1].shared.results;
    println!(
        "result cache: {} hits, {} misses, {} entries, {} bytes",
        cache.hits(),
        cache.misses(),
        cache.len(),
        cache.bytes()
    );
    for proxy in proxies {
        proxy.shutdown().await;
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Statements per second from `conns` connections to `url` for `length`.
async fn run(
    url: &str,
    direct: bool,
    mode: Mode,
    conns: usize,
    length: Duration,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (list, price) = if direct {
        (LIST_DIRECT, PRICE_DIRECT)
    } else {
        (LIST, PRICE)
    };
    let mut connections = Vec::new();
    for _ in 0..conns {
        let mut conn = mysql_async::Conn::from_url(url).await?;
        // Warm up: the first of each statement is a miss (or a cold plan).
        for name in NAMES {
            one(&mut conn, mode, list, price, name).await?;
        }
        connections.push(conn);
    }
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::new();
    for (c, mut conn) in connections.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let name = NAMES[(c + n as usize) % NAMES.len()];
                one(&mut conn, mode, list, price, name).await?;
                n += 2;
            }
            conn.disconnect().await?;
            Ok::<u64, mysql_async::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// One product list and one price question; fails if either is empty.
async fn one(
    conn: &mut mysql_async::Conn,
    mode: Mode,
    list: &str,
    price: &str,
    name: &str,
) -> Result<(), mysql_async::Error> {
    let (products, prices): (Vec<mysql_async::Row>, Vec<mysql_async::Row>) = match mode {
        Mode::Text => (
            conn.query(list).await?,
            conn.query(price.replace('?', &format!("'{name}'"))).await?,
        ),
        Mode::Prepared => (conn.exec(list, ()).await?, conn.exec(price, (name,)).await?),
    };
    if products.is_empty() || prices.is_empty() {
        return Err(mysql_async::Error::Other("an empty answer".into()));
    }
    Ok(())
}
