//! INSERT and UPDATE rules: which columns may be written, the tenant column
//! (added by sqlguard, never chosen by the client), parent keys checked
//! against the tenant inside the statement, and the policy's domain guards.

use sqlparser::ast::{
    AssignmentTarget, Expr, Ident, Insert, ObjectName, ObjectNamePart, SelectItem, SetExpr,
    TableObject, Update, Value,
};

use super::columns::{ColumnType, check_literal};
use super::scope::{number, tenant_row_lookup};
use super::tables::{StatementTables, table_name};
use super::{Denial, Lookup, Rule, SessionContext, StatementKind};
use crate::policy::{DomainGuard, Scope, TablePolicy};

fn deny(
    rule: Rule,
    kind: StatementKind,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Denial {
    Denial::new(rule, kind, message, Some(hint.into()))
}

fn column_name(name: &ObjectName) -> Option<&Ident> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(c)] => Some(c),
        _ => None,
    }
}

fn typed(table: &TablePolicy, column: &str) -> Option<ColumnType> {
    super::columns::declared_type(table, column)
}

/// Checks an INSERT and rewrites it: the tenant column is added (or its
/// value checked), parent keys are replaced by a lookup that yields NULL for
/// another tenant's parent (MariaDB then refuses the row: the parent column is
/// NOT NULL, which `sqlguard validate` verifies).
pub(super) fn insert(
    insert: &mut Insert,
    session: &SessionContext<'_>,
) -> Result<Vec<Lookup>, Denial> {
    let kind = StatementKind::Insert;
    let policy = session.policy;
    let TableObject::TableName(name) = &insert.table else {
        return Err(deny(
            Rule::InsertShape,
            kind,
            "INSERT into a table function is not allowed",
            "INSERT INTO <table> (columns) VALUES (...)",
        ));
    };
    let Some(table) = table_name(name).and_then(|t| policy.table(&t)) else {
        return Err(deny(
            Rule::TableNotAllowed,
            kind,
            format!("INSERT into {name} is not allowed"),
            format!(
                "the tables you may use are: {}",
                policy.table_names().join(", ")
            ),
        ));
    };
    let Some(allowed) = &table.insert_columns else {
        return Err(deny(
            Rule::WriteNotAllowed,
            kind,
            format!(
                "INSERT into {} is not allowed for {}",
                table.name, session.user
            ),
            "this table is read-only for you",
        ));
    };
    if insert.on.is_some() {
        return Err(deny(
            Rule::UpsertNotAllowed,
            kind,
            "INSERT ... ON DUPLICATE KEY UPDATE is not allowed",
            "a key collision could touch another tenant's row: SELECT first, then INSERT or UPDATE",
        ));
    }
    if !insert.assignments.is_empty()
        || insert.table_alias.is_some()
        || insert.partitioned.is_some()
        || !insert.after_columns.is_empty()
        || insert.returning.is_some()
        || insert.overwrite
        || insert.or.is_some()
    {
        return Err(deny(
            Rule::InsertShape,
            kind,
            "this form of INSERT is not allowed",
            "write INSERT INTO <table> (col, ...) VALUES (...)",
        ));
    }
    // The tenant checks of parent keys and references turn a foreign key
    // into NULL, which MariaDB refuses; IGNORE would store a default instead.
    if insert.ignore
        && (matches!(table.scope, Scope::Parent { .. }) || !table.references.is_empty())
    {
        return Err(deny(
            Rule::InsertShape,
            kind,
            format!("INSERT IGNORE into {} is not allowed", table.name),
            "use a plain INSERT",
        ));
    }
    if insert.columns.is_empty() {
        return Err(deny(
            Rule::InsertShape,
            kind,
            "INSERT without a column list is not allowed",
            format!(
                "name the columns: INSERT INTO {} ({}) VALUES (...)",
                table.name,
                allowed.join(", ")
            ),
        ));
    }
    let mut columns = Vec::with_capacity(insert.columns.len());
    for name in &insert.columns {
        let Some(c) = column_name(name) else {
            return Err(deny(
                Rule::InsertShape,
                kind,
                format!("column {name} must be a plain name"),
                "write column names without a table prefix",
            ));
        };
        columns.push(c.value.to_ascii_lowercase());
    }
    let tenant_column = policy.tenant_column.as_str();
    let tenant_at = columns
        .iter()
        .position(|c| c == tenant_column && matches!(table.scope, Scope::Tenant));
    for c in &columns {
        if Some(c.as_str()) == tenant_at.map(|_| tenant_column) {
            continue;
        }
        if !allowed.contains(c) {
            return Err(deny(
                Rule::WriteNotAllowed,
                kind,
                format!("INSERT may not set {}.{c}", table.name),
                format!(
                    "columns you may insert into {}: {}",
                    table.name,
                    allowed.join(", ")
                ),
            ));
        }
    }
    let source = insert.source.as_deref_mut().ok_or_else(|| {
        deny(
            Rule::InsertShape,
            kind,
            "INSERT without VALUES or SELECT is not allowed",
            "write INSERT INTO <table> (col, ...) VALUES (...)",
        )
    })?;
    match source.body.as_mut() {
        SetExpr::Values(values) => {
            for row in &mut values.rows {
                let row = &mut row.content;
                for (c, v) in columns.iter().zip(row.iter_mut()) {
                    if let Some(ty) = typed(table, c) {
                        check_literal(v, ty, &table.name, c, kind)?;
                    }
                    bind_reference(v, table, c, session)?;
                }
                match (&table.scope, tenant_at) {
                    (Scope::Tenant, Some(i)) => check_tenant_value(
                        row.get(i),
                        session.tenant_id,
                        &table.name,
                        tenant_column,
                    )?,
                    (Scope::Tenant, None) => row.push(number(session.tenant_id)),
                    (Scope::Parent { column, .. }, _) => {
                        bind_parent(row, &columns, column, table, session)?
                    }
                    (Scope::Key { .. }, _) => {
                        return Err(deny(
                            Rule::WriteNotAllowed,
                            kind,
                            format!("INSERT into {} is not allowed", table.name),
                            "tenants are managed by the platform",
                        ));
                    }
                    (Scope::Shared, _) => {}
                }
            }
        }
        SetExpr::Select(_)
            if columns
                .iter()
                .any(|c| table.references.iter().any(|r| &r.column == c)) =>
        {
            return Err(deny(
                Rule::InsertShape,
                kind,
                format!(
                    "INSERT INTO {} ... SELECT may not set a column that references another table",
                    table.name
                ),
                "use VALUES, so sqlguard can check the referenced row belongs to you",
            ));
        }
        SetExpr::Select(select) => match (&table.scope, tenant_at) {
            (Scope::Tenant, None) => select
                .projection
                .push(SelectItem::UnnamedExpr(number(session.tenant_id))),
            (Scope::Shared, _) => {}
            _ => {
                return Err(deny(
                    Rule::InsertShape,
                    kind,
                    format!(
                        "INSERT INTO {} ... SELECT with this column list is not allowed",
                        table.name
                    ),
                    "leave the tenant column out (sqlguard adds it), or use VALUES",
                ));
            }
        },
        _ => {
            return Err(deny(
                Rule::InsertShape,
                kind,
                "INSERT from a UNION or other set expression is not allowed",
                "use VALUES or a single SELECT",
            ));
        }
    }
    if matches!(table.scope, Scope::Tenant) && tenant_at.is_none() {
        insert
            .columns
            .push(ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                tenant_column,
            ))]));
    }
    Ok(lookups_of(table, &columns, session))
}

