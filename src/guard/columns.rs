//! Column rules: denied columns are unreadable anywhere (including `*`), and
//! literals compared with a UUID or integer column must have that shape.
//! Name resolution is deliberately over-approximate: an unqualified column is
//! checked against every table of the statement that declares it.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, InTarget, JoinConstraint, JoinOperator, Select, SelectItem,
    TableFactor, TableWithJoins, UnaryOperator, Value, Visit, Visitor,
};

use super::tables::StatementTables;
use super::{Denial, Rule, StatementKind};
use crate::policy::TablePolicy;

pub(super) fn check(
    statement: &sqlparser::ast::Statement,
    tables: &StatementTables<'_>,
    kind: StatementKind,
) -> Result<(), Denial> {
    let mut checker = Columns { tables, kind };
    match statement.visit(&mut checker) {
        ControlFlow::Break(denial) => Err(denial),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Columns<'a, 'p> {
    tables: &'a StatementTables<'p>,
    kind: StatementKind,
}

/// What a column must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnType {
    Uuid,
    Integer,
}

impl ColumnType {
    fn name(self) -> &'static str {
        match self {
            ColumnType::Uuid => "UUID",
            ColumnType::Integer => "integer",
        }
    }
}

impl Columns<'_, '_> {
    fn denied(&self, table: &TablePolicy, column: &str) -> Denial {
        let readable = table.readable_columns();
        let hint = if readable.is_empty() {
            format!("do not use {}.{column}", table.name)
        } else {
            format!(
                "columns you may read from {}: {}",
                table.name,
                readable.join(", ")
            )
        };
        Denial::new(
            Rule::ColumnDenied,
            self.kind,
            format!("column {}.{column} is not accessible", table.name),
            Some(hint),
        )
    }

    fn check_name(&self, qualifier: Option<&Ident>, column: &Ident) -> ControlFlow<Denial> {
        let column = column.value.to_ascii_lowercase();
        for (table, denied) in self.tables.denied_columns() {
            if denied != column {
                continue;
            }
            let applies = match qualifier {
                // `x.api_keys` is refused whatever `x` is, unless `x` is
                // known to be another policy table.
                Some(q) => {
                    let resolved = self.tables.resolve(&q.value);
                    resolved.is_empty() || resolved.iter().any(|t| std::ptr::eq(*t, table))
                }
                None => true,
            };
            if applies {
                return ControlFlow::Break(self.denied(table, denied));
            }
        }
        ControlFlow::Continue(())
    }

    /// The types a column reference may have, from every table it may belong to.
    fn column_types(&self, expr: &Expr) -> Vec<(&TablePolicy, String, ColumnType)> {
        let (qualifier, column) = match expr {
            Expr::Identifier(c) => (None, c),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., q, c] => (Some(q), c),
                _ => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        let column = column.value.to_ascii_lowercase();
        let candidates: Vec<&TablePolicy> = match qualifier {
            Some(q) => self.tables.resolve(&q.value).to_vec(),
            None => self.tables.tables.clone(),
        };
        candidates
            .into_iter()
            .filter_map(|t| {
                if t.is_uuid(&column) {
                    Some((t, column.clone(), ColumnType::Uuid))
                } else if t.is_integer(&column) {
                    Some((t, column.clone(), ColumnType::Integer))
                } else {
                    None
                }
            })
            .collect()
    }

    fn check_typed(&self, column: &Expr, value: &Expr) -> ControlFlow<Denial> {
        for (table, name, ty) in self.column_types(column) {
            if let Err(denial) = check_literal(value, ty, &table.name, &name, self.kind) {
                return ControlFlow::Break(denial);
            }
        }
        ControlFlow::Continue(())
    }

