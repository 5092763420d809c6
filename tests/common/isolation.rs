//! The tenant-isolation oracle (DESIGN.md, "What correct means").
//!
//! For an allowed SELECT `S` and tenant `T`: the rewritten `S` on the full
//! database (through sqlguard, as a user bound to `T`) must return exactly what
//! the original `S` returns on a copy of the database that holds only `T`'s
//! rows. Fewer rows is a bug, more rows is a leak.
//!
//! Databases (private MariaDBs with the demo fixture):
//! - the read environment ([`read_env`]): `full` (never written) with a proxy
//!   per test in front, and `copy[T]` for tenants 1 and 2, pruned to that
//!   tenant's rows ([`prune_to_tenant`]) generically from the policy file;
//! - the write environment ([`write_env`]): `full` and a tenant-1 copy, both
//!   written: statements through the proxy as tenant 1 on `full`, the original
//!   text as root on the copy. Tests that use it hold [`WRITE_LOCK`].
//!
//! Copies also get `DEFAULT <T>` on every tenant column, so an INSERT that
//! names no tenant column lands in `T` there, as sqlguard's rewrite does.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Value};
use sqlguard::frontend::listener::RunningProxy;
use sqlguard::guard::{self, Decision, SessionContext};
use sqlguard::mariadb::{DEMO_DATABASE, PrivateMariaDb};
use sqlguard::policy::{Policy, Scope};

use super::mariadb::start_fixture;
use super::proxy::{CLAWDBOT, CLAWDBOT_T2, READONLY, proxy_opts, repo_path};

/// Rows of a text-protocol result: one `Option<bytes>` per cell, NULL = None.
pub type Rows = Vec<Vec<Option<Vec<u8>>>>;

/// A server error: (code, message). Client-side failures get code 0.
pub type SqlError = (u16, String);

