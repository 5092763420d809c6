//! One client connection after login: who it is (user, tenant, policy) and
//! the backend connection it pins. The only place that calls guard → backend,
//! in that order; nothing reaches the backend without a `Decision::Allow`.

mod prepared;

pub use prepared::MAX_PREPARED_PER_SESSION;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mysql_async::Conn;
use opensrv_mysql::QueryResultWriter;
use tokio::io::AsyncWrite;

use crate::backend::{Backend, BackendError};
use crate::config::UserConfig;
use crate::error;
use crate::frontend::packets::ResponseWriter;
use crate::frontend::results::{self, Outcome};
use crate::guard::{self, Decision, SessionContext};

pub struct Session {
    pub conn_id: u32,
    pub client_addr: SocketAddr,
    pub user: Arc<UserConfig>,
    backend: Backend,
    /// Pinned for the session's life, taken on first use; `None` after the
    /// database went away, so the next statement gets a fresh one.
    pinned: Option<Conn>,
    prepared: prepared::PreparedStatements,
}

impl Session {
    pub fn new(
        conn_id: u32,
        client_addr: SocketAddr,
        user: Arc<UserConfig>,
        backend: Backend,
    ) -> Self {
        Session {
            conn_id,
            client_addr,
            user,
            backend,
            pinned: None,
            prepared: prepared::PreparedStatements::default(),
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

    /// COM_QUERY: guard, then (if allowed) run on the pinned connection.
    /// Denials go through opensrv's `writer`; backend results are written by
    /// `response` (frontend/packets.rs explains why).
    pub async fn query<W>(
        &mut self,
        sql: &str,
        writer: QueryResultWriter<'_, W>,
        mut response: ResponseWriter,
    ) -> io::Result<()>
    where
        W: AsyncWrite + Send + Unpin,
    {
        let decision = guard::check(sql, &self.context());
        match decision {
            Decision::Deny(denial) => {
                tracing::info!(conn_id = self.conn_id, user = %self.user.name, rule = %denial.rule, "denied");
                let e = error::for_denial(&denial);
                writer.error(e.kind, e.message.as_bytes()).await
            }
            Decision::LocalOk { .. } => writer.completed(results::local_ok()).await,
            Decision::Allow { sql, .. } => {
                let conn = match self.pinned().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let e = error::for_backend(&e);
                        return writer.error(e.kind, e.message.as_bytes()).await;
                    }
                };
                let outcome = results::run_text_query(conn, sql.as_str(), &mut response).await?;
                self.after_statement(&outcome);
                Ok(())
            }
        }
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
            if conn.reset().await.is_err() {
                self.drop_pinned();
            }
        }
    }

    async fn pinned(&mut self) -> Result<&mut Conn, BackendError> {
        if self.pinned.as_ref().is_some_and(|c| c.is_disconnected()) {
            self.drop_pinned();
        }
        if self.pinned.is_none() {
            self.pinned = Some(self.backend.checkout().await?);
        }
        self.pinned
            .as_mut()
            .ok_or_else(|| BackendError::Unavailable("no connection".into()))
    }

    /// Forgets the pinned connection (dropping a broken Conn is safe: the
    /// pool discards it) and the prepared statements that lived on it.
    fn drop_pinned(&mut self) {
        self.pinned = None;
        self.prepared.forget_backend();
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
