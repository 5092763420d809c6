//! The result cache: result sets of allowed catalogue SELECTs, kept in memory
//! and served again without the backend, until their TTL ends or a write
//! through sqlguard to one of their tables invalidates them.
//!
//! Owns: the key (which must make a leak across tenants, policies, databases,
//! session settings or protocols impossible), the stored rows, the bounds
//! (LRU by bytes over 16 shards; an entry above 1/64 of the budget or with
//! more than [`MAX_ROWS`] rows is not kept) and the per-(tenant, table)
//! generations that invalidate entries. Knows nothing of sessions or
//! sockets: session/caching.rs decides when to look up, store and
//! invalidate; frontend/packets.rs captures and replays the rows.
//!
//! Not to be confused with the decision cache (decision_cache.rs), which
//! keeps guard *decisions* and never rows.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use lru::LruCache;
use mysql_async::Column;
use prometheus::{IntCounter, IntGauge};

use crate::guard::TableAccess;
use crate::policy::Policy;

/// `[cache] max_bytes` unless configured: enough for a few thousand product
/// lists of 20 rows, small next to the proxy's other buffers.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Results with more rows than this are not kept: the cache is for the
/// bot's short catalogue answers (the policy LIMIT is 20, at most 100), not
/// for reports.
pub const MAX_ROWS: u64 = 1000;

/// An entry may take at most this fraction of `max_bytes` (1/64: 256 KiB of
/// the default 16 MiB), so one large result never evicts most of the rest.
const MAX_ENTRY_FRACTION: usize = 64;

/// Independent locks, as in the decision cache: a lookup holds one only for
/// a hash probe and an `Arc` clone.
const SHARDS: usize = 16;

/// Estimated bookkeeping per entry (LRU node, map slot, Arcs, key).
const ENTRY_OVERHEAD: usize = 256;

/// Keys (text, bound values and session settings together) longer than this
/// are not cached: long texts are rarely repeated.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Which protocol's rows an entry holds: the bytes of a text row and of a
/// binary row differ, so the two never share an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// COM_QUERY.
    Text,
    /// COM_STMT_EXECUTE.
    Binary,
}

/// Everything a cached result depends on besides table contents. Every
/// field is compared in full on a lookup (the hash only picks the slot).
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub tenant_id: u64,
    /// Compared by identity: two policies may hide different columns even
    /// where the rewritten text happens to coincide. A reloaded policy is a
    /// new `Arc` and misses. The entry holds a clone, so the address cannot
    /// be reused by another policy while the entry lives.
    pub policy: &'a Arc<Policy>,
    pub database: &'a str,
    /// Every `SET` the session ran on its backend connection (character set,
    /// collation, time zone, sql_mode ...), in order: they shape the bytes
    /// and values of the rows.
    pub settings: &'a str,
    pub format: Format,
    /// The rewritten SQL, exactly as forwarded.
    pub sql: &'a str,
    /// Bound values of an execute, each tagged with its type (empty for text).
    pub params: &'a [u8],
}

impl KeyRef<'_> {
    fn len(&self) -> usize {
        self.database.len() + self.settings.len() + self.sql.len() + self.params.len()
    }
}

#[derive(Debug)]
struct OwnedKey {
    tenant_id: u64,
    policy: Arc<Policy>,
    database: Box<str>,
    settings: Box<str>,
    format: Format,
    sql: Box<str>,
    params: Box<[u8]>,
}

impl OwnedKey {
    fn of(key: &KeyRef<'_>) -> Self {
        OwnedKey {
            tenant_id: key.tenant_id,
            policy: Arc::clone(key.policy),
            database: key.database.into(),
            settings: key.settings.into(),
            format: key.format,
            sql: key.sql.into(),
            params: key.params.into(),
        }
    }

    fn matches(&self, key: &KeyRef<'_>) -> bool {
        self.tenant_id == key.tenant_id
            && Arc::ptr_eq(&self.policy, key.policy)
            && self.format == key.format
            && *self.database == *key.database
            && *self.settings == *key.settings
            && *self.sql == *key.sql
            && *self.params == *key.params
    }
}

