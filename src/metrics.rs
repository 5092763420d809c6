//! The Prometheus metrics of one proxy (families of DESIGN.md "Metrics"), in a
//! registry of its own so several proxies in one process never collide.
//! `metrics/http.rs` serves them with `/healthz` and `/readyz`.
//!
//! Label values are bounded: users come from the configuration (anything else
//! is counted as [`UNKNOWN_USER`]), kinds and rules from fixed lists, backend
//! codes from a bounded range. The per-statement path resolves label handles
//! once per session ([`UserMetrics`]) and then only touches atomics.

mod http;

pub use http::{bind, serve};

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::core::Collector;
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::{AuditLog, Entry};
use crate::config::UserConfig;
use crate::guard::{Rule, StatementKind};

/// Seconds, for a proxy: from a cached point select through the proxy
/// (~50 µs of guard time) to a statement near a typical query timeout.
pub const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The `user` label for a name that is not a configured user (e.g. a failed
/// login with a made-up name): one fixed series, not one per name sent.
pub const UNKNOWN_USER: &str = "(unknown)";
/// The `rule` label for a rule name outside `Rule::ALL` (never expected).
const OTHER_RULE: &str = "(other)";
/// The `code` label for backend codes outside MariaDB's error range.
const OTHER_CODE: &str = "other";

/// Statement kinds, in label order (`StatementKind::name()` gives the label).
const KINDS: [StatementKind; 13] = [
    StatementKind::Select,
    StatementKind::Insert,
    StatementKind::Update,
    StatementKind::Delete,
    StatementKind::Replace,
    StatementKind::Ddl,
    StatementKind::Transaction,
    StatementKind::Set,
    StatementKind::Show,
    StatementKind::Use,
    StatementKind::Privilege,
    StatementKind::Other,
    StatementKind::Unknown,
];
const UNKNOWN_KIND: usize = 12;
const DECISIONS: [&str; 3] = ["allow", "deny", "error"];

/// The families DESIGN.md promises (a contract: dashboards and alerts use
/// these names). Also served: `sqlguard_backend_up`, `sqlguard_build_info`,
/// `sqlguard_decision_cache_lookups_total`, `sqlguard_config_reloads_total`,
/// `sqlguard_session_panics_total` and the `process_*` families.
pub const DESIGN_FAMILIES: &[&str] = &[
    "sqlguard_queries_total",
    "sqlguard_denied_total",
    "sqlguard_query_duration_seconds",
    "sqlguard_guard_duration_seconds",
    "sqlguard_backend_duration_seconds",
    "sqlguard_client_connections",
    "sqlguard_backend_connections",
    "sqlguard_backend_errors_total",
    "sqlguard_audit_records_total",
    "sqlguard_audit_write_errors_total",
];

/// The text exposition format served on /metrics.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn kind_index(kind: &str) -> usize {
    KINDS
        .iter()
        .position(|k| k.name() == kind)
        .unwrap_or(UNKNOWN_KIND)
}

fn decision_index(decision: &str) -> usize {
    match decision {
        "allow" => 0,
        "deny" => 1,
        // Anything else is not an allow or a deny; count it as an error.
        _ => 2,
    }
}

/// Rules outside the guard: `[limits]` and a user removed by a reload.
const EXTRA_RULES: &[&str] = crate::limits::RULES;
/// Index of the `(other)` rule slot.
const OTHER_RULE_INDEX: usize = Rule::ALL.len() + EXTRA_RULES.len();

/// `Rule::ALL` index, then `EXTRA_RULES`, or [`OTHER_RULE_INDEX`].
fn rule_index(rule: &str) -> usize {
    Rule::ALL
        .iter()
        .position(|r| r.name() == rule)
        .or_else(|| {
            EXTRA_RULES
                .iter()
                .position(|r| *r == rule)
                .map(|i| Rule::ALL.len() + i)
        })
        .unwrap_or(OTHER_RULE_INDEX)
}

fn rule_label(index: usize) -> &'static str {
    match Rule::ALL.get(index) {
        Some(rule) => rule.name(),
        None => index
            .checked_sub(Rule::ALL.len())
            .and_then(|i| EXTRA_RULES.get(i))
            .copied()
            .unwrap_or(OTHER_RULE),
    }
}

