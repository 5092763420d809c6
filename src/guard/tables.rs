//! Which tables a statement names, and under which aliases. Every table
//! reference must be a table of the policy or a CTE of the statement; a CTE
//! may not be named like a table, so a name is never both.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Insert, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, TableObject, Visit,
    Visitor,
};

use super::{Denial, Rule, SessionContext, StatementKind};
use crate::policy::{Policy, TablePolicy};

/// What the rest of the engine needs to know about the statement's tables.
#[derive(Debug, Default)]
pub(super) struct StatementTables<'p> {
    /// CTE names (lowercase).
    pub ctes: HashSet<String>,
    /// Alias or table name (lowercase) → the policy tables it may stand for.
    /// Over-approximate on purpose: one alias used in two subqueries for two
    /// tables maps to both, and checks must accept the value for both.
    pub aliases: HashMap<String, Vec<&'p TablePolicy>>,
    /// Every policy table the statement names.
    pub tables: Vec<&'p TablePolicy>,
}

impl<'p> StatementTables<'p> {
    /// Denied column names of every table the statement names.
    pub fn denied_columns(&self) -> impl Iterator<Item = (&'p TablePolicy, &'p str)> + '_ {
        self.tables
            .iter()
            .flat_map(|t| t.denied_columns.iter().map(move |c| (*t, c.as_str())))
    }

    /// The tables an alias (or table name) may stand for.
    pub fn resolve(&self, alias: &str) -> &[&'p TablePolicy] {
        self.aliases
            .get(&alias.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The table part of `name` (`shop.products` → `products`), lowercase.
/// Qualifiers other than the session's database are refused by `rules`.
pub(super) fn table_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(t)]
        | [ObjectNamePart::Identifier(_), ObjectNamePart::Identifier(t)] => {
            Some(t.value.to_ascii_lowercase())
        }
        _ => None,
    }
}

pub(super) fn collect<'p>(
    statement: &Statement,
    kind: StatementKind,
    session: &SessionContext<'p>,
) -> Result<StatementTables<'p>, Denial> {
    let mut ctes = CteNames::default();
    let _ = statement.visit(&mut ctes);
    if let Some(denial) = ctes.denial {
        return Err(denial.with_kind(kind));
    }
    let mut collector = Collector {
        policy: session.policy,
        tables: StatementTables {
            ctes: ctes.names,
            ..StatementTables::default()
        },
        kind,
        relations_seen: 0,
        relations_expected: 0,
        insert_source: match statement {
            Statement::Insert(insert) => insert.source.as_deref().map(|q| q as *const Query),
            _ => None,
        },
    };
    if let Statement::Insert(insert) = statement {
        collector.insert_target(insert)?;
    }
    if let ControlFlow::Break(denial) = statement.visit(&mut collector) {
        return Err(denial);
    }
    // Every relation must sit where the scoper will find it (a FROM item or
    // the INSERT target); `x IN table` and other exotic places are refused.
    if collector.relations_seen != collector.relations_expected {
        return Err(Denial::new(
            Rule::JoinNotAllowed,
            kind,
            "a table is named in a place sqlguard does not support",
            Some("name tables in FROM and JOIN clauses only".into()),
        ));
    }
    Ok(collector.tables)
}

#[derive(Default)]
struct CteNames {
    names: HashSet<String>,
    denial: Option<Denial>,
}

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let Some(with) = &query.with else {
            return ControlFlow::Continue(());
        };
        if with.recursive {
            self.denial = Some(Denial::new(
                Rule::RecursiveCte,
                StatementKind::Select,
                "WITH RECURSIVE is not allowed",
                Some("use a plain WITH, a join or a subquery".into()),
            ));
            return ControlFlow::Break(());
        }
        for cte in &with.cte_tables {
            self.names.insert(cte.alias.name.value.to_ascii_lowercase());
        }
        ControlFlow::Continue(())
    }
}