/// A complete result set as the client received it, minus what depends on
/// the client: column definitions (as MariaDB sent them) and each row
/// packet's payload. Packet framing, sequence ids and the EOF-or-OK
/// terminators (CLIENT_DEPRECATE_EOF) are written per client on replay.
#[derive(Debug)]
pub struct CachedRows {
    pub columns: Arc<[Column]>,
    /// Row payloads, back to back; row `i` ends at `row_ends[i]`.
    pub payloads: Vec<u8>,
    pub row_ends: Vec<usize>,
    /// The status flags of the terminator (autocommit, no transaction: only
    /// such results are stored), plus MariaDB's index-usage hints.
    pub end_status: u16,
    /// Payload bytes of the whole response, for `max_result_bytes`.
    pub response_bytes: u64,
}

impl CachedRows {
    pub fn row_count(&self) -> u64 {
        self.row_ends.len() as u64
    }

    /// Each row's payload, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.row_ends.iter().map(move |&end| {
            let row = self.payloads.get(start..end).unwrap_or_default();
            start = end;
            row
        })
    }

    fn heap_bytes(&self) -> usize {
        let columns: usize = self
            .columns
            .iter()
            .map(|c| {
                96 + c.schema_ref().len()
                    + c.table_ref().len()
                    + c.org_table_ref().len()
                    + c.name_ref().len()
                    + c.org_name_ref().len()
            })
            .sum();
        columns + self.payloads.len() + self.row_ends.len() * std::mem::size_of::<usize>()
    }
}

/// Whose rows a generation counts writes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GenScope {
    /// One tenant's rows of a tenant-scoped table.
    Tenant(u64),
    /// A table some policy declares `shared`: a write to it through that
    /// policy concerns every tenant's results.
    Shared,
    /// Any row at all: what a reader whose policy declares the table
    /// `shared` (it sees every tenant's rows) must watch.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GenKey {
    scope: GenScope,
    table: Arc<str>,
}

#[derive(Debug, Default)]
struct GenState {
    /// +1 each time a write to these rows ends.
    generation: u64,
    /// Writes in progress (or in a transaction not yet ended): while any
    /// is, nothing reading these rows is served or stored.
    writers: u32,
    /// Some entry was stored watching this key since it last changed, so
    /// the end of a write sweeps the shards (most writes, e.g. chat
    /// messages, concern tables nothing cached reads).
    watched: bool,
}

/// The keys a reader of `tables` as `tenant_id` depends on.
fn read_keys(tenant_id: u64, tables: &[TableAccess]) -> Vec<GenKey> {
    let mut keys = Vec::with_capacity(tables.len() * 2);
    for t in tables {
        let table: Arc<str> = t.name.as_str().into();
        if t.shared {
            keys.push(GenKey {
                scope: GenScope::Any,
                table,
            });
        } else {
            keys.push(GenKey {
                scope: GenScope::Tenant(tenant_id),
                table: table.clone(),
            });
            keys.push(GenKey {
                scope: GenScope::Shared,
                table,
            });
        }
    }
    keys
}

/// The keys a write by `tenant_id` to `tables` changes.
fn write_keys(tenant_id: u64, tables: &[TableAccess]) -> Vec<GenKey> {
    let mut keys = Vec::with_capacity(tables.len() * 3);
    for t in tables {
        let table: Arc<str> = t.name.as_str().into();
        keys.push(GenKey {
            scope: GenScope::Tenant(tenant_id),
            table: table.clone(),
        });
        keys.push(GenKey {
            scope: GenScope::Any,
            table: table.clone(),
        });
        if t.shared {
            keys.push(GenKey {
                scope: GenScope::Shared,
                table,
            });
        }
    }
    keys
}

/// The generations a read started under. A result is stored, and served
/// later, only while they have not moved and no write is in progress.
#[derive(Debug)]
pub struct Ticket {
    gens: Vec<(GenKey, u64)>,
    epoch: u64,
    /// The TTL runs from before the read, so an entry is never older than
    /// its TTL as seen from the database.
    started: Instant,
}

struct Entry {
    key: OwnedKey,
    rows: Arc<CachedRows>,
    gens: Vec<(GenKey, u64)>,
    epoch: u64,
    expires_at: Instant,
    bytes: usize,
}