/// Longest a single statement may take before it counts as an error.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `sql` with the text protocol and returns its rows, sorted (results are
/// compared as multisets).
pub async fn rows_of(conn: &mut Conn, sql: &str) -> Result<Rows, SqlError> {
    let run = async {
        let mut result = conn.query_iter(sql).await?;
        let raw: Vec<mysql_async::Row> = result.collect().await?;
        // Drain any further result sets.
        result.drop_result().await?;
        Ok::<_, mysql_async::Error>(raw)
    };
    let raw = match tokio::time::timeout(STATEMENT_TIMEOUT, run).await {
        Err(_) => return Err((0, format!("timed out after {STATEMENT_TIMEOUT:?}"))),
        Ok(Err(mysql_async::Error::Server(e))) => return Err((e.code, e.message)),
        Ok(Err(e)) => return Err((0, e.to_string())),
        Ok(Ok(raw)) => raw,
    };
    let mut rows: Rows = raw
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|v| match v {
                    Value::NULL => None,
                    Value::Bytes(b) => Some(b),
                    other => Some(format!("{other:?}").into_bytes()),
                })
                .collect()
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Runs a statement that returns no rows; Ok(affected rows).
pub async fn exec(conn: &mut Conn, sql: &str) -> Result<u64, SqlError> {
    let run = async {
        let result = conn.query_iter(sql).await?;
        let affected = result.affected_rows();
        result.drop_result().await?;
        Ok::<_, mysql_async::Error>(affected)
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, run).await {
        Err(_) => Err((0, format!("timed out after {STATEMENT_TIMEOUT:?}"))),
        Ok(Err(mysql_async::Error::Server(e))) => Err((e.code, e.message)),
        Ok(Err(e)) => Err((0, e.to_string())),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Whether an error is sqlguard refusing the statement (not the backend failing).
pub fn is_denial(error: &SqlError) -> bool {
    error.1.starts_with("sqlguard:")
}

/// `rows` with every cell as text (bytes shown lossily), for messages.
pub fn show_rows(rows: &Rows) -> String {
    let mut out = String::new();
    for row in rows.iter().take(40) {
        let cells: Vec<String> = row
            .iter()
            .map(|c| match c {
                None => "NULL".to_string(),
                Some(b) => {
                    let s = String::from_utf8_lossy(b);
                    if s.chars().count() > 60 {
                        format!("{}…", s.chars().take(60).collect::<String>())
                    } else {
                        s.into_owned()
                    }
                }
            })
            .collect();
        out.push_str("    (");
        out.push_str(&cells.join(", "));
        out.push_str(")\n");
    }
    if rows.len() > 40 {
        out.push_str(&format!("    … {} rows in all\n", rows.len()));
    }
    out
}

/// Whether sorted multiset `small` is contained in sorted multiset `big`.
pub fn is_sub_multiset(small: &Rows, big: &Rows) -> bool {
    let mut j = 0;
    for row in small {
        while j < big.len() && big[j] < *row {
            j += 1;
        }
        if j == big.len() || big[j] != *row {
            return false;
        }
        j += 1;
    }
    true
}

/// `rows` - `other`, as multisets (both sorted).
pub fn multiset_minus(rows: &Rows, other: &Rows) -> Rows {
    let mut out = Vec::new();
    let mut j = 0;
    for row in rows {
        while j < other.len() && other[j] < *row {
            j += 1;
        }
        if j < other.len() && other[j] == *row {
            j += 1;
        } else {
            out.push(row.clone());
        }
    }
    out
}

// ------------------------------------------------------------------ policies

pub fn readonly_policy() -> Policy {
    Policy::load(&repo_path("policies/readonly.toml")).expect("policies/readonly.toml")
}

pub fn clawdbot_policy() -> Policy {
    Policy::load(&repo_path("policies/clawdbot.toml")).expect("policies/clawdbot.toml")
}

/// The policy's tables, sorted by name (deterministic order).
fn policy_tables(policy: &Policy) -> Vec<(String, Scope)> {
    let mut tables: Vec<(String, Scope)> = policy
        .tables
        .values()
        .map(|t| (t.name.clone(), t.scope.clone()))
        .collect();
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    tables
}

/// What sqlguard would forward for `sql` (or why it refuses), for messages.
pub fn rewritten(sql: &str, user: &str, tenant: u64, policy: &Policy) -> String {
    let session = SessionContext {
        user,
        tenant_id: tenant,
        database: DEMO_DATABASE,
        policy,
    };
    match guard::check(sql, &session) {
        Decision::Allow { sql, .. } => sql.as_str().to_string(),
        Decision::LocalOk { kind } => format!("(answered locally: {kind:?})"),
        Decision::Deny(d) => format!("(denied: {:?}: {})", d.rule, d.message),
    }
}

// ------------------------------------------------------------------ databases

/// Every private MariaDB this test binary started; killed at exit.
static DATABASES: Mutex<Vec<PrivateMariaDb>> = Mutex::new(Vec::new());
static ATEXIT: OnceLock<()> = OnceLock::new();

extern "C" fn stop_databases() {
    if let Ok(mut dbs) = DATABASES.lock() {
        dbs.clear();
    }
}

fn keep(db: PrivateMariaDb) -> u16 {
    let port = db.port();
    DATABASES.lock().unwrap().push(db);
    ATEXIT.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(stop_databases);
        }
    });
    port
}

pub fn root_opts_at(port: u16) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .db_name(Some(DEMO_DATABASE))
        .prefer_socket(false)
        .into()
}

pub async fn root_conn(port: u16) -> Conn {
    Conn::new(root_opts_at(port))
        .await
        .unwrap_or_else(|e| panic!("root on port {port}: {e}"))
}

