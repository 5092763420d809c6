//! Per-user resource limits: connections, concurrent statements, the
//! statement rate (token bucket), statement size and result size. Owns the
//! validated `[limits]` values and the per-user counters; the values come from
//! the current configuration (so a reload applies at once), the counters live
//! as long as the proxy (so a reload never resets them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits of one user: `[limits]` with that user's overrides applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Open connections of one user (MariaDB's `max_user_connections`).
    pub max_user_connections: u32,
    /// Statements of one user running at once, over all their connections.
    pub max_concurrent_statements: u32,
    /// Token bucket: tokens added per second...
    pub statements_per_second: f64,
    /// ...and the most it holds (statements that may come in one burst).
    pub statement_burst: u32,
    /// Longest statement text, checked before parsing.
    pub max_statement_bytes: usize,
    /// Most rows one statement may send to the client.
    pub max_result_rows: u64,
    /// Most bytes one statement's result may send to the client.
    pub max_result_bytes: u64,
}

/// Defaults: above what the bundled policies, tests and benchmarks need (the
/// read-only policy allows LIMIT 1,000,000; a test sends 10,000 prepares as
/// fast as it can), so they only stop a runaway client; set tighter values
/// per user for an agent.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_user_connections: 100,
            max_concurrent_statements: 32,
            statements_per_second: 5000.0,
            statement_burst: 20_000,
            max_statement_bytes: crate::guard::MAX_STATEMENT_BYTES,
            max_result_rows: 1_000_000,
            max_result_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// MariaDB's `max_allowed_packet` default: the largest client command
/// (all packets of it) the proxy reads before closing the connection.
pub const DEFAULT_MAX_PACKET_BYTES: usize = crate::frontend::wire::MAX_COMMAND_BYTES;
/// MariaDB's own ceiling for `max_allowed_packet`.
pub const MAX_MAX_PACKET_BYTES: usize = 1024 * 1024 * 1024;

/// A statement or login refused by a limit. The messages carry what an
/// agent can do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "sqlguard: User {user} already has more than 'max_user_connections' active connections \
         (max_user_connections = {max}); close an idle connection or reuse one"
    )]
    Connections { user: String, max: u32 },
    #[error(
        "sqlguard: User '{user}' has exceeded the 'max_concurrent_statements' resource \
         (current value: {max}); retry after {retry_ms} ms, or run fewer statements in parallel"
    )]
    Concurrency {
        user: String,
        max: u32,
        retry_ms: u64,
    },
    #[error(
        "sqlguard: User '{user}' has exceeded the 'statements_per_second' resource \
         (current value: {rate}, burst {burst}); retry after {retry_ms} ms"
    )]
    Rate {
        user: String,
        rate: f64,
        burst: u32,
        retry_ms: u64,
    },
    #[error(
        "sqlguard: statement of {len} bytes is larger than max_statement_bytes ({max}); \
         send one shorter statement"
    )]
    StatementSize { len: usize, max: usize },
    #[error(
        "sqlguard: Got a packet bigger than 'max_allowed_packet' bytes \
         (limits.max_packet_bytes = {max}); the connection is closed"
    )]
    Packet { max: usize },
    #[error(
        "sqlguard: the result has more than max_result_rows ({max}) rows; the rows already \
         sent are NOT the complete result. Add a LIMIT or a narrower WHERE"
    )]
    ResultRows { max: u64 },
    #[error(
        "sqlguard: the result is larger than max_result_bytes ({max}); the rows already sent \
         are NOT the complete result. Select fewer columns or rows"
    )]
    ResultBytes { max: u64 },
}

/// Every rule name a limit refusal is recorded under (and `user_removed`,
/// a session whose user a reload removed): bounded metric labels.
pub const RULES: &[&str] = &[
    "max_user_connections",
    "max_concurrent_statements",
    "statements_per_second",
    "max_statement_bytes",
    "max_packet_bytes",
    "max_result_rows",
    "max_result_bytes",
    "user_removed",
];