struct Shard {
    /// Keyed by the hash of the full key; the entry holds the key, and a
    /// different key with the same hash is a miss.
    entries: LruCache<u64, Arc<Entry>>,
    bytes: usize,
}

/// The proxy's counters and gauges for this cache.
#[derive(Clone)]
pub struct CacheMetrics {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub bytes: IntGauge,
    pub entries: IntGauge,
    pub invalidations: IntCounter,
}

impl CacheMetrics {
    /// Counters of the cache's own, for tests without a proxy.
    fn unregistered() -> Self {
        let counter = |name: &str| match IntCounter::new(format!("result_cache_{name}"), "t") {
            Ok(c) => c,
            Err(e) => unreachable!("constant counter definition rejected: {e}"),
        };
        let gauge = |name: &str| match IntGauge::new(format!("result_cache_{name}"), "t") {
            Ok(g) => g,
            Err(e) => unreachable!("constant gauge definition rejected: {e}"),
        };
        CacheMetrics {
            hits: counter("hits"),
            misses: counter("misses"),
            bytes: gauge("bytes"),
            entries: gauge("entries"),
            invalidations: counter("invalidations"),
        }
    }
}

/// Shared by every session of one proxy.
pub struct ResultCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_bytes_per_shard: usize,
    max_entry_bytes: usize,
    /// Never held together with a shard lock, and never across an await.
    generations: RwLock<Generations>,
    metrics: CacheMetrics,
}

#[derive(Default)]
struct Generations {
    by_key: HashMap<GenKey, GenState>,
    /// +1 on [`ResultCache::invalidate_all`]; every entry records it.
    epoch: u64,
}

impl Default for ResultCache {
    fn default() -> Self {
        ResultCache::new(DEFAULT_MAX_BYTES)
    }
}

