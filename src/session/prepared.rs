//! Prepared statements (COM_STMT_PREPARE / EXECUTE / CLOSE): the template
//! goes through the same guard as a text query, the *rewritten* template is
//! prepared on the pinned connection, and every bound value is checked
//! against what its placeholder compares with or writes to.

use std::collections::HashMap;
use std::io;

use mysql_async::prelude::Queryable;
use mysql_async::{Statement, Value};
use opensrv_mysql::{Column, ColumnFlags, ColumnType, ErrorKind, StatementMetaWriter};
use tokio::io::AsyncWrite;

use std::time::Instant;

use super::Session;
use super::caching::{self, Plan};
use crate::audit;
use crate::backend::{BackendError, within};
use crate::cache::Format;
use crate::error;
use crate::frontend::binary::{ExecuteError, parse_execute};
use crate::frontend::packets::ResponseWriter;
use crate::frontend::results;
use crate::frontend::wire::StatementInput;
use crate::guard::{self, BoundValue, CheckedSql, Decision, ParamRule, check_bound};
use crate::limits::ResultLimits;

/// Statements one session may hold open. Each pins memory on the backend,
/// and MariaDB's `max_prepared_stmt_count` (16382 by default) is shared by
/// every session: 151 sessions × 64 stay well below it.
pub const MAX_PREPARED_PER_SESSION: usize = 64;

/// A client's prepared statement.
pub(super) struct Prepared {
    /// The template as the client sent it (for the audit log).
    received: String,
    kind: guard::StatementKind,
    lookups: Vec<guard::Lookup>,
    /// Its tables and cacheability, for the result cache.
    access: guard::Access,
    sql: CheckedSql,
    params: Vec<ParamRule>,
    /// The backend's statement; `None` after the pinned connection was lost
    /// (it is prepared again on the next execute).
    backend: Option<Statement>,
    /// Parameter types from the last execute that sent them.
    types: Vec<(u8, bool)>,
    /// The registry generation the template was checked under; after a
    /// reload it is checked again before its next execute.
    generation: u64,
}

#[derive(Default)]
pub(super) struct PreparedStatements {
    by_id: HashMap<u32, Prepared>,
    next_id: u32,
}

impl PreparedStatements {
    /// The pinned connection is gone, and its statements with it.
    pub(super) fn forget_backend(&mut self) {
        for p in self.by_id.values_mut() {
            p.backend = None;
        }
    }
}

/// opensrv's column type for prepare metadata (the backend's; STRING if unknown).
fn meta_column(column: &mysql_async::Column) -> Column {
    Column {
        table: column.table_str().into_owned(),
        column: column.name_str().into_owned(),
        coltype: ColumnType::try_from(column.column_type() as u8)
            .unwrap_or(ColumnType::MYSQL_TYPE_STRING),
        colflags: ColumnFlags::from_bits_truncate(column.flags().bits()),
    }
}

fn bound(value: &Value) -> BoundValue<'_> {
    match value {
        Value::NULL => BoundValue::Null,
        Value::Int(i) => BoundValue::Int(*i),
        Value::UInt(u) => BoundValue::UInt(*u),
        Value::Float(f) => BoundValue::Float(f64::from(*f)),
        Value::Double(f) => BoundValue::Float(*f),
        Value::Bytes(b) => BoundValue::Bytes(b),
        Value::Date(..) | Value::Time(..) => BoundValue::Temporal,
    }
}

