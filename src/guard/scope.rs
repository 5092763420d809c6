//! Tenant scoping: every reference to a tenant-scoped table, wherever it is
//! (FROM, joins, subqueries, derived tables, CTEs, UNION branches, INSERT
//! sources, multi-table UPDATE), gets its tenant predicate:
//! `WHERE (<original>) AND <alias>.tenant_id = <tenant> AND ...`, or, for the
//! inner side of a LEFT JOIN, `ON (<original>) AND <alias>.tenant_id = ...`.
//! Predicates are always added, never "detected" in the original.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::ops::ControlFlow;

use lru::LruCache;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, JoinConstraint, JoinOperator, Select, TableFactor, TableWithJoins,
    Update, Value, VisitMut, VisitorMut, visit_expressions_mut,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::tables::{StatementTables, table_name};
use super::{Denial, Rule, SessionContext, StatementKind};
use crate::policy::{Policy, Scope, TablePolicy};

/// Adds tenant predicates to every SELECT of the statement, and to the
/// UPDATE's own tables. Returns how many table references were scoped.
pub(super) fn apply(
    statement: &mut sqlparser::ast::Statement,
    tables: &StatementTables<'_>,
    kind: StatementKind,
    session: &SessionContext<'_>,
) -> Result<usize, Denial> {
    let mut scoper = Scoper {
        session,
        tables,
        kind,
        scoped: 0,
    };
    if let ControlFlow::Break(denial) = statement.visit(&mut scoper) {
        return Err(denial);
    }
    if let sqlparser::ast::Statement::Update(update) = statement {
        scoper.scope_update(update)?;
    }
    Ok(scoper.scoped)
}

struct Scoper<'a, 'p> {
    session: &'a SessionContext<'p>,
    tables: &'a StatementTables<'p>,
    kind: StatementKind,
    scoped: usize,
}

impl Scoper<'_, '_> {
    fn deny(&self, rule: Rule, message: impl Into<String>, hint: &str) -> Denial {
        Denial::new(rule, self.kind, message, Some(hint.to_string()))
    }

    /// Scopes one FROM item. Tables in inner positions add their predicate
    /// to `outer` (the WHERE, or the ON of an enclosing LEFT JOIN); the inner
    /// side of a LEFT JOIN gets its predicate in that join's ON.
    fn scope_from(
        &mut self,
        twj: &mut TableWithJoins,
        outer: &mut Vec<Expr>,
    ) -> Result<(), Denial> {
        self.scope_factor(&mut twj.relation, outer)?;
        for join in &mut twj.joins {
            match &mut join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => {
                    if matches!(c, JoinConstraint::Natural) {
                        return Err(self.natural());
                    }
                    self.scope_factor(&mut join.relation, outer)?;
                }
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => {
                    let JoinConstraint::On(on) = c else {
                        return Err(self.deny(
                            Rule::JoinNotAllowed,
                            "LEFT JOIN without ON (USING or NATURAL) is not allowed",
                            "write the join condition with ON a.x = b.x",
                        ));
                    };
                    let mut inner = Vec::new();
                    self.scope_factor(&mut join.relation, &mut inner)?;
                    and_into(on, inner);
                }
                _ => {
                    return Err(self.deny(
                        Rule::JoinNotAllowed,
                        "only INNER, CROSS and LEFT joins are allowed",
                        "write a RIGHT JOIN as a LEFT JOIN with the tables swapped",
                    ));
                }
            }
        }
        Ok(())
    }

    fn natural(&self) -> Denial {
        self.deny(
            Rule::JoinNotAllowed,
            "NATURAL JOIN is not allowed",
            "write the join condition with ON a.x = b.x",
        )
    }

    fn scope_factor(
        &mut self,
        factor: &mut TableFactor,
        outer: &mut Vec<Expr>,
    ) -> Result<(), Denial> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                version,
                with_ordinality,
                json_path,
                sample,
                ..
            } => {
                if args.is_some()
                    || version.is_some()
                    || *with_ordinality
                    || json_path.is_some()
                    || sample.is_some()
                {
                    return Err(self.unsupported_factor());
                }
                let Some(table) = table_name(name) else {
                    return Err(self.unsupported_factor());
                };
                let qualified = name.0.len() > 1;
                if !qualified && self.tables.ctes.contains(&table) {
                    // A CTE: its own body was scoped where it is defined.
                    return Ok(());
                }
                let Some(policy_table) = self.session.policy.table(&table) else {
                    return Err(self.deny(
                        Rule::TableNotAllowed,
                        format!("table '{table}' is not allowed"),
                        "use the tables of the policy only",
                    ));
                };
                let qualifier = match alias {
                    Some(a) => a.name.clone(),
                    None => match name.0.last() {
                        Some(sqlparser::ast::ObjectNamePart::Identifier(i)) => i.clone(),
                        _ => return Err(self.unsupported_factor()),
                    },
                };
                if let Some(predicate) = predicate(
                    self.session.policy,
                    policy_table,
                    &qualifier,
                    self.session.tenant_id,
                )? {
                    outer.push(predicate);
                    self.scoped += 1;
                }
                Ok(())
            }
            TableFactor::Derived { lateral, .. } => {
                if *lateral {
                    return Err(self.unsupported_factor());
                }
                // The subquery's own SELECTs are scoped by the visitor.
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.scope_from(table_with_joins, outer),
            _ => Err(self.unsupported_factor()),
        }
    }

    fn unsupported_factor(&self) -> Denial {
        self.deny(
            Rule::JoinNotAllowed,
            "this kind of table expression (table function, JSON_TABLE, LATERAL, ...) is not allowed",
            "select from tables, joins and subqueries only",
        )
    }

    fn scope_select(&mut self, select: &mut Select) -> Result<(), Denial> {
        let mut predicates = Vec::new();
        for twj in &mut select.from {
            self.scope_from(twj, &mut predicates)?;
        }
        and_into_option(&mut select.selection, predicates);
        Ok(())
    }

    fn scope_update(&mut self, update: &mut Update) -> Result<(), Denial> {
        if update.from.is_some() {
            return Err(self.deny(
                Rule::JoinNotAllowed,
                "UPDATE ... FROM is not allowed",
                "write a multi-table UPDATE as UPDATE a JOIN b ON ... SET ...",
            ));
        }
        let mut predicates = Vec::new();
        self.scope_from(&mut update.table, &mut predicates)?;
        and_into_option(&mut update.selection, predicates);
        Ok(())
    }
}