impl ResultCache {
    /// A cache of at most `max_bytes` (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        ResultCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: LruCache::unbounded(),
                        bytes: 0,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            max_bytes_per_shard: max_bytes / SHARDS,
            max_entry_bytes: (max_bytes / MAX_ENTRY_FRACTION).min(max_bytes / SHARDS),
            generations: RwLock::new(Generations::default()),
            metrics: CacheMetrics::unregistered(),
        }
    }

    /// Reports to these (the proxy's metrics) from now on.
    pub fn counting(mut self, metrics: CacheMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// False when `[cache] max_bytes = 0`: nothing is looked up or stored
    /// (writes need not be tracked either).
    pub fn enabled(&self) -> bool {
        self.max_entry_bytes > 0
    }

    /// The largest number of rows an entry may hold.
    pub fn max_rows(&self) -> u64 {
        MAX_ROWS
    }

    /// The largest entry, in payload bytes, worth capturing.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Whether a key of this size may be cached at all.
    pub fn key_fits(&self, key: &KeyRef<'_>) -> bool {
        key.len() <= MAX_KEY_BYTES
    }

    /// The rows stored for `key`, if they are still valid: within their TTL,
    /// no write to their tables ended since they were read, none in
    /// progress. Counts a hit or a miss.
    pub fn lookup(&self, key: &KeyRef<'_>) -> Option<Arc<CachedRows>> {
        self.lookup_if(key, |_| true)
    }

    /// [`ResultCache::lookup`], where rows `accept` refuses (e.g. over the
    /// asking user's result limits) count as a miss.
    pub fn lookup_if(
        &self,
        key: &KeyRef<'_>,
        accept: impl FnOnce(&CachedRows) -> bool,
    ) -> Option<Arc<CachedRows>> {
        let found = self.find(key).filter(|rows| accept(rows));
        match &found {
            Some(_) => self.metrics.hits.inc(),
            None => self.metrics.misses.inc(),
        }
        found
    }

    fn find(&self, key: &KeyRef<'_>) -> Option<Arc<CachedRows>> {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let entry = {
            let mut shard = lock(shard);
            match shard.entries.get(&hash) {
                Some(e) if e.key.matches(key) => Arc::clone(e),
                _ => return None,
            }
        };
        if entry.expires_at > Instant::now() && self.current(&entry.gens, entry.epoch) {
            return Some(Arc::clone(&entry.rows));
        }
        // Expired or invalidated: free it now (unless it was replaced meanwhile).
        let mut shard = lock(shard);
        if shard
            .entries
            .peek(&hash)
            .is_some_and(|e| Arc::ptr_eq(e, &entry))
        {
            shard.entries.pop(&hash);
            shard.bytes -= entry.bytes;
            self.metrics.entries.dec();
            self.metrics.bytes.sub(entry.bytes as i64);
        }
        None
    }

    /// Whether `gens` are still current and no write to them is in progress.
    fn current(&self, gens: &[(GenKey, u64)], epoch: u64) -> bool {
        let g = read(&self.generations);
        g.epoch == epoch
            && gens.iter().all(|(k, n)| match g.by_key.get(k) {
                Some(state) => state.generation == *n && state.writers == 0,
                None => *n == 0,
            })
    }

    /// Before a cacheable read goes to the backend: the generations it
    /// reads under, or `None` while a write to its tables is in progress
    /// (then its result is not stored).
    pub fn ticket(&self, tenant_id: u64, tables: &[TableAccess]) -> Option<Ticket> {
        let keys = read_keys(tenant_id, tables);
        let g = read(&self.generations);
        let mut gens = Vec::with_capacity(keys.len());
        for key in keys {
            let n = match g.by_key.get(&key) {
                Some(state) if state.writers > 0 => return None,
                Some(state) => state.generation,
                None => 0,
            };
            gens.push((key, n));
        }
        Some(Ticket {
            gens,
            epoch: g.epoch,
            started: Instant::now(),
        })
    }

    /// Keeps `rows` for `key` until `ttl` after the ticket was taken, unless
    /// a write to its tables started or ended since then (a store that began
    /// before an invalidation never lands after it), or the entry is too big.
    pub fn store(&self, key: &KeyRef<'_>, ticket: Ticket, ttl: Duration, rows: CachedRows) {
        if !self.enabled() || !self.key_fits(key) || rows.row_count() > MAX_ROWS {
            return;
        }
        let bytes = ENTRY_OVERHEAD + key.len() + rows.heap_bytes();
        if bytes > self.max_entry_bytes {
            return;
        }
        {
            let mut g = write(&self.generations);
            if g.epoch != ticket.epoch {
                return;
            }
            for (k, n) in &ticket.gens {
                let state = g.by_key.get(k);
                let unchanged = match state {
                    Some(s) => s.generation == *n && s.writers == 0,
                    None => *n == 0,
                };
                if !unchanged {
                    return;
                }
            }
            for (k, _) in &ticket.gens {
                g.by_key.entry(k.clone()).or_default().watched = true;
            }
        }
        let entry = Arc::new(Entry {
            key: OwnedKey::of(key),
            rows: Arc::new(rows),
            gens: ticket.gens,
            epoch: ticket.epoch,
            expires_at: ticket.started + ttl,
            bytes,
        });
        let hash = self.hash(key);
        let mut shard = lock(self.shard(hash));
        shard.bytes += bytes;
        self.metrics.entries.inc();
        self.metrics.bytes.add(bytes as i64);
        if let Some(old) = shard.entries.put(hash, entry) {
            shard.bytes -= old.bytes;
            self.metrics.entries.dec();
            self.metrics.bytes.sub(old.bytes as i64);
        }
        while shard.bytes > self.max_bytes_per_shard {
            match shard.entries.pop_lru() {
                Some((_, old)) => {
                    shard.bytes -= old.bytes;
                    self.metrics.entries.dec();
                    self.metrics.bytes.sub(old.bytes as i64);
                }
                None => break,
            }
        }
    }

    /// A write by `tenant_id` to `tables` is about to be forwarded: until the
    /// returned hold is dropped (after the client got its answer, or when
    /// the transaction holding it ends), nothing reading those rows is
    /// served or stored; dropping it invalidates what was stored before.
    pub fn begin_write(self: &Arc<Self>, tenant_id: u64, tables: &[TableAccess]) -> WriteHold {
        let keys = write_keys(tenant_id, tables);
        {
            let mut g = write(&self.generations);
            for k in &keys {
                let state = g.by_key.entry(k.clone()).or_default();
                state.writers = state.writers.saturating_add(1);
            }
        }
        WriteHold {
            cache: Arc::clone(self),
            keys,
        }
    }

    fn end_write(&self, keys: &[GenKey]) {
        let mut swept: HashSet<GenKey> = HashSet::new();
        {
            let mut g = write(&self.generations);
            for k in keys {
                let state = g.by_key.entry(k.clone()).or_default();
                state.writers = state.writers.saturating_sub(1);
                state.generation = state.generation.wrapping_add(1);
                if std::mem::take(&mut state.watched) {
                    swept.insert(k.clone());
                }
            }
        }
        self.metrics.invalidations.inc();
        if !swept.is_empty() {
            self.sweep(|e| e.gens.iter().any(|(k, _)| swept.contains(k)));
        }
    }

    /// Invalidates every entry (a statement that wrote through sqlguard
    /// without naming its tables; fails closed).
    pub fn invalidate_all(&self) {
        write(&self.generations).epoch += 1;
        self.metrics.invalidations.inc();
        self.sweep(|_| true);
    }

    /// Drops the entries `stale` selects, shard by shard.
    fn sweep(&self, stale: impl Fn(&Entry) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let before = (shard.entries.len(), shard.bytes);
            let mut freed = 0;
            shard.entries.retain(|_, e| {
                let keep = !stale(e);
                if !keep {
                    freed += e.bytes;
                }
                keep
            });
            shard.bytes -= freed;
            let dropped = before.0 - shard.entries.len();
            self.metrics.entries.sub(dropped as i64);
            self.metrics.bytes.sub(freed as i64);
        }
    }

    /// Entries held now (valid or not yet noticed to be stale).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held now (estimated).
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
    }

    pub fn hits(&self) -> u64 {
        self.metrics.hits.get()
    }

    pub fn misses(&self) -> u64 {
        self.metrics.misses.get()
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash as usize) % SHARDS]
    }

    fn hash(&self, key: &KeyRef<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        key.tenant_id.hash(&mut h);
        (Arc::as_ptr(key.policy) as usize).hash(&mut h);
        key.database.hash(&mut h);
        key.settings.hash(&mut h);
        key.format.hash(&mut h);
        key.sql.hash(&mut h);
        key.params.hash(&mut h);
        h.finish()
    }
}

