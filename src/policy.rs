//! A policy: what a proxy user may do, compiled from `policies/<name>.toml`
//! (format: docs/POLICY.md). Loaded and validated at start-up; the guard only
//! reads it. Names are kept lowercase: MariaDB compares column names
//! case-insensitively, and sqlguard matches table names the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A compiled, valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// `sql_read`: SELECT and the session statements drivers send on connect.
    pub sql_read: bool,
    /// `sql_write`: INSERT and UPDATE.
    pub sql_write: bool,
    /// The column that holds the tenant id in tenant-scoped tables.
    pub tenant_column: String,
    pub limit: LimitPolicy,
    /// Every table the user may name, by lowercase name. Tables absent here are denied.
    pub tables: HashMap<String, TablePolicy>,
    /// Hints by rule name (`statement_not_allowed`, ...), replacing the built-in ones.
    pub hints: HashMap<String, String>,
    /// Columns whose bound values are redacted in the audit log.
    pub redact: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Injected into a top-level SELECT that has no LIMIT.
    pub default: u64,
    /// A larger LIMIT is clamped to this.
    pub max: u64,
}

/// How the rows of a table are tied to a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The table has the tenant column itself.
    Tenant,
    /// The table is the tenants table: `key` is the tenant id.
    Key { column: String },
    /// Rows belong to the tenant of their parent row:
    /// `column` references `parent`.`parent_key`.
    Parent {
        parent: String,
        column: String,
        parent_key: String,
    },
    /// The same for every tenant.
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePolicy {
    pub name: String,
    pub scope: Scope,
    /// Columns holding UUIDs: literals compared with or written to them must be UUIDs.
    pub uuid_columns: Vec<String>,
    /// Columns holding integers.
    pub integer_columns: Vec<String>,
    /// Columns that may not be read, written or used in any expression.
    pub denied_columns: Vec<String>,
    /// All columns of the table, if the policy lists them (used in hints).
    pub columns: Vec<String>,
    /// Columns an INSERT may name; `None`: no INSERT into this table.
    pub insert_columns: Option<Vec<String>>,
    /// Columns an UPDATE may set; `None`: no UPDATE of this table.
    pub update_columns: Option<Vec<String>>,
    /// Conditions on the parent row for some inserted rows.
    pub guards: Vec<DomainGuard>,
    /// Columns that hold a key of another tenant-scoped table: written values
    /// must name one of the tenant's rows there.
    pub references: Vec<Reference>,
    /// `cache_ttl`: SELECTs that read only tables with a TTL may be answered
    /// from the result cache for at most the shortest of them. `None`: never
    /// cached (absent or `"0s"`).
    pub cache_ttl: Option<std::time::Duration>,
}

/// `column` holds `table`.`key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub column: String,
    pub table: String,
    pub key: String,
}

/// An INSERT of a row whose `when_column` is `when_value` requires the
/// parent row to have `parent_column` = `parent_value` (e.g. an AI message
/// only into an active conversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainGuard {
    pub when_column: String,
    pub when_value: String,
    pub parent_column: String,
    pub parent_value: String,
    pub message: String,
}

impl TablePolicy {
    pub fn is_uuid(&self, column: &str) -> bool {
        self.uuid_columns.iter().any(|c| c == column)
    }

    pub fn is_integer(&self, column: &str) -> bool {
        self.integer_columns.iter().any(|c| c == column)
    }

    pub fn is_denied(&self, column: &str) -> bool {
        self.denied_columns.iter().any(|c| c == column)
    }

    /// Columns that tie a row to its tenant: never written by an UPDATE.
    pub fn scope_columns<'a>(&'a self, tenant_column: &'a str) -> Vec<&'a str> {
        match &self.scope {
            Scope::Tenant => vec![tenant_column],
            Scope::Key { column } => vec![column.as_str()],
            Scope::Parent { column, .. } => vec![column.as_str()],
            Scope::Shared => Vec::new(),
        }
    }

    /// Readable columns, for hints (empty if the policy does not list columns).
    pub fn readable_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| !self.is_denied(c))
            .map(String::as_str)
            .collect()
    }
}