impl LimitError {
    /// The rule name in the audit log and in `sqlguard_denied_total{rule}`.
    pub fn rule(&self) -> &'static str {
        match self {
            LimitError::Connections { .. } => "max_user_connections",
            LimitError::Concurrency { .. } => "max_concurrent_statements",
            LimitError::Rate { .. } => "statements_per_second",
            LimitError::StatementSize { .. } => "max_statement_bytes",
            LimitError::Packet { .. } => "max_packet_bytes",
            LimitError::ResultRows { .. } => "max_result_rows",
            LimitError::ResultBytes { .. } => "max_result_bytes",
        }
    }
}

/// A concurrency refusal says to retry soon: a statement usually takes
/// milliseconds.
const CONCURRENCY_RETRY_MS: u64 = 100;

/// The counters of one user name, shared by all their connections and kept
/// across reloads.
#[derive(Debug)]
pub struct UserCounters {
    name: String,
    connections: AtomicU32,
    running: AtomicU32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// `None` until the first statement: the bucket starts full.
    tokens: Option<f64>,
    last: Instant,
}

/// Held for a connection's life; gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<UserCounters>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionSlot {
    /// The counters of the user this slot belongs to.
    pub fn counters(&self) -> &Arc<UserCounters> {
        &self.0
    }
}

/// Held while a statement runs; gives its slot back when dropped.
#[derive(Debug)]
pub struct StatementPermit(Arc<UserCounters>);

impl Drop for StatementPermit {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one slot of `counter` if fewer than `max` are taken.
fn try_take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl UserCounters {
    fn new(name: &str) -> Self {
        UserCounters {
            name: name.to_string(),
            connections: AtomicU32::new(0),
            running: AtomicU32::new(0),
            bucket: Mutex::new(Bucket {
                tokens: None,
                last: Instant::now(),
            }),
        }
    }

    /// A login: one more connection, unless the user has `max` already.
    pub fn connect(self: &Arc<Self>, limits: &Limits) -> Result<ConnectionSlot, LimitError> {
        if try_take(&self.connections, limits.max_user_connections) {
            Ok(ConnectionSlot(self.clone()))
        } else {
            Err(LimitError::Connections {
                user: self.name.clone(),
                max: limits.max_user_connections,
            })
        }
    }

    /// One statement: a token from the bucket, then a running slot.
    pub fn admit(self: &Arc<Self>, limits: &Limits) -> Result<StatementPermit, LimitError> {
        self.take_token(limits, Instant::now())?;
        if try_take(&self.running, limits.max_concurrent_statements) {
            Ok(StatementPermit(self.clone()))
        } else {
            Err(LimitError::Concurrency {
                user: self.name.clone(),
                max: limits.max_concurrent_statements,
                retry_ms: CONCURRENCY_RETRY_MS,
            })
        }
    }

    fn take_token(&self, limits: &Limits, now: Instant) -> Result<(), LimitError> {
        let rate = limits.statements_per_second;
        let burst = f64::from(limits.statement_burst);
        let mut bucket = match self.bucket.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        let tokens = match bucket.tokens {
            None => burst,
            Some(t) => (t + elapsed * rate).min(burst),
        };
        bucket.last = now;
        if tokens >= 1.0 {
            bucket.tokens = Some(tokens - 1.0);
            Ok(())
        } else {
            bucket.tokens = Some(tokens);
            let wait = Duration::from_secs_f64(((1.0 - tokens) / rate).min(86_400.0));
            Err(LimitError::Rate {
                user: self.name.clone(),
                rate,
                burst: limits.statement_burst,
                retry_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
            })
        }
    }

    /// Connections open now (tests, metrics).
    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Acquire)
    }
}

/// The counters of every user name seen, for the proxy's life.
#[derive(Debug, Default)]
pub struct Counters {
    by_user: Mutex<HashMap<String, Arc<UserCounters>>>,
}

