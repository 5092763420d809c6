//! Runs a checked statement on the pinned connection and streams its result
//! to the client row by row (a million-row SELECT is never held in memory).
//! Text-protocol values are the exact bytes MariaDB produced, so DECIMAL,
//! DATETIME(6), JSON and UUID arrive as printed; column definitions, status
//! flags, warnings and errors are MariaDB's own.

use std::io;

use mysql_async::prelude::{Protocol, Queryable};
use mysql_async::{Conn, Params, QueryResult, Statement, Value};
use opensrv_mysql::{OkResponse, StatusFlags};

use tokio::time::Instant;

use crate::backend::{BackendError, within};
use crate::error;
use crate::frontend::packets::ResponseWriter;
use crate::guard::Lookup;
use crate::limits::{LimitError, ResultLimits};

/// What happened to a forwarded statement, for the session (and the audit log).
#[derive(Debug)]
pub struct Outcome {
    /// Rows returned, or rows affected.
    pub rows: u64,
    /// Set if the backend failed; the client has already been told.
    pub backend_error: Option<BackendError>,
    /// Set if the result outgrew `max_result_rows`/`max_result_bytes`: the
    /// client got an error after the rows sent so far, never a complete-looking result.
    pub limit: Option<LimitError>,
}

impl Outcome {
    fn failed(rows: u64, error: BackendError) -> Self {
        Outcome {
            rows,
            backend_error: Some(error),
            limit: None,
        }
    }
}

/// Runs `sql` on `conn` and writes its result (rows, or an OK) to the client.
/// `Err` only for client I/O errors; backend errors are written to the client
/// and reported in the [`Outcome`].
/// Every wait on the backend ends at `deadline` (then the error is
/// [`BackendError::Timeout`] and the caller must discard the connection).
pub async fn run_text_query(
    conn: &mut Conn,
    sql: &str,
    lookups: &[Lookup],
    deadline: Option<Instant>,
    limits: ResultLimits,
    out: &mut ResponseWriter,
) -> io::Result<Outcome> {
    let status_before = backend_status(conn);
    let result = match within(deadline, conn.query_iter(sql)).await {
        Ok(result) => result,
        Err(e) => return write_error(explain(e, lookups), 0, out).await,
    };
    let outcome = write_result(
        result,
        RowFormat::Text,
        status_before,
        deadline,
        limits,
        out,
    )
    .await?;
    end_response(conn, outcome, out).await
}

/// Executes a prepared statement with bound values and streams its binary
/// result (or OK) to the client, as [`run_text_query`] does for text.
pub async fn run_prepared(
    conn: &mut Conn,
    statement: &Statement,
    values: Vec<Value>,
    lookups: &[Lookup],
    deadline: Option<Instant>,
    limits: ResultLimits,
    out: &mut ResponseWriter,
) -> io::Result<Outcome> {
    let status_before = backend_status(conn);
    let params = if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    };
    let result = match within(deadline, conn.exec_iter(statement, params)).await {
        Ok(result) => result,
        Err(e) => return write_error(explain(e, lookups), 0, out).await,
    };
    let outcome = write_result(
        result,
        RowFormat::Binary,
        status_before,
        deadline,
        limits,
        out,
    )
    .await?;
    end_response(conn, outcome, out).await
}

/// Rows or an OK, whichever the backend answered.
async fn write_result<P: Protocol>(
    result: QueryResult<'_, '_, P>,
    format: RowFormat,
    status_before: u16,
    deadline: Option<Instant>,
    limits: ResultLimits,
    out: &mut ResponseWriter,
) -> io::Result<Finished> {
    if result.columns_ref().is_empty() {
        finish_ok(result, deadline, out).await
    } else {
        stream_rows(result, format, status_before, deadline, limits, out).await
    }
}

async fn end_response(
    conn: &mut Conn,
    outcome: Finished,
    out: &mut ResponseWriter,
) -> io::Result<Outcome> {
    // The result is consumed, so the backend's final OK (warnings, status
    // flags) is known and the response can be ended with it.
    let (warnings, status) = last_warnings_and_status(conn);
    match outcome.end {
        Some(End::Rows) => out.result_end(warnings, status).await?,
        Some(End::Ok {
            affected_rows,
            last_insert_id,
            info,
        }) => {
            out.ok(affected_rows, last_insert_id, status, warnings, &info)
                .await?
        }
        None => {}
    }
    out.flush().await?;
    Ok(outcome.outcome)
}

/// How a response still has to be ended once the backend is done.
enum End {
    Rows,
    Ok {
        affected_rows: u64,
        last_insert_id: u64,
        info: Vec<u8>,
    },
}

struct Finished {
    outcome: Outcome,
    /// `None` when an error packet already ended the response.
    end: Option<End>,
}

impl Finished {
    fn error(outcome: Outcome) -> Self {
        Finished { outcome, end: None }
    }
}

#[derive(Clone, Copy)]
enum RowFormat {
    Text,
    Binary,
}

