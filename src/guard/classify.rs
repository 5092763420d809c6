//! What a statement is ([`StatementKind`]) and whether the session's policy
//! allows that kind of statement at all: the statement allowlist of DESIGN.md
//! "Policy semantics". Whatever is not matched here explicitly is refused.

use sqlparser::ast::{
    Insert, ObjectNamePart, ObjectType, ShowStatementFilter, Statement, TableObject,
    TransactionAccessMode, TransactionMode, Use,
};

use super::{Denial, Rule, SessionContext, StatementKind, allow_database, session_vars};

/// What to do with a statement whose kind the policy allows.
pub(super) enum Verdict {
    /// Check the inside of the statement, then forward it.
    Forward(StatementKind),
    /// Answer OK without the backend (`USE` of the session's own database).
    LocalOk(StatementKind),
}

/// Which capability a statement needs.
enum Needs {
    Read,
    Write,
}

/// Kind of a statement, for the audit log and for refusals.
pub(super) fn kind_of(statement: &Statement) -> StatementKind {
    use Statement as S;
    match statement {
        S::Query(_) => StatementKind::Select,
        S::Insert(Insert {
            replace_into: true, ..
        }) => StatementKind::Replace,
        S::Insert(_) => StatementKind::Insert,
        S::Update(_) => StatementKind::Update,
        S::Delete(_) => StatementKind::Delete,
        S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. } => StatementKind::Transaction,
        S::Set(_) => StatementKind::Set,
        S::ShowFunctions { .. }
        | S::ShowVariable { .. }
        | S::ShowStatus { .. }
        | S::ShowVariables { .. }
        | S::ShowCreate { .. }
        | S::ShowColumns { .. }
        | S::ShowCatalogs { .. }
        | S::ShowDatabases { .. }
        | S::ShowProcessList { .. }
        | S::ShowSchemas { .. }
        | S::ShowCharset(_)
        | S::ShowObjects(_)
        | S::ShowTables { .. }
        | S::ShowViews { .. }
        | S::ShowCollation { .. } => StatementKind::Show,
        S::Use(_) => StatementKind::Use,
        S::Drop {
            object_type: ObjectType::User | ObjectType::Role,
            ..
        } => StatementKind::Privilege,
        S::Grant { .. }
        | S::GrantRole { .. }
        | S::Deny { .. }
        | S::Revoke { .. }
        | S::RevokeRole { .. }
        | S::AlterDefaultPrivileges { .. }
        | S::CreateRole { .. }
        | S::AlterRole { .. }
        | S::CreateUser { .. }
        | S::AlterUser { .. } => StatementKind::Privilege,
        S::Truncate { .. }
        | S::RenameTable { .. }
        | S::Comment { .. }
        | S::Drop { .. }
        | S::DropFunction { .. }
        | S::DropDomain { .. }
        | S::DropProcedure { .. }
        | S::DropSecret { .. }
        | S::DropPolicy { .. }
        | S::DropRule { .. }
        | S::DropConnector { .. }
        | S::DropExtension { .. }
        | S::DropOperator { .. }
        | S::DropOperatorFamily { .. }
        | S::DropOperatorClass { .. }
        | S::DropTrigger { .. }
        | S::CreateView { .. }
        | S::CreateTable { .. }
        | S::CreateVirtualTable { .. }
        | S::CreateIndex { .. }
        | S::CreateSecret { .. }
        | S::CreateServer { .. }
        | S::CreateForeignTable { .. }
        | S::CreateForeignDataWrapper { .. }
        | S::CreatePolicy { .. }
        | S::CreateRule { .. }
        | S::CreateConnector { .. }
        | S::CreateOperator { .. }
        | S::CreateOperatorFamily { .. }
        | S::CreateOperatorClass { .. }
        | S::CreateTextSearch { .. }
        | S::CreateAggregate { .. }
        | S::CreateExtension { .. }
        | S::CreateCollation { .. }
        | S::CreateSchema { .. }
        | S::CreateDatabase { .. }
        | S::CreateFunction { .. }
        | S::CreateTrigger { .. }
        | S::CreateProcedure { .. }
        | S::CreateMacro { .. }
        | S::CreateSequence { .. }
        | S::CreateDomain { .. }
        | S::CreateType { .. }
        | S::AlterTable { .. }
        | S::AlterSchema { .. }
        | S::AlterIndex { .. }
        | S::AlterView { .. }
        | S::AlterFunction { .. }
        | S::AlterType { .. }
        | S::AlterCollation { .. }
        | S::AlterOperator { .. }
        | S::AlterOperatorFamily { .. }
        | S::AlterOperatorClass { .. }
        | S::AlterTextSearch { .. }
        | S::AlterPolicy { .. }
        | S::AlterTrigger { .. }
        | S::AlterConnector { .. } => StatementKind::Ddl,
        _ => StatementKind::Other,
    }
}

fn refuse(kind: StatementKind, label: &str, session: &SessionContext<'_>) -> Denial {
    let user = session.user;
    let hint = match kind {
        StatementKind::Delete => "rows are never deleted; to cancel an order, \
             UPDATE orders SET status = 'Annulé' WHERE id = '<order uuid>'"
            .to_string(),
        StatementKind::Replace => "REPLACE deletes the existing row; use INSERT for a new row, \
             or UPDATE ... WHERE id = '<uuid>' to change one"
            .to_string(),
        StatementKind::Ddl => "the schema is managed by the DBAs; \
             only SELECT, INSERT and UPDATE on existing tables are allowed"
            .to_string(),
        StatementKind::Privilege => "accounts and privileges are managed by the DBAs".to_string(),
        _ => allowed_summary(session),
    };
    Denial::new(
        Rule::StatementNotAllowed,
        kind,
        format!("{label} is not allowed for {user}"),
        Some(hint),
    )
}

