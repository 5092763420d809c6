//! The backend: a mysql_async pool towards MariaDB. A session pins one
//! connection for its life and drops it when the client leaves; the pool then
//! resets it (COM_RESET_CONNECTION) and re-runs the setup that pins `sql_mode`.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};

use crate::config::{BackendConfig, BackendTls};

/// The `sql_mode` every backend session runs with: MariaDB 10.11's default,
/// written out so no server-side setting can change how the text sqlguard
/// serializes is lexed (PARSER-DIFFERENTIALS.md §3). It has neither
/// ANSI_QUOTES nor NO_BACKSLASH_ESCAPES nor PIPES_AS_CONCAT.
pub const PINNED_SQL_MODE: &str =
    "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION";

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// No connection could be had (database down, restarting, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The pinned connection broke during a statement.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The database did not answer within the proxy-side deadline
    /// (`backend.query_timeout` plus a margin); the connection is discarded.
    #[error("no answer within backend.query_timeout")]
    Timeout,
    /// MariaDB answered with an error; forwarded as is.
    #[error("server error {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
}

impl BackendError {
    /// Classifies a mysql_async error raised while running a statement on a
    /// pinned connection.
    pub fn from_statement(error: mysql_async::Error) -> Self {
        match error {
            mysql_async::Error::Server(e) => BackendError::Server {
                code: e.code,
                state: e.state,
                message: e.message,
            },
            other => BackendError::ConnectionLost(short_reason(&other)),
        }
    }

    /// MariaDB's error code, or 0 when there was no answer (no connection,
    /// connection lost): the `code` of `sqlguard_backend_errors_total`.
    pub fn code(&self) -> u16 {
        match self {
            BackendError::Server { code, .. } => *code,
            _ => 0,
        }
    }

    /// Whether the pinned connection must be thrown away after this error.
    pub fn breaks_connection(&self) -> bool {
        !matches!(self, BackendError::Server { .. })
    }
}

/// MariaDB's own `max_statement_time` (error 1969) should win while the
/// server is alive; the proxy's deadline only catches a database that does
/// not answer at all.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// How long a discarded connection may take to say COM_QUIT before it is
/// simply dropped (a paused server never answers).
const DISCARD_WAIT: Duration = Duration::from_secs(2);

/// Awaits `work` (a backend operation) until `deadline`.
pub async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    work: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, BackendError> {
    let result = match deadline {
        Some(at) => match tokio::time::timeout_at(at, work).await {
            Ok(result) => result,
            Err(_) => return Err(BackendError::Timeout),
        },
        None => work.await,
    };
    result.map_err(BackendError::from_statement)
}

fn short_reason(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Io(e) => format!("I/O error: {e}"),
        mysql_async::Error::Driver(e) => format!("driver error: {e}"),
        other => other.to_string(),
    }
}

/// The pool and what the proxy knows about the database behind it.
#[derive(Clone)]
pub struct Backend {
    pool: Pool,
    /// The pool's options, for connections outside it (readiness checks).
    opts: Opts,
    database: Arc<str>,
    connect_timeout: Duration,
    /// Proxy-side bound on one statement; `None` when `query_timeout` is 0.
    statement_limit: Option<Duration>,
}

