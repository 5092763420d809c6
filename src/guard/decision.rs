//! What the guard decides, as types: a statement is forwarded as [`CheckedSql`],
//! answered locally, or refused with a [`Denial`] that names its [`Rule`].

use std::fmt;

/// The guard's verdict on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward `sql` (serialized from the checked AST) to the backend.
    Allow {
        kind: StatementKind,
        sql: CheckedSql,
        /// What the guard changed, for the audit log and `sqlguard check`.
        rewrites: Rewrites,
        /// For a prepared statement: what each `?` must hold, in MariaDB's
        /// numbering. Empty for text queries.
        params: Vec<crate::guard::ParamRule>,
        /// The tables the forwarded statement touches, and whether the result
        /// cache may answer it (session/caching.rs).
        access: Access,
    },
    /// Answer OK without touching the backend (e.g. `USE <the configured db>`,
    /// which the pinned backend connection already uses).
    LocalOk { kind: StatementKind },
    /// Refuse; nothing reaches the backend.
    Deny(Denial),
}

impl Decision {
    pub fn kind(&self) -> StatementKind {
        match self {
            Decision::Allow { kind, .. } | Decision::LocalOk { kind } => *kind,
            Decision::Deny(d) => d.kind,
        }
    }
}

/// What the guard changed in an allowed statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// LIMIT injected or clamped on the top-level SELECT.
    pub limit: Option<crate::guard::LimitChange>,
    /// Table references that received a tenant predicate.
    pub scoped_tables: usize,
    /// Columns whose written value became a tenant lookup (parent keys,
    /// references): MariaDB's "cannot be null" for them means the value named
    /// another tenant's row (or a guarded one), and is reported as such.
    pub lookups: Vec<Lookup>,
}

/// A column written through a tenant lookup, and what to tell the client
/// when the lookup finds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub column: String,
    pub message: String,
}

impl Rewrites {
    /// A one-line summary, e.g. `tenant scope on 2 table(s); LIMIT 20 injected`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.scoped_tables > 0 {
            parts.push(format!(
                "tenant scope on {} table reference(s)",
                self.scoped_tables
            ));
        }
        match self.limit {
            Some(crate::guard::LimitChange::Injected(n)) => {
                parts.push(format!("LIMIT {n} injected"))
            }
            Some(crate::guard::LimitChange::Clamped { from, to }) => {
                parts.push(format!("LIMIT {from} clamped to {to}"))
            }
            None => {}
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// What the result cache needs to know about an allowed statement: which
/// policy tables the *forwarded* text names (generated tenant lookups
/// included), and, for a SELECT it may answer, for how long.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Every policy table named, once each, in first-seen order.
    pub tables: Vec<TableAccess>,
    /// `Some(ttl)` only for a SELECT that reads nothing but tables with a
    /// `cache_ttl` and calls nothing that is not provably deterministic
    /// (guard/cacheable.rs); the TTL is the shortest of its tables'.
    pub cache_ttl: Option<std::time::Duration>,
}

/// One policy table a statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAccess {
    /// Lowercase, as in the policy.
    pub name: String,
    /// `scope = "shared"` in the session's policy: the same rows for every
    /// tenant, so a write to it concerns every tenant's cached results.
    pub shared: bool,
}

/// SQL text that the guard produced from an AST it checked. Only the guard can
/// make one, so the backend cannot be handed client text by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSql(String);

impl CheckedSql {
    /// Only the guard module may construct checked SQL.
    pub(in crate::guard) fn new(sql: String) -> Self {
        CheckedSql(sql)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CheckedSql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A refusal: which rule, what the client is told, and what it could do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rule: Rule,
    pub kind: StatementKind,
    /// What was refused, in words an LLM agent can act on.
    pub message: String,
    /// What to do instead, when there is something sensible to say.
    pub hint: Option<String>,
}

impl Denial {
    pub fn new(
        rule: Rule,
        kind: StatementKind,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Denial {
            rule,
            kind,
            message: message.into(),
            hint,
        }
    }