/// Bounded `code` label: 0 (connection), MariaDB's error codes, or `other`.
fn code_label(code: u16) -> std::borrow::Cow<'static, str> {
    match code {
        0 | 1000..=4999 => code.to_string().into(),
        _ => OTHER_CODE.into(),
    }
}

/// The series of one user, resolved on first use and then kept: a session
/// holds this so a statement costs a few atomic increments, no map lookup
/// and no label allocation.
pub struct UserMetrics {
    name: Arc<str>,
    queries_vec: IntCounterVec,
    denied_vec: IntCounterVec,
    queries: [[OnceLock<IntCounter>; DECISIONS.len()]; KINDS.len()],
    /// `Rule::ALL` order, plus one slot for an unknown rule name.
    denied: Box<[OnceLock<IntCounter>]>,
}

impl UserMetrics {
    fn new(name: &str, queries_vec: &IntCounterVec, denied_vec: &IntCounterVec) -> UserMetrics {
        UserMetrics {
            name: name.into(),
            queries_vec: queries_vec.clone(),
            denied_vec: denied_vec.clone(),
            queries: Default::default(),
            denied: (0..=OTHER_RULE_INDEX).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The `user` label of these series.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn query(&self, kind: usize, decision: usize) -> &IntCounter {
        self.queries[kind][decision].get_or_init(|| {
            self.queries_vec.with_label_values(&[
                &*self.name,
                KINDS[kind].name(),
                DECISIONS[decision],
            ])
        })
    }

    fn denial(&self, rule: usize) -> &IntCounter {
        self.denied[rule].get_or_init(|| {
            self.denied_vec
                .with_label_values(&[&*self.name, rule_label(rule)])
        })
    }
}

/// Every metric of one proxy.
pub struct Metrics {
    registry: Registry,
    queries: IntCounterVec,
    denied: IntCounterVec,
    /// `KINDS` order.
    query_duration: Vec<Histogram>,
    guard_duration: Histogram,
    backend_duration: Histogram,
    /// Open client connections (see [`GaugeGuard`]).
    pub client_connections: IntGauge,
    /// Backend connections pinned by sessions (`state="pinned"`).
    pub pinned_backend_connections: IntGauge,
    /// 1 when the last readiness check reached the backend (set per scrape).
    pub backend_up: IntGauge,
    backend_connections: IntGaugeVec,
    backend_errors: IntCounterVec,
    /// Guard decisions answered by the decision cache (`result="hit"`).
    pub decision_cache_hits: IntCounter,
    /// Guard decisions the guard had to make (`result="miss"`).
    pub decision_cache_misses: IntCounter,
    /// The result cache's lookups, size and invalidations (cache.rs).
    pub result_cache: crate::cache::CacheMetrics,
    users: RwLock<HashMap<String, Arc<UserMetrics>>>,
    unknown_user: Arc<UserMetrics>,
    /// `sqlguard_config_reloads_total{result="ok"|"error"}` (SIGHUP).
    config_reloads: [IntCounter; 2],
    /// Connections ended by a panic (frontend/listener.rs `contain_panic`).
    pub session_panics: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a collector built from constant, valid options; a failure here
/// is a programming error caught by every test that builds `Metrics`.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    if let Err(e) = registry.register(Box::new(collector.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    collector
}

fn histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec())
}

/// `prometheus` only fails on invalid names, label counts or buckets, which
/// are all constants here (the unit tests build every family).
macro_rules! constant {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => unreachable!("constant metric definition rejected: {e}"),
        }
    };
}

