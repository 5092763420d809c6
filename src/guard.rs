//! The guard: decides `Allow` or `Deny` for one statement of client text.
//! Pure: no I/O, no async, no clock. Everything after the guard works on
//! [`CheckedSql`], never on the client's raw text.

mod decision;

use crate::policy::Policy;

pub use decision::{CheckedSql, Decision, Denial, DenyClass, Rule, StatementKind};

/// Who is asking: what the guard needs to know about the session.
#[derive(Debug, Clone, Copy)]
pub struct SessionContext<'a> {
    /// The proxy user's name (for messages only).
    pub user: &'a str,
    /// The tenant this user is bound to.
    pub tenant_id: u64,
    /// The only database the session may use (`USE`, qualified names).
    pub database: &'a str,
    /// What this user may do.
    pub policy: &'a Policy,
}

/// Checks one COM_QUERY text and returns what to do with it.
pub fn check(sql: &str, session: &SessionContext<'_>) -> Decision {
    let _ = (sql, session);
    Decision::Deny(Denial::new(
        Rule::NotImplemented,
        StatementKind::Unknown,
        "the guard is not built yet",
        None,
    ))
}

/// Whether a session may switch to `database` (COM_INIT_DB, the handshake's
/// database, and text `USE` all come here).
pub fn allow_database(database: &str, session: &SessionContext<'_>) -> Result<(), Denial> {
    if database == session.database {
        Ok(())
    } else {
        Err(Denial::new(
            Rule::DatabaseNotAllowed,
            StatementKind::Use,
            format!("access to database '{database}' is denied"),
            Some(format!("this session may only use the database '{}'", session.database)),
        ))
    }
}
