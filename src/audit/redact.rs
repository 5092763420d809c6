//! Masks the literal values of a policy's `redact` columns (e.g. phone
//! numbers) in the SQL text written to the audit log. Runs on the audit
//! writer, not on the session's path. The text is kept as it was except the
//! masked literals, found by their positions in the parsed statement.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Expr, ObjectName, OnInsert, SetExpr, Statement, Value, visit_expressions,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

/// What a masked literal becomes.
pub const MASK: &str = "'<redacted>'";
/// Deep enough for any statement the guard accepts.
const RECURSION_LIMIT: usize = 128;

/// `sql` with the literal values compared with, assigned to or inserted into
/// one of `columns` (lowercase names) masked. A statement that mentions such
/// a column but does not parse has every literal masked; one that does not
/// even tokenize is replaced as a whole. Fail closed.
pub fn sql(sql: Option<String>, columns: &[String]) -> Option<String> {
    let text = sql?;
    if columns.is_empty() || !mentions_any(&text, columns) {
        return Some(text);
    }
    Some(redact(&text, columns))
}

fn mentions_any(text: &str, columns: &[String]) -> bool {
    let lower = text.to_ascii_lowercase();
    columns.iter().any(|c| lower.contains(c.as_str()))
}

fn redact(text: &str, columns: &[String]) -> String {
    let dialect = MySqlDialect {};
    let parsed = Parser::new(&dialect)
        .with_options(crate::guard::parser_options())
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements());
    let spans = match parsed {
        Ok(statements) => {
            let mut spans = Vec::new();
            for statement in &statements {
                statement_spans(statement, columns, &mut spans);
            }
            spans
        }
        Err(_) => match every_literal(text) {
            Some(spans) => spans,
            None => {
                return "<redacted: the statement names a redacted column and cannot be read>"
                    .to_string();
            }
        },
    };
    replace_spans(text, spans)
}

fn names_column(expr: &Expr, columns: &[String]) -> bool {
    let ident = match expr {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(ident) => ident,
            None => return false,
        },
        _ => return false,
    };
    columns.iter().any(|c| ident.value.eq_ignore_ascii_case(c))
}

