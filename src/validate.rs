//! `sqlguard validate`: checks `proxy.toml` and its policies and, when the
//! backend is reachable, that every table and column a policy names exists in
//! the configured database with a type that fits what the policy declares.
//!
//! The schema check is a pure function ([`check_schema`]) over a
//! [`SchemaSnapshot`] read from `information_schema` ([`fetch_snapshot`]), so
//! it is unit-tested without a database.
//!
//! Exit codes: 0 no errors (warnings allowed, a skipped backend check too),
//! 1 errors in the schema check or the backend refused the configured
//! credentials/database, 2 the configuration or a policy file is invalid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::config::{self, BackendConfig, Config, ConfigError, Overrides};
use crate::policy::{Policy, Scope, TablePolicy};

/// How long `validate` waits for the backend (connect and queries together).
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(3);

/// One column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// `DATA_TYPE`, lowercase: `bigint`, `varchar`, `uuid`, ...
    pub data_type: String,
    /// `COLUMN_TYPE`, lowercase: `bigint(20) unsigned`, `char(36)`, ...
    pub column_type: String,
    pub nullable: bool,
}

impl ColumnInfo {
    pub fn new(name: &str, data_type: &str, column_type: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.to_string(),
            data_type: data_type.to_ascii_lowercase(),
            column_type: column_type.to_ascii_lowercase(),
            nullable,
        }
    }
}

/// The tables (and views) of one database with their columns in ordinal order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaSnapshot {
    pub tables: BTreeMap<String, Vec<ColumnInfo>>,
}

impl SchemaSnapshot {
    /// A table by name, compared case-insensitively as the guard does.
    pub fn table(&self, name: &str) -> Option<&[ColumnInfo]> {
        self.tables
            .get(name)
            .or_else(|| {
                self.tables
                    .iter()
                    .find(|(t, _)| t.eq_ignore_ascii_case(name))
                    .map(|(_, c)| c)
            })
            .map(Vec::as_slice)
    }
}

fn column<'a>(columns: &'a [ColumnInfo], name: &str) -> Option<&'a ColumnInfo> {
    columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Info,
    Warning,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        })
    }
}

/// One output line: `level: text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.level, self.text)
    }
}

/// A policy to check and the file it came from (for messages).
#[derive(Debug, Clone, Copy)]
pub struct PolicySource<'a> {
    pub policy: &'a Policy,
    /// e.g. `policies/clawdbot.toml`
    pub file: &'a str,
}

/// The schema check of one policy: one `ok` per table without findings,
/// else its errors and warnings, tables in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    pub name: String,
    pub file: String,
    pub findings: Vec<Finding>,
}

/// The schema check of every policy, plus the tables no policy names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaReport {
    pub policies: Vec<PolicyReport>,
    pub unnamed: Vec<Finding>,
}

impl SchemaReport {
    pub fn count(&self, level: Level) -> usize {
        self.policies
            .iter()
            .flat_map(|p| &p.findings)
            .chain(&self.unnamed)
            .filter(|f| f.level == level)
            .count()
    }
}