impl Session {
    /// COM_STMT_PREPARE.
    pub async fn prepare<W>(
        &mut self,
        sql: &str,
        writer: StatementMetaWriter<'_, W>,
    ) -> io::Result<()>
    where
        W: AsyncWrite + Send + Unpin,
    {
        let started = Instant::now();
        let received = sql;
        let mut entry = self.entry("prepare", received);
        let _permit = match self.admit(received.len()) {
            Ok(permit) => permit,
            Err(refusal) => {
                self.record_refusal(entry, &refusal, started).await;
                let e = refusal.error;
                return writer.error(e.kind, e.message.as_bytes()).await;
            }
        };
        let decision = if self.audit.is_healthy() {
            self.decisions.check_prepared(received, &self.asker())
        } else {
            std::sync::Arc::new(Decision::Deny(super::audit_unavailable()))
        };
        entry.kind = decision.kind().name();
        let (kind, sql, params, lookups, access) = match &*decision {
            Decision::Allow {
                kind,
                sql,
                params,
                rewrites,
                access,
            } => (
                *kind,
                sql.clone(),
                params.clone(),
                rewrites.lookups.clone(),
                access.clone(),
            ),
            Decision::LocalOk { .. } => {
                entry.message = Some("cannot be prepared".into());
                self.finish(entry, "error", started).await;
                return writer
                    .error(
                        ErrorKind::ER_UNSUPPORTED_PS,
                        b"sqlguard: this statement cannot be prepared; send it as a text query",
                    )
                    .await;
            }
            Decision::Deny(denial) => {
                tracing::info!(conn_id = self.conn_id, user = %self.user.name, rule = %denial.rule, "prepare denied");
                let e = error::for_denial(denial);
                self.record_denial(entry, denial, started).await;
                return writer.error(e.kind, e.message.as_bytes()).await;
            }
        };
        if self.prepared.by_id.len() >= MAX_PREPARED_PER_SESSION {
            let message = format!(
                "sqlguard: a session may hold at most {MAX_PREPARED_PER_SESSION} prepared statements; close the ones you no longer need"
            );
            entry.message = Some(message.clone());
            self.finish(entry, "error", started).await;
            return writer
                .error(
                    ErrorKind::ER_MAX_PREPARED_STMT_COUNT_REACHED,
                    message.as_bytes(),
                )
                .await;
        }
        entry.executed_sql = Some(sql.to_string());
        let statement = match self.prepare_on_backend(&sql, params.len()).await {
            Ok(statement) => statement,
            Err(e) => {
                entry.backend_code = Some(e.code());
                let e = error::for_backend(&e);
                entry.message = Some(e.message.clone());
                self.finish(entry, "error", started).await;
                return writer.error(e.kind, e.message.as_bytes()).await;
            }
        };
        self.finish(entry, "allow", started).await;
        let param_meta: Vec<Column> = statement.params().iter().map(meta_column).collect();
        let column_meta: Vec<Column> = statement.columns().iter().map(meta_column).collect();
        self.prepared.next_id = self.prepared.next_id.wrapping_add(1).max(1);
        let id = self.prepared.next_id;
        self.prepared.by_id.insert(
            id,
            Prepared {
                received: received.to_string(),
                kind,
                lookups,
                access,
                sql,
                params,
                backend: Some(statement),
                types: Vec::new(),
                generation: self.generation(),
            },
        );
        writer.reply(id, &param_meta, &column_meta).await
    }

    async fn prepare_on_backend(
        &mut self,
        sql: &CheckedSql,
        expected_params: usize,
    ) -> Result<Statement, BackendError> {
        let deadline = self.backend.deadline();
        let conn = self.pinned().await?;
        let statement = match within(deadline, conn.prep(sql.as_str())).await {
            Ok(s) => s,
            Err(e) => {
                if e.breaks_connection() {
                    self.drop_pinned();
                }
                return Err(e);
            }
        };
        if usize::from(statement.num_params()) != expected_params {
            // The guard numbered the placeholders differently from MariaDB:
            // refuse rather than check values against the wrong columns.
            let _ = conn.close(statement).await;
            return Err(BackendError::Server {
                code: 1210,
                state: "HY000".into(),
                message: "sqlguard: internal: placeholder count mismatch; send the statement as a text query".into(),
            });
        }
        Ok(statement)
    }