impl VisitorMut for Scoper<'_, '_> {
    type Break = Denial;

    // Post-order: the predicates added here (and their subqueries, which are
    // built already scoped) are not visited again.
    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<Denial> {
        match self.scope_select(select) {
            Ok(()) => ControlFlow::Continue(()),
            Err(denial) => ControlFlow::Break(denial),
        }
    }
}

/// `(<existing>) AND p1 AND p2 ...`, left-associative as the parser builds it,
/// so the serialized text parses back to the same tree.
fn and_all(existing: Option<Expr>, predicates: Vec<Expr>) -> Option<Expr> {
    let mut iter = predicates.into_iter();
    let mut acc = match existing {
        Some(e) => Expr::Nested(Box::new(e)),
        None => iter.next()?,
    };
    for p in iter {
        acc = Expr::BinaryOp {
            left: Box::new(acc),
            op: BinaryOperator::And,
            right: Box::new(p),
        };
    }
    Some(acc)
}

fn and_into_option(slot: &mut Option<Expr>, predicates: Vec<Expr>) {
    if predicates.is_empty() {
        return;
    }
    *slot = and_all(slot.take(), predicates);
}

fn and_into(on: &mut Expr, predicates: Vec<Expr>) {
    if predicates.is_empty() {
        return;
    }
    let existing = std::mem::replace(on, Expr::Value(Value::Null.into()));
    if let Some(combined) = and_all(Some(existing), predicates) {
        *on = combined;
    }
}

pub(super) fn number(n: u64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).into())
}

fn column_of(qualifier: &Ident, column: &str) -> Expr {
    Expr::CompoundIdentifier(vec![qualifier.clone(), Ident::new(column)])
}

/// The predicate that keeps `table` (referenced as `qualifier`) to `tenant`.
pub(super) fn predicate(
    policy: &Policy,
    table: &TablePolicy,
    qualifier: &Ident,
    tenant: u64,
) -> Result<Option<Expr>, Denial> {
    Ok(match &table.scope {
        Scope::Tenant => Some(Expr::BinaryOp {
            left: Box::new(column_of(qualifier, &policy.tenant_column)),
            op: BinaryOperator::Eq,
            right: Box::new(number(tenant)),
        }),
        Scope::Key { column } => Some(Expr::BinaryOp {
            left: Box::new(column_of(qualifier, column)),
            op: BinaryOperator::Eq,
            right: Box::new(number(tenant)),
        }),
        Scope::Parent { column, .. } => Some(parse_expr(&format!(
            "{} IN ({})",
            column_of(qualifier, column),
            parent_keys(policy, table, tenant, None)?
        ))?),
        Scope::Shared => None,
    })
}