/// Checks every policy against the schema of `database`. Pure.
pub fn check_schema(
    policies: &[PolicySource<'_>],
    database: &str,
    schema: &SchemaSnapshot,
) -> SchemaReport {
    let mut report = SchemaReport::default();
    let mut named: BTreeSet<String> = BTreeSet::new();
    for source in policies {
        let mut findings = Vec::new();
        let mut tables: Vec<&TablePolicy> = source.policy.tables.values().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for table in tables {
            named.insert(table.name.to_ascii_lowercase());
            let mut problems = Vec::new();
            let ncolumns = check_table(source.policy, table, database, schema, &mut problems);
            if problems.iter().any(|(level, _)| *level >= Level::Warning) {
                problems.sort_by_key(|p| std::cmp::Reverse(p.0));
                findings.extend(problems.into_iter().map(|(level, text)| Finding {
                    level,
                    text: format!("{}: {text}", source.file),
                }));
            } else {
                findings.push(Finding {
                    level: Level::Ok,
                    text: format!(
                        "{}: tables.{}: {database}.{} ({} columns)",
                        source.file,
                        table.name,
                        table.name,
                        ncolumns.unwrap_or(0)
                    ),
                });
            }
        }
        report.policies.push(PolicyReport {
            name: source.policy.name.clone(),
            file: source.file.to_string(),
            findings,
        });
    }
    for table in schema.tables.keys() {
        if !named.contains(&table.to_ascii_lowercase()) {
            report.unnamed.push(Finding {
                level: Level::Info,
                text: format!(
                    "table {database}.{table} is named in no policy (denied to every user)"
                ),
            });
        }
    }
    report
}

type Problems = Vec<(Level, String)>;

/// Checks one table; returns its column count if it exists.
fn check_table(
    policy: &Policy,
    table: &TablePolicy,
    database: &str,
    schema: &SchemaSnapshot,
    problems: &mut Problems,
) -> Option<usize> {
    let key = format!("tables.{}", table.name);
    let qualified = format!("{database}.{}", table.name);
    let Some(columns) = schema.table(&table.name) else {
        problems.push((
            Level::Error,
            format!(
                "{key}: table \"{}\" does not exist in {database}",
                table.name
            ),
        ));
        return None;
    };

    // Every column named anywhere must exist. Reported once per (key, column).
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    let mut exists = |what: &str, name: &str, problems: &mut Problems| -> Option<ColumnInfo> {
        match column(columns, name) {
            Some(c) => Some(c.clone()),
            None => {
                if reported.insert((what.to_string(), name.to_string())) {
                    problems.push((
                        Level::Error,
                        format!("{key}.{what}: column \"{name}\" does not exist in {qualified}"),
                    ));
                }
                None
            }
        }
    };
    let lists: [(&str, &[String]); 6] = [
        ("uuid", &table.uuid_columns),
        ("integer", &table.integer_columns),
        ("deny", &table.denied_columns),
        ("columns", &table.columns),
        ("insert", table.insert_columns.as_deref().unwrap_or(&[])),
        ("update", table.update_columns.as_deref().unwrap_or(&[])),
    ];
    for (what, list) in lists {
        for name in list {
            let Some(info) = exists(what, name, problems) else {
                continue;
            };
            match what {
                "uuid" => check_uuid(&key, &qualified, &info, problems),
                "integer" if !is_integer(&info) => problems.push((
                    Level::Error,
                    format!(
                        "{key}.integer: column \"{name}\" of {qualified} is {}, not an integer type (tinyint, smallint, mediumint, int, bigint)",
                        info.column_type
                    ),
                )),
                _ => {}
            }
        }
    }

    // `columns`, if given, must be exactly the table's columns.
    if !table.columns.is_empty() {
        let missing: Vec<String> = columns
            .iter()
            .filter(|c| {
                !table
                    .columns
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(&c.name))
            })
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        if !missing.is_empty() {
            problems.push((
                Level::Error,
                format!(
                    "{key}.columns: does not list {} of {qualified} (the list must name every column of the table)",
                    missing.join(", ")
                ),
            ));
        }
    }

    // Scope columns.
    match &table.scope {
        Scope::Tenant => {
            if let Some(info) = exists("scope", &policy.tenant_column, problems) {
                require_integer(&key, "scope", "tenant column", &qualified, &info, problems);
            }
        }
        Scope::Key { column: key_column } => {
            if let Some(info) = exists("key", key_column, problems) {
                require_integer(&key, "key", "tenant key", &qualified, &info, problems);
            }
        }
        Scope::Parent {
            parent,
            column: parent_column,
            parent_key,
        } => {
            let child = exists("parent_column", parent_column, problems);
            if let Some(info) = &child
                && info.nullable
            {
                problems.push((
                        Level::Error,
                        format!(
                            "{key}.parent_column: column \"{}\" of {qualified} is nullable; it must be NOT NULL \
                             (sqlguard's INSERT rewrite turns a parent that is not the tenant's into NULL and relies on MariaDB refusing the row)",
                            info.name
                        ),
                    ));
            }
            // The parent table itself is reported under its own entry.
            if let Some(parent_columns) = schema.table(parent) {
                let parent_qualified = format!("{database}.{parent}");
                match column(parent_columns, parent_key) {
                    None => problems.push((
                        Level::Error,
                        format!(
                            "{key}.parent_key: column \"{parent_key}\" does not exist in {parent_qualified}"
                        ),
                    )),
                    Some(pk) => {
                        if let Some(info) = &child
                            && info.data_type != pk.data_type
                        {
                                problems.push((
                                    Level::Warning,
                                    format!(
                                        "{key}.parent_column: column \"{}\" of {qualified} is {} but {parent_qualified}.{} is {}",
                                        info.name, info.column_type, pk.name, pk.column_type
                                    ),
                                ));
                        }
                    }
                }
                for (i, guard) in table.guards.iter().enumerate() {
                    exists(&format!("guard[{i}].when"), &guard.when_column, problems);
                    if column(parent_columns, &guard.parent_column).is_none() {
                        problems.push((
                            Level::Error,
                            format!(
                                "{key}.guard[{i}].parent: column \"{}\" does not exist in {parent_qualified}",
                                guard.parent_column
                            ),
                        ));
                    }
                }
            } else {
                for (i, guard) in table.guards.iter().enumerate() {
                    exists(&format!("guard[{i}].when"), &guard.when_column, problems);
                }
            }
        }
        Scope::Shared => {}
    }
    Some(columns.len())
}