/// Deletes every row that does not belong to `tenant`, generically from the
/// policy: `scope = "tenant"` tables by their tenant column, `scope = "parent"`
/// tables whose parent row is gone, `scope = "key"` by key; `shared` tables
/// are kept. Tenant columns then default to `tenant`.
pub async fn prune_to_tenant(port: u16, tenant: u64, policy: &Policy) {
    let mut conn = root_conn(port).await;
    let tables = policy_tables(policy);
    let tc = &policy.tenant_column;
    let mut statements = vec!["SET FOREIGN_KEY_CHECKS = 0".to_string()];
    for (name, scope) in &tables {
        if *scope == Scope::Tenant {
            statements.push(format!("DELETE FROM `{name}` WHERE `{tc}` <> {tenant}"));
            statements.push(format!(
                "ALTER TABLE `{name}` ALTER COLUMN `{tc}` SET DEFAULT {tenant}"
            ));
        }
    }
    // Parents of parents: repeat as often as there are parent-scoped tables.
    let parents: Vec<_> = tables
        .iter()
        .filter_map(|(name, scope)| match scope {
            Scope::Parent {
                parent,
                column,
                parent_key,
            } => Some((name, parent, column, parent_key)),
            _ => None,
        })
        .collect();
    for _ in 0..parents.len() {
        for (name, parent, column, parent_key) in &parents {
            statements.push(format!(
                "DELETE FROM `{name}` WHERE NOT EXISTS \
                 (SELECT 1 FROM `{parent}` p WHERE p.`{parent_key}` = `{name}`.`{column}`)"
            ));
        }
    }
    for (name, scope) in &tables {
        if let Scope::Key { column } = scope {
            statements.push(format!("DELETE FROM `{name}` WHERE `{column}` <> {tenant}"));
        }
    }
    statements.push("SET FOREIGN_KEY_CHECKS = 1".to_string());
    for sql in statements {
        conn.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("pruning to tenant {tenant}: {sql}: {e}"));
    }
    let _ = conn.disconnect().await;
}

/// Tables of `shop` (not views).
async fn shop_tables(conn: &mut Conn) -> Vec<String> {
    conn.exec(
        "SELECT TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        (DEMO_DATABASE,),
    )
    .await
    .expect("list tables")
}

/// Copies every table of `shop` into database `snap` (root only: the
/// backend account cannot see it), for [`restore`].
pub async fn snapshot(port: u16) {
    let mut conn = root_conn(port).await;
    conn.query_drop("CREATE DATABASE IF NOT EXISTS snap")
        .await
        .expect("create snap");
    for t in shop_tables(&mut conn).await {
        conn.query_drop(format!(
            "DROP TABLE IF EXISTS snap.`{t}`; CREATE TABLE snap.`{t}` LIKE shop.`{t}`; \
             INSERT INTO snap.`{t}` SELECT * FROM shop.`{t}`"
        ))
        .await
        .unwrap_or_else(|e| panic!("snapshot {t}: {e}"));
    }
    let _ = conn.disconnect().await;
}

/// Puts every table of `shop` back as [`snapshot`] saw it (auto-increment
/// counters keep their high-water marks).
pub async fn restore(port: u16) {
    let mut conn = root_conn(port).await;
    let tables = shop_tables(&mut conn).await;
    let mut sql = String::from("SET FOREIGN_KEY_CHECKS = 0; START TRANSACTION; ");
    for t in &tables {
        sql.push_str(&format!(
            "DELETE FROM shop.`{t}`; INSERT INTO shop.`{t}` SELECT * FROM snap.`{t}`; "
        ));
    }
    sql.push_str("COMMIT; SET FOREIGN_KEY_CHECKS = 1");
    conn.query_drop(&sql).await.expect("restore");
    let _ = conn.disconnect().await;
}

/// Auto-increment counters of `shop`'s tables.
async fn counters(conn: &mut Conn) -> BTreeMap<String, u64> {
    let rows: Vec<(String, u64)> = conn
        .exec(
            "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND AUTO_INCREMENT IS NOT NULL",
            (DEMO_DATABASE,),
        )
        .await
        .expect("auto-increment counters");
    rows.into_iter().collect()
}

/// Raises the lower of two databases' auto-increment counters to the higher
/// one, table by table, so both hand out the same ids afterwards.
pub async fn align_counters(a: &mut Conn, b: &mut Conn) {
    let (ca, cb) = (counters(a).await, counters(b).await);
    for (table, va) in &ca {
        let Some(vb) = cb.get(table) else { continue };
        if va != vb {
            let (low, high) = if va < vb {
                (&mut *a, *vb)
            } else {
                (&mut *b, *va)
            };
            low.query_drop(format!(
                "ALTER TABLE shop.`{table}` AUTO_INCREMENT = {high}"
            ))
            .await
            .unwrap_or_else(|e| panic!("auto-increment of {table}: {e}"));
        }
    }
}

