//! One client connection after login: who it is (user, tenant, policy) and
//! the backend connection it pins. The only place that calls guard → backend,
//! in that order; nothing reaches the backend without a `Decision::Allow`.

mod caching;
mod prepared;

pub use prepared::MAX_PREPARED_PER_SESSION;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mysql_async::Conn;
use mysql_async::consts::StatusFlags;
use opensrv_mysql::QueryResultWriter;
use tokio::io::AsyncWrite;

use crate::audit::{self, AuditLog};
use crate::backend::{Backend, BackendError, within};
use crate::cache::{Format, ResultCache};
use crate::config::UserConfig;
use crate::decision_cache::{Asker, DecisionCache};
use crate::error;
use crate::frontend::packets::ResponseWriter;
use crate::frontend::results::{self, Outcome};
use crate::guard::{self, Decision, SessionContext};
use crate::limits::{ConnectionSlot, LimitError, ResultLimits, StatementPermit};
use crate::metrics::{Metrics, UserMetrics};
use crate::registry::Registry;

pub struct Session {
    pub conn_id: u32,
    pub client_addr: SocketAddr,
    /// `client_addr` as the audit log writes it, formatted once per session.
    client_addr_text: String,
    /// As of registry generation `generation`; refreshed between statements.
    pub user: Arc<UserConfig>,
    registry: Arc<Registry>,
    generation: u64,
    /// A reload removed the user: every statement is refused.
    removed: bool,
    /// The user's connection slot, and with it their rate and concurrency counters.
    slot: ConnectionSlot,
    backend: Backend,
    /// Pinned for the session's life, taken on first use; `None` after the
    /// database went away, so the next statement gets a fresh one.
    pinned: Option<Conn>,
    prepared: prepared::PreparedStatements,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    /// This user's series, resolved once per session.
    user_metrics: Arc<UserMetrics>,
    decisions: Arc<DecisionCache>,
    /// Result sets of catalogue reads, shared by every session (cache.rs).
    results: Arc<ResultCache>,
    /// This session's side of it: settings, transaction state, held writes.
    caching: caching::CacheState,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.pinned.is_some() {
            self.metrics.pinned_backend_connections.dec();
        }
    }
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros().try_into().unwrap_or(u64::MAX)
}

/// The refusal while the audit log cannot be written (DESIGN.md: nothing
/// runs unaudited).
fn audit_unavailable() -> guard::Denial {
    guard::Denial::new(
        guard::Rule::AuditUnavailable,
        guard::StatementKind::Unknown,
        "the audit log cannot be written, so no statement may run",
        Some("retry later; the operators have been alerted".into()),
    )
}

/// A statement refused before the guard (a limit, or the user is gone).
struct Refusal {
    rule: &'static str,
    error: error::ClientError,
}