/// `SELECT <parent>.<key> FROM <parent> WHERE <parent's own scope> [AND extra]`:
/// the keys of the parent rows that belong to `tenant`.
pub(super) fn parent_keys(
    policy: &Policy,
    table: &TablePolicy,
    tenant: u64,
    extra: Option<&str>,
) -> Result<String, Denial> {
    let Scope::Parent {
        parent, parent_key, ..
    } = &table.scope
    else {
        return Err(internal("parent_keys on a table without a parent"));
    };
    scoped_keys(policy, parent, parent_key, tenant, extra)
}

/// `SELECT <table>.<key> FROM <table> WHERE <table's scope> [AND (extra)]`.
pub(super) fn scoped_keys(
    policy: &Policy,
    table: &str,
    key: &str,
    tenant: u64,
    extra: Option<&str>,
) -> Result<String, Denial> {
    let Some(target) = policy.table(table) else {
        return Err(internal("referenced table missing from the policy"));
    };
    let qualifier = Ident::new(target.name.clone());
    let scope = predicate(policy, target, &qualifier, tenant)?
        .ok_or_else(|| internal("referenced table is shared"))?;
    let extra = extra.map(|e| format!(" AND ({e})")).unwrap_or_default();
    Ok(format!(
        "SELECT {table}.{key} FROM {table} WHERE {scope}{extra}",
        table = target.name
    ))
}

/// `(SELECT <table>.<key> FROM <table> WHERE <scope> AND (<table>.<key> = (<value>) [AND extra]))`:
/// the value itself if it names one of the tenant's rows, NULL otherwise.
pub(super) fn tenant_row_lookup(
    policy: &Policy,
    table: &str,
    key: &str,
    value: &Expr,
    tenant: u64,
    extra: &[String],
) -> Result<Expr, Denial> {
    // The client's value is parenthesized: it is an expression, and must
    // not bind to the conditions around it. The text holds a `?` in its
    // place, so it depends on the policy and tenant only and its parse is
    // reused (see `parse_expr`); the value's own AST is then put in the
    // `?`'s place, which is the tree the parser builds for `(<value>)`.
    let mut conditions = vec![format!("{table}.{key} = (?)")];
    conditions.extend(extra.iter().cloned());
    let keys = scoped_keys(policy, table, key, tenant, Some(&conditions.join(" AND ")))?;
    let mut lookup = parse_expr(&format!("({keys})"))?;
    let mut placeholders = 0;
    let _ = visit_expressions_mut(&mut lookup, |e| {
        if matches!(e, Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if p == "?")) {
            *e = value.clone();
            placeholders += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    if placeholders != 1 {
        return Err(internal(
            "generated lookup has no single place for the value",
        ));
    }
    Ok(lookup)
}

/// Generated expressions parsed lately, per thread: their text is built from
/// the policy (names, guard values) and the tenant id only, and parsing is a
/// pure function of the text, so a clone of an earlier parse is the same tree.
const GENERATED_PARSES_PER_THREAD: usize = 256;

thread_local! {
    static GENERATED: RefCell<Option<LruCache<String, Expr>>> = const { RefCell::new(None) };
}

/// Parses an expression sqlguard generated (never client text).
pub(super) fn parse_expr(text: &str) -> Result<Expr, Denial> {
    let cached = GENERATED.with_borrow_mut(|c| c.as_mut().and_then(|c| c.get(text).cloned()));
    if let Some(expr) = cached {
        return Ok(expr);
    }
    let expr = Parser::new(&MySqlDialect {})
        .with_options(super::parser_options())
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| internal(&format!("generated predicate does not parse: {e}")))?;
    GENERATED.with_borrow_mut(|c| {
        let capacity = NonZeroUsize::new(GENERATED_PARSES_PER_THREAD).unwrap_or(NonZeroUsize::MIN);
        c.get_or_insert_with(|| LruCache::new(capacity))
            .put(text.to_string(), expr.clone());
    });
    Ok(expr)
}

fn internal(what: &str) -> Denial {
    Denial::new(
        Rule::RoundTrip,
        StatementKind::Unknown,
        format!("internal: {what}"),
        Some("rewrite the statement in a simpler form".into()),
    )
}
