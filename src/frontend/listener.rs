//! The accept loop: one task per connection, `max_connections` (the next
//! client gets error 1040), the SIGHUP handler, and graceful shutdown — stop
//! accepting, let running statements finish within `shutdown_grace`, write
//! the queued audit records, then return.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opensrv_mysql::{AsyncMysqlIntermediary, IntermediaryOptions};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::backend::{Backend, advertised_version};
use crate::cache::ResultCache;
use crate::config::Config;
use crate::decision_cache::DecisionCache;
use crate::error;
use crate::frontend::auth::ConnectionIds;
use crate::frontend::packets::ResponseWriter;
use crate::frontend::shim::Shim;
use crate::frontend::socket::{ClientSocket, SharedSocket};
use crate::frontend::wire::{ConnSignals, GuardedReader, GuardedWriter};
use crate::metrics::{self, GaugeGuard, Metrics};
use crate::registry::Registry;

/// What opensrv writes to: buffered (GreptimeDB uses the same 100 KiB), so a
/// streamed result goes out in large writes, not one syscall per row.
pub type ClientWriter = BufWriter<GuardedWriter<SharedSocket>>;
const WRITE_BUFFER_BYTES: usize = 100 * 1024;

/// Advertised until the backend has told us its version.
const FALLBACK_BACKEND_VERSION: &str = "10.11.0-MariaDB";
const VERSION_RETRY: Duration = Duration::from_secs(2);

/// What every connection of one proxy shares.
pub struct Shared {
    pub config: Config,
    pub backend: Backend,
    pub audit: Arc<AuditLog>,
    pub metrics: Arc<Metrics>,
    /// Users, policies and limits in force; swapped whole on SIGHUP.
    pub registry: Arc<Registry>,
    /// Guard decisions, shared by every session (keyed by user, tenant,
    /// policy, database and text: see decision_cache.rs).
    pub decisions: Arc<DecisionCache>,
    /// Result sets of catalogue reads, shared by every session (cache.rs).
    pub results: Arc<ResultCache>,
    pub conn_ids: ConnectionIds,
    version: RwLock<String>,
}

