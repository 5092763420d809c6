//! The one place where an error a client sees becomes a MySQL error code and
//! message. Everything sqlguard says itself starts with `sqlguard:`.

use opensrv_mysql::ErrorKind;

use crate::backend::BackendError;
use crate::guard::{Denial, DenyClass};
use crate::limits::LimitError;

/// What goes into a MySQL ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The error codes opensrv-mysql 0.7 can name. `ErrorKind::from(u16)` panics
/// outside this range (ARCHITECTURE.md, quirk 5), so every conversion from a
/// number goes through [`error_kind`].
const KNOWN_CODES: std::ops::RangeInclusive<u16> = 1000..=1885;

/// A checked `u16 -> ErrorKind`; `None` for codes opensrv does not know
/// (MariaDB's 19xx/4xxx codes, MySQL's 3xxx).
pub fn error_kind(code: u16) -> Option<ErrorKind> {
    if KNOWN_CODES.contains(&code) {
        Some(ErrorKind::from(code))
    } else {
        None
    }
}

pub fn for_denial(denial: &Denial) -> ClientError {
    let kind = match denial.rule.class() {
        DenyClass::TableAccess => ErrorKind::ER_TABLEACCESS_DENIED_ERROR,
        DenyClass::Statement => ErrorKind::ER_SPECIFIC_ACCESS_DENIED_ERROR,
        DenyClass::Parse => ErrorKind::ER_PARSE_ERROR,
        DenyClass::Value => ErrorKind::ER_WRONG_VALUE_FOR_TYPE,
        DenyClass::DatabaseAccess => ErrorKind::ER_DBACCESS_DENIED_ERROR,
    };
    ClientError {
        kind,
        message: denial.client_message(),
    }
}

pub fn for_backend(error: &BackendError) -> ClientError {
    match error {
        // The database's own errors go to the client with their own code and
        // message, as if it had talked to MariaDB directly.
        BackendError::Server { code, message, .. } => match error_kind(*code) {
            Some(kind) => ClientError {
                kind,
                message: message.clone(),
            },
            None => ClientError {
                kind: ErrorKind::ER_UNKNOWN_ERROR,
                message: format!("{message} (MariaDB error {code})"),
            },
        },
        BackendError::Unavailable(reason) => ClientError {
            kind: ErrorKind::ER_UNKNOWN_ERROR,
            message: format!(
                "sqlguard: the database is unavailable ({reason}); nothing was executed, retry in a moment"
            ),
        },
        BackendError::Timeout => ClientError {
            kind: ErrorKind::ER_QUERY_INTERRUPTED,
            message: "sqlguard: the database did not answer in time (backend.query_timeout); \
                      the statement was abandoned and its outcome is unknown; the connection \
                      was closed, so an open transaction was rolled back"
                .into(),
        },
        BackendError::ConnectionLost(reason) => ClientError {
            kind: ErrorKind::ER_UNKNOWN_ERROR,
            message: format!(
                "sqlguard: the connection to the database was lost ({reason}); \
                 an open transaction was rolled back, retry the statement"
            ),
        },
    }
}

/// Login refused: 1045, worded like MariaDB's own message.
pub fn access_denied(user: &str, host: &str, used_password: bool) -> ClientError {
    ClientError {
        kind: ErrorKind::ER_ACCESS_DENIED_ERROR,
        message: format!(
            "sqlguard: Access denied for user '{user}'@'{host}' (using password: {})",
            if used_password { "YES" } else { "NO" }
        ),
    }
}

/// A `require_tls` user logged in with the right password over plain TCP:
/// 1045 like any refused login (MariaDB answers REQUIRE SSL accounts the
/// same way), with the reason, which only a client that knows the password sees.
pub fn tls_required(user: &str, host: &str) -> ClientError {
    ClientError {
        kind: ErrorKind::ER_ACCESS_DENIED_ERROR,
        message: format!(
            "sqlguard: Access denied for user '{user}'@'{host}' (using password: YES): this user must connect with TLS (e.g. mariadb --ssl, mysql2 ssl option)"
        ),
    }
}