fn allowed_summary(session: &SessionContext<'_>) -> String {
    match (session.policy.sql_read, session.policy.sql_write) {
        (true, true) => {
            "only SELECT, INSERT, UPDATE and transaction control (BEGIN, COMMIT, ROLLBACK) are allowed"
                .to_string()
        }
        (true, false) => format!("{} is read-only: only SELECT statements are allowed", session.user),
        (false, true) => "only INSERT and UPDATE are allowed".to_string(),
        (false, false) => format!("{} may not run SQL statements", session.user),
    }
}

fn needs(
    capability: Needs,
    kind: StatementKind,
    label: &str,
    session: &SessionContext<'_>,
) -> Result<Verdict, Denial> {
    let has = match capability {
        Needs::Read => session.policy.sql_read,
        Needs::Write => session.policy.sql_write,
    };
    if has {
        Ok(Verdict::Forward(kind))
    } else {
        Err(Denial::new(
            Rule::StatementNotAllowed,
            kind,
            format!("{label} is not allowed for {}", session.user),
            Some(allowed_summary(session)),
        ))
    }
}

/// Decides whether the policy admits this kind and shape of statement.
/// `label` names the statement in messages (its first words, upper-cased).
pub(super) fn classify(
    statement: &Statement,
    label: &str,
    session: &SessionContext<'_>,
) -> Result<Verdict, Denial> {
    let kind = kind_of(statement);
    let shape = |message: &str, hint: &str| {
        Err(Denial::new(
            Rule::StatementNotAllowed,
            kind,
            message,
            Some(hint.to_string()),
        ))
    };
    match statement {
        Statement::Query(_) => needs(Needs::Read, kind, "SELECT", session),
        Statement::Insert(insert) => {
            if insert.replace_into {
                return Err(refuse(StatementKind::Replace, "REPLACE", session));
            }
            if !matches!(insert.table, TableObject::TableName(_)) {
                return shape(
                    "INSERT into a table function is not allowed",
                    "INSERT INTO table (columns) VALUES (...)",
                );
            }
            needs(Needs::Write, kind, "INSERT", session)
        }
        Statement::Update(update) => {
            let verdict = needs(Needs::Write, kind, "UPDATE", session)?;
            if update.selection.is_none() {
                return Err(Denial::new(
                    Rule::UpdateWithoutWhere,
                    kind,
                    "UPDATE without WHERE is not allowed (it would change every row)",
                    Some("add WHERE id = '<uuid>' for the row to change".to_string()),
                ));
            }
            Ok(verdict)
        }
        Statement::StartTransaction {
            modes,
            modifier,
            statements,
            exception,
            has_end_keyword,
            ..
        } => {
            let plain_modes = modes.iter().all(|m| {
                matches!(
                    m,
                    TransactionMode::AccessMode(
                        TransactionAccessMode::ReadOnly | TransactionAccessMode::ReadWrite
                    )
                )
            });
            if !plain_modes
                || modifier.is_some()
                || !statements.is_empty()
                || exception.is_some()
                || *has_end_keyword
            {
                return shape(
                    "this form of START TRANSACTION is not allowed",
                    "use BEGIN or START TRANSACTION [READ ONLY | READ WRITE]",
                );
            }
            needs(Needs::Read, kind, label, session)
        }
        Statement::Commit {
            chain,
            end,
            modifier,
        } => {
            if *chain || *end || modifier.is_some() {
                return shape("this form of COMMIT is not allowed", "use plain COMMIT");
            }
            needs(Needs::Read, kind, label, session)
        }
        Statement::Rollback { chain, .. } => {
            if *chain {
                return shape(
                    "ROLLBACK AND CHAIN is not allowed",
                    "use plain ROLLBACK, then BEGIN",
                );
            }
            needs(Needs::Read, kind, label, session)
        }
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
            needs(Needs::Read, kind, label, session)
        }
        Statement::Set(set) => {
            session_vars::check_set(set)?;
            needs(Needs::Read, kind, label, session)
        }
        // SHOW WARNINGS / SHOW ERRORS: drivers and the CLI read the previous
        // statement's diagnostics. `SHOW COUNT(*) WARNINGS` also lands here
        // with two names, and does not round-trip: only one plain name passes.
        Statement::ShowVariable { variable } => match variable.as_slice() {
            [name]
                if name.quote_style.is_none()
                    && (name.value.eq_ignore_ascii_case("WARNINGS")
                        || name.value.eq_ignore_ascii_case("ERRORS")) =>
            {
                needs(Needs::Read, kind, label, session)
            }
            _ => Err(refuse(kind, label, session)),
        },
        // SHOW [SESSION] VARIABLES LIKE '<literal>': drivers probe settings this
        // way; it reveals nothing `SELECT @@name` does not.
        Statement::ShowVariables {
            filter: Some(ShowStatementFilter::Like(_)),
            global: false,
            ..
        } => needs(Needs::Read, kind, label, session),
        Statement::Use(used) => {
            let name = match used {
                Use::Object(name) => match name.0.as_slice() {
                    [ObjectNamePart::Identifier(ident)] => Some(ident.value.as_str()),
                    _ => None,
                },
                _ => None,
            };
            match name {
                Some(database) => {
                    allow_database(database, session)?;
                    Ok(Verdict::LocalOk(kind))
                }
                None => shape(
                    "this form of USE is not allowed",
                    &format!("use USE {}", session.database),
                ),
            }
        }
        _ => Err(refuse(kind, label, session)),
    }
}
