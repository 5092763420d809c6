//! Placeholders (`?`) of a prepared statement: what each bound value must
//! satisfy (a UUID, an integer, the session's tenant, a LIMIT within the
//! policy's maximum), in the order MariaDB numbers them, which is their order
//! in the text sqlguard forwards.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Expr, InTarget, LimitClause, ObjectNamePart, Query, SetExpr, Statement,
    Value, ValueWithSpan, VisitMut, VisitorMut,
};

use super::columns::ColumnType;
use super::tables::{StatementTables, table_name};
use super::{Denial, Rule, SessionContext, StatementKind};
use crate::policy::Scope;

/// What a bound value must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamCheck {
    Any,
    Uuid,
    Integer,
    /// Must equal the session's tenant (an explicit tenant column value).
    Tenant,
    /// The top-level LIMIT: clamped to `max`.
    Limit {
        max: u64,
    },
}

/// One placeholder: its check, and the `table.column` it is compared with or
/// written to (for messages, and for redaction in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamRule {
    pub check: ParamCheck,
    pub column: Option<String>,
}

const MARK: &str = "?sqlguard_param_";

/// Numbers every placeholder and works out its rule. Leaves the AST with
/// markers in place of `?`; [`restore`] puts the `?` back.
pub(super) fn collect(
    statement: &mut Statement,
    tables: &StatementTables<'_>,
    session: &SessionContext<'_>,
) -> Vec<ParamRule> {
    let mut marker = Marker::default();
    match statement {
        Statement::Insert(insert) => insert_rules(insert, session, &mut marker),
        Statement::Update(update) => {
            for assignment in &mut update.assignments {
                let AssignmentTarget::ColumnName(name) = &assignment.target else {
                    continue;
                };
                let rule = column_rule(name.0.iter().rev().nth(1), name.0.last(), tables);
                marker.mark_all(&mut assignment.value, rule);
            }
        }
        Statement::Query(query) => {
            if let Some(count) = limit_count(query) {
                marker.mark_all(
                    count,
                    ParamRule {
                        check: ParamCheck::Limit {
                            max: session.policy.limit.max,
                        },
                        column: None,
                    },
                );
            }
        }
        _ => {}
    }
    let scopes = tables.base_scope(statement);
    let mut visitor = Typing {
        tables,
        marker,
        scopes,
    };
    let _ = statement.visit(&mut visitor);
    visitor.marker.rules
}

fn limit_count(query: &mut Query) -> Option<&mut Expr> {
    match &mut query.limit_clause {
        Some(LimitClause::LimitOffset {
            limit: Some(count), ..
        })
        | Some(LimitClause::OffsetCommaLimit { limit: count, .. }) => Some(count),
        _ => None,
    }
}