const INTEGER_TYPES: &[&str] = &[
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "integer",
    "bigint",
];

fn is_integer(info: &ColumnInfo) -> bool {
    INTEGER_TYPES.contains(&info.data_type.as_str())
}

fn require_integer(
    key: &str,
    what: &str,
    role: &str,
    qualified: &str,
    info: &ColumnInfo,
    problems: &mut Problems,
) {
    if !is_integer(info) {
        problems.push((
            Level::Error,
            format!(
                "{key}.{what}: {role} \"{}\" of {qualified} is {}, not an integer type (tenant ids are integers)",
                info.name, info.column_type
            ),
        ));
    }
}

fn check_uuid(key: &str, qualified: &str, info: &ColumnInfo, problems: &mut Problems) {
    let name = &info.name;
    match (info.data_type.as_str(), info.column_type.as_str()) {
        ("uuid", _) => {}
        ("char" | "varchar", "char(36)" | "varchar(36)") => problems.push((
            Level::Warning,
            format!(
                "{key}.uuid: column \"{name}\" of {qualified} is {}: accepted, but MariaDB 10.7+ has a native UUID type",
                info.column_type
            ),
        )),
        ("binary", "binary(16)") => problems.push((
            Level::Warning,
            format!(
                "{key}.uuid: column \"{name}\" of {qualified} is binary(16): accepted, but it holds packed UUIDs, \
                 so a UUID literal compares equal only if the query converts it"
            ),
        )),
        _ => problems.push((
            Level::Error,
            format!(
                "{key}.uuid: column \"{name}\" of {qualified} is {}, not a UUID type (uuid, or char(36)/varchar(36)/binary(16))",
                info.column_type
            ),
        )),
    }
}

// ------------------------------------------------------------------ backend

/// Why the snapshot could not be read.
#[derive(Debug)]
pub enum FetchError {
    /// Nothing answered (connection refused, timeout, network): the check is skipped.
    Unreachable(String),
    /// The server answered but refused (bad credentials, unknown database,
    /// missing privileges): the configuration is wrong.
    Refused(String),
}

/// What the backend said about itself and its schema.
#[derive(Debug, Clone)]
pub struct BackendSchema {
    pub version: String,
    pub snapshot: SchemaSnapshot,
}

/// Connects with the configured backend account and reads the tables and
/// columns of `backend.database` from `information_schema`, within `timeout`.
pub async fn fetch_snapshot(
    backend: &BackendConfig,
    password: Option<&str>,
    timeout: Duration,
) -> Result<BackendSchema, FetchError> {
    match tokio::time::timeout(timeout, fetch(backend, password)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Unreachable(format!(
            "no answer within {}s",
            timeout.as_secs_f64()
        ))),
    }
}

