//! The opensrv-mysql callbacks for one connection. Thin on purpose: it
//! overrides opensrv's insecure defaults (fixed scramble and connection id,
//! `authenticate` = true) and hands every command to the [`Session`].

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use opensrv_mysql::{
    AsyncMysqlShim, ErrorKind, InitWriter, ParamParser, QueryResultWriter, StatementMetaWriter,
};

use crate::config::UserConfig;
use crate::error;
use crate::frontend::auth::{NativePasswordHash, SCRAMBLE_LEN, new_scramble};
use crate::frontend::listener::{ClientWriter, Shared};
use crate::frontend::packets::{ResponseWriter, SharedSocket};
use crate::frontend::wire::ConnSignals;
use crate::limits::ConnectionSlot;
use crate::session::Session;

/// A successful login, until the session takes it over.
struct Login {
    user: Arc<UserConfig>,
    /// The registry generation `user` was read from.
    generation: u64,
    /// The user's connection slot (`max_user_connections`).
    slot: ConnectionSlot,
}

/// The only authentication plugin sqlguard offers and accepts.
const NATIVE_PASSWORD: &str = "mysql_native_password";

pub struct Shim {
    shared: Arc<Shared>,
    signals: Arc<ConnSignals>,
    conn_id: u32,
    client_addr: SocketAddr,
    /// Random per connection; opensrv asks for it twice (greeting and auth
    /// check), so it is drawn once here.
    scramble: [u8; SCRAMBLE_LEN],
    version: String,
    /// Set by `authenticate` (which only gets `&self`).
    login: OnceLock<Login>,
    session: Option<Session>,
    /// Where query responses are written (frontend/packets.rs).
    socket: SharedSocket,
}

impl Shim {
    pub fn new(
        shared: Arc<Shared>,
        signals: Arc<ConnSignals>,
        socket: SharedSocket,
        client_addr: SocketAddr,
        conn_id: u32,
    ) -> Self {
        let version = shared.advertised_version();
        Shim {
            shared,
            signals,
            conn_id,
            client_addr,
            scramble: new_scramble(),
            version,
            login: OnceLock::new(),
            session: None,
            socket,
        }
    }

    /// The session, once logged in. opensrv runs the command loop even when a
    /// handshake carried no user name (and so was never authenticated); every
    /// command goes through here, so such a connection gets nowhere.
    fn session(&mut self) -> Option<&mut Session> {
        if self.session.is_none() {
            let login = self.login.take()?;
            self.session = Some(Session::new(
                self.conn_id,
                self.client_addr,
                login.user,
                self.shared.registry.clone(),
                login.generation,
                login.slot,
                self.shared.backend.clone(),
                self.shared.audit.clone(),
                self.shared.metrics.clone(),
                self.shared.decisions.clone(),
                self.shared.results.clone(),
            ));
        }
        self.session.as_mut()
    }

    fn not_logged_in() -> (ErrorKind, &'static str, io::Error) {
        (
            ErrorKind::ER_ACCESS_DENIED_ERROR,
            "sqlguard: not logged in",
            io::Error::new(io::ErrorKind::PermissionDenied, "command before login"),
        )
    }

    fn check_login(&self, username: &[u8], auth_data: &[u8]) -> Option<(Arc<UserConfig>, u64)> {
        let name = std::str::from_utf8(username).ok()?;
        let catalog = self.shared.registry.current();
        match catalog.users.get(name) {
            Some(user) => user
                .password_hash
                .verify(&self.scramble, auth_data)
                .then(|| (user.clone(), catalog.generation)),
            None => {
                // Same work as for a real user, so timing does not reveal names.
                let _ = NativePasswordHash::of_password(b"").verify(&self.scramble, auth_data);
                None
            }
        }
    }
}

#[async_trait]
impl AsyncMysqlShim<ClientWriter> for Shim {
    type Error = io::Error;

    fn version(&self) -> String {
        self.version.clone()
    }

    fn connect_id(&self) -> u32 {
        self.conn_id
    }

    fn default_auth_plugin(&self) -> &str {
        NATIVE_PASSWORD
    }

    async fn auth_plugin_for_username(&self, _user: &[u8]) -> &str {
        NATIVE_PASSWORD
    }

    fn salt(&self) -> [u8; SCRAMBLE_LEN] {
        self.scramble
    }

