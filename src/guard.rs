//! The guard: decides `Allow` or `Deny` for one statement of client text.
//! Pure: no I/O, no async, no clock. Everything after the guard works on
//! [`CheckedSql`], never on the client's raw text.
//!
//! One call of [`check`] runs, in order:
//! 1. [`precheck`]: length cap, executable comments, optimizer hints,
//!    non-ASCII whitespace (raw text); then, on tokens, empty text, ambiguous
//!    operators and literals, and the operator/nesting budget that keeps the
//!    AST shallow enough for a bounded stack.
//! 2. Parsing (sqlparser, MySQL dialect, `unescape = false`): exactly one
//!    statement.
//! 3. [`ast_limits`]: node count and depth of what was built.
//! 4. [`classify`]: statement kind and the policy's statement allowlist
//!    ([`session_vars`] for `SET`).
//! 5. [`rules`]: operators, literals, functions, schemas inside the statement.
//! 6. The policy, for SELECT, INSERT and UPDATE: [`tables`] (every table
//!    named must be the policy's), [`columns`] (denied columns, typed
//!    literals), [`scope`] (tenant predicates on every table reference),
//!    [`writes`] (write allowlists, tenant column, parent keys, domain
//!    guards) and [`limit`] (mandatory LIMIT on the top-level SELECT).
//! 7. Serialization of the checked AST and a round-trip check on it.

mod ast_limits;
mod cacheable;
mod classify;
mod columns;
mod decision;
mod functions;
mod limit;
mod params;
mod precheck;
mod rules;
mod scope;
mod session_vars;
mod tables;
mod writes;

#[cfg(test)]
mod tests;

use sqlparser::ast::Statement;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

use crate::policy::Policy;

pub use decision::{
    Access, CheckedSql, Decision, Denial, DenyClass, Lookup, Rewrites, Rule, StatementKind,
    TableAccess,
};
pub use functions::allowed_functions;
pub use limit::LimitChange;
pub use params::{BoundValue, ParamCheck, ParamRule, check_bound};
pub use precheck::MAX_STATEMENT_BYTES;

use classify::Verdict;

/// The parser's own recursion limit (its default). Nested parentheses or
/// subqueries stop at about half of it: each level costs two or more.
const PARSER_RECURSION_LIMIT: usize = 50;

/// Hint attached to parse errors.
const PARSE_HINT: &str = "send one statement of plain MySQL SQL: SELECT, INSERT or UPDATE";

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
///
/// Stack: parsing, checking and dropping the AST of any accepted text stays
/// well within 2 MiB (see the stack tests); run it on threads with at least
/// that much.
pub fn check(sql: &str, session: &SessionContext<'_>) -> Decision {
    decide(sql, session, false)
}

/// Checks the template of a prepared statement (COM_STMT_PREPARE): the same
/// rules as [`check`], plus, in `Decision::Allow::params`, what each bound
/// value must satisfy when the statement is executed.
pub fn check_prepared(sql: &str, session: &SessionContext<'_>) -> Decision {
    decide(sql, session, true)
}

fn decide(sql: &str, session: &SessionContext<'_>, prepared: bool) -> Decision {
    match check_inner(sql, session, prepared) {
        Ok(decision) => decision,
        Err(mut denial) => {
            // The policy may word the hint for its own users.
            if let Some(hint) = session.policy.hint(denial.rule.name()) {
                denial.hint = Some(hint.to_string());
            }
            Decision::Deny(denial)
        }
    }
}

fn check_inner(
    sql: &str,
    session: &SessionContext<'_>,
    prepared: bool,
) -> Result<Decision, Denial> {
    precheck::check_text(sql)?;
    let tokens = precheck::tokenize(sql)?;
    precheck::check_tokens(&tokens)?;
    let label = precheck::leading_words(&tokens);
    let mut statement = parse_one(tokens)?;
    ast_limits::check(&statement)?;
    match classify::classify(&statement, &label, session)? {
        Verdict::LocalOk(kind) => Ok(Decision::LocalOk { kind }),
        Verdict::Forward(kind) => {
            rules::check(&statement, kind, session).map_err(|d| d.with_kind(kind))?;
            let (rewrites, params) = apply_policy(&mut statement, kind, session, prepared)
                .map_err(|d| d.with_kind(kind))?;
            let access = if matches!(
                statement,
                Statement::Query(_) | Statement::Insert(_) | Statement::Update(_)
            ) {
                cacheable::access(&statement, session.policy)
            } else {
                Access::default()
            };
            let sql = serialize(&statement).map_err(|d| d.with_kind(kind))?;
            Ok(Decision::Allow {
                kind,
                sql,
                rewrites,
                params,
                access,
            })
        }
    }
}