async fn fetch(
    backend: &BackendConfig,
    password: Option<&str>,
) -> Result<BackendSchema, FetchError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(backend.host.clone())
        .tcp_port(backend.port)
        .user(Some(backend.user.clone()))
        .pass(password.map(str::to_string))
        .db_name(Some(backend.database.clone()))
        .prefer_socket(false);
    let mut conn = Conn::new(opts).await.map_err(classify)?;
    let result = read_schema(&mut conn, &backend.database).await;
    let _ = conn.disconnect().await;
    result.map_err(classify)
}

async fn read_schema(conn: &mut Conn, database: &str) -> Result<BackendSchema, mysql_async::Error> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (database,),
        )
        .await?;
    let rows: Vec<(String, String, String, String, String)> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        .await?;
    let mut snapshot = SchemaSnapshot::default();
    for table in tables {
        snapshot.tables.entry(table).or_default();
    }
    for (table, name, data_type, column_type, nullable) in rows {
        snapshot
            .tables
            .entry(table)
            .or_default()
            .push(ColumnInfo::new(
                &name,
                &data_type,
                &column_type,
                nullable.eq_ignore_ascii_case("YES"),
            ));
    }
    Ok(BackendSchema {
        version: version.unwrap_or_default(),
        snapshot,
    })
}

fn classify(error: mysql_async::Error) -> FetchError {
    match error {
        mysql_async::Error::Server(e) => FetchError::Refused(format!(
            "MariaDB error {} ({}): {}",
            e.code, e.state, e.message
        )),
        mysql_async::Error::Io(e) => FetchError::Unreachable(e.to_string()),
        mysql_async::Error::Driver(e) => FetchError::Unreachable(e.to_string()),
        other => FetchError::Unreachable(other.to_string()),
    }
}

// ------------------------------------------------------------------ the command

/// Where the backend password comes from for `validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendPassword {
    Known(Option<String>),
    /// `backend.password_env` names a variable that is not set.
    Missing {
        var: String,
    },
}

/// `backend.password_env` as written in the file (config::load keeps only
/// the resolved password, and `validate` loads with the password skipped so
/// a missing variable does not make the files invalid).
fn password_env(config_text: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(config_text).ok()?;
    value
        .get("backend")?
        .get("password_env")?
        .as_str()
        .map(str::to_string)
}

fn resolve_password(config_text: &str, config: &Config) -> BackendPassword {
    match password_env(config_text) {
        Some(var) => match std::env::var(&var) {
            Ok(value) => BackendPassword::Known(Some(value)),
            Err(_) => BackendPassword::Missing { var },
        },
        // No password_env: the URL's password, if any (config::load kept it).
        None => BackendPassword::Known(config.backend.password.clone()),
    }
}

/// `policies/<stem>.toml` beside the config file, as the loader finds it.
fn policy_file(config_path: &Path, stem: &str) -> String {
    let dir = config_path.parent().unwrap_or(Path::new(""));
    let file: PathBuf = if dir.as_os_str().is_empty() || dir == Path::new(".") {
        Path::new("policies").join(format!("{stem}.toml"))
    } else {
        dir.join("policies").join(format!("{stem}.toml"))
    };
    file.display().to_string()
}

/// `sqlguard validate --config <path>`: prints the report, returns the exit code.
pub async fn run(config_path: &Path) -> anyhow::Result<i32> {
    let mut out = String::new();
    let code = validate(config_path, &mut out).await;
    print!("{out}");
    Ok(code)
}

