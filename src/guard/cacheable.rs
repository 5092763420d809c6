//! What the result cache needs from the guard: every policy table the
//! *rewritten* statement names (generated tenant lookups included, since they
//! are in the tree by now), and whether a SELECT's result may be served from
//! memory. Fails closed: anything not recognised here makes it uncacheable.
//!
//! A result may be cached only if it is a function of the cache key (tenant,
//! policy, session state, text, bound values) and of the rows of tables whose
//! writes through sqlguard invalidate it. So: only tables with a `cache_ttl`,
//! only functions whose value depends on their arguments alone (an allowlist,
//! [`DETERMINISTIC`]), no variables, no locking reads, no `INTO`, no
//! `SQL_CALC_FOUND_ROWS` (it feeds a later `FOUND_ROWS()`), and `SQL_NO_CACHE`
//! is honoured as an opt-out.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::time::Duration;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Select, Statement, TableFactor, TableObject,
    Visit, Visitor,
};

use super::decision::{Access, TableAccess};
use super::tables::table_name;
use crate::policy::{Policy, Scope};

/// Built-ins (a subset of `functions::ALLOWED`, upper case, sorted) whose
/// value depends only on their arguments and on session settings, which are
/// part of the cache key (session/caching.rs keys on every `SET` the session
/// ran). Left out, so never cached: the clock (NOW, CURDATE, CURRENT_*,
/// LOCALTIME*, UTC_*, UNIX_TIMESTAMP), RAND and UUID, connection state
/// (LAST_INSERT_ID, ROW_COUNT, DATABASE/SCHEMA, USER, VERSION), and
/// FROM_UNIXTIME / CONVERT_TZ (they read the server's time-zone tables).
/// A unit test makes every name of `ALLOWED` be on this list or on
/// [`NOT_DETERMINISTIC`], so a function added to the allowlist must be
/// classified here before it can be called at all.
const DETERMINISTIC: &[&str] = &[
    "ABS",
    "ACOS",
    "ADDDATE",
    "ADDTIME",
    "ADD_MONTHS",
    "ASCII",
    "ASIN",
    "ATAN",
    "ATAN2",
    "AVG",
    "BIN",
    "BIT_AND",
    "BIT_COUNT",
    "BIT_LENGTH",
    "BIT_OR",
    "BIT_XOR",
    "CEIL",
    "CEILING",
    "CHAR",
    "CHARACTER_LENGTH",
    "CHAR_LENGTH",
    "CHR",
    "COALESCE",
    "CONCAT",
    "CONCAT_WS",
    "CONV",
    "COS",
    "COT",
    "COUNT",
    "CRC32",
    "CUME_DIST",
    "DATE",
    "DATEDIFF",
    "DATE_ADD",
    "DATE_FORMAT",
    "DATE_SUB",
    "DAY",
    "DAYNAME",
    "DAYOFMONTH",
    "DAYOFWEEK",
    "DAYOFYEAR",
    "DEGREES",
    "DENSE_RANK",
    "ELT",
    "EXP",
    "FIELD",
    "FIND_IN_SET",
    "FIRST_VALUE",
    "FLOOR",
    "FORMAT",
    "FROM_DAYS",
    "GREATEST",
    "GROUP_CONCAT",
    "HEX",
    "HOUR",
    "IF",
    "IFNULL",
    "INSERT",
    "INSTR",
    "ISNULL",
    "JSON_ARRAY",
    "JSON_ARRAYAGG",
    "JSON_COMPACT",
    "JSON_CONTAINS",
    "JSON_CONTAINS_PATH",
    "JSON_DEPTH",
    "JSON_DETAILED",
    "JSON_EXISTS",
    "JSON_EXTRACT",
    "JSON_KEYS",
    "JSON_LENGTH",
    "JSON_LOOSE",
    "JSON_OBJECT",
    "JSON_OBJECTAGG",
    "JSON_QUERY",
    "JSON_QUOTE",
    "JSON_SEARCH",
    "JSON_TYPE",
    "JSON_UNQUOTE",
    "JSON_VALID",
    "JSON_VALUE",
    "LAG",
    "LAST_DAY",
    "LAST_VALUE",
    "LCASE",
    "LEAD",
    "LEAST",
    "LEFT",
    "LENGTH",
    "LN",
    "LOCATE",
    "LOG",
    "LOG10",
    "LOG2",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MAKEDATE",
    "MAKETIME",
    "MAX",
    "MD5",
    "MEDIAN",
    "MICROSECOND",
    "MID",
    "MIN",
    "MINUTE",
    "MOD",
    "MONTH",
    "MONTHNAME",
    "NTH_VALUE",
    "NTILE",
    "NULLIF",
    "NVL",
    "NVL2",
    "OCT",
    "OCTET_LENGTH",
    "ORD",
    "PERCENTILE_CONT",
    "PERCENTILE_DISC",
    "PERCENT_RANK",
    "PERIOD_ADD",
    "PERIOD_DIFF",
    "PI",
    "POW",
    "POWER",
    "QUARTER",
    "QUOTE",
    "RADIANS",
    "RANK",
    "REGEXP_INSTR",
    "REGEXP_REPLACE",
    "REGEXP_SUBSTR",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "ROUND",
    "ROW_NUMBER",
    "RPAD",
    "RTRIM",
    "SECOND",
    "SEC_TO_TIME",
    "SHA1",
    "SHA2",
    "SIGN",
    "SIN",
    "SOUNDEX",
    "SPACE",
    "SQRT",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "STRCMP",
    "STR_TO_DATE",
    "SUBDATE",
    "SUBSTRING_INDEX",
    "SUBTIME",
    "SUM",
    "TAN",
    "TIME",
    "TIMEDIFF",
    "TIMESTAMP",
    "TIMESTAMPADD",
    "TIMESTAMPDIFF",
    "TIME_FORMAT",
    "TIME_TO_SEC",
    "TO_DAYS",
    "TO_SECONDS",
    "TRUNCATE",
    "UCASE",
    "UNHEX",
    "UPPER",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "WEEK",
    "WEEKDAY",
    "WEEKOFYEAR",
    "YEAR",
    "YEARWEEK",
];

