//! `SET` statements: which session variables a client may change, and to what.
//!
//! Owns the short allowlist of variables drivers set on connect and the
//! evaluation of `sql_mode` changes (DESIGN.md "Policy semantics";
//! PARSER-DIFFERENTIALS §3). Everything not named here is refused.

use sqlparser::ast::{
    ContextModifier, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    ObjectNamePart, Set, Value,
};

use super::{Denial, Rule, StatementKind};

/// What values a variable on the allowlist may take.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Values {
    /// 0, 1, ON, OFF, TRUE, FALSE.
    OnOff,
    /// A character set from [`CHARSETS`].
    Charset,
    /// A character set from [`CHARSETS`], or NULL (no conversion of results).
    CharsetOrNull,
    /// A collation of a character set from [`CHARSETS`].
    Collation,
    /// A time zone name or offset.
    TimeZone,
    /// A non-negative integer or DEFAULT.
    RowCount,
    /// One of the four isolation levels, as a string.
    Isolation,
    /// Evaluated by [`check_sql_mode`].
    SqlMode,
}

/// Session variables a client may set, and why each is harmless. Names are
/// lower case; lookups lower-case the client's name.
const SESSION_VARIABLES: &[(&str, Values)] = &[
    // Transaction behaviour of the pinned connection; PyMySQL, mysqlclient and
    // Connector/J send it on connect. Reset when the connection is released.
    ("autocommit", Values::OnOff),
    // How the server decodes the text we send and encodes results. Limited to
    // ASCII-transparent UTF-8 sets: a multi-byte set such as GBK or SJIS lets a
    // trailing byte 0x5C act as a backslash and break out of a literal.
    ("character_set_client", Values::Charset),
    ("character_set_connection", Values::Charset),
    ("character_set_results", Values::CharsetOrNull),
    // Only the default for CREATE DATABASE, which is refused anyway; DBD::MariaDB sends it.
    ("character_set_server", Values::Charset),
    ("collation_connection", Values::Collation),
    // Changes how TIMESTAMP values and NOW() are shown; not what may be read.
    ("time_zone", Values::TimeZone),
    // Caps rows returned by SELECT; it can only return less. Connector/J's setMaxRows.
    ("sql_select_limit", Values::RowCount),
    // Isolation of later transactions; the spelled-out variable round-trips,
    // unlike SET SESSION TRANSACTION ISOLATION LEVEL (PARSER-DIFFERENTIALS §5).
    ("transaction_isolation", Values::Isolation),
    ("tx_isolation", Values::Isolation),
    // Only the forms check_sql_mode evaluates: adding modes that do not change lexing.
    ("sql_mode", Values::SqlMode),
];

/// Character sets in which every ASCII byte stands for itself and no
/// multi-byte sequence contains an ASCII byte, so MariaDB lexes our UTF-8 text
/// as we do. The proxy speaks UTF-8 only.
const CHARSETS: &[&str] = &["utf8mb4", "utf8mb3", "utf8"];

/// sql_mode flags that change neither lexing nor parsing, only data checks.
const SAFE_SQL_MODES: &[&str] = &[
    "STRICT_TRANS_TABLES",
    "STRICT_ALL_TABLES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "NO_ZERO_DATE",
    "NO_ZERO_IN_DATE",
    "NO_ENGINE_SUBSTITUTION",
    "NO_AUTO_CREATE_USER",
    "ONLY_FULL_GROUP_BY",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_AUTO_VALUE_ON_ZERO",
    // = the strict modes above, nothing else.
    "TRADITIONAL",
];

/// The modes the backend connection is pinned to. A literal `SET sql_mode =
/// '...'` replaces the whole value, so it must keep all of these.
pub const PINNED_SQL_MODES: &[&str] = &[
    "STRICT_TRANS_TABLES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "NO_AUTO_CREATE_USER",
    "NO_ENGINE_SUBSTITUTION",
];

fn deny(rule: Rule, message: impl Into<String>, hint: impl Into<String>) -> Denial {
    Denial::new(rule, StatementKind::Set, message, Some(hint.into()))
}

fn not_allowed(what: impl std::fmt::Display) -> Denial {
    deny(
        Rule::SessionVariable,
        format!("{what} is not allowed"),
        "only autocommit, SET NAMES, character sets, time_zone, sql_select_limit, \
         transaction_isolation and adding strict sql_mode flags may be set",
    )
}