impl Policy {
    pub fn table(&self, name: &str) -> Option<&TablePolicy> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.tables.get(&name.to_ascii_lowercase())
        } else {
            self.tables.get(name)
        }
    }

    /// Table names, sorted, for hints.
    pub fn table_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn hint(&self, rule: &str) -> Option<&str> {
        self.hints.get(rule).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy name {0:?} must be a file stem in policies/ (letters, digits, _ or -)")]
    BadName(String),
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {}", .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

// ------------------------------------------------------------------ raw form

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    description: Option<String>,
    capabilities: Vec<String>,
    #[serde(default)]
    tenant_column: Option<String>,
    #[serde(default)]
    limit: Option<RawLimit>,
    #[serde(default)]
    hints: BTreeMap<String, String>,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    tables: BTreeMap<String, RawTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    default: u64,
    max: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    scope: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    parent_column: Option<String>,
    #[serde(default)]
    parent_key: Option<String>,
    #[serde(default)]
    uuid: Vec<String>,
    #[serde(default)]
    integer: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    insert: Option<Vec<String>>,
    #[serde(default)]
    update: Option<Vec<String>>,
    #[serde(default)]
    guard: Vec<RawGuard>,
    #[serde(default)]
    references: BTreeMap<String, String>,
    #[serde(default)]
    cache_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    when: BTreeMap<String, String>,
    parent: BTreeMap<String, String>,
    message: String,
}

/// A chat answer needs a handful of rows; the defaults keep the chat readable.
const DEFAULT_LIMIT: u64 = 20;
const DEFAULT_LIMIT_MAX: u64 = 100;
const DEFAULT_TENANT_COLUMN: &str = "tenant_id";

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Policy::from_toml(&name, &text).map_err(|problems| PolicyError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Compiles policy text; every problem is reported as `key: problem`.
    pub fn from_toml(name: &str, text: &str) -> Result<Policy, Vec<String>> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default();
            vec![format!("{}{at}", e.message().trim())]
        })?;
        let _ = raw.description;
        let mut problems = Vec::new();
        let mut policy = Policy {
            name: name.to_string(),
            sql_read: false,
            sql_write: false,
            tenant_column: raw
                .tenant_column
                .as_deref()
                .unwrap_or(DEFAULT_TENANT_COLUMN)
                .to_ascii_lowercase(),
            limit: LimitPolicy {
                default: DEFAULT_LIMIT,
                max: DEFAULT_LIMIT_MAX,
            },
            tables: HashMap::new(),
            hints: raw.hints.into_iter().collect(),
            redact: lower_all(&raw.redact),
        };
        for capability in &raw.capabilities {
            match capability.as_str() {
                "sql_read" => policy.sql_read = true,
                "sql_write" => policy.sql_write = true,
                other => problems.push(format!(
                    "capabilities: unknown capability {other:?} (known: sql_read, sql_write)"
                )),
            }
        }
        if let Some(limit) = raw.limit {
            if limit.default == 0 || limit.max == 0 {
                problems.push("limit: default and max must be greater than 0".into());
            }
            if limit.default > limit.max {
                problems.push(format!(
                    "limit.default: {} is above limit.max {}",
                    limit.default, limit.max
                ));
            }
            policy.limit = LimitPolicy {
                default: limit.default,
                max: limit.max,
            };
        }
        for rule in policy.hints.keys() {
            if !crate::guard::Rule::ALL.iter().any(|r| r.name() == rule) {
                problems.push(format!("hints.{rule}: no rule has this name"));
            }
        }
        for (name, table) in &raw.tables {
            if let Some(t) = compile_table(name, table, &policy.tenant_column, &mut problems) {
                policy.tables.insert(t.name.clone(), t);
            }
        }
        check_parents(&policy, &mut problems);
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems)
        }
    }

    /// A policy with every capability and no tables, for unit tests.
    pub fn read_write(name: &str) -> Policy {
        Policy {
            name: name.to_string(),
            sql_read: true,
            sql_write: true,
            tenant_column: DEFAULT_TENANT_COLUMN.into(),
            limit: LimitPolicy {
                default: DEFAULT_LIMIT,
                max: DEFAULT_LIMIT_MAX,
            },
            tables: HashMap::new(),
            hints: HashMap::new(),
            redact: Vec::new(),
        }
    }
}

fn lower_all(names: &[String]) -> Vec<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