/// What to say when a lookup written into `columns` finds nothing.
fn lookups_of(
    table: &TablePolicy,
    columns: &[String],
    session: &SessionContext<'_>,
) -> Vec<Lookup> {
    let mut lookups = Vec::new();
    if let Scope::Parent { parent, column, .. } = &table.scope {
        let mut message = format!("{column} must name one of your {parent} rows");
        for guard in &table.guards {
            message.push_str(&format!(
                "; when {} is '{}': {}",
                guard.when_column, guard.when_value, guard.message
            ));
        }
        lookups.push(Lookup {
            column: column.clone(),
            message,
        });
    }
    for reference in &table.references {
        if columns.contains(&reference.column) {
            lookups.push(Lookup {
                column: reference.column.clone(),
                message: format!(
                    "{} must name one of your {} rows (for tenant {}); look the id up with a SELECT first",
                    reference.column, reference.table, session.tenant_id
                ),
            });
        }
    }
    lookups
}

fn check_tenant_value(
    value: Option<&Expr>,
    tenant: u64,
    table: &str,
    column: &str,
) -> Result<(), Denial> {
    let ok = match value {
        Some(Expr::Value(v)) => match &v.value {
            Value::Number(n, _) | Value::SingleQuotedString(n) => n.parse::<u64>() == Ok(tenant),
            // A bound value is checked when the statement is executed.
            Value::Placeholder(p) => p == "?",
            _ => false,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Denial::new(
            Rule::TenantScope,
            StatementKind::Insert,
            format!("{table}.{column} must be your own tenant ({tenant})"),
            Some(format!("leave {column} out: sqlguard sets it to {tenant}")),
        ))
    }
}