/// A write in progress (or inside a transaction not yet ended) to some
/// tables: see [`ResultCache::begin_write`]. Dropping it, on any path
/// (success, error, a client gone mid-answer, a panic), ends the write.
pub struct WriteHold {
    cache: Arc<ResultCache>,
    keys: Vec<GenKey>,
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        self.cache.end_write(&self.keys);
    }
}

impl std::fmt::Debug for WriteHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHold")
            .field("keys", &self.keys)
            .finish()
    }
}

/// A poisoned lock only means a thread panicked while holding it; every
/// update here leaves the maps consistent (entries are immutable `Arc`s),
/// so carrying on is safe. The counters may be off by one write, which at
/// worst keeps entries from being served (fail closed) until the TTL.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(g: &RwLock<Generations>) -> std::sync::RwLockReadGuard<'_, Generations> {
    g.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(g: &RwLock<Generations>) -> std::sync::RwLockWriteGuard<'_, Generations> {
    g.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str) -> Arc<Policy> {
        Arc::new(Policy::read_write(name))
    }

    fn table(name: &str, shared: bool) -> TableAccess {
        TableAccess {
            name: name.into(),
            shared,
        }
    }

    fn rows(n: usize, width: usize) -> CachedRows {
        let mut payloads = Vec::new();
        let mut row_ends = Vec::new();
        for i in 0..n {
            payloads.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, width));
            row_ends.push(payloads.len());
        }
        CachedRows {
            columns: Arc::from(Vec::new()),
            payloads,
            row_ends,
            end_status: 2,
            response_bytes: (n * width) as u64,
        }
    }

    fn key<'a>(policy: &'a Arc<Policy>, tenant_id: u64, sql: &'a str) -> KeyRef<'a> {
        KeyRef {
            tenant_id,
            policy,
            database: "shop",
            settings: "",
            format: Format::Text,
            sql,
            params: &[],
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    fn put(cache: &ResultCache, key: &KeyRef<'_>, tables: &[TableAccess], rows: CachedRows) {
        let ticket = cache
            .ticket(key.tenant_id, tables)
            .expect("no write in progress");
        cache.store(key, ticket, TTL, rows);
    }

    #[test]
    fn a_stored_result_is_found_only_under_its_whole_key() {
        let cache = ResultCache::default();
        let p = policy("p");
        let other_policy = policy("p");
        let t = [table("products", false)];
        let k = key(&p, 1, "SELECT 1 FROM products");
        put(&cache, &k, &t, rows(3, 10));
        let hit = cache.lookup(&k).expect("hit");
        assert_eq!(hit.row_count(), 3);
        assert_eq!(hit.rows().next(), Some(&b"aaaaaaaaaa"[..]));
        // Each part of the key, changed alone, misses.
        let variants = [
            KeyRef { tenant_id: 2, ..k },
            KeyRef {
                policy: &other_policy,
                ..k
            },
            KeyRef {
                database: "shop2",
                ..k
            },
            KeyRef {
                settings: "SET NAMES latin1",
                ..k
            },
            KeyRef {
                format: Format::Binary,
                ..k
            },
            KeyRef {
                sql: "SELECT 2 FROM products",
                ..k
            },
            KeyRef {
                params: &[1, 0],
                ..k
            },
        ];
        for v in &variants {
            assert!(cache.lookup(v).is_none(), "{v:?}");
        }
        assert_eq!((cache.hits(), cache.misses()), (1, variants.len() as u64));
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget_and_evicts_the_least_recent() {
        let budget = 64 * 1024;
        let cache = ResultCache::new(budget);
        assert_eq!(cache.max_entry_bytes(), 1024);
        let p = policy("p");
        let t = [table("products", false)];
        let texts: Vec<String> = (0..400).map(|i| format!("SELECT {i}")).collect();
        for sql in &texts {
            put(&cache, &key(&p, 1, sql), &t, rows(4, 100));
        }
        assert!(cache.bytes() <= budget, "{}", cache.bytes());
        for shard in cache.shards.iter() {
            assert!(lock(shard).bytes <= budget / SHARDS);
        }
        assert!(cache.len() < texts.len());
        // The most recent entry is still there, the first was evicted.
        assert!(cache.lookup(&key(&p, 1, &texts[399])).is_some());
        assert!(cache.lookup(&key(&p, 1, &texts[0])).is_none());
        // An entry over 1/64 of the budget, or with too many rows, is not kept.
        put(&cache, &key(&p, 1, "big"), &t, rows(1, 2048));
        assert!(cache.lookup(&key(&p, 1, "big")).is_none());
        let many = ResultCache::default();
        put(
            &many,
            &key(&p, 1, "many"),
            &t,
            rows(MAX_ROWS as usize + 1, 1),
        );
        assert!(many.lookup(&key(&p, 1, "many")).is_none());
        put(&many, &key(&p, 1, "enough"), &t, rows(MAX_ROWS as usize, 1));
        assert!(many.lookup(&key(&p, 1, "enough")).is_some());
        // Disabled: nothing is kept.
        let off = ResultCache::new(0);
        assert!(!off.enabled());
        put(&off, &key(&p, 1, "x"), &t, rows(1, 1));
        assert!(off.lookup(&key(&p, 1, "x")).is_none());
    }

    #[test]
    fn gauges_follow_inserts_evictions_and_invalidations() {
        let metrics = crate::metrics::Metrics::new();
        let cache = Arc::new(ResultCache::new(64 * 1024).counting(metrics.result_cache.clone()));
        let p = policy("p");
        let t = [table("products", false)];
        for i in 0..200 {
            put(
                &cache,
                &key(&p, 1, &format!("SELECT {i}")),
                &t,
                rows(2, 100),
            );
        }
        assert_eq!(metrics.result_cache.entries.get() as usize, cache.len());
        assert_eq!(metrics.result_cache.bytes.get() as usize, cache.bytes());
        drop(cache.begin_write(1, &t));
        assert_eq!(cache.len(), 0);
        assert_eq!(metrics.result_cache.entries.get(), 0);
        assert_eq!(metrics.result_cache.bytes.get(), 0);
        assert_eq!(metrics.result_cache.invalidations.get(), 1);
    }

    #[test]
    fn a_write_invalidates_its_tenant_and_table_only() {
        let cache = Arc::new(ResultCache::default());
        let p = policy("p");
        let products = [table("products", false)];
        let categories = [table("categories", false)];
        let (a, b, c) = (
            key(&p, 1, "products of 1"),
            key(&p, 2, "products of 2"),
            key(&p, 1, "categories of 1"),
        );
        put(&cache, &a, &products, rows(1, 1));
        put(&cache, &b, &products, rows(1, 1));
        put(&cache, &c, &categories, rows(1, 1));
        let hold = cache.begin_write(1, &products);
        // While the write runs, tenant 1's products are neither served nor stored.
        assert!(cache.lookup(&a).is_none());
        assert!(cache.ticket(1, &products).is_none());
        assert!(cache.lookup(&b).is_some());
        assert!(cache.lookup(&c).is_some());
        drop(hold);
        assert!(cache.lookup(&a).is_none());
        assert!(cache.lookup(&b).is_some());
        assert!(cache.lookup(&c).is_some());
        put(&cache, &a, &products, rows(1, 1));
        assert!(cache.lookup(&a).is_some());
    }

    #[test]
    fn a_write_to_a_shared_table_invalidates_every_tenant() {
        let cache = Arc::new(ResultCache::default());
        let p = policy("p");
        let shared = [table("sbtest1", true)];
        let (a, b) = (key(&p, 1, "s"), key(&p, 2, "s"));
        put(&cache, &a, &shared, rows(1, 1));
        put(&cache, &b, &shared, rows(1, 1));
        drop(cache.begin_write(2, &shared));
        assert!(cache.lookup(&a).is_none());
        assert!(cache.lookup(&b).is_none());
        // A reader whose policy calls the table shared sees every tenant's
        // rows: a tenant-scoped write by anyone invalidates it too.
        put(&cache, &a, &shared, rows(1, 1));
        drop(cache.begin_write(7, &[table("sbtest1", false)]));
        assert!(cache.lookup(&a).is_none());
        // And a tenant-scoped reader is invalidated by a shared write.
        let scoped = [table("sbtest1", false)];
        put(&cache, &a, &scoped, rows(1, 1));
        drop(cache.begin_write(9, &shared));
        assert!(cache.lookup(&a).is_none());
    }

    #[test]
    fn a_store_that_began_before_a_write_never_lands_after_it() {
        let cache = Arc::new(ResultCache::default());
        let p = policy("p");
        let t = [table("products", false)];
        let k = key(&p, 1, "q");
        let ticket = cache.ticket(1, &t).expect("ticket");
        drop(cache.begin_write(1, &t));
        cache.store(&k, ticket, TTL, rows(1, 1));
        assert!(cache.lookup(&k).is_none());
        // A write that starts after the ticket and is still running.
        let ticket = cache.ticket(1, &t).expect("ticket");
        let hold = cache.begin_write(1, &t);
        cache.store(&k, ticket, TTL, rows(1, 1));
        assert!(cache.lookup(&k).is_none());
        drop(hold);
        assert!(cache.lookup(&k).is_none());
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = ResultCache::default();
        let p = policy("p");
        let t = [table("products", false)];
        let k = key(&p, 1, "q");
        let ticket = cache.ticket(1, &t).expect("ticket");
        cache.store(&k, ticket, Duration::ZERO, rows(1, 1));
        assert!(cache.lookup(&k).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is freed when found");
    }

    #[test]
    fn invalidate_all_clears_everything() {
        let cache = ResultCache::default();
        let p = policy("p");
        let t = [table("products", false)];
        let k = key(&p, 1, "q");
        let ticket = cache.ticket(1, &t).expect("ticket");
        put(&cache, &k, &t, rows(1, 1));
        cache.invalidate_all();
        assert!(cache.lookup(&k).is_none());
        cache.store(&k, ticket, TTL, rows(1, 1));
        assert!(cache.lookup(&k).is_none(), "a ticket from before is void");
    }
}