/// Starts `tenants.len()` fixtures on a thread of its own (the caller may be
/// inside a runtime whose end would otherwise matter), pruning each to its
/// tenant (None = full).
fn start_databases(tenants: Vec<Option<u64>>, snapshots: bool) -> Vec<u16> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let policy = readonly_policy();
            let dbs = futures_util::future::join_all(tenants.iter().map(|_| start_fixture())).await;
            let mut ports = Vec::new();
            for (db, tenant) in dbs.into_iter().zip(&tenants) {
                let port = keep(db);
                if let Some(t) = tenant {
                    prune_to_tenant(port, *t, &policy).await;
                }
                if snapshots {
                    snapshot(port).await;
                }
                ports.push(port);
            }
            ports
        })
    })
    .join()
    .expect("starting MariaDB panicked")
}

/// Ports of the read environment: `full` and the copies of tenants 1 and 2.
/// Nothing may write to these databases.
pub struct ReadEnv {
    pub full: u16,
    pub copy: [u16; 2],
}

pub fn read_env() -> &'static ReadEnv {
    static ENV: OnceLock<ReadEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let ports = start_databases(vec![None, Some(1), Some(2)], false);
        ReadEnv {
            full: ports[0],
            copy: [ports[1], ports[2]],
        }
    })
}

/// Ports of the write environment: `full` and the copy of tenant 1.
pub struct WriteEnv {
    pub full: u16,
    pub copy1: u16,
}

/// Held by every test that writes to [`write_env`].
pub static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn write_env() -> &'static WriteEnv {
    static ENV: OnceLock<WriteEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let ports = start_databases(vec![None, Some(1)], true);
        WriteEnv {
            full: ports[0],
            copy1: ports[1],
        }
    })
}

// ------------------------------------------------------------------ SELECT oracle

/// The proxy user a tenant's SELECTs are compared as, and its LIMITs
/// (default injected, max clamped).
pub fn reader_for(tenant: u64) -> ((&'static str, &'static str), u64, u64) {
    match tenant {
        1 => (READONLY, 1000, 1_000_000),
        2 => (CLAWDBOT_T2, 20, 100),
        _ => panic!("no demo reader for tenant {tenant}"),
    }
}

/// What the oracle found for one statement.
#[derive(Debug)]
pub enum Verdict {
    /// Same multiset of rows (`truncated`: the proxy's injected or clamped
    /// LIMIT cut a larger result, and what it returned is part of it).
    Same { rows: Rows, truncated: bool },
    /// sqlguard refused the statement.
    Denied(SqlError),
    /// Errors on both sides.
    BothError { proxy: SqlError, copy: SqlError },
    /// A leak, missing rows, or an error on one side only.
    Failure(String),
}

/// Counts over a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub executed: usize,
    pub same: usize,
    pub truncated: usize,
    pub denied: usize,
    pub both_error: usize,
    pub failed: usize,
}

impl Tally {
    pub fn add(&mut self, v: &Verdict) {
        self.executed += 1;
        match v {
            Verdict::Same { truncated, .. } => {
                self.same += 1;
                if *truncated {
                    self.truncated += 1;
                }
            }
            Verdict::Denied(_) => self.denied += 1,
            Verdict::BothError { .. } => self.both_error += 1,
            Verdict::Failure(_) => self.failed += 1,
        }
    }

    pub fn allowed(&self) -> usize {
        self.executed - self.denied
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "executed {}, allowed {} (same rows {}, of which truncated by LIMIT {}; both errored {}; failed {}), denied {}",
            self.executed,
            self.allowed(),
            self.same,
            self.truncated,
            self.both_error,
            self.failed,
            self.denied
        )
    }
}

/// Connections for the SELECT oracle: through `proxy` (in front of `full`) as
/// each tenant's reader, and root on each tenant's copy.
pub struct SelectOracle {
    proxy_port: RunningProxyRef,
    readers: BTreeMap<u64, Conn>,
    copies: BTreeMap<u64, (u16, Conn)>,
    readonly: Policy,
    clawdbot: Policy,
}

