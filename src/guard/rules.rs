//! Rules on the inside of an allowed statement, as one `Visitor` that stops
//! at the first violation: operators and literals MariaDB reads differently
//! (PARSER-DIFFERENTIALS §4, §5), denied functions, system schemas and other
//! databases, SELECT ... INTO and locking clauses.
//!
//! Most ambiguous operators (`||`, `&&`, `^`, `!`) are refused on tokens in
//! `precheck`, because some (`&&`) leave no trace in the AST; the checks here
//! cover what only the tree shows.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, ObjectName, ObjectNamePart, Query, Select, Statement,
    Value, ValueWithSpan, Visit, Visitor,
};

use super::functions;
use super::precheck::{ambiguous, ambiguous_literal, hex_literal};
use super::{Denial, Rule, SessionContext, StatementKind};

/// What to tell a client whose function is not an allowed built-in.
const STORED_FUNCTION_HINT: &str = "only built-in functions are allowed; stored functions are not. \
Compute the value with built-ins (CONCAT, ROUND, DATE_FORMAT, COALESCE, JSON_EXTRACT, ...) or read the columns and compute it yourself";

/// Schemas that describe or administer the server. Compared case-insensitively.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "mysql", "performance_schema", "sys"];

struct Rules<'s> {
    session: &'s SessionContext<'s>,
    kind: StatementKind,
}

impl Rules<'_> {
    fn deny(&self, mut denial: Denial) -> ControlFlow<Denial> {
        denial.kind = self.kind;
        ControlFlow::Break(denial)
    }

    fn statement(&self, rule: Rule, message: impl Into<String>, hint: &str) -> ControlFlow<Denial> {
        ControlFlow::Break(Denial::new(
            rule,
            self.kind,
            message,
            Some(hint.to_string()),
        ))
    }

    /// A name `db.table` (or `db.table.column`) must name the session's database.
    fn check_qualifier(&self, qualifier: &Ident, full: &str) -> ControlFlow<Denial> {
        let db = qualifier.value.as_str();
        if SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(db)) {
            return self.statement(
                Rule::SystemSchema,
                format!("access to the system schema '{db}' is denied ({full})"),
                "query the application's tables only",
            );
        }
        if db != self.session.database {
            return self.statement(
                Rule::OtherDatabase,
                format!("access to '{full}' in database '{db}' is denied"),
                &format!(
                    "this session may only use tables of '{}'; write the table name without a database",
                    self.session.database
                ),
            );
        }
        ControlFlow::Continue(())
    }
}

fn digit_identifier(ident: &Ident) -> bool {
    // `0b01`, `1e` ...: sqlparser reads an identifier where MariaDB may read a
    // bit or number literal.
    ident.quote_style.is_none() && ident.value.starts_with(|c: char| c.is_ascii_digit())
}