    /// COM_STMT_EXECUTE. The parameters are read from `input` (captured from
    /// the byte stream), never through opensrv's parser.
    pub async fn execute(
        &mut self,
        id: u32,
        input: &mut StatementInput,
        mut out: ResponseWriter,
    ) -> io::Result<()> {
        let started = Instant::now();
        let payload = input.execute.take().unwrap_or_default();
        let _permit = match self.admit(0) {
            Ok(permit) => permit,
            Err(refusal) => {
                input.clear_long_data(id);
                let entry = self.entry("execute", "");
                self.record_refusal(entry, &refusal, started).await;
                return out.client_error(&refusal.error).await;
            }
        };
        if let Err(denial) = self.recheck_after_reload(id).await {
            input.clear_long_data(id);
            let entry = self.entry("execute", "");
            self.record_denial(entry, &denial, started).await;
            return out.client_error(&error::for_denial(&denial)).await;
        }
        if !self.audit.is_healthy() {
            let denial = super::audit_unavailable();
            let entry = self.entry("execute", "");
            self.record_denial(entry, &denial, started).await;
            return out.client_error(&error::for_denial(&denial)).await;
        }
        let Some(prepared) = self.prepared.by_id.get_mut(&id) else {
            input.clear_long_data(id);
            return out
                .err(
                    1243,
                    "HY000",
                    &format!(
                        "sqlguard: unknown prepared statement handler ({id}) given to EXECUTE"
                    ),
                )
                .await
                .and(out.flush().await);
        };
        let execute = parse_execute(
            &payload,
            prepared.params.len(),
            &prepared.types,
            &mut input.long_data,
        );
        input.clear_long_data(id);
        let mut execute = match execute {
            Ok(e) => e,
            Err(e @ ExecuteError::Cursor) => {
                return out
                    .err(1235, "42000", &format!("sqlguard: {e}"))
                    .await
                    .and(out.flush().await);
            }
            Err(e) => {
                return out
                    .err(1210, "HY000", &format!("sqlguard: {e}"))
                    .await
                    .and(out.flush().await);
            }
        };
        prepared.types = std::mem::take(&mut execute.types);
        let redact = &self.user.policy.redact;
        let shown: Vec<String> = execute
            .values
            .iter()
            .zip(&prepared.params)
            .map(|(value, rule)| {
                let column = rule.column.as_deref().and_then(|c| c.rsplit('.').next());
                if column.is_some_and(|c| redact.iter().any(|r| r == c)) {
                    "<redacted>".to_string()
                } else {
                    value.as_sql(false)
                }
            })
            .collect();
        let mut entry = audit::Entry {
            conn_id: self.conn_id,
            user: self.user.name.clone(),
            tenant_id: Some(self.user.tenant_id),
            client_addr: self.client_addr_text.clone(),
            command: "execute",
            kind: prepared.kind.name(),
            sql: Some(prepared.received.clone()),
            executed_sql: Some(prepared.sql.to_string()),
            params: Some(shown),
            policy_version: Some(self.user.policy_version.clone()),
            policy: Some(self.user.policy.clone()),
            ..audit::Entry::default()
        };
        for (value, rule) in execute.values.iter_mut().zip(&prepared.params) {
            match check_bound(rule, bound(value), self.user.tenant_id) {
                Ok(None) => {}
                Ok(Some(clamped)) => *value = Value::UInt(clamped),
                Err(denial) => {
                    tracing::info!(conn_id = self.conn_id, user = %self.user.name, rule = %denial.rule, "execute denied");
                    entry.executed_sql = None;
                    self.record_denial(entry, &denial, started).await;
                    return out.client_error(&error::for_denial(&denial)).await;
                }
            }
        }
        let params_key = caching::encode_params(&execute.values);
        let Some(prepared) = self.prepared.by_id.get(&id) else {
            return out
                .err(1243, "HY000", "sqlguard: statement lost")
                .await
                .and(out.flush().await);
        };
        let plan = self.cache_plan(
            prepared.kind,
            &prepared.access,
            prepared.sql.as_str(),
            &params_key,
            Format::Binary,
        );
        entry.cache = plan.audit();
        if let Plan::Hit(rows) = &plan {
            return self.answer_from_cache(entry, rows, started, &mut out).await;
        }
        let (kind, sql) = (prepared.kind, prepared.sql.clone());
        if prepared.backend.is_none() || self.pinned.as_ref().is_none_or(|c| c.is_disconnected()) {
            let (sql, count) = (prepared.sql.clone(), prepared.params.len());
            match self.prepare_on_backend(&sql, count).await {
                Ok(statement) => {
                    if let Some(p) = self.prepared.by_id.get_mut(&id) {
                        p.backend = Some(statement);
                    }
                }
                Err(e) => {
                    return out.client_error(&error::for_backend(&e)).await;
                }
            }
        }
        let statement = match self.prepared.by_id.get(&id).and_then(|p| p.backend.clone()) {
            Some(s) => s,
            None => {
                return out
                    .err(1243, "HY000", "sqlguard: statement lost")
                    .await
                    .and(out.flush().await);
            }
        };
        let backend_started = Instant::now();
        let lookups = self
            .prepared
            .by_id
            .get(&id)
            .map(|p| p.lookups.clone())
            .unwrap_or_default();
        let deadline = self.backend.deadline();
        let limits = ResultLimits::of(&self.user.limits);
        self.capture_for(&plan, &mut out);
        let conn = match self.pinned().await {
            Ok(conn) => conn,
            Err(e) => return out.client_error(&error::for_backend(&e)).await,
        };
        let outcome = match results::run_prepared(
            conn,
            &statement,
            execute.values,
            &lookups,
            deadline,
            limits,
            &mut out,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(e) => return Err(self.client_gone(entry, started, e).await),
        };
        entry.backend_us = Some(super::micros(backend_started));
        self.after_forwarded(
            kind,
            sql.as_str(),
            &params_key,
            Format::Binary,
            plan,
            &outcome,
            &mut out,
        );
        self.record_outcome(entry, &outcome, started).await;
        self.after_statement(&outcome);
        Ok(())
    }