/// Enough of a proxy to reconnect to it.
struct RunningProxyRef {
    opts: BTreeMap<u64, Opts>,
}

impl SelectOracle {
    pub async fn new(proxy: &RunningProxy, copies: &[(u64, u16)]) -> SelectOracle {
        let mut opts = BTreeMap::new();
        let mut readers = BTreeMap::new();
        let mut copy_conns = BTreeMap::new();
        for &(tenant, port) in copies {
            let (user, _, _) = reader_for(tenant);
            let o = proxy_opts(proxy, user);
            let conn = Conn::new(o.clone())
                .await
                .unwrap_or_else(|e| panic!("log in as {}: {e}", user.0));
            readers.insert(tenant, conn);
            opts.insert(tenant, o);
            copy_conns.insert(tenant, (port, root_conn(port).await));
        }
        SelectOracle {
            proxy_port: RunningProxyRef { opts },
            readers,
            copies: copy_conns,
            readonly: readonly_policy(),
            clawdbot: clawdbot_policy(),
        }
    }

    /// The rewritten SQL the tenant's reader would run (for messages).
    pub fn rewritten(&self, sql: &str, tenant: u64) -> String {
        let (user, _, _) = reader_for(tenant);
        let policy = if user == READONLY {
            &self.readonly
        } else {
            &self.clawdbot
        };
        rewritten(sql, user.0, tenant, policy)
    }

    async fn through_proxy(&mut self, tenant: u64, sql: &str) -> Result<Rows, SqlError> {
        let conn = self.readers.get_mut(&tenant).expect("tenant");
        let result = rows_of(conn, sql).await;
        if let Err((0, _)) = &result {
            // The connection may be gone: reconnect for the next statement.
            let opts = self.proxy_port.opts[&tenant].clone();
            if let Ok(c) = Conn::new(opts).await {
                self.readers.insert(tenant, c);
            }
        }
        result
    }

    async fn on_copy(&mut self, tenant: u64, sql: &str) -> Result<Rows, SqlError> {
        let (port, conn) = self.copies.get_mut(&tenant).expect("tenant");
        let result = rows_of(conn, sql).await;
        if let Err((0, _)) = &result {
            *conn = root_conn(*port).await;
        }
        result
    }

    /// Runs `sql` through the proxy as `tenant` and directly on the tenant's
    /// copy, and compares.
    /// Also returns the rows sqlguard returned, if any.
    pub async fn check(&mut self, tenant: u64, sql: &str) -> (Verdict, Option<Rows>) {
        let got = self.through_proxy(tenant, sql).await;
        let rows = got.as_ref().ok().cloned();
        (self.judge(tenant, sql, got).await, rows)
    }

    async fn judge(&mut self, tenant: u64, sql: &str, got: Result<Rows, SqlError>) -> Verdict {
        let (_, default_limit, max_limit) = reader_for(tenant);
        if let Err(e) = &got {
            if is_denial(e) {
                return Verdict::Denied(e.clone());
            }
        }
        let want = self.on_copy(tenant, sql).await;
        match (got, want) {
            (Ok(got), Ok(want)) => {
                if got == want {
                    return Verdict::Same {
                        rows: got,
                        truncated: false,
                    };
                }
                let n = got.len() as u64;
                if got.len() < want.len()
                    && (n == default_limit || n == max_limit)
                    && is_sub_multiset(&got, &want)
                {
                    return Verdict::Same {
                        rows: got,
                        truncated: true,
                    };
                }
                let leaked = multiset_minus(&got, &want);
                let missing = multiset_minus(&want, &got);
                let both = if got.len() <= 12 && want.len() <= 12 {
                    format!(
                        "  all rows through sqlguard:\n{}  all rows on the copy:\n{}",
                        show_rows(&got),
                        show_rows(&want)
                    )
                } else {
                    String::new()
                };
                Verdict::Failure(format!(
                    "tenant {tenant}: {} rows through sqlguard, {} on the tenant's copy\n  \
                     rewritten: {}\n  rows only through sqlguard (LEAK), {}:\n{}  \
                     rows only on the copy (MISSING), {}:\n{}{both}",
                    got.len(),
                    want.len(),
                    self.rewritten(sql, tenant),
                    leaked.len(),
                    show_rows(&leaked),
                    missing.len(),
                    show_rows(&missing)
                ))
            }
            (Err(p), Err(c)) => Verdict::BothError { proxy: p, copy: c },
            (Err(p), Ok(want)) => Verdict::Failure(format!(
                "tenant {tenant}: error through sqlguard {p:?}, but {} rows on the copy\n  \
                 rewritten: {}\n  copy rows:\n{}",
                want.len(),
                self.rewritten(sql, tenant),
                show_rows(&want)
            )),
            (Ok(got), Err(c)) => Verdict::Failure(format!(
                "tenant {tenant}: {} rows through sqlguard, but error on the copy {c:?}\n  \
                 rewritten: {}\n  proxy rows:\n{}",
                got.len(),
                self.rewritten(sql, tenant),
                show_rows(&got)
            )),
        }
    }
}