impl Visitor for Rules<'_> {
    type Break = Denial;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Denial> {
        if !query.locks.is_empty() {
            return self.statement(
                Rule::LockingClause,
                "locking reads (FOR UPDATE, FOR SHARE) are not allowed",
                "remove the locking clause; a plain SELECT reads the same rows",
            );
        }
        if query.for_clause.is_some() || query.settings.is_some() || query.format_clause.is_some() {
            return self.statement(
                Rule::StatementNotAllowed,
                "this query clause is not allowed",
                "use plain SELECT ... FROM ... WHERE ... LIMIT n",
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Denial> {
        if select.into.is_some() {
            return self.statement(
                Rule::SelectInto,
                "SELECT ... INTO is not allowed",
                "select the values and read them from the result",
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Denial> {
        let parts: Option<Vec<&Ident>> = relation
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        match parts.as_deref() {
            Some([_]) => ControlFlow::Continue(()),
            Some([db, _]) => self.check_qualifier(db, &relation.to_string()),
            _ => self.statement(
                Rule::StatementNotAllowed,
                format!("the table name {relation} is not allowed"),
                "name tables as table or database.table",
            ),
        }
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<Denial> {
        match &value.value {
            Value::HexStringLiteral(_) => self.deny(hex_literal()),
            Value::SingleQuotedByteStringLiteral(_) | Value::DoubleQuotedByteStringLiteral(_) => {
                self.deny(ambiguous_literal("a bit or byte string literal (b'01')"))
            }
            Value::Number(..)
            | Value::SingleQuotedString(_)
            | Value::DoubleQuotedString(_)
            | Value::NationalStringLiteral(_)
            | Value::Boolean(_)
            | Value::Null
            | Value::Placeholder(_) => ControlFlow::Continue(()),
            _ => self.deny(ambiguous_literal("this kind of literal")),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Denial> {
        match expr {
            Expr::BinaryOp { op, .. } => match op {
                BinaryOperator::Xor => {
                    self.deny(ambiguous("XOR", "use (a OR b) AND NOT (a AND b)"))
                }
                BinaryOperator::BitwiseXor => {
                    self.deny(ambiguous("^", "bitwise XOR is not needed here"))
                }
                BinaryOperator::StringConcat => {
                    self.deny(ambiguous("||", "use CONCAT(a, b) or OR"))
                }
                _ => ControlFlow::Continue(()),
            },
            // `BINARY x` comes out of sqlparser as a CAST of a different
            // subtree (PARSER-DIFFERENTIALS §4); both spellings are refused.
            Expr::Cast { data_type, .. }
                if matches!(data_type, DataType::Binary(_) | DataType::Varbinary(_)) =>
            {
                self.deny(ambiguous(
                    "BINARY",
                    "compare with a binary collation, e.g. a = 'x' COLLATE utf8mb4_bin",
                ))
            }
            Expr::Prefixed { .. } => self.deny(ambiguous_literal(
                "a character set introducer (_latin1'...')",
            )),
            Expr::Identifier(ident) if digit_identifier(ident) => {
                self.deny(ambiguous_literal(&format!("the name {ident}")))
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(ident) = parts.iter().find(|i| digit_identifier(i)) {
                    return self.deny(ambiguous_literal(&format!("the name {ident}")));
                }
                if parts.len() >= 3 {
                    let full = parts
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(".");
                    return self.check_qualifier(&parts[0], &full);
                }
                ControlFlow::Continue(())
            }
            Expr::Function(function) => {
                let name = &function.name;
                if name.0.len() != 1 {
                    return self.statement(
                        Rule::FunctionNotAllowed,
                        format!("calling the schema-qualified function {name} is not allowed"),
                        STORED_FUNCTION_HINT,
                    );
                }
                // Built-ins only (functions.rs): a stored function would run
                // its body with the backend's rights, outside the guard.
                let ident = match &name.0[0] {
                    ObjectNamePart::Identifier(ident) => Some(ident),
                    ObjectNamePart::Function(_) => None,
                };
                let Some(ident) = ident else {
                    return self.statement(
                        Rule::FunctionNotAllowed,
                        format!("the function {name}() is not allowed"),
                        STORED_FUNCTION_HINT,
                    );
                };
                // A quoted name skips MariaDB's keyword-level built-ins (IF,
                // COUNT, ...) and may resolve to a stored function of that name.
                if ident.quote_style.is_some() {
                    return self.statement(
                        Rule::FunctionNotAllowed,
                        format!("the quoted function name {name}() is not allowed"),
                        "write built-in function names without quotes, e.g. CONCAT(a, b)",
                    );
                }
                match functions::verdict(&ident.value) {
                    functions::Verdict::Allowed => {}
                    functions::Verdict::Dangerous => {
                        return self.statement(
                            Rule::FunctionNotAllowed,
                            format!("the function {name}() is not allowed"),
                            "it can stall, lock or read the server; leave it out",
                        );
                    }
                    functions::Verdict::NotAllowed => {
                        return self.statement(
                            Rule::FunctionNotAllowed,
                            format!("the function {name}() is not allowed"),
                            STORED_FUNCTION_HINT,
                        );
                    }
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

pub(super) fn check(
    statement: &Statement,
    kind: StatementKind,
    session: &SessionContext<'_>,
) -> Result<(), Denial> {
    let mut rules = Rules { session, kind };
    match statement.visit(&mut rules) {
        ControlFlow::Break(denial) => Err(denial),
        ControlFlow::Continue(()) => Ok(()),
    }
}
