//! Size and depth caps on a parsed statement (PARSER-DIFFERENTIALS §7).
//!
//! The token budget in `precheck` already bounds the depth of the tree, so
//! this visitor cannot overflow the stack itself; it is the second, exact
//! line: it counts what the parser actually built.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, Statement, Visit, Visitor};

use super::Denial;
use super::precheck::too_complex;

/// Most expression nodes in one statement: bounds memory and the time the
/// rule and rewrite passes spend. An INSERT of 1,000 rows of 8 values fits.
pub const MAX_EXPR_NODES: usize = 10_000;

/// Deepest nesting of expressions inside expressions.
pub const MAX_EXPR_DEPTH: usize = 128;

/// Deepest nesting of queries (subqueries, derived tables, CTE bodies).
pub const MAX_QUERY_DEPTH: usize = 8;

#[derive(Default)]
struct Limits {
    nodes: usize,
    expr_depth: usize,
    query_depth: usize,
}

impl Visitor for Limits {
    type Break = Denial;

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Denial> {
        self.nodes += 1;
        self.expr_depth += 1;
        if self.nodes > MAX_EXPR_NODES {
            return ControlFlow::Break(too_complex(format!(
                "more than {MAX_EXPR_NODES} expression nodes"
            )));
        }
        if self.expr_depth > MAX_EXPR_DEPTH {
            return ControlFlow::Break(too_complex(format!(
                "expressions nested deeper than {MAX_EXPR_DEPTH} levels"
            )));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Denial> {
        self.expr_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<Denial> {
        self.query_depth += 1;
        if self.query_depth > MAX_QUERY_DEPTH {
            return ControlFlow::Break(too_complex(format!(
                "queries nested deeper than {MAX_QUERY_DEPTH} levels"
            )));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Denial> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }
}

pub(super) fn check(statement: &Statement) -> Result<(), Denial> {
    match statement.visit(&mut Limits::default()) {
        ControlFlow::Break(denial) => Err(denial),
        ControlFlow::Continue(()) => Ok(()),
    }
}