// ------------------------------------------------------------------ write oracle

/// Per (table, tenant): (row count, SUM of row CRCs, BIT_XOR of row CRCs).
pub type Sums = BTreeMap<(String, i64), (i64, String, i64)>;

/// Columns of `table`, and whether each is stable across servers (not filled
/// in from the clock: no CURRENT_TIMESTAMP default, no ON UPDATE).
async fn columns(conn: &mut Conn, table: &str) -> Vec<(String, bool)> {
    let rows: Vec<(String, Option<String>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (DEMO_DATABASE, table),
        )
        .await
        .expect("columns");
    rows.into_iter()
        .map(|(name, default, extra)| {
            let clock = default
                .map(|d| d.to_ascii_lowercase().contains("current_timestamp"))
                .unwrap_or(false)
                || extra.to_ascii_lowercase().contains("on update");
            (name, !clock)
        })
        .collect()
}

/// The tenant of a row of `name` (alias `t`), as SQL.
fn tenant_expr(policy: &Policy, scope: &Scope, alias: &str, depth: usize) -> String {
    match scope {
        Scope::Tenant => format!("{alias}.`{}`", policy.tenant_column),
        Scope::Key { column } => format!("{alias}.`{column}`"),
        Scope::Shared => "0".to_string(),
        Scope::Parent {
            parent,
            column,
            parent_key,
        } => {
            let p = format!("p{depth}");
            let parent_scope = &policy.table(parent).expect("parent in policy").scope;
            format!(
                "(SELECT {} FROM `{parent}` {p} WHERE {p}.`{parent_key}` = {alias}.`{column}`)",
                tenant_expr(policy, parent_scope, &p, depth + 1)
            )
        }
    }
}

/// The checksum query over every policy table: rows of (table, tenant,
/// count, crc sum, crc xor); orphans have tenant -1. With `stable_only`,
/// clock-filled columns are left out (to compare two servers). Built once
/// (every database has the fixture's schema).
async fn checksum_sql(conn: &mut Conn, policy: &Policy, stable_only: bool) -> String {
    static SQL: OnceLock<Mutex<BTreeMap<(String, bool), String>>> = OnceLock::new();
    let cache = SQL.get_or_init(|| Mutex::new(BTreeMap::new()));
    let key = (policy.name.clone(), stable_only);
    if let Some(sql) = cache.lock().unwrap().get(&key) {
        return sql.clone();
    }
    let mut parts = Vec::new();
    for (name, scope) in policy_tables(policy) {
        let cols = columns(conn, &name).await;
        let values: Vec<String> = cols
            .iter()
            .filter(|(_, stable)| *stable || !stable_only)
            .map(|(c, _)| format!("COALESCE(HEX(CAST(t.`{c}` AS BINARY)), '~')"))
            .collect();
        let row = format!("CRC32(CONCAT_WS('|', {}))", values.join(", "));
        parts.push(format!(
            "SELECT '{name}', COALESCE({}, -1), COUNT(*), CAST(SUM({row}) AS CHAR), BIT_XOR({row}) \
             FROM `{name}` t GROUP BY 2",
            tenant_expr(policy, &scope, "t", 0)
        ));
    }
    let sql = parts.join(" UNION ALL ");
    cache.lock().unwrap().insert(key, sql.clone());
    sql
}