/// `listen.max_connections` reached: 1040.
pub fn too_many_connections(max: usize) -> ClientError {
    ClientError {
        kind: ErrorKind::ER_CON_COUNT_ERROR,
        message: format!("sqlguard: Too many connections (max_connections = {max})"),
    }
}

/// A limit of `[limits]` reached (docs/LIMITS in README): MariaDB's own codes
/// for the same situations, so drivers and operators recognise them.
pub fn for_limit(limit: &LimitError) -> ClientError {
    let kind = match limit {
        // 1203, as MariaDB's max_user_connections.
        LimitError::Connections { .. } => ErrorKind::ER_TOO_MANY_USER_CONNECTIONS,
        // 1226, as MariaDB's max_queries_per_hour and friends.
        LimitError::Concurrency { .. } | LimitError::Rate { .. } => {
            ErrorKind::ER_USER_LIMIT_REACHED
        }
        // 1153, as MariaDB's max_allowed_packet (after a statement that is
        // too long the connection stays open; after a packet, it is closed).
        LimitError::StatementSize { .. } | LimitError::Packet { .. } => {
            ErrorKind::ER_NET_PACKET_TOO_LARGE
        }
        // 1104, as MariaDB's max_join_size: the result is too big to send.
        LimitError::ResultRows { .. } | LimitError::ResultBytes { .. } => {
            ErrorKind::ER_TOO_BIG_SELECT
        }
    };
    ClientError {
        kind,
        message: limit.to_string(),
    }
}

/// A user removed from proxy.toml by a reload: their open connections are
/// refused every statement.
pub fn user_removed(user: &str) -> ClientError {
    ClientError {
        kind: ErrorKind::ER_ACCESS_DENIED_ERROR,
        message: format!(
            "sqlguard: user '{user}' no longer exists (removed from the configuration); \
             nothing was executed, disconnect"
        ),
    }
}

/// The body of an ERR packet (`0xFF`, code, `#`, SQLSTATE, message), for the
/// places where sqlguard writes packets itself instead of through opensrv.
pub fn err_packet_payload(error: &ClientError, with_sqlstate: bool) -> Vec<u8> {
    let code = error.kind as u16;
    let mut payload = Vec::with_capacity(9 + error.message.len());
    payload.push(0xFF);
    payload.extend_from_slice(&code.to_le_bytes());
    if with_sqlstate {
        payload.push(b'#');
        payload.extend_from_slice(error.kind.sqlstate());
    }
    payload.extend_from_slice(error.message.as_bytes());
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_do_not_panic() {
        assert_eq!(error_kind(1064), Some(ErrorKind::ER_PARSE_ERROR));
        assert_eq!(error_kind(1885).map(|k| k as u16), Some(1885));
        for code in [0, 999, 1886, 1927, 1969, 3024, 4025, u16::MAX] {
            assert_eq!(error_kind(code), None, "{code}");
        }
        let e = for_backend(&BackendError::Server {
            code: 4025,
            state: "23000".into(),
            message: "CONSTRAINT failed".into(),
        });
        assert_eq!(e.kind, ErrorKind::ER_UNKNOWN_ERROR);
        assert!(e.message.contains("4025"));
    }

    #[test]
    fn limit_codes() {
        let code = |l: LimitError| for_limit(&l).kind as u16;
        let user = || "bot".to_string();
        assert_eq!(
            code(LimitError::Connections {
                user: user(),
                max: 1
            }),
            1203
        );
        let rate = LimitError::Rate {
            user: user(),
            rate: 1.0,
            burst: 1,
            retry_ms: 250,
        };
        assert!(for_limit(&rate).message.contains("retry after 250 ms"));
        assert_eq!(code(rate), 1226);
        assert_eq!(code(LimitError::StatementSize { len: 9, max: 8 }), 1153);
        assert_eq!(code(LimitError::ResultRows { max: 8 }), 1104);
    }

    #[test]
    fn err_packet_layout() {
        let p = err_packet_payload(&too_many_connections(3), true);
        assert_eq!(&p[..3], &[0xFF, 0x10, 0x04]);
        assert_eq!(&p[3..9], b"#08004");
    }
}