impl Counters {
    /// The counters of `user` (created on first use). Called at login only.
    pub fn of(&self, user: &str) -> Arc<UserCounters> {
        let mut map = match self.by_user.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(user.to_string())
            .or_insert_with(|| Arc::new(UserCounters::new(user)))
            .clone()
    }
}

/// The per-statement result guard: stops a result that grows past the limits.
#[derive(Debug, Clone, Copy)]
pub struct ResultLimits {
    pub max_rows: u64,
    pub max_bytes: u64,
}

impl ResultLimits {
    pub fn of(limits: &Limits) -> Self {
        ResultLimits {
            max_rows: limits.max_result_rows,
            max_bytes: limits.max_result_bytes,
        }
    }

    /// Before a row is sent: `rows` already sent.
    pub fn check_rows(&self, rows: u64) -> Result<(), LimitError> {
        if rows >= self.max_rows {
            return Err(LimitError::ResultRows { max: self.max_rows });
        }
        Ok(())
    }

    /// After a row was written: `bytes` of the response so far.
    pub fn check_bytes(&self, bytes: u64) -> Result<(), LimitError> {
        if bytes > self.max_bytes {
            return Err(LimitError::ResultBytes {
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}

impl Default for ResultLimits {
    fn default() -> Self {
        ResultLimits::of(&Limits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_user_connections: 2,
            max_concurrent_statements: 1,
            statements_per_second: 10.0,
            statement_burst: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn connections_are_counted_and_given_back() {
        let counters = Counters::default();
        let user = counters.of("bot");
        let a = user.connect(&limits()).unwrap();
        let _b = user.connect(&limits()).unwrap();
        let e = user.connect(&limits()).unwrap_err();
        assert_eq!(e.rule(), "max_user_connections");
        drop(a);
        assert!(user.connect(&limits()).is_ok());
        // Another user is not affected.
        assert!(counters.of("other").connect(&limits()).is_ok());
    }

    #[test]
    fn one_statement_at_a_time() {
        let user = Counters::default().of("bot");
        let permit = user.admit(&limits()).unwrap();
        assert_eq!(
            user.admit(&limits()).unwrap_err().rule(),
            "max_concurrent_statements"
        );
        drop(permit);
        assert!(user.admit(&limits()).is_ok());
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let user = UserCounters::new("bot");
        let t0 = Instant::now();
        for _ in 0..3 {
            user.take_token(&limits(), t0).unwrap();
        }
        match user.take_token(&limits(), t0) {
            Err(LimitError::Rate { retry_ms, .. }) => assert_eq!(retry_ms, 100),
            other => panic!("{other:?}"),
        }
        // 10 per second: one token after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        user.take_token(&limits(), t1).unwrap();
        assert!(user.take_token(&limits(), t1).is_err());
        // Never more than the burst after a long pause.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            user.take_token(&limits(), t2).unwrap();
        }
        assert!(user.take_token(&limits(), t2).is_err());
    }

    #[test]
    fn every_rule_is_a_metric_label() {
        let user = || "u".to_string();
        for e in [
            LimitError::Connections {
                user: user(),
                max: 1,
            },
            LimitError::Concurrency {
                user: user(),
                max: 1,
                retry_ms: 1,
            },
            LimitError::Rate {
                user: user(),
                rate: 1.0,
                burst: 1,
                retry_ms: 1,
            },
            LimitError::StatementSize { len: 2, max: 1 },
            LimitError::Packet { max: 1 },
            LimitError::ResultRows { max: 1 },
            LimitError::ResultBytes { max: 1 },
        ] {
            assert!(RULES.contains(&e.rule()), "{}", e.rule());
        }
    }

    #[test]
    fn result_limits() {
        let r = ResultLimits {
            max_rows: 2,
            max_bytes: 100,
        };
        assert!(r.check_rows(1).is_ok());
        assert!(r.check_bytes(100).is_ok());
        assert_eq!(r.check_rows(2).unwrap_err().rule(), "max_result_rows");
        assert_eq!(r.check_bytes(101).unwrap_err().rule(), "max_result_bytes");
    }
}