/// `sqlguard_result_cache_*`: lookups by result, bytes and entries held,
/// invalidations (writes through sqlguard that ended, and full clears).
fn result_cache_metrics(registry: &Registry) -> crate::cache::CacheMetrics {
    let lookups = register(
        registry,
        constant!(IntCounterVec::new(
            Opts::new(
                "sqlguard_result_cache_lookups_total",
                "Cacheable SELECTs looked up in the result cache: hit (answered from \
                 memory, not forwarded) or miss (forwarded)."
            ),
            &["result"],
        )),
    );
    crate::cache::CacheMetrics {
        hits: lookups.with_label_values(&["hit"]),
        misses: lookups.with_label_values(&["miss"]),
        bytes: register(
            registry,
            constant!(IntGauge::new(
                "sqlguard_result_cache_bytes",
                "Bytes held by the result cache (estimated)."
            )),
        ),
        entries: register(
            registry,
            constant!(IntGauge::new(
                "sqlguard_result_cache_entries",
                "Results held by the result cache."
            )),
        ),
        invalidations: register(
            registry,
            constant!(IntCounter::new(
                "sqlguard_result_cache_invalidations_total",
                "Writes through sqlguard that ended (each invalidates the cached results \
                 of the tables it named) and full clears."
            )),
        ),
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let queries = register(
            &registry,
            constant!(IntCounterVec::new(
                Opts::new(
                    "sqlguard_queries_total",
                    "Statements handled, by user, kind and decision."
                ),
                &["user", "kind", "decision"],
            )),
        );
        let denied = register(
            &registry,
            constant!(IntCounterVec::new(
                Opts::new(
                    "sqlguard_denied_total",
                    "Statements refused, by user and rule."
                ),
                &["user", "rule"],
            )),
        );
        let query_duration_vec = register(
            &registry,
            constant!(HistogramVec::new(
                histogram_opts(
                    "sqlguard_query_duration_seconds",
                    "Whole statement, from command to answer, by kind."
                ),
                &["kind"],
            )),
        );
        let query_duration = KINDS
            .iter()
            .map(|k| query_duration_vec.with_label_values(&[k.name()]))
            .collect();
        let guard_duration = register(
            &registry,
            constant!(Histogram::with_opts(histogram_opts(
                "sqlguard_guard_duration_seconds",
                "Parse, check, rewrite and serialize."
            ))),
        );
        let backend_duration = register(
            &registry,
            constant!(Histogram::with_opts(histogram_opts(
                "sqlguard_backend_duration_seconds",
                "Time in the database, including streaming the result to the client."
            ))),
        );
        let client_connections = register(
            &registry,
            constant!(IntGauge::new(
                "sqlguard_client_connections",
                "Open client connections."
            )),
        );
        let backend_connections = register(
            &registry,
            constant!(IntGaugeVec::new(
                Opts::new(
                    "sqlguard_backend_connections",
                    "Backend connections: open (all), idle (in the pool), in_use (checked \
                     out of the pool), pinned (held by client sessions, part of in_use)."
                ),
                &["state"],
            )),
        );
        let pinned_backend_connections = backend_connections.with_label_values(&["pinned"]);
        for state in ["open", "idle", "in_use"] {
            backend_connections.with_label_values(&[state]);
        }
        let backend_up = register(
            &registry,
            constant!(IntGauge::new(
                "sqlguard_backend_up",
                "1 if the backend answered a ping at the last scrape (cached up to 1 s), else 0."
            )),
        );
        let backend_errors = register(
            &registry,
            constant!(IntCounterVec::new(
                Opts::new(
                    "sqlguard_backend_errors_total",
                    "Failed statements by MariaDB error code (0: no answer: no connection, connection lost, deadline)."
                ),
                &["code"],
            )),
        );
        // Always present (alerts on connection errors need a zero to start from).
        backend_errors.with_label_values(&["0"]);
        let decision_cache = register(
            &registry,
            constant!(IntCounterVec::new(
                Opts::new(
                    "sqlguard_decision_cache_lookups_total",
                    "Guard decisions looked up in the decision cache: hit (answered from \
                     it) or miss (the guard ran)."
                ),
                &["result"],
            )),
        );
        let decision_cache_hits = decision_cache.with_label_values(&["hit"]);
        let decision_cache_misses = decision_cache.with_label_values(&["miss"]);
        let result_cache = result_cache_metrics(&registry);
        let build_info = register(
            &registry,
            constant!(IntGaugeVec::new(
                Opts::new("sqlguard_build_info", "Always 1; the running version."),
                &["version"],
            )),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!(error = %e, "process metrics registration failed");
        }
        let config_reloads_vec = register(
            &registry,
            constant!(IntCounterVec::new(
                Opts::new(
                    "sqlguard_config_reloads_total",
                    "Reloads of users, policies and limits (SIGHUP), by result (ok, error)."
                ),
                &["result"],
            )),
        );
        let config_reloads = [
            config_reloads_vec.with_label_values(&["ok"]),
            config_reloads_vec.with_label_values(&["error"]),
        ];
        let session_panics = register(
            &registry,
            constant!(IntCounter::new(
                "sqlguard_session_panics_total",
                "Client connections ended by a panic in sqlguard (a bug): that connection \
                 was closed and its backend connection discarded; the others kept running."
            )),
        );
        let unknown_user = Arc::new(UserMetrics::new(UNKNOWN_USER, &queries, &denied));
        Metrics {
            session_panics,
            config_reloads,
            registry,
            queries,
            denied,
            query_duration,
            guard_duration,
            backend_duration,
            client_connections,
            pinned_backend_connections,
            backend_up,
            backend_connections,
            backend_errors,
            decision_cache_hits,
            decision_cache_misses,
            result_cache,
            users: RwLock::new(HashMap::new()),
            unknown_user,
        }
    }

    /// Counts one configuration reload (`ok` false: refused, the old one serves).
    pub fn config_reloaded(&self, ok: bool) {
        self.config_reloads[usize::from(!ok)].inc();
    }

    /// The series of a configured user (a `UserConfig` only comes from a
    /// validated configuration, so the label set stays bounded).
    pub fn user(&self, user: &UserConfig) -> Arc<UserMetrics> {
        if let Some(found) = self.find_user(&user.name) {
            return found;
        }
        let mut users = match self.users.write() {
            Ok(users) => users,
            Err(poisoned) => poisoned.into_inner(),
        };
        users
            .entry(user.name.clone())
            .or_insert_with(|| Arc::new(UserMetrics::new(&user.name, &self.queries, &self.denied)))
            .clone()
    }

    fn find_user(&self, name: &str) -> Option<Arc<UserMetrics>> {
        let users = match self.users.read() {
            Ok(users) => users,
            Err(poisoned) => poisoned.into_inner(),
        };
        users.get(name).cloned()
    }

    /// Counts one finished statement by the user named in its entry (a name
    /// no session has registered counts as [`UNKNOWN_USER`]). Sessions use
    /// [`Metrics::observe_as`] with their cached handles instead.
    pub fn observe(&self, entry: &Entry, guard_us: Option<u64>, backend_code: Option<u16>) {
        let user = self
            .find_user(&entry.user)
            .unwrap_or_else(|| self.unknown_user.clone());
        self.observe_as(&user, entry, guard_us, backend_code);
    }

    /// Counts one finished statement (called with its audit entry).
    pub fn observe_as(
        &self,
        user: &UserMetrics,
        entry: &Entry,
        guard_us: Option<u64>,
        backend_code: Option<u16>,
    ) {
        let kind = kind_index(entry.kind);
        let decision = decision_index(entry.decision);
        user.query(kind, decision).inc();
        if decision == 1 {
            if let Some(rule) = entry.rule {
                user.denial(rule_index(rule)).inc();
            }
        }
        if let Some(h) = self.query_duration.get(kind) {
            h.observe(seconds(entry.duration_us));
        }
        if let Some(us) = guard_us {
            self.guard_duration.observe(seconds(us));
        }
        if let Some(us) = entry.backend_us {
            self.backend_duration.observe(seconds(us));
        }
        if let Some(code) = backend_code {
            // Rare (an error): the label lookup may allocate.
            self.backend_errors
                .with_label_values(&[&*code_label(code)])
                .inc();
        }
    }

    /// The Prometheus text exposition. `audit` and `pool` are read at scrape
    /// time (their counters live where they are counted).
    pub fn render(&self, audit: &AuditLog, pool: Option<&mysql_async::Metrics>) -> String {
        if let Some(pool) = pool {
            use std::sync::atomic::Ordering::Relaxed;
            let gauge = |state: &str, v: &std::sync::atomic::AtomicUsize| {
                self.backend_connections
                    .with_label_values(&[state])
                    .set(i64::try_from(v.load(Relaxed)).unwrap_or(i64::MAX));
            };
            gauge("open", &pool.connection_count);
            gauge("idle", &pool.connections_in_pool);
            gauge("in_use", &pool.connections_in_use);
        }
        let mut families = self.registry.gather();
        families.push(counter_family(
            "sqlguard_audit_records_total",
            "Audit records written.",
            audit.records.load(std::sync::atomic::Ordering::Relaxed),
        ));
        families.push(counter_family(
            "sqlguard_audit_write_errors_total",
            "Failed attempts to write the audit log; a failing batch is retried with \
             backoff and every failed attempt counts, so this is not a number of records.",
            audit
                .write_errors
                .load(std::sync::atomic::Ordering::Relaxed),
        ));
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// A counter family whose value is kept elsewhere (read at scrape time).
fn counter_family(name: &str, help: &str, value: u64) -> MetricFamily {
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_counter(counter);
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(MetricType::COUNTER);
    family.set_metric(vec![metric]);
    family
}

/// Keeps a gauge raised while alive.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, kind: &'static str, decision: &'static str) -> Entry {
        Entry {
            user: user.into(),
            kind,
            decision,
            duration_us: 120,
            ..Entry::default()
        }
    }

    fn render(m: &Metrics) -> String {
        let audit = AuditLog::open(&crate::config::AuditConfig::default()).unwrap();
        m.render(&audit, None)
    }

    #[test]
    fn every_kind_and_rule_has_a_slot() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(kind_index(k.name()), i);
        }
        assert_eq!(kind_index("nonsense"), UNKNOWN_KIND);
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert_eq!(rule_index(r.name()), i);
            assert_eq!(rule_label(i), r.name());
        }
        assert_eq!(rule_label(rule_index("nonsense")), OTHER_RULE);
    }

    #[test]
    fn families_and_labels() {
        let m = Metrics::new();
        m.observe(&entry("nobody", "select", "allow"), Some(30), None);
        let mut denied = entry("nobody", "delete", "deny");
        denied.rule = Some(Rule::StatementNotAllowed.name());
        m.observe(&denied, Some(20), None);
        let mut failed = entry("nobody", "select", "error");
        failed.backend_us = Some(500);
        m.observe(&failed, Some(10), Some(1146));
        m.observe(&failed, Some(10), Some(60000));
        let text = render(&m);
        for needle in [
            "sqlguard_queries_total{decision=\"allow\",kind=\"select\",user=\"(unknown)\"} 1",
            "sqlguard_queries_total{decision=\"deny\",kind=\"delete\",user=\"(unknown)\"} 1",
            "sqlguard_denied_total{rule=\"statement_not_allowed\",user=\"(unknown)\"} 1",
            "sqlguard_query_duration_seconds_count{kind=\"select\"} 3",
            "sqlguard_query_duration_seconds_bucket{kind=\"select\",le=\"0.00005\"} 0",
            "sqlguard_query_duration_seconds_bucket{kind=\"select\",le=\"0.00025\"} 3",
            "sqlguard_guard_duration_seconds_count 4",
            "sqlguard_backend_duration_seconds_count 2",
            "sqlguard_backend_errors_total{code=\"1146\"} 1",
            "sqlguard_backend_errors_total{code=\"other\"} 1",
            "sqlguard_audit_records_total 0",
            "sqlguard_audit_write_errors_total 0",
            "sqlguard_client_connections 0",
            "sqlguard_backend_connections{state=\"pinned\"} 0",
            "sqlguard_session_panics_total 0",
            "sqlguard_build_info{version=\"",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        assert!(!text.contains("nobody"), "an unknown user made a series");
    }

    #[test]
    fn two_proxies_in_one_process_do_not_share_series() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.observe(&entry("x", "select", "allow"), None, None);
        let _guard = GaugeGuard::new(&a.client_connections);
        assert!(render(&a).contains("sqlguard_client_connections 1"));
        assert!(render(&b).contains("sqlguard_client_connections 0"));
        assert!(!render(&b).contains("sqlguard_queries_total{"));
    }
}