/// Checksums of every policy table, per tenant, on the database at `conn`.
pub async fn checksums_on(conn: &mut Conn, policy: &Policy, stable_only: bool) -> Sums {
    let sql = checksum_sql(conn, policy, stable_only).await;
    let rows: Vec<(String, i64, i64, String, i64)> = conn
        .query(&sql)
        .await
        .unwrap_or_else(|e| panic!("checksums: {e}\n{sql}"));
    rows.into_iter()
        .map(|(table, tenant, count, sum, xor)| ((table, tenant), (count, sum, xor)))
        .collect()
}

/// Checksums of every policy table, per tenant, on the database at `port`.
pub async fn checksums(port: u16, policy: &Policy, stable_only: bool) -> Sums {
    let mut conn = root_conn(port).await;
    let sums = checksums_on(&mut conn, policy, stable_only).await;
    let _ = conn.disconnect().await;
    sums
}

/// The entries of `sums` for `tenant`, keyed by table.
pub fn of_tenant(sums: &Sums, tenant: i64) -> BTreeMap<String, (i64, String, i64)> {
    sums.iter()
        .filter(|((_, t), _)| *t == tenant)
        .map(|((table, _), v)| (table.clone(), v.clone()))
        .collect()
}

/// Tables whose entries differ between `a` and `b`, with both values.
pub fn diff_tables(
    a: &BTreeMap<String, (i64, String, i64)>,
    b: &BTreeMap<String, (i64, String, i64)>,
) -> Vec<String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| {
            let show = |v: Option<&(i64, String, i64)>| match v {
                None => "no rows".to_string(),
                Some((c, s, x)) => format!("{c} rows (crc sum {s}, xor {x})"),
            };
            format!("{n}: {} vs {}", show(a.get(n)), show(b.get(n)))
        })
        .collect()
}

/// What the write oracle found for one statement.
#[derive(Debug)]
pub enum WriteVerdict {
    Ok {
        proxy: Result<u64, SqlError>,
        copy: Result<u64, SqlError>,
    },
    Denied(SqlError),
    /// sqlguard forwarded a rewrite that the backend refused (nothing
    /// changed), while the original ran on the copy. Not a leak; e.g. a
    /// domain guard that fails closed through a NOT NULL column. Reported.
    RefusedByBackend {
        proxy: SqlError,
        copy: u64,
    },
    Failure(String),
}

/// Runs writes as tenant 1 through a proxy in front of the write
/// environment's `full` database and directly on its tenant-1 copy.
pub struct WriteOracle {
    pub env: &'static WriteEnv,
    proxy: RunningProxy,
    writer: Conn,
    copy: Conn,
    /// Root on `full`, for checksums.
    full_root: Conn,
    policy: Policy,
    readonly: Policy,
    /// Whether `full` and the copy may have diverged (reset before the next statement).
    pub dirty: bool,
    /// How many times both were restored.
    pub resets: u64,
}

impl WriteOracle {
    /// Starts from the snapshots: an earlier test may have left the databases apart.
    pub async fn new(env: &'static WriteEnv) -> WriteOracle {
        let proxy = super::proxy::start_proxy(super::proxy::test_config(env.full)).await;
        let writer = Conn::new(proxy_opts(&proxy, CLAWDBOT))
            .await
            .expect("clawdbot");
        let copy = root_conn(env.copy1).await;
        let full_root = root_conn(env.full).await;
        WriteOracle {
            env,
            proxy,
            writer,
            copy,
            full_root,
            policy: clawdbot_policy(),
            readonly: readonly_policy(),
            dirty: true,
            resets: 0,
        }
    }