struct Collector<'p> {
    policy: &'p Policy,
    tables: StatementTables<'p>,
    kind: StatementKind,
    relations_seen: usize,
    relations_expected: usize,
    /// The INSERT's VALUES/SELECT source, the one query that may be VALUES.
    insert_source: Option<*const Query>,
}

impl<'p> Collector<'p> {
    fn lookup(&self, name: &ObjectName) -> Result<Option<&'p TablePolicy>, Denial> {
        let Some(table) = table_name(name) else {
            return Err(Denial::new(
                Rule::TableNotAllowed,
                self.kind,
                format!("the table name {name} is not allowed"),
                Some("name tables as `table` or `database.table`".into()),
            ));
        };
        let qualified = name.0.len() > 1;
        if !qualified && self.tables.ctes.contains(&table) {
            if self.policy.table(&table).is_some() {
                return Err(cte_shadows(&table, self.kind));
            }
            return Ok(None);
        }
        match self.policy.table(&table) {
            Some(t) => Ok(Some(t)),
            None => Err(Denial::new(
                Rule::TableNotAllowed,
                self.kind,
                format!("table '{table}' is not allowed for {}", self.policy.name),
                Some(format!(
                    "the tables you may use are: {}",
                    self.policy.table_names().join(", ")
                )),
            )),
        }
    }

    fn record(&mut self, alias: String, table: &'p TablePolicy) {
        let entry = self.tables.aliases.entry(alias).or_default();
        if !entry.iter().any(|t| std::ptr::eq(*t, table)) {
            entry.push(table);
        }
        if !self.tables.tables.iter().any(|t| std::ptr::eq(*t, table)) {
            self.tables.tables.push(table);
        }
    }

    fn insert_target(&mut self, insert: &Insert) -> Result<(), Denial> {
        let TableObject::TableName(name) = &insert.table else {
            return Err(Denial::new(
                Rule::InsertShape,
                StatementKind::Insert,
                "INSERT into a table function is not allowed",
                None,
            ));
        };
        self.relations_expected += 1;
        if let Some(table) = self.lookup(name)? {
            self.record(table.name.clone(), table);
        }
        Ok(())
    }
}

fn cte_shadows(name: &str, kind: StatementKind) -> Denial {
    Denial::new(
        Rule::CteShadowsTable,
        kind,
        format!("a WITH query may not be named like the table '{name}'"),
        Some("give the WITH query a name of its own".into()),
    )
}

impl Visitor for Collector<'_> {
    type Break = Denial;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Denial> {
        // Only SELECTs (and their UNIONs) may read: `TABLE t` or a DML
        // statement nested as a query would escape the scoper.
        let is_insert_source = self.insert_source.is_some_and(|q| std::ptr::eq(q, query));
        if !is_insert_source && !body_is_selects(&query.body) {
            return ControlFlow::Break(Denial::new(
                Rule::JoinNotAllowed,
                self.kind,
                "this form of query (TABLE, VALUES, nested DML) is not allowed",
                Some("write SELECT ... FROM ...".into()),
            ));
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = cte.alias.name.value.to_ascii_lowercase();
                if self.policy.table(&name).is_some() {
                    return ControlFlow::Break(cte_shadows(&name, self.kind));
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, _relation: &ObjectName) -> ControlFlow<Denial> {
        self.relations_seen += 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Denial> {
        if let TableFactor::Table { name, alias, .. } = factor {
            self.relations_expected += 1;
            match self.lookup(name) {
                Err(denial) => return ControlFlow::Break(denial),
                Ok(None) => {}
                Ok(Some(table)) => {
                    let key = match alias {
                        Some(a) => a.name.value.to_ascii_lowercase(),
                        None => table.name.clone(),
                    };
                    self.record(key, table);
                    // A qualified column may also use the table's own name.
                    self.record(table.name.clone(), table);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn body_is_selects(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) => true,
        SetExpr::SetOperation { left, right, .. } => {
            body_is_selects(left) && body_is_selects(right)
        }
        _ => false,
    }
}

impl Denial {
    pub(super) fn with_kind(mut self, kind: StatementKind) -> Self {
        self.kind = kind;
        self
    }
}
