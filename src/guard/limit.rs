//! Mandatory LIMIT on the top-level SELECT: injected when missing, clamped
//! when above the policy's maximum (also `LIMIT offset, count` and a LIMIT
//! after a UNION). Subqueries are left alone: only what reaches the chat counts.

use sqlparser::ast::{Expr, LimitClause, Query, SetExpr, Value};

use super::scope::number;
use super::{Denial, Rule, StatementKind};
use crate::policy::LimitPolicy;

/// What the guard did to the LIMIT, for the decision and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitChange {
    Injected(u64),
    Clamped { from: u64, to: u64 },
}

pub(super) fn apply(query: &mut Query, limit: LimitPolicy) -> Result<Option<LimitChange>, Denial> {
    // A SELECT without FROM (`SELECT @@version_comment`, `SELECT 1`) yields
    // one row; drivers' connect-time queries stay as they were sent.
    if let SetExpr::Select(select) = query.body.as_ref() {
        if select.from.is_empty() && query.limit_clause.is_none() && query.fetch.is_none() {
            return Ok(None);
        }
    }
    if query.fetch.is_some() {
        return Err(not_literal("FETCH FIRST is not allowed"));
    }
    match &mut query.limit_clause {
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(number(limit.default)),
                offset: None,
                limit_by: Vec::new(),
            });
            Ok(Some(LimitChange::Injected(limit.default)))
        }
        Some(LimitClause::LimitOffset {
            limit: slot @ None,
            limit_by,
            ..
        }) if limit_by.is_empty() => {
            // OFFSET without LIMIT.
            *slot = Some(number(limit.default));
            Ok(Some(LimitChange::Injected(limit.default)))
        }
        Some(LimitClause::LimitOffset {
            limit: Some(count),
            limit_by,
            ..
        }) if limit_by.is_empty() => clamp(count, limit),
        Some(LimitClause::OffsetCommaLimit { limit: count, .. }) => clamp(count, limit),
        Some(_) => Err(not_literal("LIMIT BY is not allowed")),
    }
}

fn clamp(count: &mut Expr, limit: LimitPolicy) -> Result<Option<LimitChange>, Denial> {
    let Expr::Value(v) = count else {
        return Err(not_literal("LIMIT must be a number"));
    };
    match &v.value {
        // Bound at execution; the prepared-statement path clamps the value.
        Value::Placeholder(_) => Ok(None),
        Value::Number(n, _) => match n.parse::<u64>() {
            Ok(n) if n <= limit.max => Ok(None),
            Ok(n) => {
                *count = number(limit.max);
                Ok(Some(LimitChange::Clamped {
                    from: n,
                    to: limit.max,
                }))
            }
            // Larger than u64 (or not a whole number): clamp as well.
            Err(_) if n.bytes().all(|b| b.is_ascii_digit()) => {
                *count = number(limit.max);
                Ok(Some(LimitChange::Clamped {
                    from: u64::MAX,
                    to: limit.max,
                }))
            }
            Err(_) => Err(not_literal("LIMIT must be a whole number")),
        },
        _ => Err(not_literal("LIMIT must be a number")),
    }
}

fn not_literal(message: &str) -> Denial {
    Denial::new(
        Rule::LimitNotLiteral,
        StatementKind::Select,
        message,
        Some("write LIMIT <number>, e.g. LIMIT 5".into()),
    )
}