async fn stream_rows<P: Protocol>(
    mut result: QueryResult<'_, '_, P>,
    format: RowFormat,
    status_before: u16,
    deadline: Option<Instant>,
    limits: ResultLimits,
    out: &mut ResponseWriter,
) -> io::Result<Finished> {
    let columns = result.columns().unwrap_or_default();
    out.result_header(&columns, status_before).await?;
    let mut count = 0u64;
    loop {
        // A result cut short (database killed, deadline) ends with an ERR
        // packet in place of the terminator, so no client takes it as complete.
        let next = within(deadline, result.next()).await;
        if let Ok(Some(_)) = next {
            let row_allowed = limits
                .check_rows(count)
                .and_then(|()| limits.check_bytes(out.bytes()));
            if let Err(limit) = row_allowed {
                return too_big(result, limit, count, deadline, out).await;
            }
        }
        match next {
            Ok(Some(row)) if matches!(format, RowFormat::Binary) => {
                out.binary_row(&columns, &row).await?;
                count += 1;
            }
            Ok(Some(row)) => {
                let mut unexpected = false;
                let values = (0..columns.len()).map(|i| match row.as_ref(i) {
                    Some(Value::Bytes(bytes)) => Some(bytes.as_slice()),
                    Some(Value::NULL) | None => None,
                    // The text protocol only yields bytes and NULL.
                    Some(_) => {
                        unexpected = true;
                        None
                    }
                });
                out.text_row(values).await?;
                if unexpected {
                    let e = BackendError::ConnectionLost(
                        "unexpected binary value in a text result".into(),
                    );
                    return Ok(Finished::error(write_error(e, count, out).await?));
                }
                count += 1;
            }
            Ok(None) => break,
            Err(e) => return Ok(Finished::error(write_error(e, count, out).await?)),
        }
    }
    // Any further result set (there is none for a single statement) is
    // drained by mysql_async before the next query.
    Ok(Finished {
        outcome: Outcome {
            rows: count,
            backend_error: None,
            limit: None,
        },
        end: Some(End::Rows),
    })
}

/// The result outgrew the limits: an error ends the response (so the client
/// never takes the rows sent as complete), and the rest of the result is
/// read and discarded so the connection (and its transaction) stays usable.
async fn too_big<P: Protocol>(
    result: QueryResult<'_, '_, P>,
    limit: LimitError,
    rows: u64,
    deadline: Option<Instant>,
    out: &mut ResponseWriter,
) -> io::Result<Finished> {
    out.client_error(&error::for_limit(&limit)).await?;
    let backend_error = within(deadline, result.drop_result()).await.err();
    Ok(Finished::error(Outcome {
        rows,
        backend_error,
        limit: Some(limit),
    }))
}

/// Consumes a result without rows and keeps its counters.
async fn finish_ok<P: Protocol>(
    mut result: QueryResult<'_, '_, P>,
    deadline: Option<Instant>,
    out: &mut ResponseWriter,
) -> io::Result<Finished> {
    if let Err(e) = within(deadline, result.next()).await {
        return Ok(Finished::error(write_error(e, 0, out).await?));
    }
    let affected_rows = result.affected_rows();
    Ok(Finished {
        outcome: Outcome {
            rows: affected_rows,
            backend_error: None,
            limit: None,
        },
        end: Some(End::Ok {
            affected_rows,
            last_insert_id: result.last_insert_id().unwrap_or(0),
            info: result.info().as_bytes().to_vec(),
        }),
    })
}

/// MariaDB refuses the NULL of a tenant lookup that found nothing with
/// "Column 'x' cannot be null" (1048); say what it means instead.
fn explain(error: BackendError, lookups: &[Lookup]) -> BackendError {
    const ER_BAD_NULL_ERROR: u16 = 1048;
    match error {
        BackendError::Server {
            code: ER_BAD_NULL_ERROR,
            state,
            message,
        } => {
            let hit = lookups
                .iter()
                .find(|l| message.contains(&format!("'{}'", l.column)));
            let message = match hit {
                Some(l) => format!("sqlguard: {} (rule: tenant_scope)", l.message),
                None => message,
            };
            BackendError::Server {
                code: ER_BAD_NULL_ERROR,
                state,
                message,
            }
        }
        other => other,
    }
}

/// A backend error goes to the client with MariaDB's own code, SQLSTATE and
/// message; sqlguard's own (connection lost, ...) with its `sqlguard:` text.
async fn write_error(e: BackendError, rows: u64, out: &mut ResponseWriter) -> io::Result<Outcome> {
    match &e {
        BackendError::Server {
            code,
            state,
            message,
        } => out.err(*code, state, message).await?,
        other => out.client_error(&error::for_backend(other)).await?,
    }
    out.flush().await?;
    Ok(Outcome::failed(rows, e))
}

/// The backend's status flags (in transaction, autocommit) as of its last OK.
fn backend_status(conn: &Conn) -> u16 {
    last_warnings_and_status(conn).1
}

fn last_warnings_and_status(conn: &Conn) -> (u16, u16) {
    match conn.last_ok_packet() {
        Some(ok) => (ok.warnings(), ok.status_flags().bits()),
        None => (0, StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits()),
    }
}

/// The OK for statements sqlguard answers itself (e.g. `USE` of the session's database).
pub fn local_ok() -> OkResponse {
    OkResponse {
        status_flags: StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        ..OkResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_lookups_are_explained() {
        let lookups = [Lookup {
            column: "conversation_id".into(),
            message: "conversation_id must name one of your conversations rows".into(),
        }];
        let e = explain(
            BackendError::Server {
                code: 1048,
                state: "23000".into(),
                message: "Column 'conversation_id' cannot be null".into(),
            },
            &lookups,
        );
        match e {
            BackendError::Server { code, message, .. } => {
                assert_eq!(code, 1048);
                assert!(
                    message.starts_with("sqlguard: conversation_id must name"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