/// Everything `run` does, writing the report into `out`.
pub async fn validate(config_path: &Path, out: &mut String) -> i32 {
    use std::fmt::Write;
    let overrides = Overrides {
        skip_backend_password: true,
        ..Overrides::default()
    };
    let shown = config_path.display();
    let config = match config::load(config_path, &overrides) {
        Ok(c) => c,
        Err(ConfigError::Invalid { path, problems }) => {
            for problem in &problems {
                let _ = writeln!(out, "error: {}: {problem}", path.display());
            }
            let _ = writeln!(
                out,
                "summary: {shown} is invalid ({} problem(s)); the database was not checked",
                problems.len()
            );
            return 2;
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            let _ = writeln!(out, "summary: {shown} could not be read");
            return 2;
        }
    };
    let text = std::fs::read_to_string(config_path).unwrap_or_default();

    // Policies in the order users name them, with their users.
    let mut policies: Vec<(&Policy, String, Vec<&str>)> = Vec::new();
    for user in &config.users {
        match policies
            .iter_mut()
            .find(|(p, _, _)| p.name == user.policy.name)
        {
            Some((_, _, users)) => users.push(&user.name),
            None => policies.push((
                &user.policy,
                policy_file(config_path, &user.policy.name),
                vec![&user.name],
            )),
        }
    }
    let b = &config.backend;
    let _ = writeln!(
        out,
        "ok: {shown}: {} user(s), {} policies, backend {}@{}:{}/{}",
        config.users.len(),
        policies.len(),
        b.user,
        b.host,
        b.port,
        b.database
    );
    for (policy, file, _) in &policies {
        let _ = writeln!(
            out,
            "ok: {file}: {} table(s), capabilities {}",
            policy.tables.len(),
            capabilities(policy)
        );
    }

    let password = match resolve_password(&text, &config) {
        BackendPassword::Known(p) => p,
        BackendPassword::Missing { var } => {
            let _ = writeln!(
                out,
                "skipped: backend check: environment variable {var} (backend.password_env) is not set; \
                 set it to check tables and columns against {}",
                b.database
            );
            let _ = writeln!(out, "summary: files ok; backend check skipped");
            return 0;
        }
    };
    let schema = match fetch_snapshot(b, password.as_deref(), BACKEND_TIMEOUT).await {
        Ok(s) => s,
        Err(FetchError::Unreachable(reason)) => {
            let _ = writeln!(
                out,
                "skipped: backend check: {}:{} is unreachable ({reason})",
                b.host, b.port
            );
            let _ = writeln!(out, "summary: files ok; backend check skipped");
            return 0;
        }
        Err(FetchError::Refused(reason)) => {
            let _ = writeln!(
                out,
                "error: backend: {}@{}:{}/{} refused the configured account: {reason}",
                b.user, b.host, b.port, b.database
            );
            let _ = writeln!(
                out,
                "summary: files ok; backend refused the connection: 1 error"
            );
            return 1;
        }
    };
    let _ = writeln!(
        out,
        "ok: backend {}:{} ({}), database {}: {} table(s)",
        b.host,
        b.port,
        schema.version,
        b.database,
        schema.snapshot.tables.len()
    );
    if schema.snapshot.tables.is_empty() {
        let _ = writeln!(
            out,
            "warning: backend: {}@{} sees no tables in {} (empty database, or the account lacks privileges)",
            b.user, b.host, b.database
        );
    }
    let sources: Vec<PolicySource<'_>> = policies
        .iter()
        .map(|(policy, file, _)| PolicySource { policy, file })
        .collect();
    let report = check_schema(&sources, &b.database, &schema.snapshot);
    for (policy_report, (_, _, users)) in report.policies.iter().zip(&policies) {
        let _ = writeln!(
            out,
            "\npolicy {} ({}; users: {})",
            policy_report.name,
            policy_report.file,
            users.join(", ")
        );
        for finding in &policy_report.findings {
            let _ = writeln!(out, "{finding}");
        }
    }
    if !report.unnamed.is_empty() {
        let _ = writeln!(out, "\ntables no policy names");
        for finding in &report.unnamed {
            let _ = writeln!(out, "{finding}");
        }
    }
    let errors = report.count(Level::Error);
    let warnings = report.count(Level::Warning) + usize::from(schema.snapshot.tables.is_empty());
    let _ = writeln!(
        out,
        "\nsummary: {} policies, {} table(s) ok, {errors} error(s), {warnings} warning(s), {} table(s) in no policy",
        policies.len(),
        report.count(Level::Ok),
        report.unnamed.len()
    );
    if errors > 0 { 1 } else { 0 }
}