    /// The text sent to the client in the MySQL error packet.
    pub fn client_message(&self) -> String {
        match &self.hint {
            Some(hint) => format!(
                "sqlguard: {} (rule: {}). Hint: {}",
                self.message,
                self.rule.name(),
                hint
            ),
            None => format!("sqlguard: {} (rule: {})", self.message, self.rule.name()),
        }
    }
}

/// Which family of MySQL error a denial is reported as (DESIGN.md, "Denials").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyClass {
    /// 1142 ER_TABLEACCESS_DENIED_ERROR: a table or column is not allowed.
    TableAccess,
    /// 1227 ER_SPECIFIC_ACCESS_DENIED_ERROR: a statement or function is not allowed.
    Statement,
    /// 1064 ER_PARSE_ERROR: text sqlguard cannot parse.
    Parse,
    /// 1411 ER_WRONG_VALUE_FOR_TYPE: a typed literal has the wrong shape.
    Value,
    /// 1044 ER_DBACCESS_DENIED_ERROR: a database other than the configured one.
    DatabaseAccess,
}

macro_rules! rules {
    ($($variant:ident => $name:literal, $class:ident;)*) => {
        /// The rule that refused a statement. `name()` is stable: it appears in
        /// error messages, the audit log (`rule`) and metrics (`rule` label).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rule { $($variant,)* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Rule::$variant => $name,)* }
            }

            pub fn class(self) -> DenyClass {
                match self { $(Rule::$variant => DenyClass::$class,)* }
            }
        }
    };
}

rules! {
    NotImplemented => "not_implemented", Statement;
    StatementTooLong => "statement_too_long", Statement;
    EmptyStatement => "empty_statement", Parse;
    ExecutableComment => "executable_comment", Statement;
    OptimizerHint => "optimizer_hint", Statement;
    NonAsciiWhitespace => "non_ascii_whitespace", Statement;
    MultiStatement => "multi_statement", Statement;
    ParseError => "parse_error", Parse;
    TooComplex => "too_complex", Statement;
    StatementNotAllowed => "statement_not_allowed", Statement;
    SessionVariable => "session_variable", Statement;
    SqlModeChange => "sql_mode_change", Statement;
    DatabaseNotAllowed => "database_not_allowed", DatabaseAccess;
    AmbiguousOperator => "ambiguous_operator", Statement;
    HexLiteral => "hex_literal", Statement;
    SelectInto => "select_into", Statement;
    LockingClause => "locking_clause", Statement;
    AmbiguousLiteral => "ambiguous_literal", Statement;
    FunctionNotAllowed => "function_not_allowed", Statement;
    SystemSchema => "system_schema", TableAccess;
    OtherDatabase => "other_database", TableAccess;
    UpdateWithoutWhere => "update_without_where", Statement;
    RoundTrip => "round_trip", Statement;
    TableNotAllowed => "table_not_allowed", TableAccess;
    ColumnDenied => "column_denied", TableAccess;
    WriteNotAllowed => "write_not_allowed", TableAccess;
    TenantScope => "tenant_scope", TableAccess;
    UpsertNotAllowed => "upsert_not_allowed", Statement;
    JoinNotAllowed => "join_not_allowed", Statement;
    RecursiveCte => "recursive_cte", Statement;
    CteShadowsTable => "cte_shadows_table", Statement;
    LimitNotLiteral => "limit_not_literal", Statement;
    InsertShape => "insert_shape", Statement;
    TypedLiteral => "typed_literal", Value;
    AuditUnavailable => "audit_unavailable", Statement;
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of statement it is, for the audit log (`kind`) and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Replace,
    /// CREATE, DROP, ALTER, TRUNCATE, RENAME.
    Ddl,
    /// BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT.
    Transaction,
    /// SET of session variables, SET NAMES.
    Set,
    Show,
    Use,
    /// GRANT, REVOKE, and user management.
    Privilege,
    /// Anything else that parsed (CALL, LOAD DATA, KILL, ...).
    Other,
    /// The text did not get as far as being parsed.
    Unknown,
}

impl StatementKind {
    pub fn name(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Replace => "replace",
            StatementKind::Ddl => "ddl",
            StatementKind::Transaction => "transaction",
            StatementKind::Set => "set",
            StatementKind::Show => "show",
            StatementKind::Use => "use",
            StatementKind::Privilege => "privilege",
            StatementKind::Other => "other",
            StatementKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