impl Shared {
    pub fn advertised_version(&self) -> String {
        match self.version.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_backend_version(&self, backend_version: &str) {
        let v = advertised_version(backend_version);
        match self.version.write() {
            Ok(mut slot) => *slot = v,
            Err(poisoned) => *poisoned.into_inner() = v,
        }
    }
}

/// A proxy that is accepting connections.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// Where /metrics, /healthz and /readyz are served, if configured.
    pub metrics_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningProxy {
    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets running statements finish within
    /// `listen.shutdown_grace`, and returns when every connection is gone.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the proxy stops (after its token was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds `config.listen.address` and starts serving.
pub async fn start(config: Config) -> io::Result<RunningProxy> {
    let listener = TcpListener::bind(config.listen.address).await?;
    let addr = listener.local_addr()?;
    let audit = AuditLog::open(&config.audit).map_err(|e| io::Error::other(e.to_string()))?;
    let backend = Backend::new(&config.backend);
    let registry = Arc::new(Registry::new(&config));
    let metrics_listener = metrics::bind(config.metrics.address).await?;
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let decisions = DecisionCache::default().counting(
        metrics.decision_cache_hits.clone(),
        metrics.decision_cache_misses.clone(),
    );
    let results = ResultCache::new(config.cache.max_bytes).counting(metrics.result_cache.clone());
    let shared = Arc::new(Shared {
        backend,
        metrics,
        decisions: Arc::new(decisions),
        results: Arc::new(results),
        audit: Arc::new(audit),
        registry,
        conn_ids: ConnectionIds::default(),
        version: RwLock::new(advertised_version(FALLBACK_BACKEND_VERSION)),
        config,
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(learn_backend_version(shared.clone(), shutdown.clone()));
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(
            listener,
            shared.metrics.clone(),
            shared.audit.clone(),
            shared.backend.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(on_sighup(shared.clone(), shutdown.clone()));
    let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
    tracing::info!(%addr, "sqlguard listening");
    Ok(RunningProxy {
        addr,
        metrics_addr,
        shared,
        shutdown,
        task,
    })
}

/// Asks the backend for its version until it answers, so clients see e.g.
/// `10.11.19-MariaDB-sqlguard`; the proxy serves meanwhile.
async fn learn_backend_version(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        match shared.backend.server_version().await {
            Ok(version) => {
                shared.set_backend_version(&version);
                tracing::info!(backend_version = %version, "backend reachable");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "backend not reachable yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(VERSION_RETRY) => {}
        }
    }
}

/// The process's one SIGHUP handler: reopens the audit log (logrotate moved
/// it away; docs/AUDIT.md) and reloads users, policies and limits (see
/// `registry`). Everything else that should happen on SIGHUP goes here.
async fn on_sighup(shared: Arc<Shared>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; no live reload, no audit log reopen");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        tracing::info!("SIGHUP: reopening the audit log");
        shared.audit.reopen();
        reload(&shared).await;
    }
}

/// Reloads users, policies and limits; logs and counts what changed, or why
/// the old ones keep serving.
pub async fn reload(shared: &Arc<Shared>) {
    let registry = shared.registry.clone();
    let result = tokio::task::spawn_blocking(move || registry.reload()).await;
    shared.metrics.config_reloaded(matches!(result, Ok(Ok(_))));
    match result {
        Ok(Ok(summary)) if summary.restart_needed => tracing::warn!(
            generation = summary.generation,
            "configuration reloaded (users, policies, limits); changes to [listen], [backend], \
             [audit], [metrics] or [log] need a restart"
        ),
        Ok(Ok(summary)) => tracing::info!(
            generation = summary.generation,
            added = ?summary.added,
            removed = ?summary.removed,
            changed = ?summary.changed,
            "configuration reloaded"
        ),
        Ok(Err(e)) => tracing::error!(
            error = %e,
            "configuration reload failed; the previous users and policies keep serving"
        ),
        Err(e) => tracing::error!(error = %e, "configuration reload panicked"),
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(shared.config.listen.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                tracker.spawn(serve_connection(
                    stream,
                    peer,
                    permit,
                    shared.clone(),
                    shutdown.clone(),
                ));
            }
            Err(_) => {
                tracker.spawn(refuse_connection(
                    stream,
                    shared.config.listen.max_connections,
                ));
            }
        }
    }
    drop(listener);
    tracker.close();
    let grace = shared.config.listen.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            "connections still busy after the shutdown grace period"
        );
    }
    // Every record queued by the sessions is written and fsynced before the
    // proxy reports that it stopped (and `serve`/`demo` exit).
    if !shared.audit.flush().await {
        tracing::error!("audit records queued at shutdown could not be written");
    }
    shared.backend.clone().close().await;
}

/// The client over the limit gets MariaDB's 1040 as the first packet, in
/// place of the greeting (no SQLSTATE: the client has not said it speaks
/// protocol 4.1 yet), and is disconnected.
async fn refuse_connection(mut stream: TcpStream, max: usize) {
    let payload = error::err_packet_payload(&error::too_many_connections(max), false);
    let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(&payload);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&packet).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let _connected = GaugeGuard::new(&shared.metrics.client_connections);
    let _ = stream.set_nodelay(true);
    let client = ClientSocket::new(stream);
    let signals = Arc::new(ConnSignals::default());
    signals.set_max_command_bytes(shared.registry.current().limits.max_packet_bytes);
    let listen = &shared.config.listen;
    let socket = SharedSocket::new(client.clone(), listen.write_timeout);
    let mut reader = GuardedReader::new(
        socket.clone(),
        signals.clone(),
        listen.handshake_timeout,
        listen.idle_timeout,
        shutdown,
    );
    if let Some(tls) = &listen.tls {
        let acceptor = TlsAcceptor::from(tls.clone());
        reader = reader.with_tls(Box::new(move |received| {
            Box::pin(client.start_tls(acceptor, received))
        }));
    }
    let writer = BufWriter::with_capacity(
        WRITE_BUFFER_BYTES,
        GuardedWriter::new(socket.clone(), signals.clone()),
    );
    let shim = Shim::new(shared.clone(), signals.clone(), socket.clone(), peer);
    let options = IntermediaryOptions {
        // Every `USE` reaches the guard as a parsed statement (quirk 3).
        process_use_statement_on_query: true,
        reject_connection_on_dbname_absence: false,
    };
    if let Err(e) = AsyncMysqlIntermediary::run_with_options(shim, reader, writer, &options).await {
        if signals.packet_too_large() {
            // As MariaDB: 1153, then the connection is closed.
            let limit = crate::limits::LimitError::Packet {
                max: signals.max_command_bytes(),
            };
            let mut out =
                ResponseWriter::new(socket, signals.response_seq(), signals.client_flags());
            let _ = out.client_error(&error::for_limit(&limit)).await;
        }
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::PermissionDenied => {
                tracing::debug!(client = %peer, error = %e, "connection closed")
            }
            _ => tracing::info!(client = %peer, error = %e, "connection closed"),
        }
    }
}
