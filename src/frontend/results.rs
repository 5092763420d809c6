//! Backend results → client packets, streamed row by row (a million-row
//! SELECT is never held in memory). Text-protocol values are the exact bytes
//! MariaDB produced, so DECIMAL, DATETIME(6), JSON and UUID arrive as printed.

use std::io;

use mysql_async::consts::ColumnFlags as BackendFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, QueryResult, TextProtocol, Value};
use opensrv_mysql::{Column, ColumnFlags, ColumnType, OkResponse, QueryResultWriter, StatusFlags};
use tokio::io::AsyncWrite;

use crate::backend::BackendError;
use crate::error;

/// What happened to a forwarded statement, for the session (and the audit log).
#[derive(Debug)]
pub struct Outcome {
    /// Rows returned, or rows affected.
    pub rows: u64,
    /// Set if the backend failed; the client has already been told.
    pub backend_error: Option<BackendError>,
}

/// Flags that describe the column's value, copied so drivers see what
/// MariaDB said (opensrv 0.7 cannot carry charset, length or decimals).
const PASSED_FLAGS: BackendFlags = BackendFlags::from_bits_truncate(
    BackendFlags::NOT_NULL_FLAG.bits()
        | BackendFlags::PRI_KEY_FLAG.bits()
        | BackendFlags::UNIQUE_KEY_FLAG.bits()
        | BackendFlags::MULTIPLE_KEY_FLAG.bits()
        | BackendFlags::BLOB_FLAG.bits()
        | BackendFlags::UNSIGNED_FLAG.bits()
        | BackendFlags::ZEROFILL_FLAG.bits()
        | BackendFlags::BINARY_FLAG.bits()
        | BackendFlags::ENUM_FLAG.bits()
        | BackendFlags::AUTO_INCREMENT_FLAG.bits()
        | BackendFlags::TIMESTAMP_FLAG.bits()
        | BackendFlags::SET_FLAG.bits()
        | BackendFlags::NUM_FLAG.bits(),
);

pub fn convert_column(column: &mysql_async::Column) -> Column {
    let coltype = ColumnType::try_from(column.column_type() as u8)
        .unwrap_or(ColumnType::MYSQL_TYPE_STRING);
    let flags = column.flags() & PASSED_FLAGS;
    Column {
        table: column.table_str().into_owned(),
        column: column.name_str().into_owned(),
        coltype,
        colflags: ColumnFlags::from_bits_truncate(flags.bits()),
    }
}

/// Runs `sql` on `conn` and streams its result (rows, or an OK) to the client.
/// `Err` only for client I/O errors; backend errors are written to the client
/// and reported in the [`Outcome`].
pub async fn run_text_query<W>(
    conn: &mut Conn,
    sql: &str,
    client_tracks_session: bool,
    writer: QueryResultWriter<'_, W>,
) -> io::Result<Outcome>
where
    W: AsyncWrite + Send + Unpin,
{
    let mut result = match conn.query_iter(sql).await {
        Ok(result) => result,
        Err(e) => return write_error(BackendError::from_statement(e), writer).await,
    };
    let columns: Vec<Column> = result.columns_ref().iter().map(convert_column).collect();
    if columns.is_empty() {
        return match finish_ok(result, client_tracks_session).await {
            Ok(mut ok) => {
                ok.status_flags = backend_status(conn);
                let rows = ok.affected_rows;
                writer.completed(ok).await?;
                Ok(Outcome {
                    rows,
                    backend_error: None,
                })
            }
            Err(e) => write_error(e, writer).await,
        };
    }
    let mut rows = writer.start(&columns).await?;
    let mut count = 0u64;
    loop {
        match result.next().await {
            Ok(Some(row)) => {
                for i in 0..columns.len() {
                    match row.as_ref(i) {
                        Some(Value::Bytes(bytes)) => rows.write_col(bytes.as_slice())?,
                        Some(Value::NULL) | None => rows.write_col(None::<&[u8]>)?,
                        // The text protocol only yields bytes and NULL; anything
                        // else would be a driver change, so fail this one result.
                        Some(_) => {
                            let e = BackendError::ConnectionLost(
                                "unexpected binary value in a text result".into(),
                            );
                            let client = error::for_backend(&e);
                            rows.finish_error(client.kind, &client.message.as_bytes())
                                .await?;
                            return Ok(Outcome {
                                rows: count,
                                backend_error: Some(e),
                            });
                        }
                    }
                }
                rows.end_row().await?;
                count += 1;
            }
            Ok(None) => break,
            Err(e) => {
                let e = BackendError::from_statement(e);
                let client = error::for_backend(&e);
                rows.finish_error(client.kind, &client.message.as_bytes())
                    .await?;
                return Ok(Outcome {
                    rows: count,
                    backend_error: Some(e),
                });
            }
        }
    }
    rows.finish().await?;
    Ok(Outcome {
        rows: count,
        backend_error: None,
    })
}

async fn write_error<W>(e: BackendError, writer: QueryResultWriter<'_, W>) -> io::Result<Outcome>
where
    W: AsyncWrite + Send + Unpin,
{
    let client = error::for_backend(&e);
    writer.error(client.kind, client.message.as_bytes()).await?;
    Ok(Outcome {
        rows: 0,
        backend_error: Some(e),
    })
}

/// Consumes a result without rows and returns its counters.
async fn finish_ok(
    mut result: QueryResult<'_, '_, TextProtocol>,
    client_tracks_session: bool,
) -> Result<OkResponse, BackendError> {
    // Consume the (empty) result so the connection is ready for the next one.
    result.next().await.map_err(BackendError::from_statement)?;
    Ok(OkResponse {
        affected_rows: result.affected_rows(),
        last_insert_id: result.last_insert_id().unwrap_or(0),
        warnings: result.warnings(),
        info: ok_info(&result.info(), client_tracks_session),
        ..OkResponse::default()
    })
}

/// MariaDB always length-encodes the OK packet's info ("Rows matched: 1
/// Changed: 1 Warnings: 0"); opensrv does so only for clients that announced
/// CLIENT_SESSION_TRACK and writes it raw otherwise, which drivers misread as
/// a length. For those clients the length byte is written here.
fn ok_info(info: &str, client_tracks_session: bool) -> String {
    if client_tracks_session || info.is_empty() {
        return info.to_string();
    }
    // A one-byte length must be ASCII to live in a String; MariaDB's info
    // messages are ASCII and far shorter.
    if info.len() >= 0x80 {
        return String::new();
    }
    let mut encoded = String::with_capacity(info.len() + 1);
    encoded.push(char::from(info.len() as u8));
    encoded.push_str(info);
    encoded
}

/// The backend's status flags (in transaction, autocommit) after a statement.
fn backend_status(conn: &Conn) -> StatusFlags {
    let flags = conn
        .last_ok_packet()
        .map(|ok| StatusFlags::from_bits_truncate(ok.status_flags().bits()))
        .unwrap_or(StatusFlags::SERVER_STATUS_AUTOCOMMIT);
    // Session-state tracking data is not forwarded, so do not announce it.
    flags - StatusFlags::SERVER_SESSION_STATE_CHANGED
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
    fn ok_info_is_length_encoded_unless_opensrv_does_it() {
        assert_eq!(ok_info("Records: 2", false), "\u{a}Records: 2");
        assert_eq!(ok_info("Records: 2", true), "Records: 2");
        assert_eq!(ok_info("", false), "");
        assert_eq!(ok_info(&"x".repeat(200), false), "");
    }
}