/// Checks a `SET` statement; Ok means it may be forwarded.
pub(super) fn check_set(set: &Set) -> Result<(), Denial> {
    match set {
        Set::SetNames {
            charset_name,
            collation_name,
        } => {
            if charset_name.quote_style == Some('`') || !is_charset(&charset_name.value) {
                return Err(deny(
                    Rule::SessionVariable,
                    format!("SET NAMES {} is not allowed", charset_name.value),
                    "use SET NAMES utf8mb4",
                ));
            }
            match collation_name {
                Some(collation) if !is_collation(collation) => Err(deny(
                    Rule::SessionVariable,
                    format!("collation {collation} is not allowed"),
                    "use a utf8mb4 collation such as utf8mb4_unicode_ci",
                )),
                _ => Ok(()),
            }
        }
        Set::SingleAssignment {
            scope,
            hivevar,
            variable,
            values,
        } => {
            if *hivevar {
                return Err(not_allowed("SET hivevar"));
            }
            match values.as_slice() {
                [value] => check_assignment(scope.as_ref(), variable, value),
                _ => Err(not_allowed("SET with a list of values")),
            }
        }
        Set::MultipleAssignments { assignments } => {
            for assignment in assignments {
                check_assignment(
                    assignment.scope.as_ref(),
                    &assignment.name,
                    &assignment.value,
                )?;
            }
            Ok(())
        }
        Set::SetTransaction { .. } => Err(deny(
            Rule::SessionVariable,
            "SET TRANSACTION is not allowed (its SESSION scope does not survive sqlguard's rewriting)",
            "use SET SESSION transaction_isolation = 'READ-COMMITTED'",
        )),
        _ => Err(not_allowed("this form of SET")),
    }
}

fn check_assignment(
    scope: Option<&ContextModifier>,
    variable: &ObjectName,
    value: &Expr,
) -> Result<(), Denial> {
    match scope {
        None | Some(ContextModifier::Session) => {}
        Some(ContextModifier::Global) => return Err(global()),
        Some(_) => return Err(not_allowed("SET LOCAL")),
    }
    let parts: Vec<&str> = variable
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) if ident.quote_style.is_none() => {
                Some(ident.value.as_str())
            }
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| not_allowed("SET of a quoted or computed name"))?;
    let name = match parts.as_slice() {
        [name] => match name.strip_prefix("@@") {
            Some(name) => name,
            None if name.starts_with('@') => {
                return Err(deny(
                    Rule::SessionVariable,
                    format!("setting the user variable {name} is not allowed"),
                    "put the value directly into the statement that needs it",
                ));
            }
            None => name,
        },
        [prefix, name] if prefix.eq_ignore_ascii_case("@@session") => name,
        [prefix, _] if prefix.len() > 2 && prefix.starts_with("@@") => return Err(global()),
        _ => return Err(not_allowed(format!("SET {variable}"))),
    };
    let lower = name.to_ascii_lowercase();
    let Some((_, values)) = SESSION_VARIABLES.iter().find(|(n, _)| *n == lower) else {
        return Err(not_allowed(format!("SET {lower}")));
    };
    let ok = match values {
        Values::OnOff => word(value).is_some_and(|w| {
            ["0", "1", "ON", "OFF", "TRUE", "FALSE"]
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&w))
        }),
        Values::Charset => word(value).is_some_and(|w| is_charset(&w)),
        Values::CharsetOrNull => {
            matches!(value, Expr::Value(v) if v.value == Value::Null)
                || word(value).is_some_and(|w| is_charset(&w))
        }
        Values::Collation => word(value).is_some_and(|w| is_collation(&w)),
        Values::TimeZone => string(value).is_some_and(|w| is_time_zone(&w)),
        Values::RowCount => word(value).is_some_and(|w| {
            w.eq_ignore_ascii_case("DEFAULT")
                || (w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
        }),
        Values::Isolation => string(value).is_some_and(|w| {
            [
                "READ-UNCOMMITTED",
                "READ-COMMITTED",
                "REPEATABLE-READ",
                "SERIALIZABLE",
            ]
            .iter()
            .any(|v| v.eq_ignore_ascii_case(&w))
        }),
        Values::SqlMode => return check_sql_mode(value),
    };
    if ok {
        Ok(())
    } else {
        Err(deny(
            Rule::SessionVariable,
            format!("this value for {lower} is not allowed"),
            match values {
                Values::OnOff => "use 0 or 1",
                Values::Charset | Values::CharsetOrNull => "use utf8mb4",
                Values::Collation => "use a utf8mb4 collation such as utf8mb4_unicode_ci",
                Values::TimeZone => "use a quoted offset such as '+00:00' or a zone name",
                Values::RowCount => "use a whole number or DEFAULT",
                Values::Isolation => "use a quoted level such as 'READ-COMMITTED'",
                Values::SqlMode => "",
            },
        ))
    }
}