impl Backend {
    pub fn new(config: &BackendConfig) -> Backend {
        let mut setup = vec![format!("SET SESSION sql_mode = '{PINNED_SQL_MODE}'")];
        if !config.query_timeout.is_zero() {
            // MariaDB aborts the statement itself (error 1969), so a runaway
            // query cannot hold a pinned connection forever.
            setup.push(format!(
                "SET SESSION max_statement_time = {}",
                config.query_timeout.as_secs_f64()
            ));
        }
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(0, config.pool_size).unwrap_or_default())
            .with_reset_connection(true);
        let opts = OptsBuilder::default()
            .ip_or_hostname(config.host.clone())
            .tcp_port(config.port)
            .user(Some(config.user.clone()))
            .pass(config.password.clone())
            .db_name(Some(config.database.clone()))
            .setup(setup)
            .pool_opts(pool_opts)
            .prefer_socket(false)
            // Sessions own their prepared statements and close them; a
            // shared cache would hand one backend statement to two client ids.
            .stmt_cache_size(0)
            .ssl_opts(config.tls.as_ref().map(ssl_opts))
            .tcp_nodelay(true);
        let opts = Opts::from(opts);
        Backend {
            pool: Pool::new(opts.clone()),
            opts,
            database: config.database.as_str().into(),
            connect_timeout: config.connect_timeout,
            statement_limit: (!config.query_timeout.is_zero())
                .then(|| config.query_timeout + DEADLINE_MARGIN),
        }
    }

    /// When a statement starting now must have been answered by.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.statement_limit
            .map(|limit| tokio::time::Instant::now() + limit)
    }

    /// Throws a connection away instead of returning it to the pool: its
    /// state is unknown (a statement was abandoned mid-way), so it is never
    /// reset and handed to another session. COM_QUIT is sent in the
    /// background; if the server does not take it, the socket is just closed.
    pub fn discard(conn: Conn) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // On timeout the future drops the Conn, already marked
                // disconnected, and the pool discards it.
                let _ = tokio::time::timeout(DISCARD_WAIT, conn.disconnect()).await;
            });
        }
    }

    /// The database every session is bound to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A connection for one session to pin. An idle pooled connection may
    /// have died with its server (killed, restarted) while it waited, so it
    /// is pinged first and replaced if dead: after an outage the first
    /// statement of every new session succeeds, without a failed attempt.
    pub async fn checkout(&self) -> Result<Conn, BackendError> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let too_late = || {
            BackendError::Unavailable(format!("no connection within {:?}", self.connect_timeout))
        };
        loop {
            let mut conn = match tokio::time::timeout_at(deadline, self.pool.get_conn()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Err(BackendError::Unavailable(short_reason(&e))),
                Err(_) => return Err(too_late()),
            };
            match tokio::time::timeout_at(deadline, conn.ping()).await {
                Ok(Ok(())) => return Ok(conn),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "pooled backend connection was dead");
                    Backend::discard(conn);
                }
                Err(_) => {
                    // A ping left unanswered: the connection's state is
                    // unknown, so it must not go back to the pool.
                    Backend::discard(conn);
                    return Err(too_late());
                }
            }
        }
    }

    /// A connection outside the pool (same options and setup), within the
    /// connect timeout: readiness checks must work when the pool is full.
    pub async fn connect_unpooled(&self) -> Result<Conn, BackendError> {
        match tokio::time::timeout(self.connect_timeout, Conn::new(self.opts.clone())).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(BackendError::Unavailable(short_reason(&e))),
            Err(_) => Err(BackendError::Unavailable(format!(
                "no connection within {:?}",
                self.connect_timeout
            ))),
        }
    }

    /// The pool's own gauges (open, idle, in use), read by /metrics.
    pub fn pool_metrics(&self) -> Arc<mysql_async::Metrics> {
        self.pool.metrics()
    }

    /// `SELECT VERSION()`, e.g. `10.11.19-MariaDB-0+deb12u1`.
    pub async fn server_version(&self) -> Result<String, BackendError> {
        let mut conn = self.checkout().await?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(BackendError::from_statement)?;
        version.ok_or_else(|| BackendError::ConnectionLost("VERSION() returned no row".into()))
    }

    /// Whether a connection can be had and answers (for readiness).
    pub async fn ping(&self) -> bool {
        match self.checkout().await {
            Ok(mut conn) => conn.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}

/// mysql_async's TLS settings for `backend.tls`: the connection fails unless
/// the server offers TLS and its certificate chains to the CA (only
/// `tls_ca` if set, else the Mozilla roots) and names the `backend.url` host.
/// The `danger_*` switches stay off.
fn ssl_opts(tls: &BackendTls) -> SslOpts {
    crate::tls::install_default_provider();
    let opts = SslOpts::default()
        .with_danger_accept_invalid_certs(false)
        .with_danger_skip_domain_validation(false);
    match &tls.ca_pem {
        Some(pem) => opts
            .with_root_certs(vec![pem.clone().into()])
            .with_disable_built_in_roots(true),
        None => opts,
    }
}

/// The version string clients see in the handshake: the backend's version
/// with the distribution suffix replaced by `-sqlguard`, and MariaDB's
/// `5.5.5-` prefix, which old clients need and MariaDB clients strip.
pub fn advertised_version(backend_version: &str) -> String {
    match backend_version.find("-MariaDB") {
        Some(end) => format!("5.5.5-{}-MariaDB-sqlguard", &backend_version[..end]),
        None => {
            let core = backend_version.split('-').next().unwrap_or(backend_version);
            format!("{core}-sqlguard")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keeps_the_backend_version() {
        assert_eq!(
            advertised_version("10.11.19-MariaDB-0+deb12u1"),
            "5.5.5-10.11.19-MariaDB-sqlguard"
        );
        assert_eq!(advertised_version("8.0.36"), "8.0.36-sqlguard");
    }
}