/// The allowed built-ins a cached result must never contain (see
/// [`DETERMINISTIC`]). Sorted.
#[cfg(test)]
const NOT_DETERMINISTIC: &[&str] = &[
    "CONVERT_TZ",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURTIME",
    "DATABASE",
    "FROM_UNIXTIME",
    "LAST_INSERT_ID",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NOW",
    "RAND",
    "ROW_COUNT",
    "SCHEMA",
    "UNIX_TIMESTAMP",
    "USER",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "UUID",
    "VERSION",
];

/// Longest name on [`DETERMINISTIC`], plus room.
const MAX_NAME: usize = 32;

fn deterministic(name: &Ident) -> bool {
    let bytes = name.value.as_bytes();
    if name.quote_style.is_some() || bytes.len() > MAX_NAME || !bytes.is_ascii() {
        return false;
    }
    let mut buf = [0u8; MAX_NAME];
    let upper = &mut buf[..bytes.len()];
    upper.copy_from_slice(bytes);
    upper.make_ascii_uppercase();
    match std::str::from_utf8(upper) {
        Ok(upper) => DETERMINISTIC.binary_search(&upper).is_ok(),
        Err(_) => false,
    }
}

/// `@x`, `@@x`, `@@session.x`: user and system variables (sqlparser's MySQL
/// dialect reads them as identifiers). Quoted or not, refused: fail closed.
fn variable(ident: &Ident) -> bool {
    ident.value.starts_with('@')
}

/// The tables `statement` (already checked and rewritten) touches, and
/// whether its result may be cached. `statement` must have passed the guard:
/// every table it names is the policy's or a CTE of the statement.
pub(super) fn access(statement: &Statement, policy: &Policy) -> Access {
    let mut analyzer = Analyzer {
        policy,
        ctes: HashSet::new(),
        tables: Vec::new(),
        ttl: None,
        cacheable: matches!(statement, Statement::Query(_)),
    };
    if let Statement::Insert(insert) = statement {
        match &insert.table {
            TableObject::TableName(name) => analyzer.table(name, false),
            _ => analyzer.cacheable = false,
        }
    }
    let _ = statement.visit(&mut analyzer);
    let cache_ttl = match analyzer.ttl {
        Some(ttl) if analyzer.cacheable && !analyzer.tables.is_empty() => Some(ttl),
        _ => None,
    };
    Access {
        tables: analyzer.tables,
        cache_ttl,
    }
}

