//! The guard-decision cache: a repeated statement from the same user, tenant,
//! policy and database gets the decision the guard made the first time, so it
//! skips parsing, checking, rewriting and the round-trip re-parse.
//!
//! Owns: the key (which must make a decision impossible to leak across users,
//! tenants, policies or sessions' databases), the bounds, and the counters.
//! The guard itself stays pure; [`guard::check`] is only ever called here on a
//! miss. Safe to cache because a decision is a pure function of the key: the
//! guard reads nothing but the text and the [`SessionContext`] (no clock, no
//! I/O, no session variables), and the audit-log health check that can refuse
//! a statement runs before the cache is consulted.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use prometheus::IntCounter;

use crate::config::UserConfig;
use crate::guard::{self, Decision, SessionContext};
use crate::policy::Policy;

/// Decisions kept in all, by default. The bot repeats a few dozen statement
/// shapes with varying literals; a few thousand distinct texts cover a busy
/// day's working set.
pub const DEFAULT_MAX_ENTRIES: usize = 4096;

/// Bytes of statement text and decision kept in all, by default.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Statements longer than this are not cached (one would take a large share
/// of a shard, and long texts are rarely repeated).
const MAX_CACHED_SQL_BYTES: usize = 16 * 1024;

/// Independent locks. A lookup holds one only for a hash-map probe and an
/// `Arc` clone; with 16 shards two threads on two cores almost never meet.
const SHARDS: usize = 16;

/// Estimated bookkeeping per entry (LRU node, hash-map slot, the Arcs).
const ENTRY_OVERHEAD: usize = 160;

/// Who asks, as the cache sees it. Every field is part of the key.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    /// The logged-in user's configuration (name, tenant, policy). Compared by
    /// identity: a user whose configuration is reloaded gets a new `Arc` and
    /// so misses. The entry holds a clone, so the address cannot be reused
    /// by a different configuration while the entry lives.
    pub user: &'a Arc<UserConfig>,
    /// The session's database (what `USE` and qualified names are checked
    /// against).
    pub database: &'a str,
}

impl Asker<'_> {
    fn context(&self) -> SessionContext<'_> {
        SessionContext {
            user: &self.user.name,
            tenant_id: self.user.tenant_id,
            database: self.database,
            policy: &self.user.policy,
        }
    }
}

/// A cached decision and the full key it was made for.
struct Entry {
    user: Arc<UserConfig>,
    /// Held too, in case a policy is ever swapped under the same user.
    policy: Arc<Policy>,
    tenant_id: u64,
    database: Box<str>,
    prepared: bool,
    sql: Box<str>,
    decision: Arc<Decision>,
    bytes: usize,
}

impl Entry {
    fn matches(&self, asker: &Asker<'_>, prepared: bool, sql: &str) -> bool {
        Arc::ptr_eq(&self.user, asker.user)
            && Arc::ptr_eq(&self.policy, &asker.user.policy)
            && self.tenant_id == asker.user.tenant_id
            && self.prepared == prepared
            && *self.database == *asker.database
            && *self.sql == *sql
    }
}

struct Shard {
    /// Keyed by the hash of the full key; the entry holds the full key, and
    /// a different key with the same hash is a miss (and replaces it).
    entries: LruCache<u64, Entry>,
    bytes: usize,
}

/// A bounded, sharded LRU of guard decisions, shared by every session.
pub struct DecisionCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_entries_per_shard: usize,
    max_bytes_per_shard: usize,
    hits: IntCounter,
    misses: IntCounter,
}

