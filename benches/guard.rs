//! Parsing alone vs the whole guard (precheck, parse, check, rewrite,
//! serialize and round-trip) for the seed's queries, as tenant 1 under
//! policies/clawdbot.toml, and vs a decision-cache hit (what a repeated
//! statement costs). `scripts/bench-guard.sh` prints the medians.
//! `cache_contention` compares one shared cache with one cache per thread,
//! two threads hitting it at once.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sqlguard::config::UserConfig;
use sqlguard::decision_cache::{Asker, DecisionCache};
use sqlguard::frontend::auth::NativePasswordHash;
use sqlguard::guard::{self, Decision, SessionContext};
use sqlguard::policy::Policy;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

/// The seed's queries (seed/DATABASE_SCHEMA.md), with demo ids.
const QUERIES: &[(&str, &str)] = &[
    (
        "product_list",
        "SELECT name, price FROM products WHERE status = 'active' LIMIT 5",
    ),
    (
        "price_like",
        "SELECT price FROM products WHERE name LIKE '%Montre%'",
    ),
    (
        "stock_by_uuid",
        "SELECT stock FROM products WHERE id = '3f2504e0-4f89-41d3-9a0c-0305e82c1001'",
    ),
    (
        "customer_by_phone",
        "SELECT * FROM customers WHERE phone = '+212612345678'",
    ),
    (
        "insert_customer",
        "INSERT INTO customers (phone, created_at) VALUES ('+212699000111', NOW())",
    ),
    (
        "insert_order",
        "INSERT INTO orders (id, customer_id, product_data, total_price, status) VALUES (UUID(), 1, '[{\"product_id\": \"3f2504e0-4f89-41d3-9a0c-0305e82c1001\", \"quantity\": 1, \"price\": 299.00}]', 299.00, 'En attente')",
    ),
    (
        "update_order_confirm",
        "UPDATE orders SET status = 'Confirmé', address = '12 Rue Ibnou Mounir, Maârif', city = 'Casablanca' WHERE id = '6ec0bd7f-11c0-43da-975e-2a8ad9eb1001'",
    ),
];

fn policy() -> Policy {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/clawdbot.toml");
    Policy::load(&path).expect("policies/clawdbot.toml")
}

fn parse_only(sql: &str) -> usize {
    let dialect = MySqlDialect {};
    Parser::new(&dialect)
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .expect("parses")
        .len()
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let session = SessionContext {
        user: "clawdbot",
        tenant_id: 1,
        database: "shop",
        policy: &policy,
    };
    let user = Arc::new(UserConfig {
        name: "clawdbot".into(),
        password_hash: NativePasswordHash::of_password(b"x"),
        tenant_id: 1,
        policy: Arc::new(policy.clone()),
        policy_version: "bench".into(),
        limits: sqlguard::limits::Limits::default(),
        require_tls: false,
    });
    let asker = Asker {
        user: &user,
        database: "shop",
    };
    let cache = DecisionCache::default();
    for (name, sql) in QUERIES {
        // Every benchmarked query must be one the guard allows.
        match guard::check(sql, &session) {
            Decision::Allow { .. } => {}
            other => panic!("{name}: expected allow, got {other:?}"),
        }
        let mut group = c.benchmark_group(*name);
        group
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2));
        group.bench_function("parse_only", |b| b.iter(|| parse_only(black_box(sql))));
        group.bench_function("guard_check", |b| {
            b.iter(|| guard::check(black_box(sql), black_box(&session)))
        });
        group.bench_function("guard_cached", |b| {
            b.iter(|| cache.check(black_box(sql), black_box(&asker)))
        });
        group.finish();
    }
    contention(c, &user);
}

/// Two threads, each looking up the seed's queries in a loop: one cache
/// shared by both vs a cache of their own.
fn contention(c: &mut Criterion, user: &Arc<UserConfig>) {
    const THREADS: usize = 2;
    let mut group = c.benchmark_group("cache_contention");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let run = |iters: u64, caches: &[Arc<DecisionCache>]| {
        let barrier = Arc::new(Barrier::new(THREADS + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let cache = Arc::clone(&caches[t % caches.len()]);
                let user = Arc::clone(user);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let asker = Asker {
                        user: &user,
                        database: "shop",
                    };
                    barrier.wait();
                    for i in 0..iters {
                        let (_, sql) = QUERIES[i as usize % QUERIES.len()];
                        black_box(cache.check(sql, &asker));
                    }
                })
            })
            .collect();
        let started = Instant::now();
        barrier.wait();
        for t in threads {
            t.join().expect("bench thread");
        }
        started.elapsed()
    };
    let shared = [Arc::new(DecisionCache::default())];
    let own: Vec<_> = (0..THREADS)
        .map(|_| Arc::new(DecisionCache::default()))
        .collect();
    group.bench_function("shared", |b| b.iter_custom(|iters| run(iters, &shared)));
    group.bench_function("per_thread", |b| b.iter_custom(|iters| run(iters, &own)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
