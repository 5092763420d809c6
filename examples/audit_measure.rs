//! Measures the audit log (issue 5's closing note):
//! `audit_measure generate PATH N` writes N records with the real writer
//! (one bot-like statement each) and prints the time it took;
//! `audit_measure qps CONNS SECONDS ROUNDS` starts a private MariaDB with the
//! demo data and two proxies in front of it, one writing the audit log and
//! one without it, and runs point SELECTs from CONNS connections against
//! each in turn (ROUNDS times), printing statements per second.
//! Release build: `cargo run --release --example audit_measure -- ...`.

use std::time::Instant;

use sqlguard::audit::{AuditLog, Entry};
use sqlguard::config::AuditConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 4 => {
            let path = std::path::PathBuf::from(&args[2]);
            let n: u64 = args[3].parse()?;
            let log = AuditLog::open(&AuditConfig {
                path: Some(path),
                ..AuditConfig::default()
            })?;
            let started = Instant::now();
            for i in 0..n {
                log.write(Entry {
                    conn_id: (i % 100) as u32,
                    user: "clawdbot".into(),
                    tenant_id: Some(1),
                    client_addr: "127.0.0.1:40000".into(),
                    command: "query",
                    kind: "select",
                    decision: if i % 10 == 0 { "deny" } else { "allow" },
                    sql: Some(format!("SELECT id, name, price FROM products WHERE id = '3f2504e0-4f89-41d3-9a0c-{i:012}'")),
                    executed_sql: Some(format!("SELECT id, name, price FROM products WHERE (id = '3f2504e0-4f89-41d3-9a0c-{i:012}') AND products.tenant_id = 1 LIMIT 20")),
                    rows: Some(1),
                    duration_us: 250,
                    backend_us: Some(180),
                    ..Entry::default()
                })
                .await;
            }
            if !log.flush().await {
                return Err("the log could not be written".into());
            }
            println!("wrote {n} records in {:.2?}", started.elapsed());
            Ok(())
        }
        Some("qps") if args.len() == 5 => {
            qps(args[2].parse()?, args[3].parse()?, args[4].parse()?).await
        }
        _ => Err("usage: audit_measure generate PATH N | qps CONNS SECONDS ROUNDS".into()),
    }
}

const BACKEND_PASSWORD: &str = "sqlguard-measure";

async fn qps(conns: usize, seconds: u64, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    use mysql_async::prelude::*;
    let db = sqlguard::mariadb::PrivateMariaDb::start().await?;
    db.load_demo(BACKEND_PASSWORD).await?;
    let dir = std::env::temp_dir().join(format!("sqlguard-audit-measure-{}", std::process::id()));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (stem, text) in sqlguard::DEMO_POLICIES {
        std::fs::write(policies.join(format!("{stem}.toml")), text)?;
    }
    let mut proxies = Vec::new();
    for audited in [true, false] {
        let overrides = sqlguard::config::Overrides {
            listen: Some("127.0.0.1:0".into()),
            backend_url: Some(format!("mysql://sqlguard@127.0.0.1:{}/shop", db.port())),
            backend_password: Some(BACKEND_PASSWORD.into()),
            audit_log: Some(dir.join("audit.log")),
            ..Default::default()
        };
        let mut config = sqlguard::config::load_str(
            sqlguard::DEMO_PROXY_TOML,
            std::path::Path::new("proxy.toml"),
            &policies,
            &overrides,
        )?;
        config.metrics.address = None;
        if !audited {
            config.audit.path = None;
        }
        for user in &mut config.users {
            user.limits.statements_per_second = 1e9;
            user.limits.statement_burst = u32::MAX;
            user.limits.max_concurrent_statements = 10_000;
            user.limits.max_user_connections = 10_000;
        }
        proxies.push((audited, sqlguard::frontend::listener::start(config).await?));
    }
    for round in 1..=rounds {
        for (audited, proxy) in &proxies {
            let url = format!(
                "mysql://clawdbot:meyram-demo@127.0.0.1:{}/shop",
                proxy.addr.port()
            );
            let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for c in 0..conns {
                let url = url.clone();
                tasks.push(tokio::spawn(async move {
                    let mut conn = mysql_async::Conn::from_url(url).await?;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let _: Option<String> = conn
                            .query_first(format!(
                                "SELECT name FROM products WHERE price = {}",
                                (c as u64 * 7 + n) % 1000
                            ))
                            .await?;
                        n += 1;
                    }
                    conn.disconnect().await?;
                    Ok::<u64, mysql_async::Error>(n)
                }));
            }
            let started = Instant::now();
            let mut total = 0;
            for t in tasks {
                total += t.await??;
            }
            let qps = total as f64 / started.elapsed().as_secs_f64();
            println!(
                "round {round}: audit {}: {conns} connections, {total} statements, {qps:.0} statements/s",
                if *audited { "on " } else { "off" }
            );
        }
    }
    let records = proxies[0]
        .1
        .shared
        .audit
        .records
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("audit records written by the audited proxy: {records}");
    for (_, proxy) in proxies {
        proxy.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