impl Default for DecisionCache {
    fn default() -> Self {
        DecisionCache::new(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    }
}

impl DecisionCache {
    /// A cache of at most `max_entries` decisions and `max_bytes` bytes
    /// (split evenly over the shards). `max_entries == 0` disables it.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: LruCache::unbounded(),
                    bytes: 0,
                })
            })
            .collect();
        DecisionCache {
            shards,
            hasher: RandomState::new(),
            max_entries_per_shard: max_entries.div_ceil(SHARDS),
            max_bytes_per_shard: max_bytes / SHARDS,
            hits: unregistered("hits"),
            misses: unregistered("misses"),
        }
    }

    /// Counts hits and misses on these (the proxy's metrics) from now on.
    pub fn counting(mut self, hits: IntCounter, misses: IntCounter) -> Self {
        self.hits = hits;
        self.misses = misses;
        self
    }

    /// The decision for a COM_QUERY text ([`guard::check`]).
    pub fn check(&self, sql: &str, asker: &Asker<'_>) -> Arc<Decision> {
        self.decide(sql, asker, false)
    }

    /// The decision for a prepared statement's template
    /// ([`guard::check_prepared`]); keyed apart from text queries.
    pub fn check_prepared(&self, sql: &str, asker: &Asker<'_>) -> Arc<Decision> {
        self.decide(sql, asker, true)
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Lookups that ran the guard.
    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    /// Decisions held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn decide(&self, sql: &str, asker: &Asker<'_>, prepared: bool) -> Arc<Decision> {
        let run = || {
            let context = asker.context();
            Arc::new(if prepared {
                guard::check_prepared(sql, &context)
            } else {
                guard::check(sql, &context)
            })
        };
        if self.max_entries_per_shard == 0 || sql.len() > MAX_CACHED_SQL_BYTES {
            self.misses.inc();
            return run();
        }
        let hash = self.hash(sql, asker, prepared);
        let shard = &self.shards[(hash as usize) % SHARDS];
        if let Some(entry) = lock(shard).entries.get(&hash) {
            if entry.matches(asker, prepared, sql) {
                self.hits.inc();
                return Arc::clone(&entry.decision);
            }
        }
        self.misses.inc();
        // The guard runs without the lock; two sessions missing on the same
        // key both run it and store equal decisions.
        let decision = run();
        let entry = Entry {
            user: Arc::clone(asker.user),
            policy: Arc::clone(&asker.user.policy),
            tenant_id: asker.user.tenant_id,
            database: asker.database.into(),
            prepared,
            sql: sql.into(),
            bytes: ENTRY_OVERHEAD + sql.len() + asker.database.len() + decision_bytes(&decision),
            decision: Arc::clone(&decision),
        };
        self.insert(shard, hash, entry);
        decision
    }

    fn insert(&self, shard: &Mutex<Shard>, hash: u64, entry: Entry) {
        if entry.bytes > self.max_bytes_per_shard {
            return;
        }
        let mut shard = lock(shard);
        shard.bytes += entry.bytes;
        if let Some(old) = shard.entries.put(hash, entry) {
            shard.bytes -= old.bytes;
        }
        while shard.entries.len() > self.max_entries_per_shard
            || shard.bytes > self.max_bytes_per_shard
        {
            match shard.entries.pop_lru() {
                Some((_, old)) => shard.bytes -= old.bytes,
                None => break,
            }
        }
    }

    fn hash(&self, sql: &str, asker: &Asker<'_>, prepared: bool) -> u64 {
        let mut h = self.hasher.build_hasher();
        (Arc::as_ptr(asker.user) as usize).hash(&mut h);
        asker.user.tenant_id.hash(&mut h);
        asker.database.hash(&mut h);
        prepared.hash(&mut h);
        sql.hash(&mut h);
        h.finish()
    }
}

/// A counter of this cache's own until [`DecisionCache::counting`].
fn unregistered(name: &str) -> IntCounter {
    match IntCounter::new(format!("decision_cache_{name}"), "decision cache") {
        Ok(c) => c,
        Err(e) => unreachable!("constant counter definition rejected: {e}"),
    }
}

