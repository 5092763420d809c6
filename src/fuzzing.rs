//! Entry points for the cargo-fuzz targets in `fuzz/` and for the replay of
//! their findings (`tests/fuzz_regressions.rs`): hostile SQL text through the
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
    AsyncMysqlIntermediary, AsyncMysqlShim, ErrorKind, InitWriter, IntermediaryOptions,
    ParamParser, QueryResultWriter, StatementMetaWriter,
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

/// A shim that lets anyone in and answers every command from the guard, so
/// the fuzzer reaches the command phase on every input with a handshake.
struct FuzzShim {
    signals: Arc<ConnSignals>,
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
        info.error(ErrorKind::ER_UNKNOWN_ERROR, b"fuzz").await
    }

    async fn on_execute<'a>(
        &'a mut self,
        id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let mut input = self.signals.statement_input().take();
        if let Some(payload) = input.execute.take() {
            // As many parameters as the statement id says (0..=16), with the
            // types of an earlier execute sometimes remembered.
            let count = (id % 17) as usize;
            let previous: Vec<(u8, bool)> = (0..count).map(|i| (i as u8 * 7, i % 2 == 0)).collect();
            let types = if id & 0x100 != 0 {
                &previous[..]
            } else {
                &[][..]
            };
            let _ = parse_execute(&payload, count, types, &mut input.long_data);
        }
        self.signals.statement_input().put_back(input);
        results.error(ErrorKind::ER_UNKNOWN_ERROR, b"fuzz").await
    }

    async fn on_close<'a>(&'a mut self, _stmt: u32)
    where
        W: 'async_trait,
    {
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
            let shim = FuzzShim { signals };
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

    #[test]
    fn entry_points_take_garbage() {
        guard_text(b"SELECT name FROM products");
        guard_text(&[0xff, 0xfe]);
        front_door(b"");
        front_door(&[0x01, 0, 0, 1, 0x00]);
    }
}
