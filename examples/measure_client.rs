//! A measuring client for scripts/measure-proxy.sh and scripts/bench.sh (not
//! part of the proxy).
//!
//!   measure_client loop URL N          N point SELECTs on one connection; prints elapsed ms
//!   measure_client stream URL SQL      runs SQL, counts rows without keeping them; prints count and ms
//!   measure_client idle URL N SECONDS  opens N connections, prints "ready", holds them idle
//!                                      for SECONDS (or until killed), then closes them

use std::time::Instant;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: measure_client loop URL N | stream URL SQL | idle URL N SECONDS";
    if let [_, mode, url, n, seconds] = args.as_slice() {
        if mode == "idle" {
            return idle(url, n.parse()?, seconds.parse()?).await;
        }
        return Err(usage.into());
    }
    let (mode, url, arg) = match args.as_slice() {
        [_, mode, url, arg] => (mode.as_str(), url.as_str(), arg.as_str()),
        _ => return Err(usage.into()),
    };
    let mut conn = Conn::new(Opts::from_url(url)?).await?;
    match mode {
        "loop" => {
            let n: u32 = arg.parse()?;
            // Warm up the connection and the server's caches.
            for id in (1..=19u32).step_by(2) {
                let _: Option<String> = conn
                    .query_first(format!("SELECT c FROM bench_points WHERE id = {id}"))
                    .await?;
            }
            let start = Instant::now();
            for i in 0..n {
                // Odd ids are tenant 1's (the demo user's) rows.
                let id = 1 + 2 * (i % 500);
                let row: Option<String> = conn
                    .query_first(format!("SELECT c FROM bench_points WHERE id = {id}"))
                    .await?;
                if row.is_none() {
                    return Err(format!("no row for id {id}").into());
                }
            }
            let elapsed = start.elapsed();
            println!(
                "{n} point selects: {:.1} ms ({:.1} us/statement)",
                elapsed.as_secs_f64() * 1e3,
                elapsed.as_secs_f64() * 1e6 / n as f64
            );
        }
        "stream" => {
            let start = Instant::now();
            let mut result = conn.query_iter(arg).await?;
            let mut rows = 0u64;
            while result.next().await?.is_some() {
                rows += 1;
            }
            println!(
                "{rows} rows streamed in {:.0} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}

/// How many logins `idle` runs at once: enough to open 1,000 connections in
/// a few seconds, few enough not to trip the proxy's handshake timeout on a
/// loaded machine.
const IDLE_CONNECT_CONCURRENCY: usize = 50;

/// Opens `n` connections, each with one `SELECT 1` (so the session is fully
/// set up, as a real client's would be), prints "ready" and keeps them idle
/// for `seconds`: a bound, so a forgotten client stops by itself.
async fn idle(url: &str, n: usize, seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let opts = Opts::from_url(url)?;
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = IDLE_CONNECT_CONCURRENCY.min(n - conns.len());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let opts = opts.clone();
            set.spawn(async move {
                let mut conn = Conn::new(opts).await?;
                conn.query_drop("SELECT 1").await?;
                Ok::<Conn, mysql_async::Error>(conn)
            });
        }
        while let Some(joined) = set.join_next().await {
            conns.push(joined??);
        }
    }
    println!(
        "ready: {} connections open in {:.0} ms",
        conns.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    for conn in conns {
        conn.disconnect().await?;
    }
    Ok(())
}