fn global() -> Denial {
    deny(
        Rule::SessionVariable,
        "SET GLOBAL (server-wide settings) is not allowed",
        "sessions may only change their own settings",
    )
}

/// A bare word, number or quoted string, as written (never with a backslash,
/// since literals hold their raw escaped text).
fn word(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) if ident.quote_style.is_none() => Some(ident.value.clone()),
        Expr::Value(v) => match &v.value {
            Value::Number(n, false) => Some(n.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => string(expr),
        },
        _ => None,
    }
}

/// A quoted string without escapes.
fn string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) if !s.contains('\\') => {
                Some(s.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_charset(name: &str) -> bool {
    CHARSETS.iter().any(|c| c.eq_ignore_ascii_case(name))
}

fn is_collation(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && CHARSETS.iter().any(|c| {
            name.strip_prefix(c)
                .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
        })
}

fn is_time_zone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-:/_".contains(&b))
}

fn sql_mode_denied(message: impl Into<String>) -> Denial {
    deny(
        Rule::SqlModeChange,
        message,
        format!(
            "sql_mode is pinned; you may only add strict flags, e.g. \
             SET sql_mode = concat(@@sql_mode, ',STRICT_ALL_TABLES'), or set a list that keeps {}",
            PINNED_SQL_MODES.join(",")
        ),
    )
}

/// `SET sql_mode = '<list>'` or `SET sql_mode = concat(@@sql_mode, '<list>')`,
/// where every mode in the list is in [`SAFE_SQL_MODES`]; a literal list
/// replaces the mode, so it must also keep every mode in [`PINNED_SQL_MODES`].
fn check_sql_mode(value: &Expr) -> Result<(), Denial> {
    let (list, replaces) = if let Some(list) = string(value) {
        (list, true)
    } else if let Some(list) = concat_sql_mode(value) {
        (list, false)
    } else {
        return Err(sql_mode_denied(
            "SET sql_mode is allowed only with a quoted list or concat(@@sql_mode, '<list>')",
        ));
    };
    let modes: Vec<String> = list
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    if let Some(bad) = modes.iter().find(|m| !SAFE_SQL_MODES.contains(&m.as_str())) {
        return Err(sql_mode_denied(format!(
            "the sql_mode flag {bad} is not allowed (it may change how SQL text is read)"
        )));
    }
    if replaces {
        let keeps = |pinned: &&str| {
            modes.iter().any(|m| m == pinned)
                || (modes.iter().any(|m| m == "TRADITIONAL")
                    && **pinned != *"NO_ENGINE_SUBSTITUTION")
        };
        if let Some(dropped) = PINNED_SQL_MODES.iter().find(|p| !keeps(p)) {
            return Err(sql_mode_denied(format!(
                "this sql_mode would drop the pinned flag {dropped}"
            )));
        }
    }
    Ok(())
}

/// The literal of `concat(@@sql_mode, '<literal>')`, or None for any other shape.
fn concat_sql_mode(value: &Expr) -> Option<String> {
    let Expr::Function(f) = value else {
        return None;
    };
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    if !name.value.eq_ignore_ascii_case("concat")
        || name.quote_style.is_some()
        || f.filter.is_some()
        || f.over.is_some()
        || f.null_treatment.is_some()
        || !f.within_group.is_empty()
        || !matches!(f.parameters, FunctionArguments::None)
    {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    let [
        FunctionArg::Unnamed(FunctionArgExpr::Expr(current)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(added)),
    ] = list.args.as_slice()
    else {
        return None;
    };
    let is_current = match current {
        Expr::Identifier(i) => {
            i.quote_style.is_none() && i.value.eq_ignore_ascii_case("@@sql_mode")
        }
        Expr::CompoundIdentifier(parts) => {
            parts.len() == 2
                && parts.iter().all(|p| p.quote_style.is_none())
                && parts[0].value.eq_ignore_ascii_case("@@session")
                && parts[1].value.eq_ignore_ascii_case("sql_mode")
        }
        _ => false,
    };
    if is_current { string(added) } else { None }
}