    fn check_wildcards(&self, select: &Select) -> ControlFlow<Denial> {
        for item in &select.projection {
            if !matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            ) {
                continue;
            }
            let mut tables = Vec::new();
            for twj in &select.from {
                base_tables(twj, &mut tables);
            }
            for name in tables {
                for table in self.tables.resolve(&name) {
                    if let Some(column) = table.denied_columns.first() {
                        let mut denial = self.denied(table, column);
                        denial.message = format!(
                            "SELECT * would read {}.{column}, which is not accessible",
                            table.name
                        );
                        return ControlFlow::Break(denial);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Alias (or name) of every base table in a FROM item, joins and nesting included.
pub(super) fn base_tables(twj: &TableWithJoins, out: &mut Vec<String>) {
    factor_tables(&twj.relation, out);
    for join in &twj.joins {
        factor_tables(&join.relation, out);
    }
}

fn factor_tables(factor: &TableFactor, out: &mut Vec<String>) {
    match factor {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => out.push(a.name.value.to_ascii_lowercase()),
            None => {
                if let Some(t) = super::tables::table_name(name) {
                    out.push(t)
                }
            }
        },
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => base_tables(table_with_joins, out),
        _ => {}
    }
}

impl Visitor for Columns<'_, '_> {
    type Break = Denial;

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Denial> {
        self.check_wildcards(select)?;
        // USING (col) names columns outside any expression.
        for twj in &select.from {
            for join in &twj.joins {
                if let Some(JoinConstraint::Using(names)) = constraint(&join.join_operator) {
                    for name in names {
                        if let Some(sqlparser::ast::ObjectNamePart::Identifier(c)) = name.0.last() {
                            self.check_name(None, c)?;
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Denial> {
        match expr {
            Expr::Identifier(c) => self.check_name(None, c),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., q, c] => self.check_name(Some(q), c),
                [c] => self.check_name(None, c),
                [] => ControlFlow::Continue(()),
            },
            Expr::BinaryOp { left, op, right } if is_comparison(op) => {
                self.check_typed(left, right)?;
                self.check_typed(right, left)
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                ..
            } => {
                for item in list {
                    self.check_typed(expr, item)?;
                }
                ControlFlow::Continue(())
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.check_typed(expr, low)?;
                self.check_typed(expr, high)
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

fn constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::StraightJoin(c) => Some(c),
        _ => None,
    }
}

fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::Spaceship
    )
}

/// Checks a literal written to or compared with a typed column. Anything
/// that is not a literal (a column, a function such as `UUID()`, a
/// subquery, a `?` placeholder, NULL) is left to the database.
pub(super) fn check_literal(
    value: &Expr,
    ty: ColumnType,
    table: &str,
    column: &str,
    kind: StatementKind,
) -> Result<(), Denial> {
    let bad = |shown: &str| {
        let hint = match ty {
            ColumnType::Uuid => format!(
                "{table}.{column} holds UUIDs like '3f2504e0-4f89-41d3-9a0c-0305e82c1001'; look the id up with a SELECT first, never guess it"
            ),
            ColumnType::Integer => format!("{table}.{column} holds whole numbers, e.g. 42"),
        };
        Err(Denial::new(
            Rule::TypedLiteral,
            kind,
            format!("{shown} is not a valid {} for {table}.{column}", ty.name()),
            Some(hint),
        ))
    };
    let literal = match value {
        Expr::Value(v) => &v.value,
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) if ty == ColumnType::Integer && is_integer(n) => return Ok(()),
                other => return bad(&format!("-{other}")),
            },
            _ => return Ok(()),
        },
        Expr::Nested(inner) => return check_literal(inner, ty, table, column, kind),
        _ => return Ok(()),
    };
    match literal {
        Value::Null | Value::Placeholder(_) => Ok(()),
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
            let ok = match ty {
                ColumnType::Uuid => is_uuid(s),
                ColumnType::Integer => is_integer(s),
            };
            if ok { Ok(()) } else { bad(&format!("'{s}'")) }
        }
        Value::Number(n, _) => {
            if ty == ColumnType::Integer && is_integer(n) {
                Ok(())
            } else {
                bad(n)
            }
        }
        other => bad(&other.to_string()),
    }
}

/// 8-4-4-4-12 hex digits, as MariaDB prints UUIDs. Literals keep their raw
/// escapes (unescape = false), so a backslash can never pass.
pub(super) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Digits with an optional sign; nothing else (no `1.0`, `1e3`, spaces).
pub(super) fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shapes() {
        assert!(is_uuid("3f2504e0-4f89-41d3-9a0c-0305e82c1001"));
        assert!(is_uuid("3F2504E0-4F89-41D3-9A0C-0305E82C1001"));
        assert!(!is_uuid("3f2504e0-4f89-41d3-9a0c-0305e82c100"));
        assert!(!is_uuid("3f2504e04f8941d39a0c0305e82c1001"));
        assert!(!is_uuid("3f2504e0-4f89-41d3-9a0c-0305e82c100\\"));
        assert!(!is_uuid("PRODUCT_UUID"));
    }

    #[test]
    fn integer_shapes() {
        assert!(is_integer("42") && is_integer("-1") && is_integer("+7"));
        assert!(!is_integer("1.0") && !is_integer("1e3") && !is_integer("") && !is_integer("1 "));
        assert!(!is_integer("CUST_ID") && !is_integer("0x10"));
    }
}