/// Replaces the parent key value `v` with `(SELECT key FROM parent WHERE
/// <parent's scope> AND (key = (v) [AND guard]))`.
fn bind_parent(
    row: &mut [Expr],
    columns: &[String],
    parent_column: &str,
    table: &TablePolicy,
    session: &SessionContext<'_>,
) -> Result<(), Denial> {
    let kind = StatementKind::Insert;
    let Some(at) = columns.iter().position(|c| c == parent_column) else {
        return Err(deny(
            Rule::TenantScope,
            kind,
            format!("an INSERT into {} must name {parent_column}", table.name),
            format!(
                "say which row it belongs to: INSERT INTO {} ({parent_column}, ...) VALUES (...)",
                table.name
            ),
        ));
    };
    let Scope::Parent {
        parent, parent_key, ..
    } = &table.scope
    else {
        return Ok(());
    };
    let Some(value) = row.get(at).cloned() else {
        return Err(deny(
            Rule::InsertShape,
            kind,
            "a row has fewer values than columns",
            "give one value per column",
        ));
    };
    let mut guards = Vec::new();
    for guard in &table.guards {
        if guard_applies(guard, columns, row) {
            guards.push(format!(
                "{parent}.{} = '{}'",
                guard.parent_column,
                guard.parent_value.replace('\'', "''")
            ));
        }
    }
    row[at] = tenant_row_lookup(
        session.policy,
        parent,
        parent_key,
        &value,
        session.tenant_id,
        &guards,
    )?;
    Ok(())
}

/// A column that references another tenant-scoped table (`references` in
/// the policy) may only name one of the tenant's rows: its value becomes a
/// lookup that is NULL otherwise, and MariaDB refuses the NULL.
fn bind_reference(
    value: &mut Expr,
    table: &TablePolicy,
    column: &str,
    session: &SessionContext<'_>,
) -> Result<(), Denial> {
    let Some(reference) = table.references.iter().find(|r| r.column == column) else {
        return Ok(());
    };
    if matches!(value, Expr::Value(v) if matches!(v.value, Value::Null)) {
        return Ok(());
    }
    *value = tenant_row_lookup(
        session.policy,
        &reference.table,
        &reference.key,
        value,
        session.tenant_id,
        &[],
    )?;
    Ok(())
}

/// A guard applies unless the row clearly holds another value in the guarded
/// column (compared as MariaDB's case-insensitive collations do).
fn guard_applies(guard: &DomainGuard, columns: &[String], row: &[Expr]) -> bool {
    let Some(at) = columns.iter().position(|c| *c == guard.when_column) else {
        return true;
    };
    match row.get(at) {
        Some(Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s
                .trim_end()
                .eq_ignore_ascii_case(guard.when_value.trim_end()),
            Value::Null => false,
            _ => true,
        },
        _ => true,
    }
}