fn compile_table(
    name: &str,
    raw: &RawTable,
    tenant_column: &str,
    problems: &mut Vec<String>,
) -> Option<TablePolicy> {
    let key = format!("tables.{name}");
    if !valid_identifier(name) {
        problems.push(format!("{key}: table names are letters, digits, _ or $"));
        return None;
    }
    let lower = |v: &Option<String>| v.as_deref().map(str::to_ascii_lowercase);
    let scope = match raw.scope.as_str() {
        "tenant" => Scope::Tenant,
        "key" => Scope::Key {
            column: lower(&raw.key).unwrap_or_else(|| "id".into()),
        },
        "parent" => {
            let (Some(parent), Some(column)) = (lower(&raw.parent), lower(&raw.parent_column))
            else {
                problems.push(format!(
                    "{key}: scope \"parent\" needs parent = \"<table>\" and parent_column = \"<column referencing it>\""
                ));
                return None;
            };
            Scope::Parent {
                parent,
                column,
                parent_key: lower(&raw.parent_key).unwrap_or_else(|| "id".into()),
            }
        }
        "shared" => Scope::Shared,
        other => {
            problems.push(format!(
                "{key}.scope: unknown scope {other:?} (known: tenant, parent, key, shared)"
            ));
            return None;
        }
    };
    if !matches!(scope, Scope::Key { .. }) && raw.key.is_some() {
        problems.push(format!("{key}.key: only for scope = \"key\""));
    }
    if !matches!(scope, Scope::Parent { .. })
        && (raw.parent.is_some() || raw.parent_column.is_some() || raw.parent_key.is_some())
    {
        problems.push(format!("{key}.parent: only for scope = \"parent\""));
    }
    let table = TablePolicy {
        name: name.to_ascii_lowercase(),
        scope,
        uuid_columns: lower_all(&raw.uuid),
        integer_columns: lower_all(&raw.integer),
        denied_columns: lower_all(&raw.deny),
        columns: lower_all(&raw.columns),
        insert_columns: raw.insert.as_deref().map(lower_all),
        update_columns: raw.update.as_deref().map(lower_all),
        guards: Vec::new(),
        references: Vec::new(),
        cache_ttl: cache_ttl(&key, raw.cache_ttl.as_deref(), problems),
    };
    for (list, what) in [
        (&table.uuid_columns, "uuid"),
        (&table.integer_columns, "integer"),
        (&table.denied_columns, "deny"),
        (&table.columns, "columns"),
    ] {
        for column in list {
            if !valid_identifier(column) {
                problems.push(format!("{key}.{what}: {column:?} is not a column name"));
            }
        }
    }
    if !table.columns.is_empty() {
        for (list, what) in [
            (&table.uuid_columns, "uuid"),
            (&table.integer_columns, "integer"),
            (&table.denied_columns, "deny"),
        ] {
            for column in list {
                if !table.columns.contains(column) {
                    problems.push(format!("{key}.{what}: {column:?} is not in {key}.columns"));
                }
            }
        }
    }
    for column in &table.uuid_columns {
        if table.is_integer(column) {
            problems.push(format!("{key}: {column:?} is both uuid and integer"));
        }
    }
    let scope_columns = table.scope_columns(tenant_column);
    for (list, what) in [
        (&table.insert_columns, "insert"),
        (&table.update_columns, "update"),
    ] {
        for column in list.iter().flatten() {
            if table.is_denied(column) {
                problems.push(format!("{key}.{what}: {column:?} is also denied"));
            }
            if what == "update" && scope_columns.contains(&column.as_str()) {
                problems.push(format!(
                    "{key}.update: {column:?} ties rows to their tenant and can never be updated"
                ));
            }
        }
    }
    let mut table = table;
    for (column, target) in &raw.references {
        let (t, key) = target.split_once('.').unwrap_or((target.as_str(), "id"));
        if !valid_identifier(column) || !valid_identifier(t) || !valid_identifier(key) {
            problems.push(format!(
                "{key}.references.{column}: write column = \"table\" or \"table.key\" (got {target:?})"
            ));
            continue;
        }
        table.references.push(Reference {
            column: column.to_ascii_lowercase(),
            table: t.to_ascii_lowercase(),
            key: key.to_ascii_lowercase(),
        });
    }
    for (i, guard) in raw.guard.iter().enumerate() {
        let gkey = format!("{key}.guard[{i}]");
        if !matches!(table.scope, Scope::Parent { .. }) {
            problems.push(format!("{gkey}: guards need scope = \"parent\""));
            continue;
        }
        let (Some((when_column, when_value)), Some((parent_column, parent_value))) =
            (single(&guard.when), single(&guard.parent))
        else {
            problems.push(format!(
                "{gkey}: write when = {{ column = \"value\" }} and parent = {{ column = \"value\" }} (one pair each)"
            ));
            continue;
        };
        table.guards.push(DomainGuard {
            when_column: when_column.to_ascii_lowercase(),
            when_value: when_value.clone(),
            parent_column: parent_column.to_ascii_lowercase(),
            parent_value: parent_value.clone(),
            message: guard.message.clone(),
        });
    }
    Some(table)
}

/// The longest `cache_ttl` accepted. Beyond a day the "cache" is a stale
/// copy of the table; a value that large is more likely a unit mistake.
const MAX_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `tables.<name>.cache_ttl`: a duration as elsewhere in the configuration
/// (`"30s"`, `"500ms"`, `"5m"`); zero or absent means not cacheable.
fn cache_ttl(
    key: &str,
    text: Option<&str>,
    problems: &mut Vec<String>,
) -> Option<std::time::Duration> {
    let text = text?;
    match crate::config::parse_duration(text) {
        Some(ttl) if ttl > MAX_CACHE_TTL => {
            problems.push(format!("{key}.cache_ttl: at most 24h (got {text:?})"));
            None
        }
        Some(ttl) if ttl.is_zero() => None,
        Some(ttl) => Some(ttl),
        None => {
            problems.push(format!(
                "{key}.cache_ttl: not a duration (got {text:?}; write e.g. \"30s\", \"500ms\", \"5m\"; \"0s\" for no caching)"
            ));
            None
        }
    }
}