fn mentions_column(expr: &Expr, columns: &[String]) -> bool {
    visit_expressions(expr, |e| {
        if names_column(e, columns) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

fn object_names_column(name: &ObjectName, columns: &[String]) -> bool {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|ident| columns.iter().any(|c| ident.value.eq_ignore_ascii_case(c)))
}

/// The spans of every literal value inside `expr`.
fn values_in<T: sqlparser::ast::Visit>(node: &T, spans: &mut Vec<Span>) {
    let _ = visit_expressions(node, |e| {
        if let Expr::Value(v) = e {
            if !matches!(
                v.value,
                Value::Null | Value::Boolean(_) | Value::Placeholder(_)
            ) {
                spans.push(v.span);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn statement_spans(statement: &Statement, columns: &[String], spans: &mut Vec<Span>) {
    // Comparisons, pattern matches, IN lists, BETWEEN and function calls that
    // involve a redacted column: every literal in them.
    let _ = visit_expressions(statement, |e| {
        let relates = match e {
            Expr::BinaryOp { op, .. } => !matches!(
                op,
                sqlparser::ast::BinaryOperator::And
                    | sqlparser::ast::BinaryOperator::Or
                    | sqlparser::ast::BinaryOperator::Xor
            ),
            Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::RLike { .. }
            | Expr::SimilarTo { .. }
            | Expr::In { .. }
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::Between { .. }
            | Expr::Function(_) => true,
            _ => false,
        };
        if relates && mentions_column(e, columns) {
            values_in(e, spans);
        }
        ControlFlow::<()>::Continue(())
    });
    let assignments = |list: &[sqlparser::ast::Assignment], spans: &mut Vec<Span>| {
        for a in list {
            let hit = match &a.target {
                AssignmentTarget::ColumnName(name) => object_names_column(name, columns),
                AssignmentTarget::Tuple(names) => {
                    names.iter().any(|n| object_names_column(n, columns))
                }
            };
            if hit {
                values_in(&a.value, spans);
            }
        }
    };
    match statement {
        Statement::Update(update) => assignments(&update.assignments, spans),
        Statement::Insert(insert) => {
            assignments(&insert.assignments, spans);
            if let Some(OnInsert::DuplicateKeyUpdate(list)) = &insert.on {
                assignments(list, spans);
            }
            let positions: Vec<usize> = insert
                .columns
                .iter()
                .enumerate()
                .filter(|(_, name)| object_names_column(name, columns))
                .map(|(i, _)| i)
                .collect();
            if let Some(source) = &insert.source {
                if let SetExpr::Values(values) = source.body.as_ref() {
                    for row in &values.rows {
                        for &i in &positions {
                            if let Some(value) = row.get(i) {
                                values_in(value, spans);
                            }
                        }
                    }
                } else if !positions.is_empty() {
                    // INSERT ... SELECT into a redacted column: every literal.
                    values_in(source.as_ref(), spans);
                }
            }
        }
        _ => {}
    }
}

/// Every literal token of a statement that does not parse; `None` if it does
/// not tokenize either.
fn every_literal(text: &str) -> Option<Vec<Span>> {
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .with_unescape(false)
        .tokenize_with_location()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| {
                matches!(
                    t.token,
                    Token::Number(..)
                        | Token::SingleQuotedString(_)
                        | Token::DoubleQuotedString(_)
                        | Token::NationalStringLiteral(_)
                        | Token::EscapedStringLiteral(_)
                        | Token::HexStringLiteral(_)
                        | Token::SingleQuotedByteStringLiteral(_)
                        | Token::DoubleQuotedByteStringLiteral(_)
                        | Token::TripleSingleQuotedString(_)
                        | Token::TripleDoubleQuotedString(_)
                        | Token::UnicodeStringLiteral(_)
                )
            })
            .map(|t| t.span)
            .collect(),
    )
}

/// `text` with each span (line/column positions, end exclusive) replaced by
/// [`MASK`]. A span that does not fit the text masks the whole statement.
fn replace_spans(text: &str, spans: Vec<Span>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for span in spans {
        match (offset(text, span.start), offset(text, span.end)) {
            (Some(start), Some(end)) if start < end => ranges.push((start, end)),
            _ => return "<redacted: a literal could not be located>".to_string(),
        }
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in ranges {
        if start < at {
            // Nested or repeated spans: already masked.
            at = at.max(end);
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte offset of a tokenizer location (1-based line and column, in
/// characters; a column just past the end of a line is allowed).
fn offset(text: &str, location: Location) -> Option<usize> {
    if location.line == 0 || location.column == 0 {
        return None;
    }
    let mut line_start = 0;
    for _ in 1..location.line {
        line_start += text[line_start..].find('\n')? + 1;
    }
    let line = &text[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let column = usize::try_from(location.column - 1).ok()?;
    match line.char_indices().nth(column) {
        Some((i, _)) => Some(line_start + i),
        None if column == line.chars().count() => Some(line_start + line.len()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        vec!["phone".into(), "customer_phone".into()]
    }

    fn r(text: &str) -> String {
        sql(Some(text.to_string()), &cols()).unwrap()
    }

    #[test]
    fn untouched_without_a_redacted_column() {
        let text = "SELECT name FROM products WHERE name = 'x'";
        assert_eq!(r(text), text);
        assert_eq!(sql(Some(text.into()), &[]).unwrap(), text);
    }

    #[test]
    fn comparisons_lists_and_patterns() {
        assert_eq!(
            r("SELECT id FROM customers WHERE phone = '+212612345678' AND status = 'active'"),
            "SELECT id FROM customers WHERE phone = '<redacted>' AND status = 'active'"
        );
        assert_eq!(
            r("select id from customers c where  '0612' = c.PHONE or c.phone in ('1', \"2\")"),
            "select id from customers c where  '<redacted>' = c.PHONE or c.phone in ('<redacted>', '<redacted>')"
        );
        assert_eq!(
            r("SELECT id FROM customers WHERE phone LIKE '%345%' LIMIT 5"),
            "SELECT id FROM customers WHERE phone LIKE '<redacted>' LIMIT 5"
        );
        assert_eq!(
            r("SELECT id FROM customers WHERE REPLACE(phone, ' ', '') = 212612345678"),
            "SELECT id FROM customers WHERE REPLACE(phone, '<redacted>', '<redacted>') = '<redacted>'"
        );
    }

    #[test]
    fn writes() {
        assert_eq!(
            r(
                "INSERT INTO customers (platform, phone) VALUES ('whatsapp', '+212600000001'), ('ig', '+212600000002')"
            ),
            "INSERT INTO customers (platform, phone) VALUES ('whatsapp', '<redacted>'), ('ig', '<redacted>')"
        );
        assert_eq!(
            r("UPDATE customers SET notes = 'vip', phone = '+212600000003' WHERE id = 4"),
            "UPDATE customers SET notes = 'vip', phone = '<redacted>' WHERE id = 4"
        );
        assert_eq!(
            r("INSERT INTO orders (customer_phone, total)\nVALUES ('+2126é', 10)"),
            "INSERT INTO orders (customer_phone, total)\nVALUES ('<redacted>', 10)"
        );
    }

    #[test]
    fn unparseable_text_has_every_literal_masked() {
        assert_eq!(
            r("SELEKT phone FROM customers WHERE phone = '+212612345678' AND 5"),
            "SELEKT phone FROM customers WHERE phone = '<redacted>' AND '<redacted>'"
        );
        assert!(r("SELECT phone FROM t WHERE phone = 'unterminated").starts_with("<redacted"));
    }
}