/// A poisoned shard only means another thread panicked mid-update of an LRU
/// of immutable entries; every entry is still a complete, correct decision.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Heap bytes a decision holds, roughly.
fn decision_bytes(decision: &Decision) -> usize {
    match decision {
        Decision::Allow {
            sql,
            rewrites,
            params,
            ..
        } => {
            sql.as_str().len()
                + rewrites
                    .lookups
                    .iter()
                    .map(|l| l.column.len() + l.message.len() + 48)
                    .sum::<usize>()
                + params.len() * 96
        }
        Decision::LocalOk { .. } => 0,
        Decision::Deny(d) => d.message.len() + d.hint.as_ref().map_or(0, String::len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::auth::NativePasswordHash;
    use crate::policy_tests::TestFile;

    fn policy() -> Arc<Policy> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/clawdbot.toml");
        Arc::new(Policy::load(&path).expect("policies/clawdbot.toml"))
    }

    fn user(name: &str, tenant_id: u64, policy: &Arc<Policy>) -> Arc<UserConfig> {
        Arc::new(UserConfig {
            name: name.into(),
            password_hash: NativePasswordHash::of_password(b"x"),
            tenant_id,
            policy: Arc::clone(policy),
            policy_version: "test".into(),
            limits: crate::limits::Limits::default(),
            require_tls: false,
        })
    }

    fn asker(user: &Arc<UserConfig>) -> Asker<'_> {
        Asker {
            user,
            database: "shop",
        }
    }

    const SELECT: &str = "SELECT * FROM customers WHERE phone = '+212612345678'";

    #[test]
    fn a_repeated_statement_is_a_hit_with_the_same_decision() {
        let cache = DecisionCache::default();
        let policy = policy();
        let bot = user("clawdbot", 1, &policy);
        let first = cache.check(SELECT, &asker(&bot));
        let second = cache.check(SELECT, &asker(&bot));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        assert_eq!(*first, guard::check(SELECT, &asker(&bot).context()));
    }

    #[test]
    fn two_tenants_with_identical_text_get_their_own_decisions() {
        let cache = DecisionCache::default();
        let policy = policy();
        let one = user("clawdbot", 1, &policy);
        let two = user("clawdbot", 2, &policy);
        let a = cache.check(SELECT, &asker(&one));
        let b = cache.check(SELECT, &asker(&two));
        assert_eq!(cache.hits(), 0);
        let (Decision::Allow { sql: a, .. }, Decision::Allow { sql: b, .. }) = (&*a, &*b) else {
            panic!("expected two allows: {a:?} {b:?}");
        };
        assert!(a.as_str().contains("tenant_id = 1"), "{a}");
        assert!(b.as_str().contains("tenant_id = 2"), "{b}");
        // And each keeps getting its own.
        let again = cache.check(SELECT, &asker(&two));
        assert!(
            matches!(&*again, Decision::Allow { sql, .. } if sql.as_str().contains("tenant_id = 2"))
        );
    }

    #[test]
    fn two_users_or_a_reloaded_user_do_not_share_decisions() {
        let cache = DecisionCache::default();
        let policy = policy();
        let bot = user("clawdbot", 1, &policy);
        let other = user("other", 1, &policy);
        cache.check(SELECT, &asker(&bot));
        cache.check(SELECT, &asker(&other));
        // Same name, tenant and policy, but a new configuration (a reload).
        let reloaded = user("clawdbot", 1, &self::policy());
        cache.check(SELECT, &asker(&reloaded));
        assert_eq!((cache.hits(), cache.misses()), (0, 3));
        // A different database, and a prepare of the same text, miss too.
        cache.check(
            SELECT,
            &Asker {
                user: &bot,
                database: "other",
            },
        );
        cache.check_prepared(SELECT, &asker(&bot));
        assert_eq!((cache.hits(), cache.misses()), (0, 5));
    }

    #[test]
    fn hits_and_misses_reach_the_proxy_metrics() {
        let metrics = crate::metrics::Metrics::new();
        let cache = DecisionCache::default().counting(
            metrics.decision_cache_hits.clone(),
            metrics.decision_cache_misses.clone(),
        );
        let policy = policy();
        let bot = user("clawdbot", 1, &policy);
        cache.check(SELECT, &asker(&bot));
        cache.check(SELECT, &asker(&bot));
        cache.check(SELECT, &asker(&bot));
        assert_eq!(metrics.decision_cache_hits.get(), 2);
        assert_eq!(metrics.decision_cache_misses.get(), 1);
    }

    #[test]
    fn denials_are_cached_and_stay_denials() {
        let cache = DecisionCache::default();
        let policy = policy();
        let bot = user("clawdbot", 1, &policy);
        let sql = "DELETE FROM customers";
        assert!(matches!(*cache.check(sql, &asker(&bot)), Decision::Deny(_)));
        assert!(matches!(*cache.check(sql, &asker(&bot)), Decision::Deny(_)));
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let cache = DecisionCache::new(SHARDS * 2, DEFAULT_MAX_BYTES);
        let policy = policy();
        let bot = user("clawdbot", 1, &policy);
        for i in 0..500 {
            cache.check(
                &format!("SELECT name FROM products WHERE id = {i}"),
                &asker(&bot),
            );
        }
        assert!(cache.len() <= SHARDS * 2, "{}", cache.len());
        let small = DecisionCache::new(1000, SHARDS * 1024);
        for i in 0..500 {
            small.check(
                &format!("SELECT name FROM products WHERE id = {i}"),
                &asker(&bot),
            );
        }
        for shard in small.shards.iter() {
            assert!(lock(shard).bytes <= 1024);
        }
        let disabled = DecisionCache::new(0, 0);
        disabled.check(SELECT, &asker(&bot));
        disabled.check(SELECT, &asker(&bot));
        assert_eq!((disabled.hits(), disabled.len()), (0, 0));
    }

    /// Over the golden corpus, as text and as prepared statements, for two
    /// tenants: the cached decision (second lookup) equals a fresh one.
    #[test]
    fn cached_decisions_equal_fresh_ones_over_the_golden_corpus() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clawdbot.toml");
        let file = TestFile::load(&path).expect("golden corpus");
        let cases: Vec<&str> = file.cases.iter().map(|c| c.sql.as_str()).collect();
        assert!(cases.len() > 50, "{} cases", cases.len());
        let cache = DecisionCache::default();
        let policy = policy();
        let users = [user("clawdbot", 1, &policy), user("clawdbot", 2, &policy)];
        for _round in 0..2 {
            for case in &cases {
                for u in &users {
                    let a = asker(u);
                    let fresh = guard::check(case, &a.context());
                    assert_eq!(*cache.check(case, &a), fresh, "{case}");
                    let fresh = guard::check_prepared(case, &a.context());
                    assert_eq!(*cache.check_prepared(case, &a), fresh, "{case}");
                }
            }
        }
        // Every second-round lookup of a cacheable text was a hit.
        let cacheable = cases
            .iter()
            .filter(|c| c.len() <= MAX_CACHED_SQL_BYTES)
            .count();
        assert!(cache.hits() >= (cacheable * 4) as u64, "{}", cache.hits());
    }
}
