//! Entry points for the cargo-fuzz targets in `fuzz/` and for the replay of
//! their findings (`tests/hostile_input.rs`): hostile SQL text through the
//! guard, and hostile bytes through the front door (opensrv's handshake and
//! command parsing behind sqlguard's `GuardedReader`/`GuardedWriter`, and
//! `binary::parse_execute`). Pure: no sockets, no database.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter,
    IntermediaryOptions, ParamParser, QueryResultWriter, StatementMetaWriter,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::frontend::binary::parse_execute;
use crate::frontend::wire::{ConnSignals, GuardedReader, GuardedWriter};
use crate::guard::{self, Decision, SessionContext};
use crate::policy::Policy;

/// The bot's shipped policy, compiled once.
fn clawdbot() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        match Policy::from_toml("clawdbot", include_str!("../policies/clawdbot.toml")) {
            Ok(p) => p,
            Err(problems) => panic!("policies/clawdbot.toml: {problems:?}"),
        }
    })
}

fn context() -> SessionContext<'static> {
    SessionContext {
        user: "clawdbot",
        tenant_id: 1,
        database: "shop",
        policy: clawdbot(),
    }
}

/// Arbitrary text through `guard::check` as tenant 1 of the clawdbot policy.
/// Panics (the fuzzer's crash) if the guard panics, or if what it allows
/// does not itself pass the guard again: forwarded SQL must be stable.
pub fn guard_text(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = context();
    if let Decision::Allow { sql: checked, .. } = guard::check(sql, &ctx) {
        // The guard's own output is valid SQL for the guard: a rewrite that
        // produced something it then refuses would be a serializer bug.
        if let Decision::Deny(d) = guard::check(checked.as_str(), &ctx) {
            panic!(
                "allowed {sql:?} as {:?}, which the guard then denies: {}",
                checked.as_str(),
                d.client_message()
            );
        }
    }
}

/// An in-memory client: the fuzz input as what it sends, then EOF.
struct Input {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Input {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = &self.data[self.pos..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// At most this many prepared statements are open on a fuzzed connection
/// (then a prepare is refused), so an input cannot grow memory without end.
const MAX_FUZZ_STATEMENTS: usize = 64;
/// At most this many parameters per fuzzed statement.
const MAX_FUZZ_PARAMS: usize = 64;

/// A prepared statement of the fuzzed connection.
struct FuzzStatement {
    params: usize,
    /// Bound by the last execute that sent types (as a session keeps them).
    types: Vec<(u8, bool)>,
}

/// A shim that lets anyone in and answers every command from the guard, so
/// the fuzzer reaches the command phase on every input with a handshake.
/// Prepares succeed (one parameter per `?`, as MariaDB counts them closely
/// enough here), so opensrv knows the statement ids and COM_STMT_EXECUTE,
/// COM_STMT_SEND_LONG_DATA and COM_STMT_CLOSE reach their handlers.
struct FuzzShim {
    signals: Arc<ConnSignals>,
    statements: HashMap<u32, FuzzStatement>,
    next_id: u32,
}

/// A parameter's metadata in the prepare reply (the real session copies the
/// backend's; its shape does not matter to the client-facing parsers).
fn param_column() -> Column {
    Column {
        table: String::new(),
        column: "?".into(),
        coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
        colflags: ColumnFlags::empty(),
    }
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for FuzzShim {
    type Error = io::Error;

    async fn authenticate(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> bool {
        self.signals.set_authenticated();
        true
    }

    async fn on_prepare<'a>(
        &'a mut self,
        query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        let _ = guard::check_prepared(query, &context());
        if self.statements.len() >= MAX_FUZZ_STATEMENTS {
            return info.error(ErrorKind::ER_UNKNOWN_ERROR, b"fuzz").await;
        }
        let params = query.matches('?').count().min(MAX_FUZZ_PARAMS);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        self.statements.insert(
            id,
            FuzzStatement {
                params,
                types: Vec::new(),
            },
        );
        let columns: Vec<Column> = (0..params).map(|_| param_column()).collect();
        info.reply(id, &columns, &[]).await
    }

    async fn on_execute<'a>(
        &'a mut self,
        id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let mut input = self.signals.statement_input().take();
        if let (Some(payload), Some(statement)) =
            (input.execute.take(), self.statements.get_mut(&id))
        {
            // As the session does: the captured packet, not opensrv's
            // (panicking) parameter parser.
            if let Ok(execute) = parse_execute(
                &payload,
                statement.params,
                &statement.types,
                &mut input.long_data,
            ) {
                #[cfg(test)]
                tests::EXECUTES_PARSED.with(|n| n.set(n.get() + 1));
                if !execute.types.is_empty() {
                    statement.types = execute.types;
                }
            }
        }
        self.signals.statement_input().put_back(input);
        results.error(ErrorKind::ER_UNKNOWN_ERROR, b"fuzz").await
    }

    async fn on_close<'a>(&'a mut self, stmt: u32)
    where
        W: 'async_trait,
    {
        self.statements.remove(&stmt);
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let _ = guard::check(query, &context());
        results.error(ErrorKind::ER_UNKNOWN_ERROR, b"fuzz").await
    }

    async fn on_init<'a>(&'a mut self, db: &'a str, writer: InitWriter<'a, W>) -> io::Result<()> {
        let _ = guard::allow_database(db, &context());
        writer.ok().await
    }
}

/// Arbitrary bytes as everything a client sends on one connection, through
/// sqlguard's reader and writer wrappers and opensrv's protocol handling.
/// Returns when the connection ends; panics are the fuzzer's crashes.
pub fn front_door(data: &[u8]) {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
    }
    RUNTIME.with(|rt| {
        rt.block_on(async {
            // Built inside the runtime: the reader arms its timers here.
            let signals = Arc::new(ConnSignals::default());
            let reader = GuardedReader::new(
                Input {
                    data: data.to_vec(),
                    pos: 0,
                },
                signals.clone(),
                Duration::from_secs(10),
                Duration::from_secs(10),
                CancellationToken::new(),
            );
            let writer = GuardedWriter::new(tokio::io::sink(), signals.clone());
            let shim = FuzzShim {
                signals,
                statements: HashMap::new(),
                next_id: 0,
            };
            let options = IntermediaryOptions {
                process_use_statement_on_query: true,
                reject_connection_on_dbname_absence: false,
            };
            let _ = AsyncMysqlIntermediary::run_with_options(shim, reader, writer, &options).await;
        })
    });
    // The statement-execute parser on its own, on the raw bytes.
    let mut long_data: HashMap<(u32, u16), Vec<u8>> = HashMap::new();
    let count = data.first().map_or(0, |b| usize::from(b % 17));
    let _ = parse_execute(data, count, &[], &mut long_data);
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// COM_STMT_EXECUTEs the fuzz shim parsed successfully on this thread.
        pub(super) static EXECUTES_PARSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// The handshake-and-commands seed reaches the execute handler through
    /// opensrv (the prepare registered the statement id), and both executes
    /// parse: the fuzzer starts from a real login, not from raw bytes.
    #[test]
    fn the_prepare_seed_reaches_the_execute_parser() {
        EXECUTES_PARSED.with(|n| n.set(0));
        front_door(include_bytes!(
            "../tests/data/fuzz-regressions/front_door/seed-prepare-execute"
        ));
        assert_eq!(EXECUTES_PARSED.with(|n| n.get()), 2);
    }

    #[test]
    fn entry_points_take_garbage() {
        guard_text(b"SELECT name FROM products");
        guard_text(&[0xff, 0xfe]);
        front_door(b"");
        front_door(&[0x01, 0, 0, 1, 0x00]);
    }
}