fn single(map: &BTreeMap<String, String>) -> Option<(&String, &String)> {
    if map.len() == 1 {
        map.iter().next()
    } else {
        None
    }
}

/// A parent must be declared, scoped itself, and chains must end.
fn check_parents(policy: &Policy, problems: &mut Vec<String>) {
    for table in policy.tables.values() {
        for r in &table.references {
            match policy.tables.get(&r.table) {
                None => problems.push(format!(
                    "tables.{}.references.{}: table {:?} is not declared in this policy",
                    table.name, r.column, r.table
                )),
                Some(t) if matches!(t.scope, Scope::Shared) => problems.push(format!(
                    "tables.{}.references.{}: {:?} is shared; a reference to it needs no check, remove it",
                    table.name, r.column, r.table
                )),
                Some(_) => {}
            }
        }
        let mut seen = vec![table.name.as_str()];
        let mut current = table;
        while let Scope::Parent { parent, .. } = &current.scope {
            let key = format!("tables.{}.parent", current.name);
            let Some(next) = policy.tables.get(parent) else {
                problems.push(format!(
                    "{key}: table {parent:?} is not declared in this policy"
                ));
                break;
            };
            if matches!(next.scope, Scope::Shared) {
                problems.push(format!(
                    "{key}: parent {parent:?} is shared, so it cannot scope rows to a tenant"
                ));
                break;
            }
            if seen.contains(&next.name.as_str()) {
                problems.push(format!("{key}: the parent chain loops back to {parent:?}"));
                break;
            }
            seen.push(next.name.as_str());
            current = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> String {
        match Policy::from_toml("t", text) {
            Ok(_) => String::new(),
            Err(p) => p.join("\n"),
        }
    }

    #[test]
    fn the_shipped_policies_compile() {
        for (stem, text) in crate::DEMO_POLICIES {
            if let Err(p) = Policy::from_toml(stem, text) {
                panic!("policies/{stem}.toml: {}", p.join("\n"));
            }
        }
    }

    #[test]
    fn mistakes_are_reported_with_their_key() {
        let p = problems(
            r#"
            capabilities = ["sql_read", "sql_delete"]
            [limit]
            default = 500
            max = 100
            [tables.messages]
            scope = "parent"
            parent = "conversations"
            parent_column = "conversation_id"
            [tables.orders]
            scope = "tenantt"
            [tables.products]
            scope = "tenant"
            update = ["tenant_id"]
            "#,
        );
        assert!(
            p.contains("capabilities: unknown capability \"sql_delete\""),
            "{p}"
        );
        assert!(p.contains("limit.default"), "{p}");
        assert!(
            p.contains("tables.messages.parent: table \"conversations\" is not declared"),
            "{p}"
        );
        assert!(
            p.contains("tables.orders.scope: unknown scope \"tenantt\""),
            "{p}"
        );
        assert!(p.contains("tables.products.update: \"tenant_id\""), "{p}");
    }

    #[test]
    fn cache_ttl_is_a_duration() {
        let table = |ttl: &str| {
            Policy::from_toml(
                "t",
                &format!(
                    "capabilities = []\n[tables.x]\nscope = \"tenant\"\ncache_ttl = \"{ttl}\"\n"
                ),
            )
            .map(|p| p.tables["x"].cache_ttl)
            .map_err(|p| p.join("\n"))
        };
        assert_eq!(table("30s"), Ok(Some(std::time::Duration::from_secs(30))));
        assert_eq!(
            table("250ms"),
            Ok(Some(std::time::Duration::from_millis(250)))
        );
        assert_eq!(table("0s"), Ok(None));
        assert_eq!(table("0"), Ok(None));
        let e = table("30").unwrap_err();
        assert!(e.contains("tables.x.cache_ttl: not a duration"), "{e}");
        let e = table("2d").unwrap_err();
        assert!(e.contains("tables.x.cache_ttl"), "{e}");
        let e = table("25h").unwrap_err();
        assert!(e.contains("tables.x.cache_ttl: at most 24h"), "{e}");
        let absent = Policy::from_toml("t", "capabilities = []\n[tables.x]\nscope = \"tenant\"\n");
        assert_eq!(absent.map(|p| p.tables["x"].cache_ttl), Ok(None));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let p = problems("capabilities = []\n[tables.x]\nscope = \"tenant\"\ndenied = [\"a\"]\n");
        assert!(p.contains("denied"), "{p}");
    }
}
