//! The session's side of the result cache (cache.rs): whether an allowed
//! statement is answered from memory, forwarded and stored, or holds its
//! tables as a write. Owns what only the session knows: the settings its
//! backend connection runs with (part of the key) and whether it may be
//! inside a transaction (then the cache is neither read nor written, and its
//! writes stay held until the transaction ends).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::Value;
use mysql_async::consts::StatusFlags;

use super::Session;
use crate::audit;
use crate::cache::{CachedRows, Format, KeyRef, Ticket, WriteHold};
use crate::frontend::packets::ResponseWriter;
use crate::frontend::results::Outcome;
use crate::guard::{Access, StatementKind};

/// Bytes of `SET` text a session may run and still use the cache. Drivers
/// send a few statements on connect; a session that keeps changing settings
/// stops using the cache (fail closed) rather than grow its key unbounded.
const MAX_SETTINGS_BYTES: usize = 4096;

/// Status flags that mean the backend session is inside a transaction.
const IN_TRANSACTION: StatusFlags =
    StatusFlags::SERVER_STATUS_IN_TRANS.union(StatusFlags::SERVER_STATUS_IN_TRANS_READONLY);

/// What the cache needs to know about the session's backend connection.
pub(super) struct CacheState {
    /// Every `SET` run on the current backend connection, in order: they
    /// decide the character set, collation, time zone and modes the rows
    /// come back in, so they are part of the key. `None`: too many; the
    /// session no longer uses the cache.
    settings: Option<String>,
    /// The backend may be inside a transaction. Then nothing is served from
    /// the cache (repeatable read; the session's own uncommitted writes) and
    /// nothing is stored (it could show uncommitted rows to others).
    in_transaction: bool,
    /// `autocommit = 0`: every statement opens a transaction, so the cache
    /// is neither read nor written either.
    autocommit_off: bool,
    /// Writes made inside the open transaction: other sessions neither get
    /// nor store cached results of these tables until it ends, and its end
    /// (COMMIT, ROLLBACK, an implicit commit, a lost connection) invalidates
    /// them again.
    held: Vec<WriteHold>,
}

impl Default for CacheState {
    fn default() -> Self {
        CacheState {
            settings: Some(String::new()),
            in_transaction: false,
            autocommit_off: false,
            held: Vec::new(),
        }
    }
}

impl CacheState {
    /// A fresh backend session (a new connection, or COM_RESET_CONNECTION):
    /// default settings, no transaction; held writes of a transaction that
    /// is gone end now.
    pub(super) fn backend_reset(&mut self) {
        *self = CacheState::default();
    }

    /// Whether the cache may be read and written for this session now.
    fn usable(&self) -> bool {
        !self.in_transaction && !self.autocommit_off
    }
}

/// What the cache does for one allowed, forwarded statement.
pub(super) enum Plan {
    /// Nothing: not cacheable, the cache is off, or a transaction may be open.
    Bypass,
    /// Answered from memory; nothing is forwarded.
    Hit(Arc<CachedRows>),
    /// Forwarded; the result is stored if it comes back complete. No ticket
    /// while a write to its tables is in progress: then nothing is stored.
    Miss {
        ticket: Option<Ticket>,
        ttl: Duration,
    },
    /// A write: its tables are held until it, or its transaction, ends.
    Write(WriteHold),
}

impl Plan {
    /// The audit record's `cache` field.
    pub(super) fn audit(&self) -> Option<&'static str> {
        match self {
            Plan::Hit(_) => Some("hit"),
            Plan::Miss { .. } => Some("miss"),
            Plan::Bypass | Plan::Write(_) => None,
        }
    }
}