fn capabilities(policy: &Policy) -> &'static str {
    match (policy.sql_read, policy.sql_write) {
        (true, true) => "sql_read, sql_write",
        (true, false) => "sql_read",
        (false, true) => "sql_write",
        (false, false) => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, column_type: &str, nullable: bool) -> ColumnInfo {
        let data_type = column_type.split(['(', ' ']).next().unwrap_or(column_type);
        ColumnInfo::new(name, data_type, column_type, nullable)
    }

    /// A small shop: tenants, conversations, messages, products, orders.
    fn shop() -> SchemaSnapshot {
        let mut s = SchemaSnapshot::default();
        s.tables.insert(
            "tenants".into(),
            vec![
                col("id", "bigint(20)", false),
                col("name", "varchar(255)", false),
                col("api_keys", "longtext", true),
            ],
        );
        s.tables.insert(
            "conversations".into(),
            vec![
                col("id", "bigint(20)", false),
                col("tenant_id", "bigint(20)", false),
                col("status", "varchar(20)", false),
            ],
        );
        s.tables.insert(
            "messages".into(),
            vec![
                col("id", "bigint(20)", false),
                col("conversation_id", "bigint(20)", false),
                col("sender", "varchar(20)", false),
                col("content", "text", false),
            ],
        );
        s.tables.insert(
            "products".into(),
            vec![
                col("id", "uuid", false),
                col("tenant_id", "bigint(20)", false),
                col("name", "varchar(255)", false),
                col("stock", "int(11)", true),
            ],
        );
        s
    }

    const POLICY: &str = r#"
        capabilities = ["sql_read", "sql_write"]
        [tables.tenants]
        scope = "key"
        integer = ["id"]
        columns = ["id", "name", "api_keys"]
        deny = ["api_keys"]
        [tables.conversations]
        scope = "tenant"
        integer = ["id", "tenant_id"]
        [tables.messages]
        scope = "parent"
        parent = "conversations"
        parent_column = "conversation_id"
        insert = ["conversation_id", "sender", "content"]
        [[tables.messages.guard]]
        when = { sender = "ai" }
        parent = { status = "active" }
        message = "closed"
        [tables.products]
        scope = "tenant"
        uuid = ["id"]
        integer = ["tenant_id", "stock"]
    "#;

    fn report(policy_text: &str, schema: &SchemaSnapshot) -> (SchemaReport, String) {
        let policy = Policy::from_toml("p", policy_text).unwrap_or_else(|p| panic!("{p:?}"));
        let sources = [PolicySource {
            policy: &policy,
            file: "policies/p.toml",
        }];
        let report = check_schema(&sources, "shop", schema);
        let text = report
            .policies
            .iter()
            .flat_map(|p| &p.findings)
            .chain(&report.unnamed)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        (report, text)
    }

    #[test]
    fn a_matching_schema_is_ok_table_by_table() {
        let (r, text) = report(POLICY, &shop());
        assert_eq!(r.count(Level::Error), 0, "{text}");
        assert_eq!(r.count(Level::Warning), 0, "{text}");
        assert_eq!(r.count(Level::Ok), 4, "{text}");
        assert!(
            text.contains("ok: policies/p.toml: tables.products: shop.products (4 columns)"),
            "{text}"
        );
        assert!(r.unnamed.is_empty(), "{text}");
    }

    #[test]
    fn missing_table() {
        let mut s = shop();
        s.tables.remove("products");
        let (r, text) = report(POLICY, &s);
        assert_eq!(r.count(Level::Error), 1, "{text}");
        assert!(
            text.contains(
                "error: policies/p.toml: tables.products: table \"products\" does not exist in shop"
            ),
            "{text}"
        );
    }

    #[test]
    fn missing_column_names_its_key() {
        let policy = POLICY.replace("uuid = [\"id\"]", "uuid = [\"idd\"]");
        let (r, text) = report(&policy, &shop());
        assert_eq!(r.count(Level::Error), 1, "{text}");
        assert!(
            text.contains(
                "error: policies/p.toml: tables.products.uuid: column \"idd\" does not exist in shop.products"
            ),
            "{text}"
        );
        // The other tables are still ok.
        assert_eq!(r.count(Level::Ok), 3, "{text}");
    }

    #[test]
    fn scope_and_guard_columns_must_exist() {
        let mut s = shop();
        s.tables.insert(
            "conversations".into(),
            vec![
                col("id", "bigint(20)", false),
                col("tenant", "bigint(20)", false),
            ],
        );
        s.tables
            .get_mut("messages")
            .unwrap()
            .retain(|c| c.name != "sender");
        let (_, text) = report(POLICY, &s);
        assert!(text.contains("tables.conversations.scope: column \"tenant_id\" does not exist in shop.conversations"), "{text}");
        assert!(text.contains("tables.messages.guard[0].parent: column \"status\" does not exist in shop.conversations"), "{text}");
        assert!(
            text.contains(
                "tables.messages.guard[0].when: column \"sender\" does not exist in shop.messages"
            ),
            "{text}"
        );
        assert!(
            text.contains("tables.messages.insert: column \"sender\" does not exist"),
            "{text}"
        );
        let policy = POLICY.replace(
            "parent_column = \"conversation_id\"",
            "parent_column = \"conversation_id\"\nparent_key = \"uid\"",
        );
        let (_, text) = report(&policy, &shop());
        assert!(
            text.contains(
                "tables.messages.parent_key: column \"uid\" does not exist in shop.conversations"
            ),
            "{text}"
        );
    }

    #[test]
    fn wrong_types() {
        let mut s = shop();
        let products = s.tables.get_mut("products").unwrap();
        products[0] = col("id", "varchar(64)", false);
        products[1] = col("tenant_id", "varchar(10)", false);
        products[3] = col("stock", "decimal(10,2)", true);
        let (r, text) = report(POLICY, &s);
        assert!(text.contains("error: policies/p.toml: tables.products.uuid: column \"id\" of shop.products is varchar(64), not a UUID type"), "{text}");
        assert!(text.contains("tables.products.integer: column \"stock\" of shop.products is decimal(10,2), not an integer type"), "{text}");
        assert!(text.contains("tables.products.scope: tenant column \"tenant_id\" of shop.products is varchar(10), not an integer type"), "{text}");
        assert!(
            text.contains("tables.products.integer: column \"tenant_id\""),
            "{text}"
        );
        assert_eq!(r.count(Level::Error), 4, "{text}");
    }

    #[test]
    fn text_and_binary_uuids_are_accepted_with_a_warning() {
        for ty in ["char(36)", "varchar(36)", "binary(16)"] {
            let mut s = shop();
            s.tables.get_mut("products").unwrap()[0] = col("id", ty, false);
            let (r, text) = report(POLICY, &s);
            assert_eq!(r.count(Level::Error), 0, "{ty}: {text}");
            assert_eq!(r.count(Level::Warning), 1, "{ty}: {text}");
            assert!(text.contains(&format!("warning: policies/p.toml: tables.products.uuid: column \"id\" of shop.products is {ty}")), "{text}");
            // A table with only warnings is not also "ok".
            assert!(
                !text.contains("ok: policies/p.toml: tables.products"),
                "{text}"
            );
        }
    }

    #[test]
    fn nullable_parent_column_is_an_error() {
        let mut s = shop();
        s.tables.get_mut("messages").unwrap()[1] = col("conversation_id", "bigint(20)", true);
        let (r, text) = report(POLICY, &s);
        assert_eq!(r.count(Level::Error), 1, "{text}");
        assert!(text.contains("error: policies/p.toml: tables.messages.parent_column: column \"conversation_id\" of shop.messages is nullable; it must be NOT NULL"), "{text}");
    }

    #[test]
    fn parent_column_of_another_type_is_a_warning() {
        let mut s = shop();
        s.tables.get_mut("messages").unwrap()[1] = col("conversation_id", "int(11)", false);
        let (r, text) = report(POLICY, &s);
        assert_eq!(
            (r.count(Level::Error), r.count(Level::Warning)),
            (0, 1),
            "{text}"
        );
        assert!(
            text.contains("shop.conversations.id is bigint(20)"),
            "{text}"
        );
    }

    #[test]
    fn columns_list_must_match_exactly() {
        let mut s = shop();
        let tenants = s.tables.get_mut("tenants").unwrap();
        tenants.retain(|c| c.name != "name");
        tenants.push(col("slug", "varchar(255)", false));
        tenants.push(col("settings", "longtext", true));
        let (r, text) = report(POLICY, &s);
        assert!(
            text.contains("tables.tenants.columns: column \"name\" does not exist in shop.tenants"),
            "{text}"
        );
        assert!(
            text.contains(
                "tables.tenants.columns: does not list \"slug\", \"settings\" of shop.tenants"
            ),
            "{text}"
        );
        assert_eq!(r.count(Level::Error), 2, "{text}");
    }

    #[test]
    fn tenant_key_must_be_an_integer() {
        let mut s = shop();
        s.tables.get_mut("tenants").unwrap()[0] = col("id", "char(36)", false);
        let (_, text) = report(POLICY, &s);
        assert!(text.contains("tables.tenants.key: tenant key \"id\" of shop.tenants is char(36), not an integer type"), "{text}");
    }

    #[test]
    fn tables_in_no_policy_are_information() {
        let mut s = shop();
        s.tables
            .insert("audit_notes".into(), vec![col("id", "int(11)", false)]);
        let (r, text) = report(POLICY, &s);
        assert_eq!(r.count(Level::Error), 0, "{text}");
        assert_eq!(
            r.unnamed,
            vec![Finding {
                level: Level::Info,
                text: "table shop.audit_notes is named in no policy (denied to every user)".into()
            }]
        );
    }

    #[test]
    fn names_compare_case_insensitively() {
        let mut s = shop();
        let products = s.tables.remove("products").unwrap();
        let products = products
            .into_iter()
            .map(|c| ColumnInfo {
                name: c.name.to_uppercase(),
                ..c
            })
            .collect();
        s.tables.insert("Products".into(), products);
        let (r, text) = report(POLICY, &s);
        assert_eq!(r.count(Level::Error), 0, "{text}");
        assert!(r.unnamed.is_empty(), "{text}");
    }

    #[test]
    fn a_table_is_named_if_any_policy_names_it() {
        let a = Policy::from_toml(
            "a",
            "capabilities = [\"sql_read\"]\n[tables.conversations]\nscope = \"tenant\"\n",
        )
        .unwrap();
        let b = Policy::from_toml(
            "b",
            "capabilities = [\"sql_read\"]\n[tables.products]\nscope = \"tenant\"\n",
        )
        .unwrap();
        let sources = [
            PolicySource {
                policy: &a,
                file: "policies/a.toml",
            },
            PolicySource {
                policy: &b,
                file: "policies/b.toml",
            },
        ];
        let r = check_schema(&sources, "shop", &shop());
        let unnamed: Vec<String> = r.unnamed.iter().map(|f| f.text.clone()).collect();
        assert_eq!(
            unnamed,
            vec![
                "table shop.messages is named in no policy (denied to every user)",
                "table shop.tenants is named in no policy (denied to every user)",
            ]
        );
        assert_eq!(r.policies.len(), 2);
    }

    #[test]
    fn password_env_is_read_from_the_file() {
        assert_eq!(
            password_env("[backend]\nurl = \"mysql://a@b/c\"\npassword_env = \"PW\"\n").as_deref(),
            Some("PW")
        );
        assert_eq!(password_env("[backend]\nurl = \"mysql://a@b/c\"\n"), None);
    }

    #[test]
    fn policy_files_are_named_as_the_loader_finds_them() {
        assert_eq!(
            policy_file(Path::new("proxy.toml"), "clawdbot"),
            "policies/clawdbot.toml"
        );
        assert_eq!(
            policy_file(Path::new("./proxy.toml"), "clawdbot"),
            "policies/clawdbot.toml"
        );
        assert_eq!(
            policy_file(Path::new("/etc/sqlguard/proxy.toml"), "x"),
            "/etc/sqlguard/policies/x.toml"
        );
    }
}