/// The policy's table, column, tenant and LIMIT rules, for the statements
/// that touch tables; the rewrite happens here, on the checked AST.
fn apply_policy(
    statement: &mut Statement,
    kind: StatementKind,
    session: &SessionContext<'_>,
    prepared: bool,
) -> Result<(Rewrites, Vec<ParamRule>), Denial> {
    if !matches!(
        statement,
        Statement::Query(_) | Statement::Insert(_) | Statement::Update(_)
    ) {
        return Ok((Rewrites::default(), Vec::new()));
    }
    let tables = tables::collect(statement, kind, session)?;
    columns::check(statement, &tables, kind)?;
    if let Statement::Update(update) = &*statement {
        writes::update(update, &tables, session)?;
    }
    let scoped_tables = scope::apply(statement, &tables, kind, session)?;
    if let Statement::Update(update) = statement {
        writes::bind_update_references(update, &tables, session)?;
    }
    let mut lookups = Vec::new();
    let limit = match statement {
        Statement::Insert(insert) => {
            lookups = writes::insert(insert, session)?;
            None
        }
        Statement::Query(query) => limit::apply(query, session.policy.limit)?,
        _ => None,
    };
    let params = if prepared {
        let rules = params::collect(statement, &tables, session);
        params::order_and_restore(statement, rules, kind)?
    } else {
        Vec::new()
    };
    Ok((
        Rewrites {
            limit,
            scoped_tables,
            lookups,
        },
        params,
    ))
}

pub(crate) fn parser_options() -> ParserOptions {
    // unescape = false: literals keep their raw escaped text, so Display
    // writes back exactly what MariaDB will unescape (PARSER-DIFFERENTIALS §2).
    ParserOptions::new().with_unescape(false)
}

fn parse_error(message: String) -> Denial {
    Denial::new(
        Rule::ParseError,
        StatementKind::Unknown,
        format!("cannot parse the statement: {}", message.trim()),
        Some(PARSE_HINT.to_string()),
    )
}

/// Parses tokens produced by [`precheck::tokenize`] (the same tokenizer and
/// options `Parser::try_with_sql` uses) into exactly one statement.
fn parse_one(tokens: Vec<sqlparser::tokenizer::TokenWithSpan>) -> Result<Statement, Denial> {
    let dialect = MySqlDialect {};
    let mut statements = Parser::new(&dialect)
        .with_options(parser_options())
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| parse_error(e.to_string()))?;
    match statements.len() {
        1 => Ok(statements.swap_remove(0)),
        0 => Err(Denial::new(
            Rule::EmptyStatement,
            StatementKind::Unknown,
            "the text holds no SQL statement",
            Some("send one SQL statement".to_string()),
        )),
        n => Err(Denial::new(
            Rule::MultiStatement,
            classify::kind_of(&statements[0]),
            format!("{n} statements in one query are not allowed"),
            Some("send one statement per query, without ';' between statements".to_string()),
        )),
    }
}

/// Serializes the checked AST and proves the text means the same AST.
///
/// The backend connection (mysql_async) is opened with CLIENT_MULTI_STATEMENTS,
/// so MariaDB would run every statement in the text we forward. The forwarded
/// text must therefore be exactly one statement *as sqlparser reads it*, and
/// that statement must be the one we checked: Display bugs (like the escape
/// handling of PARSER-DIFFERENTIALS §2, or `0x41` becoming `X'41'`) must not
/// turn a checked statement into a different one. The text must also pass the
/// same pre-parse checks as client text (no executable comment can appear).
fn serialize(statement: &Statement) -> Result<CheckedSql, Denial> {
    let text = statement.to_string();
    let fails = || {
        Denial::new(
            Rule::RoundTrip,
            StatementKind::Unknown,
            "internal: statement does not survive re-serialization",
            Some("rewrite the statement in a simpler form".to_string()),
        )
    };
    precheck::check_comments_and_whitespace(&text).map_err(|_| fails())?;
    let tokens = precheck::tokenize(&text).map_err(|_| fails())?;
    precheck::check_tokens(&tokens).map_err(|_| fails())?;
    let again = parse_one(tokens).map_err(|_| fails())?;
    if again != *statement {
        return Err(fails());
    }
    Ok(CheckedSql::new(text))
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
            Some(format!(
                "this session may only use the database '{}'",
                session.database
            )),
        ))
    }
}