    /// A statement prepared before a reload is checked again under the
    /// policy now in force: refused if that policy refuses it, prepared again
    /// on the backend if the rewritten text changed (e.g. a new LIMIT).
    async fn recheck_after_reload(&mut self, id: u32) -> Result<(), guard::Denial> {
        let generation = self.generation();
        let Some(received) = self
            .prepared
            .by_id
            .get(&id)
            .filter(|p| p.generation != generation)
            .map(|p| p.received.clone())
        else {
            return Ok(());
        };
        let (kind, sql, params, lookups, access) =
            match guard::check_prepared(&received, &self.context()) {
                Decision::Allow {
                    kind,
                    sql,
                    params,
                    rewrites,
                    access,
                } => (kind, sql, params, rewrites.lookups, access),
                Decision::Deny(denial) => return Err(denial),
                Decision::LocalOk { kind } => {
                    return Err(guard::Denial::new(
                        guard::Rule::StatementNotAllowed,
                        kind,
                        "this statement cannot be prepared",
                        Some("send it as a text query".into()),
                    ));
                }
            };
        let Some(prepared) = self.prepared.by_id.get_mut(&id) else {
            return Ok(());
        };
        let stale =
            if prepared.sql.as_str() != sql.as_str() || prepared.params.len() != params.len() {
                prepared.backend.take()
            } else {
                None
            };
        prepared.kind = kind;
        prepared.sql = sql;
        prepared.params = params;
        prepared.lookups = lookups;
        prepared.access = access;
        prepared.generation = generation;
        if let (Some(statement), Some(conn)) = (stale, self.pinned.as_mut()) {
            if conn.close(statement).await.is_err() {
                self.drop_pinned();
            }
        }
        Ok(())
    }

    /// COM_STMT_CLOSE (no reply): frees the statement here and on the backend.
    pub async fn close_prepared(&mut self, id: u32) {
        if let Some(prepared) = self.prepared.by_id.remove(&id) {
            if let (Some(statement), Some(conn)) = (prepared.backend, self.pinned.as_mut()) {
                let deadline = self.backend.deadline();
                if within(deadline, conn.close(statement)).await.is_err() {
                    self.drop_pinned();
                }
            }
        }
    }

    /// How many prepared statements the session holds (for tests and metrics).
    pub fn prepared_count(&self) -> usize {
        self.prepared.by_id.len()
    }
}