fn insert_rules(
    insert: &mut sqlparser::ast::Insert,
    session: &SessionContext<'_>,
    marker: &mut Marker,
) {
    let sqlparser::ast::TableObject::TableName(name) = &insert.table else {
        return;
    };
    let Some(table) = table_name(name).and_then(|t| session.policy.table(&t)) else {
        return;
    };
    let columns: Vec<String> = insert
        .columns
        .iter()
        .filter_map(|c| match c.0.last() {
            Some(ObjectNamePart::Identifier(i)) => Some(i.value.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    let Some(source) = insert.source.as_deref_mut() else {
        return;
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return;
    };
    for row in &mut values.rows {
        for (column, value) in columns.iter().zip(row.content.iter_mut()) {
            let check = if column == &session.policy.tenant_column
                && matches!(table.scope, Scope::Tenant)
            {
                ParamCheck::Tenant
            } else if table.is_uuid(column) {
                ParamCheck::Uuid
            } else if table.is_integer(column) {
                ParamCheck::Integer
            } else {
                ParamCheck::Any
            };
            marker.mark_all(
                value,
                ParamRule {
                    check,
                    column: Some(format!("{}.{column}", table.name)),
                },
            );
        }
    }
}

/// The rule for a value compared with or written to `qualifier.column`.
fn column_rule(
    qualifier: Option<&ObjectNamePart>,
    column: Option<&ObjectNamePart>,
    tables: &StatementTables<'_>,
) -> ParamRule {
    let Some(ObjectNamePart::Identifier(column)) = column else {
        return ParamRule {
            check: ParamCheck::Any,
            column: None,
        };
    };
    let column = column.value.to_ascii_lowercase();
    let candidates = match qualifier {
        Some(ObjectNamePart::Identifier(q)) => tables.resolve(&q.value).to_vec(),
        _ => tables.tables.clone(),
    };
    rule_for(&column, &candidates)
}

fn rule_for(column: &str, candidates: &[&crate::policy::TablePolicy]) -> ParamRule {
    let mut rule = ParamRule {
        check: ParamCheck::Any,
        column: candidates.first().map(|t| format!("{}.{column}", t.name)),
    };
    for table in candidates {
        let check = match super::columns::declared_type(table, column) {
            Some(ColumnType::Uuid) => ParamCheck::Uuid,
            Some(ColumnType::Integer) => ParamCheck::Integer,
            None => continue,
        };
        rule = ParamRule {
            check,
            column: Some(format!("{}.{column}", table.name)),
        };
        break;
    }
    rule
}

#[derive(Default)]
struct Marker {
    rules: Vec<ParamRule>,
}

impl Marker {
    fn mark(&mut self, value: &mut ValueWithSpan, rule: ParamRule) {
        if let Value::Placeholder(text) = &mut value.value {
            if text == "?" {
                *text = format!("{MARK}{}", self.rules.len());
                self.rules.push(rule);
            }
        }
    }

    /// Marks every unmarked placeholder inside `expr` with `rule`.
    fn mark_all(&mut self, expr: &mut Expr, rule: ParamRule) {
        struct All<'m> {
            marker: &'m mut Marker,
            rule: ParamRule,
        }
        impl VisitorMut for All<'_> {
            type Break = ();
            fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
                self.marker.mark(value, self.rule.clone());
                ControlFlow::Continue(())
            }
        }
        let _ = expr.visit(&mut All { marker: self, rule });
    }
}

/// Types placeholders by the column they are compared with; any other
/// placeholder gets `Any`.
struct Typing<'a, 'p> {
    tables: &'a StatementTables<'p>,
    marker: Marker,
    /// The FROM tables of the SELECTs being visited, innermost last.
    scopes: Vec<Vec<&'p crate::policy::TablePolicy>>,
}

impl Typing<'_, '_> {
    fn rule_of_column(&self, expr: &Expr) -> Option<ParamRule> {
        let (qualifier, column) = match expr {
            Expr::Identifier(c) => (None, c),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., q, c] => (Some(q), c),
                _ => return None,
            },
            _ => return None,
        };
        let column = column.value.to_ascii_lowercase();
        let candidates = match qualifier {
            Some(q) => self.tables.resolve(&q.value).to_vec(),
            None => self.tables.candidates_for(&column, &self.scopes),
        };
        let mut rule = rule_for(&column, &candidates);
        if rule.column.is_none() {
            // Untyped, but the name still matters (redaction in the audit log).
            let table = match qualifier {
                Some(q) => q.value.to_ascii_lowercase(),
                None => self
                    .scopes
                    .last()
                    .and_then(|s| s.first())
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
            };
            rule.column = Some(format!("{table}.{column}"));
        }
        Some(rule)
    }

    fn mark_if_placeholder(&mut self, column: &Expr, value: &mut Expr) {
        let inner = match value {
            Expr::Nested(inner) => inner.as_mut(),
            other => other,
        };
        if let Expr::Value(v) = inner {
            if let Some(rule) = self.rule_of_column(column) {
                self.marker.mark(v, rule);
            }
        }
    }
}