impl From<LimitError> for Refusal {
    fn from(limit: LimitError) -> Self {
        Refusal {
            rule: limit.rule(),
            error: error::for_limit(&limit),
        }
    }
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conn_id: u32,
        client_addr: SocketAddr,
        user: Arc<UserConfig>,
        registry: Arc<Registry>,
        generation: u64,
        slot: ConnectionSlot,
        backend: Backend,
        audit: Arc<AuditLog>,
        metrics: Arc<Metrics>,
        decisions: Arc<DecisionCache>,
        results: Arc<ResultCache>,
    ) -> Self {
        let user_metrics = metrics.user(&user);
        Session {
            user_metrics,
            conn_id,
            client_addr,
            client_addr_text: client_addr.to_string(),
            user,
            registry,
            generation,
            removed: false,
            slot,
            backend,
            pinned: None,
            prepared: prepared::PreparedStatements::default(),
            audit,
            metrics,
            decisions,
            results,
            caching: caching::CacheState::default(),
        }
    }

    /// The decision-cache key's owner: this session's user and database.
    fn asker(&self) -> Asker<'_> {
        Asker {
            user: &self.user,
            database: self.backend.database(),
        }
    }

    pub fn context(&self) -> SessionContext<'_> {
        SessionContext {
            user: &self.user.name,
            tenant_id: self.user.tenant_id,
            database: self.backend.database(),
            policy: &self.user.policy,
        }
    }

    /// Before every statement: picks up a reload (so a session switches to a
    /// new policy between statements, never during one), then checks the
    /// statement size, rate and concurrency limits. The permit is held until
    /// the statement is done.
    fn admit(&mut self, statement_bytes: usize) -> Result<StatementPermit, Refusal> {
        if self.registry.generation() != self.generation {
            let catalog = self.registry.current();
            self.generation = catalog.generation;
            self.removed = match catalog.users.get(&self.user.name) {
                Some(user) => {
                    self.user = user.clone();
                    false
                }
                None => true,
            };
        }
        if self.removed {
            return Err(Refusal {
                rule: "user_removed",
                error: error::user_removed(&self.user.name),
            });
        }
        let limits = &self.user.limits;
        if statement_bytes > limits.max_statement_bytes {
            return Err(LimitError::StatementSize {
                len: statement_bytes,
                max: limits.max_statement_bytes,
            }
            .into());
        }
        Ok(self.slot.counters().admit(limits)?)
    }

    /// The registry generation the session's user and policy come from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    async fn record_refusal(&self, mut entry: audit::Entry, refusal: &Refusal, started: Instant) {
        tracing::info!(conn_id = self.conn_id, user = %self.user.name, rule = refusal.rule, "refused");
        entry.rule = Some(refusal.rule);
        entry.message = Some(refusal.error.message.clone());
        self.finish(entry, "deny", started).await;
    }

    /// COM_QUERY: guard, then (if allowed) run on the pinned connection,
    /// then the audit record. Denials go through opensrv's `writer`; backend
    /// results are written by `response` (frontend/packets.rs explains why).
    pub async fn query<W>(
        &mut self,
        sql: &str,
        writer: QueryResultWriter<'_, W>,
        mut response: ResponseWriter,
    ) -> io::Result<()>
    where
        W: AsyncWrite + Send + Unpin,
    {
        let started = Instant::now();
        let _permit = match self.admit(sql.len()) {
            Ok(permit) => permit,
            Err(refusal) => {
                let entry = self.entry("query", sql);
                self.record_refusal(entry, &refusal, started).await;
                let e = refusal.error;
                return writer.error(e.kind, e.message.as_bytes()).await;
            }
        };
        // The audit check comes first: it is the one input of a refusal that
        // is not part of the decision cache's key.
        let decision = if self.audit.is_healthy() {
            self.decisions.check(sql, &self.asker())
        } else {
            Arc::new(Decision::Deny(audit_unavailable()))
        };
        let mut entry = self.entry("query", sql);
        entry.guard_us = Some(micros(started));
        entry.kind = decision.kind().name();
        match &*decision {
            Decision::Deny(denial) => {
                tracing::info!(conn_id = self.conn_id, user = %self.user.name, rule = %denial.rule, "denied");
                let e = error::for_denial(denial);
                self.record_denial(entry, denial, started).await;
                writer.error(e.kind, e.message.as_bytes()).await
            }
            Decision::LocalOk { .. } => {
                self.finish(entry, "allow", started).await;
                writer.completed(results::local_ok()).await
            }
            Decision::Allow {
                kind,
                sql,
                rewrites,
                access,
                ..
            } => {
                let lookups = &rewrites.lookups;
                let deadline = self.backend.deadline();
                entry.executed_sql = Some(sql.to_string());
                entry.rewrites = Some(rewrites.describe());
                let plan = self.cache_plan(*kind, access, sql.as_str(), &[], Format::Text);
                entry.cache = plan.audit();
                if let caching::Plan::Hit(rows) = &plan {
                    return self
                        .answer_from_cache(entry, rows, started, &mut response)
                        .await;
                }
                self.capture_for(&plan, &mut response);
                let limits = ResultLimits::of(&self.user.limits);
                let conn = match self.pinned().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let client = error::for_backend(&e);
                        entry.backend_code = Some(e.code());
                        entry.executed_sql = None;
                        entry.message = Some(client.message.clone());
                        self.finish(entry, "error", started).await;
                        return writer.error(client.kind, client.message.as_bytes()).await;
                    }
                };
                let backend_started = Instant::now();
                let outcome = match results::run_text_query(
                    conn,
                    sql.as_str(),
                    lookups,
                    deadline,
                    limits,
                    &mut response,
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(e) => return Err(self.client_gone(entry, started, e).await),
                };
                entry.backend_us = Some(micros(backend_started));
                self.after_forwarded(
                    *kind,
                    sql.as_str(),
                    &[],
                    Format::Text,
                    plan,
                    &outcome,
                    &mut response,
                );
                self.record_outcome(entry, &outcome, started).await;
                self.after_statement(&outcome);
                Ok(())
            }
        }
    }

    /// An audit entry for this session with the fields every record has.
    fn entry(&self, command: &'static str, sql: &str) -> audit::Entry {
        audit::Entry {
            conn_id: self.conn_id,
            user: self.user.name.clone(),
            tenant_id: Some(self.user.tenant_id),
            client_addr: self.client_addr_text.clone(),
            command,
            sql: Some(sql.to_string()),
            policy_version: Some(self.user.policy_version.clone()),
            policy: Some(self.user.policy.clone()),
            ..audit::Entry::default()
        }
    }

    async fn record_denial(
        &self,
        mut entry: audit::Entry,
        denial: &guard::Denial,
        started: Instant,
    ) {
        entry.rule = Some(denial.rule.name());
        entry.message = Some(denial.client_message());
        self.finish(entry, "deny", started).await;
    }

    async fn record_outcome(&self, mut entry: audit::Entry, outcome: &Outcome, started: Instant) {
        entry.rows = Some(outcome.rows);
        let decision = if let Some(limit) = &outcome.limit {
            entry.rule = Some(limit.rule());
            entry.message = Some(limit.to_string());
            "error"
        } else if let Some(e) = &outcome.backend_error {
            entry.backend_code = Some(e.code());
            entry.message = Some(error::for_backend(e).message);
            "error"
        } else {
            "allow"
        };
        self.finish(entry, decision, started).await;
    }

    /// Counts the statement and queues its record (waiting while the audit
    /// queue is full: backpressure, never a dropped record).
    async fn finish(&self, mut entry: audit::Entry, decision: &'static str, started: Instant) {
        entry.decision = decision;
        entry.duration_us = micros(started);
        self.metrics.observe_as(
            &self.user_metrics,
            &entry,
            entry.guard_us,
            entry.backend_code,
        );
        self.audit.write(entry).await;
    }

    /// COM_INIT_DB and the handshake's database.
    pub fn allow_database(&self, database: &str) -> Result<(), error::ClientError> {
        guard::allow_database(database, &self.context()).map_err(|d| error::for_denial(&d))
    }

    /// The client sent COM_RESET_CONNECTION (which opensrv answered itself):
    /// reset the backend session too, so no state survives the reset.
    pub async fn reset_backend(&mut self) {
        if let Some(conn) = self.pinned.as_mut() {
            // A reset also frees the backend's prepared statements.
            self.prepared.forget_backend();
            let deadline = self.backend.deadline();
            match within(deadline, conn.reset()).await {
                // Default settings again, any transaction rolled back.
                Ok(true) => self.caching.backend_reset(),
                Ok(false) => {}
                Err(_) => self.drop_pinned(),
            }
        }
    }

    async fn pinned(&mut self) -> Result<&mut Conn, BackendError> {
        if let Some(conn) = self.pinned.as_ref().filter(|c| c.is_disconnected()) {
            let in_transaction = conn.last_ok_packet().is_some_and(|ok| {
                ok.status_flags()
                    .contains(StatusFlags::SERVER_STATUS_IN_TRANS)
            });
            self.drop_pinned();
            if in_transaction {
                // Running the statement on a fresh connection would let a
                // COMMIT "succeed" for a transaction that is gone.
                return Err(BackendError::ConnectionLost(
                    "it broke during an open transaction".into(),
                ));
            }
        }
        if self.pinned.is_none() {
            self.pinned = Some(self.backend.checkout().await?);
            self.metrics.pinned_backend_connections.inc();
        }
        self.pinned
            .as_mut()
            .ok_or_else(|| BackendError::Unavailable("no connection".into()))
    }

    /// Forgets the pinned connection and the prepared statements that lived
    /// on it. The connection is closed, never returned to the pool: after a
    /// failure its state (a half-read result, a statement still running on a
    /// hung server) is unknown, and it must not reach another session.
    fn drop_pinned(&mut self) {
        if let Some(conn) = self.pinned.take() {
            Backend::discard(conn);
            self.metrics.pinned_backend_connections.dec();
        }
        self.prepared.forget_backend();
        // The next connection starts with default settings, and a
        // transaction on this one is gone (its held writes end).
        self.caching.backend_reset();
    }

    /// The client went away (or stopped reading) in the middle of a
    /// response: the backend connection may still be sending the rest of the
    /// result, so it is discarded rather than drained and reused.
    /// The statement is audited as an error (it may have run in full).
    async fn client_gone(
        &mut self,
        mut entry: audit::Entry,
        started: Instant,
        error: io::Error,
    ) -> io::Error {
        tracing::debug!(conn_id = self.conn_id, error = %error, "client gone mid-response");
        self.drop_pinned();
        entry.message = Some(format!(
            "sqlguard: the client connection failed mid-response ({error}); the backend connection was closed"
        ));
        self.finish(entry, "error", started).await;
        error
    }

    fn after_statement(&mut self, outcome: &Outcome) {
        if let Some(e) = &outcome.backend_error {
            if e.breaks_connection() {
                tracing::warn!(conn_id = self.conn_id, error = %e, "backend connection dropped");
                self.drop_pinned();
            }
        }
    }
}