/// Bound values as part of a key: a type tag, then the value, so that e.g.
/// the integer 1 and the string "1" (different binary results) differ.
pub(super) fn encode_params(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        match value {
            Value::NULL => out.push(0),
            Value::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::UInt(u) => {
                out.push(2);
                out.extend_from_slice(&u.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(3);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Double(f) => {
                out.push(4);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Bytes(b) => {
                out.push(5);
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                out.extend_from_slice(b);
            }
            Value::Date(y, mo, d, h, mi, s, us) => {
                out.push(6);
                out.extend_from_slice(&y.to_le_bytes());
                out.extend_from_slice(&[*mo, *d, *h, *mi, *s]);
                out.extend_from_slice(&us.to_le_bytes());
            }
            Value::Time(neg, days, h, mi, s, us) => {
                out.push(7);
                out.push(u8::from(*neg));
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&[*h, *mi, *s]);
                out.extend_from_slice(&us.to_le_bytes());
            }
        }
    }
    out
}

impl Session {
    fn cache_key<'a>(
        &'a self,
        settings: &'a str,
        sql: &'a str,
        params: &'a [u8],
        format: Format,
    ) -> KeyRef<'a> {
        KeyRef {
            tenant_id: self.user.tenant_id,
            policy: &self.user.policy,
            database: self.backend.database(),
            settings,
            format,
            sql,
            params,
        }
    }

    /// Before an allowed statement is forwarded: answer it from the cache,
    /// or say how to treat it. A write takes its hold here, before it runs.
    pub(super) fn cache_plan(
        &self,
        kind: StatementKind,
        access: &Access,
        sql: &str,
        params: &[u8],
        format: Format,
    ) -> Plan {
        let cache = &self.results;
        if !cache.enabled() {
            return Plan::Bypass;
        }
        match kind {
            StatementKind::Select => {}
            StatementKind::Set
            | StatementKind::Show
            | StatementKind::Transaction
            | StatementKind::Use => return Plan::Bypass,
            StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Replace
            | StatementKind::Delete
                if !access.tables.is_empty() =>
            {
                return Plan::Write(cache.begin_write(self.user.tenant_id, &access.tables));
            }
            // Something that may write without naming its tables (the guard
            // forwards nothing like it today): fail closed.
            _ => {
                cache.invalidate_all();
                return Plan::Bypass;
            }
        }
        let Some(ttl) = access.cache_ttl else {
            return Plan::Bypass;
        };
        if !self.caching.usable() {
            return Plan::Bypass;
        }
        let Some(settings) = self.caching.settings.as_deref() else {
            return Plan::Bypass;
        };
        let key = self.cache_key(settings, sql, params, format);
        if !cache.key_fits(&key) {
            return Plan::Bypass;
        }
        let limits = &self.user.limits;
        // A result over this user's limits is forwarded, so the client gets
        // the limit's error exactly as without the cache.
        let within = |rows: &CachedRows| {
            rows.row_count() <= limits.max_result_rows
                && rows.response_bytes <= limits.max_result_bytes
        };
        match cache.lookup_if(&key, within) {
            Some(rows) => Plan::Hit(rows),
            None => Plan::Miss {
                ticket: cache.ticket(self.user.tenant_id, &access.tables),
                ttl,
            },
        }
    }

    /// For a miss, asks the response writer to copy the result as it streams.
    pub(super) fn capture_for(&self, plan: &Plan, response: &mut ResponseWriter) {
        if let Plan::Miss {
            ticket: Some(_), ..
        } = plan
        {
            response.capture(self.results.max_rows(), self.results.max_entry_bytes());
        }
    }

    /// After a forwarded statement ran, whatever its outcome: follows the
    /// backend's transaction state and settings, keeps a write's hold for
    /// the rest of its transaction or releases it, and stores a complete
    /// result read outside any transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_forwarded(
        &mut self,
        kind: StatementKind,
        sql: &str,
        params: &[u8],
        format: Format,
        plan: Plan,
        outcome: &Outcome,
        response: &mut ResponseWriter,
    ) {
        let status = self
            .pinned
            .as_ref()
            .and_then(|c| c.last_ok_packet())
            .map(|ok| ok.status_flags());
        match status {
            Some(s) => {
                self.caching.in_transaction = s.intersects(IN_TRANSACTION)
                    || !s.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT)
            }
            // mysql_async forgets the status on an error. An error leaves
            // the transaction state as it was, except perhaps after a
            // failed transaction or session statement: assume the worst.
            None => {
                if matches!(kind, StatementKind::Transaction | StatementKind::Set) {
                    self.caching.in_transaction = true;
                }
            }
        }
        if kind == StatementKind::Set {
            if let Some(settings) = self.caching.settings.as_mut() {
                settings.push_str(sql);
                settings.push('\n');
                if settings.len() > MAX_SETTINGS_BYTES {
                    self.caching.settings = None;
                }
            }
        }
        let captured = response.take_capture();
        match plan {
            Plan::Write(hold) if self.caching.in_transaction => self.caching.held.push(hold),
            Plan::Miss {
                ticket: Some(ticket),
                ttl,
            } if self.caching.usable()
                && outcome.backend_error.is_none()
                && outcome.limit.is_none() =>
            {
                let committed = |rows: &CachedRows| {
                    let s = StatusFlags::from_bits_truncate(rows.end_status);
                    s.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT)
                        && !s.intersects(IN_TRANSACTION)
                };
                if let (Some(rows), Some(settings)) = (captured, self.caching.settings.as_deref()) {
                    if committed(&rows) {
                        let key = self.cache_key(settings, sql, params, format);
                        self.results.store(&key, ticket, ttl, rows);
                    }
                }
            }
            // Dropping a write's hold here ends it (the client has its answer).
            _ => {}
        }
        if !self.caching.in_transaction {
            self.caching.held.clear();
        }
    }

    /// Answers a cache hit: the rows as the client's protocol wants them,
    /// and the audit record (with `executed_sql`, the text whose result it
    /// is, `rows`, and no `backend_us`: nothing was forwarded).
    pub(super) async fn answer_from_cache(
        &mut self,
        mut entry: audit::Entry,
        rows: &CachedRows,
        started: Instant,
        response: &mut ResponseWriter,
    ) -> io::Result<()> {
        // The header's status is the session's own, as for a forwarded read
        // (not in a transaction, or there would be no hit).
        let status = self
            .pinned
            .as_ref()
            .and_then(|c| c.last_ok_packet())
            .map_or(StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits(), |ok| {
                ok.status_flags().bits()
            });
        if let Err(e) = response.replay(rows, status).await {
            // Nothing ran on the backend, so its connection is left alone.
            entry.message = Some(format!(
                "sqlguard: the client connection failed mid-response ({e})"
            ));
            self.finish(entry, "error", started).await;
            return Err(e);
        }
        entry.rows = Some(rows.row_count());
        self.finish(entry, "allow", started).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_values_of_different_types_have_different_keys() {
        let keys = [
            encode_params(&[Value::Int(1)]),
            encode_params(&[Value::UInt(1)]),
            encode_params(&[Value::Bytes(b"1".to_vec())]),
            encode_params(&[Value::Double(1.0)]),
            encode_params(&[Value::NULL]),
            encode_params(&[Value::Bytes(b"1".to_vec()), Value::NULL]),
            encode_params(&[Value::Bytes(b"1\0".to_vec())]),
            encode_params(&[]),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Length-prefixed: two values never read as one.
        assert_ne!(
            encode_params(&[Value::Bytes(b"ab".to_vec()), Value::Bytes(b"c".to_vec())]),
            encode_params(&[Value::Bytes(b"a".to_vec()), Value::Bytes(b"bc".to_vec())])
        );
    }
}