impl VisitorMut for Typing<'_, '_> {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut sqlparser::ast::Select) -> ControlFlow<()> {
        self.scopes.push(self.tables.of_select(select));
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _select: &mut sqlparser::ast::Select) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::BinaryOp { left, right, .. } => {
                let (l, r) = (left.as_mut(), right.as_mut());
                let l_copy = l.clone();
                self.mark_if_placeholder(&l_copy, r);
                let r_copy = r.clone();
                self.mark_if_placeholder(&r_copy, l);
            }
            Expr::In {
                expr: column,
                target: InTarget::List(list),
                ..
            } => {
                let column = column.as_ref().clone();
                for item in list {
                    self.mark_if_placeholder(&column, item);
                }
            }
            Expr::Between {
                expr: column,
                low,
                high,
                ..
            } => {
                let column = column.as_ref().clone();
                self.mark_if_placeholder(&column, low);
                self.mark_if_placeholder(&column, high);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        self.marker.mark(
            value,
            ParamRule {
                check: ParamCheck::Any,
                column: None,
            },
        );
        ControlFlow::Continue(())
    }
}

/// Orders the rules by where their markers appear in `text` (the order
/// MariaDB numbers `?`), and puts `?` back into the AST.
pub(super) fn order_and_restore(
    statement: &mut Statement,
    rules: Vec<ParamRule>,
    kind: StatementKind,
) -> Result<Vec<ParamRule>, Denial> {
    if rules.is_empty() {
        return Ok(rules);
    }
    let text = statement.to_string();
    let mut positions = Vec::with_capacity(rules.len());
    for (i, rule) in rules.into_iter().enumerate() {
        let marker = format!("{MARK}{i}");
        let found: Vec<usize> = text
            .match_indices(marker.as_str())
            .filter(|(at, m)| {
                // `?sqlguard_param_1` must not match the start of `..._12`.
                !text[at + m.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
            .map(|(at, _)| at)
            .collect();
        let [at] = found.as_slice() else {
            return Err(Denial::new(
                Rule::RoundTrip,
                kind,
                "internal: cannot number the statement's placeholders",
                Some("rewrite the statement in a simpler form".into()),
            ));
        };
        positions.push((*at, rule));
    }
    positions.sort_by_key(|(at, _)| *at);
    struct Restore;
    impl VisitorMut for Restore {
        type Break = ();
        fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
            if let Value::Placeholder(text) = &mut value.value {
                if text.starts_with(MARK) {
                    *text = "?".to_string();
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Restore);
    Ok(positions.into_iter().map(|(_, rule)| rule).collect())
}

/// A value bound to a placeholder at execution, as the guard sees it.
#[derive(Debug, Clone, Copy)]
pub enum BoundValue<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bytes(&'a [u8]),
    /// A date or time.
    Temporal,
}

/// Checks one bound value against its rule. `Ok(Some(n))` means: bind `n`
/// instead (a LIMIT clamped to the policy's maximum).
pub fn check_bound(
    rule: &ParamRule,
    value: BoundValue<'_>,
    tenant: u64,
) -> Result<Option<u64>, Denial> {
    let column = rule.column.as_deref().unwrap_or("the parameter");
    let shown = || match value {
        BoundValue::Null => "NULL".to_string(),
        BoundValue::Int(i) => i.to_string(),
        BoundValue::UInt(u) => u.to_string(),
        BoundValue::Float(f) => f.to_string(),
        BoundValue::Bytes(b) => format!("'{}'", String::from_utf8_lossy(&b[..b.len().min(64)])),
        BoundValue::Temporal => "a date/time".to_string(),
    };
    let as_integer = || -> Option<i128> {
        match value {
            BoundValue::Int(i) => Some(i128::from(i)),
            BoundValue::UInt(u) => Some(i128::from(u)),
            // Node's mysql2 binds every JS number as a DOUBLE.
            BoundValue::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e18 => {
                Some(f as i128)
            }
            BoundValue::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .filter(|s| super::columns::is_integer(s))
                .and_then(|s| s.parse().ok()),
            _ => None,
        }
    };
    let wrong = |expected: &str, hint: String| {
        Err(Denial::new(
            Rule::TypedLiteral,
            StatementKind::Unknown,
            format!(
                "bound value {} is not a valid {expected} for {column}",
                shown()
            ),
            Some(hint),
        ))
    };
    match &rule.check {
        ParamCheck::Any => Ok(None),
        _ if matches!(value, BoundValue::Null)
            && !matches!(rule.check, ParamCheck::Tenant | ParamCheck::Limit { .. }) =>
        {
            Ok(None)
        }
        ParamCheck::Uuid => match value {
            BoundValue::Bytes(b) if std::str::from_utf8(b).is_ok_and(super::columns::is_uuid) => {
                Ok(None)
            }
            _ => wrong(
                "UUID",
                format!(
                    "{column} holds UUIDs like '3f2504e0-4f89-41d3-9a0c-0305e82c1001'; look the id up first"
                ),
            ),
        },
        ParamCheck::Integer => match as_integer() {
            Some(_) => Ok(None),
            None => wrong("integer", format!("{column} holds whole numbers")),
        },
        ParamCheck::Tenant => match as_integer() {
            Some(n) if n == i128::from(tenant) => Ok(None),
            _ => Err(Denial::new(
                Rule::TenantScope,
                StatementKind::Insert,
                format!(
                    "bound value {} for {column} is not your tenant ({tenant})",
                    shown()
                ),
                Some("leave the tenant column out: sqlguard sets it".into()),
            )),
        },
        ParamCheck::Limit { max } => match as_integer() {
            Some(n) if n < 0 => wrong("LIMIT", "LIMIT takes a number of rows, 0 or more".into()),
            Some(n) if n > i128::from(*max) => Ok(Some(*max)),
            Some(_) => Ok(None),
            None => wrong("LIMIT", "LIMIT takes a number of rows".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(check: ParamCheck) -> ParamRule {
        ParamRule {
            check,
            column: Some("products.id".into()),
        }
    }

    #[test]
    fn bound_values_are_checked() {
        let uuid = rule(ParamCheck::Uuid);
        assert!(
            check_bound(
                &uuid,
                BoundValue::Bytes(b"3f2504e0-4f89-41d3-9a0c-0305e82c1001"),
                1
            )
            .is_ok()
        );
        assert!(check_bound(&uuid, BoundValue::Null, 1).is_ok());
        let d = check_bound(&uuid, BoundValue::Bytes(b"1 OR 1=1"), 1).unwrap_err();
        assert_eq!(d.rule, Rule::TypedLiteral);
        assert!(
            d.message.contains("products.id") && d.message.contains("'1 OR 1=1'"),
            "{}",
            d.message
        );
        assert!(check_bound(&uuid, BoundValue::Int(5), 1).is_err());
        let int = rule(ParamCheck::Integer);
        assert!(check_bound(&int, BoundValue::UInt(5), 1).is_ok());
        assert!(check_bound(&int, BoundValue::Bytes(b"42"), 1).is_ok());
        assert!(check_bound(&int, BoundValue::Bytes(b"4.2"), 1).is_err());
        assert!(check_bound(&int, BoundValue::Float(4.0), 1).is_ok());
        assert!(check_bound(&int, BoundValue::Float(4.5), 1).is_err());
        assert!(check_bound(&int, BoundValue::Float(f64::NAN), 1).is_err());
        let tenant = rule(ParamCheck::Tenant);
        assert!(check_bound(&tenant, BoundValue::Int(1), 1).is_ok());
        assert_eq!(
            check_bound(&tenant, BoundValue::Int(2), 1)
                .unwrap_err()
                .rule,
            Rule::TenantScope
        );
        assert!(check_bound(&tenant, BoundValue::Null, 1).is_err());
        let limit = rule(ParamCheck::Limit { max: 100 });
        assert_eq!(check_bound(&limit, BoundValue::Int(5), 1).unwrap(), None);
        assert_eq!(
            check_bound(&limit, BoundValue::UInt(100_000), 1).unwrap(),
            Some(100)
        );
        assert!(check_bound(&limit, BoundValue::Int(-1), 1).is_err());
    }
}
