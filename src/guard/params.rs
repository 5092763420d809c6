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
    Limit { max: u64 },
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
    let mut visitor = Typing { tables, marker };
    let _ = statement.visit(&mut visitor);
    visitor.marker.rules
}

fn limit_count(query: &mut Query) -> Option<&mut Expr> {
    match &mut query.limit_clause {
        Some(LimitClause::LimitOffset { limit: Some(count), .. })
        | Some(LimitClause::OffsetCommaLimit { limit: count, .. }) => Some(count),
        _ => None,
    }
}

fn insert_rules(insert: &mut sqlparser::ast::Insert, session: &SessionContext<'_>, marker: &mut Marker) {
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
            let check = if column == &session.policy.tenant_column && matches!(table.scope, Scope::Tenant) {
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
        return ParamRule { check: ParamCheck::Any, column: None };
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
            None => self.tables.tables.clone(),
        };
        Some(rule_for(&column, &candidates))
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