    async fn authenticate(
        &self,
        auth_plugin: &str,
        username: &[u8],
        _salt: &[u8],
        auth_data: &[u8],
    ) -> bool {
        let user = if auth_plugin == NATIVE_PASSWORD {
            self.check_login(username, auth_data)
        } else {
            None
        };
        let name = String::from_utf8_lossy(username);
        let refusal = match user {
            None => {
                // The name is what the client sent: Debug-quoted, so it cannot forge log lines.
                tracing::warn!(conn_id = self.conn_id, user = ?name, client = %self.client_addr, "login failed");
                let e = error::access_denied(
                    &name,
                    &self.client_addr.ip().to_string(),
                    !auth_data.is_empty(),
                );
                ("authentication", e)
            }
            Some((user, _)) if user.require_tls && !self.signals.is_tls() => {
                tracing::warn!(conn_id = self.conn_id, user = %user.name, client = %self.client_addr, "login refused: require_tls over plain TCP");
                let host = self.client_addr.ip().to_string();
                ("require_tls", error::tls_required(&name, &host))
            }
            Some((user, generation)) => {
                let counters = self.shared.registry.counters.of(&user.name);
                match counters.connect(&user.limits) {
                    Ok(slot) => {
                        tracing::debug!(conn_id = self.conn_id, user = %user.name, tls = self.signals.is_tls(), "login");
                        let _ = self.login.set(Login {
                            user,
                            generation,
                            slot,
                        });
                        self.signals.set_authenticated();
                        return true;
                    }
                    Err(limit) => {
                        tracing::warn!(conn_id = self.conn_id, user = %name, client = %self.client_addr, "{limit}");
                        (limit.rule(), error::for_limit(&limit))
                    }
                }
            }
        };
        let (rule, e) = refusal;
        self.shared
            .audit
            .write(crate::audit::Entry {
                conn_id: self.conn_id,
                user: name.to_string(),
                client_addr: self.client_addr.to_string(),
                command: "login",
                kind: "login",
                decision: "deny",
                rule: Some(rule),
                message: Some(e.message.clone()),
                ..crate::audit::Entry::default()
            })
            .await;
        self.signals
            .replace_auth_failure(error::err_packet_payload(&e, true));
        false
    }

    async fn on_init<'a>(
        &'a mut self,
        database: &'a str,
        writer: InitWriter<'a, ClientWriter>,
    ) -> io::Result<()> {
        let Some(session) = self.session() else {
            let (kind, msg, err) = Self::not_logged_in();
            writer.error(kind, msg.as_bytes()).await?;
            return Err(err);
        };
        let result = match session.allow_database(database) {
            Ok(()) => writer.ok().await,
            Err(e) => writer.error(e.kind, e.message.as_bytes()).await,
        };
        self.signals.command_done();
        result
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        writer: QueryResultWriter<'a, ClientWriter>,
    ) -> io::Result<()> {
        let reset = self.signals.take_reset_request();
        let signals = self.signals.clone();
        let socket = self.socket.clone();
        let Some(session) = self.session() else {
            let (kind, msg, err) = Self::not_logged_in();
            writer.error(kind, msg.as_bytes()).await?;
            return Err(err);
        };
        if reset {
            session.reset_backend().await;
        }
        // The panic-isolation test's way into a real session; not compiled
        // outside `cargo test --lib`, so no SQL text can reach it in a build.
        #[cfg(test)]
        if query == crate::frontend::listener::TEST_PANIC_QUERY {
            panic!("injected by the panic-isolation test");
        }
        let response = ResponseWriter::new(socket, signals.response_seq(), signals.client_flags());
        let result = session.query(query, writer, response).await;
        signals.command_done();
        result
    }

    async fn on_prepare<'a>(
        &'a mut self,
        query: &'a str,
        writer: StatementMetaWriter<'a, ClientWriter>,
    ) -> io::Result<()> {
        let signals = self.signals.clone();
        let Some(session) = self.session() else {
            let (kind, msg, err) = Self::not_logged_in();
            writer.error(kind, msg.as_bytes()).await?;
            return Err(err);
        };
        let result = session.prepare(query, writer).await;
        signals.command_done();
        result
    }

    async fn on_execute<'a>(
        &'a mut self,
        id: u32,
        // opensrv's parser panics on malformed input; the parameters are
        // read from the captured packet instead (frontend/binary.rs).
        _params: ParamParser<'a>,
        writer: QueryResultWriter<'a, ClientWriter>,
    ) -> io::Result<()> {
        let signals = self.signals.clone();
        let socket = self.socket.clone();
        let Some(session) = self.session() else {
            let (kind, msg, err) = Self::not_logged_in();
            writer.error(kind, msg.as_bytes()).await?;
            return Err(err);
        };
        drop(writer);
        let mut input = signals.statement_input().take();
        let response = ResponseWriter::new(socket, signals.response_seq(), signals.client_flags());
        let result = session.execute(id, &mut input, response).await;
        signals.statement_input().put_back(input);
        signals.command_done();
        result
    }

    async fn on_close<'a>(&'a mut self, id: u32)
    where
        ClientWriter: 'async_trait,
    {
        if let Some(session) = self.session() {
            session.close_prepared(id).await;
        }
    }
}