    /// Restores both databases to their snapshots (after a failure left them
    /// apart) and reconnects.
    pub async fn reset(&mut self) {
        self.resets += 1;
        restore(self.env.full).await;
        restore(self.env.copy1).await;
        self.writer = Conn::new(proxy_opts(&self.proxy, CLAWDBOT))
            .await
            .expect("clawdbot");
        self.copy = root_conn(self.env.copy1).await;
        self.full_root = root_conn(self.env.full).await;
        align_counters(&mut self.full_root, &mut self.copy).await;
        self.dirty = false;
    }

    pub fn rewritten(&self, sql: &str) -> String {
        rewritten(sql, CLAWDBOT.0, 1, &self.policy)
    }

    /// Runs `sql` as tenant 1; checks that no other tenant's rows changed and
    /// that tenant 1's rows on `full` equal the copy's afterwards.
    pub async fn check(&mut self, sql: &str) -> WriteVerdict {
        if self.dirty {
            self.reset().await;
        }
        let before = checksums_on(&mut self.full_root, &self.readonly, false).await;
        let got = exec(&mut self.writer, sql).await;
        if let Err((0, _)) = &got {
            if let Ok(c) = Conn::new(proxy_opts(&self.proxy, CLAWDBOT)).await {
                self.writer = c;
            }
        }
        let denied = matches!(&got, Err(e) if is_denial(e));
        let want = if denied {
            Err((0, "not run: denied".to_string()))
        } else {
            exec(&mut self.copy, sql).await
        };
        let after = checksums_on(&mut self.full_root, &self.readonly, false).await;
        let mut problems = Vec::new();
        // Every tenant but 1 (and orphans) must be untouched.
        let tenants: std::collections::BTreeSet<i64> =
            before.keys().chain(after.keys()).map(|(_, t)| *t).collect();
        for t in tenants.into_iter().filter(|t| *t != 1) {
            let changed = diff_tables(&of_tenant(&before, t), &of_tenant(&after, t));
            if !changed.is_empty() {
                let who = if t == -1 {
                    "rows with no tenant (orphans)".to_string()
                } else {
                    format!("tenant {t}'s rows")
                };
                problems.push(format!("LEAK: {who} changed: {}", changed.join("; ")));
            }
        }
        if denied {
            let t1 = diff_tables(&of_tenant(&before, 1), &of_tenant(&after, 1));
            if !t1.is_empty() {
                problems.push(format!(
                    "denied, yet tenant 1's rows changed: {}",
                    t1.join("; ")
                ));
            }
        } else {
            let full_now = of_tenant(
                &checksums_on(&mut self.full_root, &self.readonly, true).await,
                1,
            );
            let copy_now = of_tenant(&checksums_on(&mut self.copy, &self.readonly, true).await, 1);
            let apart = diff_tables(&full_now, &copy_now);
            if !apart.is_empty() {
                problems.push(format!(
                    "tenant 1's rows differ from the copy's (full vs copy): {}",
                    apart.join("; ")
                ));
            }
        }
        // A rewrite the backend refused, with nothing changed on `full`: the
        // copy ran the original; put it back and report it separately.
        if let (Err(p), Ok(n)) = (&got, &want) {
            let unchanged = diff_tables(&of_tenant(&before, 1), &of_tenant(&after, 1)).is_empty();
            let only_apart = problems
                .iter()
                .all(|p| p.starts_with("tenant 1's rows differ"));
            if !denied && unchanged && only_apart {
                self.dirty = true;
                return WriteVerdict::RefusedByBackend {
                    proxy: p.clone(),
                    copy: *n,
                };
            }
        }
        if problems.is_empty() {
            if denied {
                WriteVerdict::Denied(got.unwrap_err())
            } else {
                WriteVerdict::Ok {
                    proxy: got,
                    copy: want,
                }
            }
        } else {
            self.dirty = true;
            WriteVerdict::Failure(format!(
                "{}\n  through sqlguard: {got:?}; on the copy: {want:?}\n  rewritten: {}",
                problems.join("\n  "),
                self.rewritten(sql)
            ))
        }
    }
}

/// Non-empty, non-comment lines of `tests/data/<name>`.
pub fn corpus(name: &str) -> Vec<String> {
    let path = repo_path(&format!("tests/data/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .map(str::to_string)
        .collect()
}