struct Analyzer<'p> {
    policy: &'p Policy,
    /// Names of the statement's CTEs (lowercase): references to them are
    /// not tables (their bodies are visited on their own).
    ctes: HashSet<String>,
    tables: Vec<TableAccess>,
    /// The shortest `cache_ttl` of the tables seen so far.
    ttl: Option<Duration>,
    /// Still cacheable as far as seen.
    cacheable: bool,
}

impl Analyzer<'_> {
    fn table(&mut self, name: &ObjectName, maybe_cte: bool) {
        let Some(table) = table_name(name) else {
            self.cacheable = false;
            return;
        };
        let Some(policy_table) = self.policy.table(&table) else {
            // Not the policy's: a CTE (the guard let nothing else through).
            if !(maybe_cte && name.0.len() == 1 && self.ctes.contains(&table)) {
                self.cacheable = false;
            }
            return;
        };
        match policy_table.cache_ttl {
            Some(ttl) => self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl))),
            None => self.cacheable = false,
        }
        if !self.tables.iter().any(|t| t.name == table) {
            self.tables.push(TableAccess {
                name: table,
                shared: matches!(policy_table.scope, Scope::Shared),
            });
        }
    }
}

impl Visitor for Analyzer<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() || query.for_clause.is_some() {
            self.cacheable = false;
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        let modifiers = select.select_modifiers.as_ref();
        if select.into.is_some()
            || modifiers.is_some_and(|m| m.sql_calc_found_rows || m.sql_no_cache)
        {
            self.cacheable = false;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args,
                version,
                sample,
                ..
            } => {
                if args.is_some() || version.is_some() || sample.is_some() {
                    self.cacheable = false;
                }
                self.table(name, true);
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {}
            _ => self.cacheable = false,
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(function) => {
                let one_name = match function.name.0.as_slice() {
                    [ObjectNamePart::Identifier(ident)] => deterministic(ident),
                    _ => false,
                };
                if !one_name {
                    self.cacheable = false;
                }
            }
            Expr::Identifier(ident) if variable(ident) => self.cacheable = false,
            Expr::CompoundIdentifier(parts) if parts.iter().any(variable) => self.cacheable = false,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{Decision, SessionContext, check, check_prepared};

    #[test]
    fn every_allowed_function_is_classified() {
        for list in [DETERMINISTIC, NOT_DETERMINISTIC] {
            for pair in list.windows(2) {
                assert!(pair[0] < pair[1], "{} before {}", pair[0], pair[1]);
            }
        }
        let allowed = crate::guard::allowed_functions();
        for name in allowed {
            let on_one = DETERMINISTIC.binary_search(name).is_ok()
                != NOT_DETERMINISTIC.binary_search(name).is_ok();
            assert!(on_one, "{name}: on exactly one of the two lists");
        }
        for name in DETERMINISTIC.iter().chain(NOT_DETERMINISTIC) {
            assert!(allowed.contains(name), "{name} is not an allowed function");
        }
    }

    /// The clawdbot policy with `cache_ttl` on the catalog tables as shipped,
    /// plus `customers` uncached, and `sbtest1` (shared) cached.
    fn policy() -> Policy {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/clawdbot.toml");
        let text = std::fs::read_to_string(path).expect("policies/clawdbot.toml");
        let text = text.replace(
            "[tables.sbtest1]   # sysbench's table, the same for every tenant\n",
            "[tables.sbtest1]\ncache_ttl = \"2s\"\n",
        );
        match Policy::from_toml("clawdbot", &text) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn access_of(sql: &str, prepared: bool) -> Access {
        let policy = policy();
        let session = SessionContext {
            user: "clawdbot",
            tenant_id: 1,
            database: "shop",
            policy: &policy,
        };
        let decision = if prepared {
            check_prepared(sql, &session)
        } else {
            check(sql, &session)
        };
        match decision {
            Decision::Allow { access, .. } => access,
            other => panic!("{sql}: expected allow, got {other:?}"),
        }
    }

    #[track_caller]
    fn ttl(sql: &str) -> Option<Duration> {
        let text = access_of(sql, false).cache_ttl;
        assert_eq!(
            access_of(sql, true).cache_ttl,
            text,
            "{sql}: prepared and text differ"
        );
        text
    }

    fn names(access: &Access) -> Vec<(&str, bool)> {
        access
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.shared))
            .collect()
    }