/// Checks an UPDATE's SET list against the policy.
pub(super) fn update(
    update: &Update,
    tables: &StatementTables<'_>,
    session: &SessionContext<'_>,
) -> Result<(), Denial> {
    let kind = StatementKind::Update;
    // With one table, unqualified SET columns are that table's.
    let single = match (&update.table.relation, update.table.joins.is_empty()) {
        (sqlparser::ast::TableFactor::Table { name, .. }, true) => {
            table_name(name).and_then(|t| session.policy.table(&t))
        }
        _ => None,
    };
    for assignment in &update.assignments {
        let names: Vec<&ObjectName> = match &assignment.target {
            AssignmentTarget::ColumnName(n) => vec![n],
            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
        };
        for name in names {
            let (table, column) = match name.0.as_slice() {
                [ObjectNamePart::Identifier(c)] => match single {
                    Some(t) => (t, c),
                    None => {
                        return Err(deny(
                            Rule::WriteNotAllowed,
                            kind,
                            format!("column {c} in SET must be qualified in a multi-table UPDATE"),
                            "write SET alias.column = ...",
                        ));
                    }
                },
                [
                    ..,
                    ObjectNamePart::Identifier(q),
                    ObjectNamePart::Identifier(c),
                ] => match tables.resolve(&q.value) {
                    [t] => (*t, c),
                    _ => {
                        return Err(deny(
                            Rule::WriteNotAllowed,
                            kind,
                            format!("cannot tell which table {name} belongs to"),
                            "use distinct aliases",
                        ));
                    }
                },
                _ => {
                    return Err(deny(
                        Rule::WriteNotAllowed,
                        kind,
                        format!("cannot update {name}"),
                        "write SET column = value",
                    ));
                }
            };
            let column = column.value.to_ascii_lowercase();
            if table
                .scope_columns(&session.policy.tenant_column)
                .contains(&column.as_str())
            {
                return Err(Denial::new(
                    Rule::TenantScope,
                    kind,
                    format!(
                        "{}.{column} ties rows to their tenant and cannot be changed",
                        table.name
                    ),
                    Some("update the other columns only".into()),
                ));
            }
            let Some(allowed) = &table.update_columns else {
                return Err(deny(
                    Rule::WriteNotAllowed,
                    kind,
                    format!(
                        "UPDATE of {} is not allowed for {}",
                        table.name, session.user
                    ),
                    "this table is read-only for you",
                ));
            };
            if !allowed.contains(&column) {
                return Err(deny(
                    Rule::WriteNotAllowed,
                    kind,
                    format!("UPDATE may not set {}.{column}", table.name),
                    format!(
                        "columns you may update in {}: {}",
                        table.name,
                        allowed.join(", ")
                    ),
                ));
            }
            if let Some(ty) = typed(table, &column) {
                check_literal(&assignment.value, ty, &table.name, &column, kind)?;
            }
        }
    }
    Ok(())
}

/// Binds referenced columns in an UPDATE's SET list (see [`bind_reference`]).
pub(super) fn bind_update_references(
    update: &mut Update,
    tables: &StatementTables<'_>,
    session: &SessionContext<'_>,
) -> Result<(), Denial> {
    let single = match (&update.table.relation, update.table.joins.is_empty()) {
        (sqlparser::ast::TableFactor::Table { name, .. }, true) => {
            table_name(name).and_then(|t| session.policy.table(&t))
        }
        _ => None,
    };
    for assignment in &mut update.assignments {
        let AssignmentTarget::ColumnName(name) = &assignment.target else {
            continue;
        };
        let (table, column) = match name.0.as_slice() {
            [ObjectNamePart::Identifier(c)] => (single, c),
            [
                ..,
                ObjectNamePart::Identifier(q),
                ObjectNamePart::Identifier(c),
            ] => (tables.resolve(&q.value).first().copied(), c),
            _ => continue,
        };
        if let Some(table) = table {
            let column = column.value.to_ascii_lowercase();
            bind_reference(&mut assignment.value, table, &column, session)?;
        }
    }
    Ok(())
}
