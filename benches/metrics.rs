//! The per-statement cost of metrics: `Metrics::observe_as` with a session's
//! cached user handle (what `Session::finish` calls), the name-lookup
//! `observe`, and one scrape's `render`. `cargo bench --bench metrics`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use sqlguard::audit::{AuditLog, Entry};
use sqlguard::config::{self, Overrides};
use sqlguard::guard::Rule;
use sqlguard::metrics::Metrics;

fn entry(kind: &'static str, decision: &'static str) -> Entry {
    Entry {
        user: "clawdbot".into(),
        kind,
        decision,
        duration_us: 180,
        backend_us: Some(120),
        guard_us: Some(40),
        ..Entry::default()
    }
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let overrides = Overrides {
        skip_backend_password: true,
        ..Overrides::default()
    };
    let config = config::load(&dir.join("proxy.toml"), &overrides).expect("proxy.toml");
    let metrics = Metrics::new();
    let user = metrics.user(&config.users[0]);
    let allow = entry("select", "allow");
    let mut deny = entry("delete", "deny");
    deny.rule = Some(Rule::StatementNotAllowed.name());
    deny.backend_us = None;

    let mut group = c.benchmark_group("metrics");
    group.bench_function("observe_as_allowed_select", |b| {
        b.iter(|| metrics.observe_as(&user, black_box(&allow), allow.guard_us, None))
    });
    group.bench_function("observe_as_denied_delete", |b| {
        b.iter(|| metrics.observe_as(&user, black_box(&deny), deny.guard_us, None))
    });
    group.bench_function("observe_by_name_allowed_select", |b| {
        b.iter(|| metrics.observe(black_box(&allow), allow.guard_us, None))
    });
    let audit = AuditLog::open(&config::AuditConfig::default()).expect("audit");
    group.bench_function("render_scrape", |b| {
        b.iter(|| black_box(metrics.render(&audit, None)).len())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