    #[test]
    fn catalog_reads_are_cacheable_with_the_shortest_ttl() {
        let products = policy().table("products").and_then(|t| t.cache_ttl);
        let categories = policy().table("categories").and_then(|t| t.cache_ttl);
        assert!(products.is_some() && categories.is_some());
        assert_eq!(
            ttl("SELECT name, price FROM products WHERE status = 'active'"),
            products
        );
        assert_eq!(
            ttl("SELECT p.name, c.name FROM products p JOIN categories c ON c.name = p.category"),
            products.min(categories)
        );
        assert_eq!(
            ttl(
                "SELECT name FROM products WHERE category IN (SELECT name FROM categories WHERE slug LIKE 'a%')"
            ),
            products.min(categories)
        );
        assert_eq!(
            ttl(
                "WITH cheap AS (SELECT id, name FROM products WHERE price < 100) SELECT name FROM cheap"
            ),
            products
        );
        assert_eq!(
            ttl(
                "SELECT name, ROUND(price * 1.2, 2), CONCAT(name, '!') FROM products ORDER BY price DESC LIMIT 5"
            ),
            products
        );
        assert_eq!(ttl("SELECT name FROM products WHERE id = ?"), products);
        assert_eq!(
            ttl("SELECT COUNT(*) FROM sbtest1"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            names(&access_of("SELECT COUNT(*) FROM sbtest1", false)),
            vec![("sbtest1", true)]
        );
    }

    #[test]
    fn anything_else_is_not_cacheable() {
        for sql in [
            // A table without cache_ttl, alone, joined, or in a subquery.
            "SELECT phone FROM customers",
            "SELECT p.name FROM products p JOIN orders o ON o.customer_id = 1",
            "SELECT name FROM products WHERE id IN (SELECT id FROM orders)",
            // Through a generated tenant lookup (messages -> conversations).
            "SELECT content FROM messages WHERE conversation_id = 1",
            // Clock, randomness, connection state, variables.
            "SELECT name, NOW() FROM products",
            "SELECT name FROM products WHERE created_at > CURRENT_TIMESTAMP",
            "SELECT name FROM products WHERE created_at > CURRENT_DATE",
            "SELECT name FROM products WHERE created_at > LOCALTIME",
            "SELECT name FROM products ORDER BY RAND()",
            "SELECT UUID(), name FROM products",
            "SELECT name, LAST_INSERT_ID() FROM products",
            "SELECT name, DATABASE() FROM products",
            "SELECT name, USER() FROM products",
            "SELECT name, UNIX_TIMESTAMP() FROM products",
            "SELECT name, @x FROM products",
            "SELECT name, @@version FROM products",
            "SELECT name FROM products WHERE price > @@session.max_allowed_packet",
            // Opt-outs and FOUND_ROWS() feeders.
            "SELECT SQL_NO_CACHE name FROM products",
            "SELECT SQL_CALC_FOUND_ROWS name FROM products",
            // No table at all.
            "SELECT 1",
            "SELECT @@version_comment LIMIT 1",
        ] {
            assert_eq!(ttl(sql), None, "{sql}");
        }
    }

    #[test]
    fn writes_name_their_tables_and_are_never_cacheable() {
        let update = access_of(
            "UPDATE orders SET status = 'Annulé' WHERE id = '6ec0bd7f-11c0-43da-975e-2a8ad9eb1001'",
            false,
        );
        assert_eq!(update.cache_ttl, None);
        assert_eq!(names(&update), vec![("orders", false)]);
        let insert = access_of(
            "INSERT INTO messages (conversation_id, sender, type, content) VALUES (1, 'ai', 'text', 'hi')",
            false,
        );
        assert_eq!(insert.cache_ttl, None);
        assert_eq!(names(&insert)[0], ("messages", false));
        assert!(names(&insert).contains(&("conversations", false)));
    }
}
