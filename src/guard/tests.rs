//! Data-driven tests of [`check`]: the exact forwarded SQL for what is
//! allowed, the exact rule for what is refused.

use super::*;

const DB: &str = "shop";

/// The shipped policy of the bot (policies/clawdbot.toml).
fn read_write() -> Policy {
    shipped("clawdbot")
}

/// The shipped read-only policy (policies/readonly.toml).
fn read_only() -> Policy {
    shipped("readonly")
}

/// Structural tests use a table `t`, shared (no tenant predicate), so their
/// expected text shows only what the layer under test does.
fn shipped(stem: &str) -> Policy {
    let mut policy = shipped_as_is(stem);
    let t = crate::policy::TablePolicy {
        name: "t".into(),
        scope: crate::policy::Scope::Shared,
        uuid_columns: vec!["uid".into()],
        integer_columns: Vec::new(),
        denied_columns: Vec::new(),
        columns: Vec::new(),
        insert_columns: Some(vec!["a".into(), "b".into()]),
        update_columns: Some(vec!["a".into(), "b".into()]),
        guards: Vec::new(),
        references: Vec::new(),
        cache_ttl: None,
    };
    policy.tables.insert("t".into(), t);
    policy
}

fn shipped_as_is(stem: &str) -> Policy {
    let text = crate::DEMO_POLICIES
        .iter()
        .find(|(s, _)| *s == stem)
        .map(|(_, t)| *t)
        .unwrap_or_default();
    Policy::from_toml(stem, text).unwrap_or_else(|p| panic!("{stem}: {}", p.join("; ")))
}

fn session(policy: &Policy) -> SessionContext<'_> {
    SessionContext {
        user: "clawdbot",
        tenant_id: 1,
        database: DB,
        policy,
    }
}

#[track_caller]
fn check_allow_with(policy: &Policy, sql: &str, expected: &str) {
    match check(sql, &session(policy)) {
        Decision::Allow { sql: forwarded, .. } => assert_eq!(forwarded.as_str(), expected, "{sql}"),
        other => panic!("expected Allow for {sql:?}, got {other:?}"),
    }
}

#[track_caller]
fn check_allow(sql: &str, expected: &str) {
    check_allow_with(&read_write(), sql, expected);
}

#[track_caller]
fn check_deny_with(policy: &Policy, sql: &str, rule: Rule) -> Denial {
    match check(sql, &session(policy)) {
        Decision::Deny(denial) => {
            assert_eq!(denial.rule, rule, "{sql}: {}", denial.client_message());
            denial
        }
        other => panic!("expected Deny({rule:?}) for {sql:?}, got {other:?}"),
    }
}

#[track_caller]
fn check_deny(sql: &str, rule: Rule) -> Denial {
    check_deny_with(&read_write(), sql, rule)
}

#[test]
fn seed_bot_queries() {
    check_allow(
        "SELECT name, price FROM products WHERE status = 'active' LIMIT 5;",
        "SELECT name, price FROM products WHERE (status = 'active') AND products.tenant_id = 1 LIMIT 5",
    );
    check_allow(
        "SELECT price FROM products WHERE name LIKE '%X%'",
        "SELECT price FROM products WHERE (name LIKE '%X%') AND products.tenant_id = 1 LIMIT 20",
    );
    check_allow(
        "SELECT stock FROM products WHERE id = '7b1c2f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f'",
        "SELECT stock FROM products WHERE (id = '7b1c2f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f') AND products.tenant_id = 1 LIMIT 20",
    );
    check_allow(
        "SELECT * FROM customers WHERE phone = '+212600000000'",
        "SELECT * FROM customers WHERE (phone = '+212600000000') AND customers.tenant_id = 1 LIMIT 20",
    );
    check_allow(
        "INSERT INTO customers (phone, created_at) VALUES ('+212600000000', NOW())",
        "INSERT INTO customers (phone, created_at, tenant_id) VALUES ('+212600000000', NOW(), 1)",
    );
    check_allow(
        "INSERT INTO orders (id, customer_id, total_price, status) VALUES (UUID(), 1, 199.00, 'En attente')",
        "INSERT INTO orders (id, customer_id, total_price, status, tenant_id) VALUES (UUID(), (SELECT customers.id FROM customers WHERE customers.tenant_id = 1 AND (customers.id = (1))), 199.00, 'En attente', 1)",
    );
    check_allow(
        "UPDATE orders SET status = 'Confirmé', address = '12 rue Atlas', city = 'Fès' WHERE id = '7b1c2f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f'",
        "UPDATE orders SET status = 'Confirmé', address = '12 rue Atlas', city = 'Fès' WHERE (id = '7b1c2f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f') AND orders.tenant_id = 1",
    );
}

#[test]
fn ordinary_selects_round_trip() {
    check_allow(
        "select o.id, c.phone from orders o join customers c on c.id = o.customer_id where o.status in ('A', 'B') order by o.id desc limit 10",
        "SELECT o.id, c.phone FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (o.status IN ('A', 'B')) AND o.tenant_id = 1 AND c.tenant_id = 1 ORDER BY o.id DESC LIMIT 10",
    );
    check_allow(
        "SELECT * FROM shop.products WHERE price BETWEEN 1 AND 2",
        "SELECT * FROM shop.products WHERE (price BETWEEN 1 AND 2) AND products.tenant_id = 1 LIMIT 20",
    );
    check_allow(
        "SELECT COUNT(*) FROM (SELECT id FROM orders WHERE total_price > 10) AS t",
        "SELECT COUNT(*) FROM (SELECT id FROM orders WHERE (total_price > 10) AND orders.tenant_id = 1) AS t LIMIT 20",
    );
    check_allow("SELECT 'a' \"b\"", "SELECT 'ab'");
    check_allow("SELECT 'café' AS `prénom`", "SELECT 'café' AS `prénom`");
    check_allow("SELECT 'a\u{a0}b'", "SELECT 'a\u{a0}b'");
    check_allow("SELECT 1 -- comment\n", "SELECT 1");
    check_allow("/* leading */ SELECT 1 # trailing", "SELECT 1");
    check_allow(
        "INSERT IGNORE INTO t (a) VALUES (1)",
        "INSERT IGNORE INTO t (a) VALUES (1)",
    );
}

#[test]
fn backslash_escapes_stay_one_statement() {
    // With unescape = false the literal keeps its raw text, so the forwarded
    // text is the same single SELECT (PARSER-DIFFERENTIALS §2).
    check_allow(
        r"SELECT 'a\\', ' AS x; DROP TABLE products; -- '",
        r"SELECT 'a\\', ' AS x; DROP TABLE products; -- '",
    );
    check_allow(r"SELECT 'it\'s', 'x\\'", r"SELECT 'it\'s', 'x\\'");
    check_allow(r#"SELECT "a\"b""#, r#"SELECT "a\"b""#);
}

#[test]
fn driver_connect_statements() {
    for sql in [
        "SELECT @@version_comment LIMIT 1",
        "SELECT @@max_allowed_packet, @@system_time_zone, @@time_zone, @@auto_increment_increment",
        "SELECT VERSION()",
        "SELECT DATABASE()",
        "SELECT @@sql_mode",
        "SELECT @@lower_case_table_names",
        "SELECT @@tx_isolation",
        "SELECT @@session.transaction_isolation",
        "SET NAMES utf8mb4",
        "SET NAMES 'utf8mb4'",
        "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
        "SET autocommit = 1",
        "SET AUTOCOMMIT = 0",
        "SET SESSION autocommit = 1",
        "SET @@session.autocommit = 0",
        "SET @@autocommit = ON",
        "SET character_set_server = utf8mb4",
        "SET collation_connection = 'utf8mb4_general_ci'",
        "SET character_set_results = NULL",
        "SET time_zone = '+00:00'",
        "SET time_zone = 'Africa/Casablanca'",
        "SET sql_select_limit = DEFAULT",
        "SET SESSION transaction_isolation = 'READ-COMMITTED'",
        "SET sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')",
        "SET autocommit = 1, sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')",
        "SET sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'",
        "SHOW WARNINGS",
        "SHOW ERRORS",
        "SHOW VARIABLES LIKE 'sql_mode'",
    ] {
        check_allow_with(&read_only(), sql, sql);
    }
    check_allow(
        "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')",
        "SET autocommit = 1, sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')",
    );
    check_allow("show warnings", "SHOW warnings");
}

#[test]
fn transactions() {
    for (sql, forwarded) in [
        ("BEGIN", "BEGIN"),
        ("begin;", "BEGIN"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("START TRANSACTION READ ONLY", "START TRANSACTION READ ONLY"),
        (
            "START TRANSACTION READ WRITE",
            "START TRANSACTION READ WRITE",
        ),
        ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("SAVEPOINT s1", "SAVEPOINT s1"),
        ("ROLLBACK TO SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1"),
        ("RELEASE SAVEPOINT s1", "RELEASE SAVEPOINT s1"),
    ] {
        check_allow_with(&read_only(), sql, forwarded);
        assert_eq!(
            check(sql, &session(&read_only())).kind(),
            StatementKind::Transaction
        );
    }
    check_deny("COMMIT AND CHAIN", Rule::StatementNotAllowed);
    check_deny("ROLLBACK AND CHAIN", Rule::StatementNotAllowed);
    check_deny("ROLLBACK RELEASE", Rule::ParseError);
    check_deny(
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        Rule::ParseError,
    );
}

#[test]
fn use_database() {
    let policy = read_write();
    let s = session(&policy);
    assert_eq!(
        check("USE shop", &s),
        Decision::LocalOk {
            kind: StatementKind::Use
        }
    );
    assert_eq!(
        check("use `shop`;", &s),
        Decision::LocalOk {
            kind: StatementKind::Use
        }
    );
    let denial = check_deny("USE mysql", Rule::DatabaseNotAllowed);
    assert_eq!(denial.kind, StatementKind::Use);
    assert_eq!(
        denial.client_message(),
        "sqlguard: access to database 'mysql' is denied (rule: database_not_allowed). \
         Hint: this session may only use the database 'shop'"
    );
}

#[test]
fn denied_statement_kinds() {
    for (sql, rule, kind) in [
        (
            "DELETE FROM orders WHERE id = '1'",
            Rule::StatementNotAllowed,
            StatementKind::Delete,
        ),
        (
            "dElEtE from x",
            Rule::StatementNotAllowed,
            StatementKind::Delete,
        ),
        (
            "DROP TABLE products",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "\tDROP\nTABLE x",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "TRUNCATE products",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "ALTER TABLE t ADD c INT",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "CREATE TABLE t (a INT)",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "CREATE DATABASE x",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "RENAME TABLE a TO b",
            Rule::StatementNotAllowed,
            StatementKind::Ddl,
        ),
        (
            "GRANT ALL ON *.* TO x",
            Rule::StatementNotAllowed,
            StatementKind::Privilege,
        ),
        (
            "REVOKE ALL ON *.* FROM x",
            Rule::StatementNotAllowed,
            StatementKind::Privilege,
        ),
        (
            "CREATE USER x",
            Rule::StatementNotAllowed,
            StatementKind::Privilege,
        ),
        (
            "DROP USER x",
            Rule::StatementNotAllowed,
            StatementKind::Privilege,
        ),
        (
            "REPLACE INTO orders (id) VALUES ('1')",
            Rule::StatementNotAllowed,
            StatementKind::Replace,
        ),
        ("CALL p()", Rule::StatementNotAllowed, StatementKind::Other),
        ("EXECUTE s", Rule::StatementNotAllowed, StatementKind::Other),
        (
            "EXECUTE IMMEDIATE 'DROP TABLE products'",
            Rule::StatementNotAllowed,
            StatementKind::Other,
        ),
        (
            "DEALLOCATE PREPARE s",
            Rule::StatementNotAllowed,
            StatementKind::Other,
        ),
        (
            "LOCK TABLES t WRITE",
            Rule::StatementNotAllowed,
            StatementKind::Other,
        ),
        (
            "UNLOCK TABLES",
            Rule::StatementNotAllowed,
            StatementKind::Other,
        ),
        ("KILL 1", Rule::StatementNotAllowed, StatementKind::Other),
        (
            "FLUSH PRIVILEGES",
            Rule::StatementNotAllowed,
            StatementKind::Other,
        ),
        (
            "EXPLAIN SELECT 1",
            Rule::StatementNotAllowed,
            StatementKind::Other,
        ),
        (
            "SHOW PROCESSLIST",
            Rule::StatementNotAllowed,
            StatementKind::Show,
        ),
        (
            "SHOW GRANTS",
            Rule::StatementNotAllowed,
            StatementKind::Show,
        ),
        (
            "SHOW COUNT(*) WARNINGS",
            Rule::StatementNotAllowed,
            StatementKind::Show,
        ),
        (
            "SHOW GLOBAL VARIABLES LIKE 'x'",
            Rule::StatementNotAllowed,
            StatementKind::Show,
        ),
        (
            "SHOW TABLES",
            Rule::StatementNotAllowed,
            StatementKind::Show,
        ),
        // sqlparser does not know these; refused as parse errors.
        (
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
            Rule::ParseError,
            StatementKind::Unknown,
        ),
        ("HANDLER t OPEN", Rule::ParseError, StatementKind::Unknown),
        (
            "PREPARE s FROM 'SELECT 1'",
            Rule::ParseError,
            StatementKind::Unknown,
        ),
        (
            "SELECT 1 INTO OUTFILE '/tmp/x'",
            Rule::ParseError,
            StatementKind::Unknown,
        ),
        (
            "SELECT 1 INTO DUMPFILE '/tmp/x'",
            Rule::ParseError,
            StatementKind::Unknown,
        ),
        (
            "SELECT * FROM t LOCK IN SHARE MODE",
            Rule::ParseError,
            StatementKind::Unknown,
        ),
    ] {
        let denial = check_deny(sql, rule);
        assert_eq!(denial.kind, kind, "{sql}");
    }
}

#[test]
fn denial_messages() {
    assert_eq!(
        check_deny(
            "delete from orders where id = '1'",
            Rule::StatementNotAllowed
        )
        .client_message(),
        "sqlguard: DELETE is not allowed for clawdbot (rule: statement_not_allowed). \
         Hint: rows are never deleted and the schema never changes; to cancel an order: \
         UPDATE orders SET status = 'Annulé' WHERE id = '<order uuid>'"
    );
    assert_eq!(
        check_deny("DROP TABLE products", Rule::StatementNotAllowed).message,
        "DROP TABLE is not allowed for clawdbot"
    );
    assert_eq!(
        check_deny("EXECUTE IMMEDIATE 'x'", Rule::StatementNotAllowed).message,
        "EXECUTE IMMEDIATE is not allowed for clawdbot"
    );
    let denial = check_deny_with(
        &read_only(),
        "UPDATE orders SET status = 'x' WHERE id = '1'",
        Rule::StatementNotAllowed,
    );
    assert_eq!(denial.kind, StatementKind::Update);
    assert_eq!(
        denial.client_message(),
        "sqlguard: UPDATE is not allowed for clawdbot (rule: statement_not_allowed). \
         Hint: clawdbot is read-only: only SELECT statements are allowed"
    );
    assert!(
        check_deny("SELEC 1", Rule::ParseError)
            .message
            .starts_with("cannot parse the statement: sql parser error: ")
    );
}

#[test]
fn read_only_policy_refuses_writes() {
    let policy = read_only();
    check_deny_with(
        &policy,
        "INSERT INTO customers (phone) VALUES ('1')",
        Rule::StatementNotAllowed,
    );
    check_deny_with(
        &policy,
        "UPDATE orders SET status = 'x' WHERE id = '1'",
        Rule::StatementNotAllowed,
    );
    check_deny_with(
        &policy,
        "UPDATE orders SET status = 'x'",
        Rule::StatementNotAllowed,
    );
    check_allow_with(&policy, "SELECT 1", "SELECT 1");
    let none = Policy {
        sql_read: false,
        sql_write: false,
        ..Policy::read_write("none")
    };
    check_deny_with(&none, "SELECT 1", Rule::StatementNotAllowed);
    check_deny_with(&none, "SET NAMES utf8mb4", Rule::StatementNotAllowed);
}

#[test]
fn update_needs_where() {
    check_deny(
        "UPDATE orders SET status = 'Annulé'",
        Rule::UpdateWithoutWhere,
    );
}

#[test]
fn set_statements_denied() {
    for (sql, rule) in [
        ("SET GLOBAL autocommit = 1", Rule::SessionVariable),
        ("SET @@global.autocommit = 1", Rule::SessionVariable),
        (
            "SET GLOBAL sql_mode = 'STRICT_TRANS_TABLES'",
            Rule::SessionVariable,
        ),
        ("SET PERSIST autocommit = 1", Rule::ParseError),
        (
            "SET STATEMENT max_statement_time = 1 FOR SELECT 1",
            Rule::ParseError,
        ),
        ("SET @x = 1", Rule::SessionVariable),
        ("SET @a := 1", Rule::SessionVariable),
        ("SELECT @a := 1", Rule::SessionVariable),
        ("SET autocommit = 2", Rule::SessionVariable),
        ("SET NAMES gbk", Rule::SessionVariable),
        ("SET NAMES DEFAULT", Rule::SessionVariable),
        ("SET character_set_client = sjis", Rule::SessionVariable),
        (
            "SET collation_connection = gbk_chinese_ci",
            Rule::SessionVariable,
        ),
        ("SET time_zone = 'x\\' OR 1'", Rule::SessionVariable),
        ("SET wait_timeout = 1", Rule::SessionVariable),
        ("SET max_statement_time = 0", Rule::SessionVariable),
        (
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            Rule::SessionVariable,
        ),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            Rule::SessionVariable,
        ),
        ("SET sql_mode = 'ANSI_QUOTES'", Rule::SqlModeChange),
        (
            "SET sql_mode = concat(@@sql_mode, ',NO_BACKSLASH_ESCAPES')",
            Rule::SqlModeChange,
        ),
        (
            "SET SESSION sql_mode = concat(@@sql_mode, ',PIPES_AS_CONCAT')",
            Rule::SqlModeChange,
        ),
        ("SET @@session.sql_mode = 'ANSI'", Rule::SqlModeChange),
        ("SET sql_mode = 'ORACLE'", Rule::SqlModeChange),
        ("SET sql_mode = 'MSSQL'", Rule::SqlModeChange),
        (
            "SET sql_mode = 'STRICT_TRANS_TABLES,SOMETHING_NEW'",
            Rule::SqlModeChange,
        ),
        ("SET sql_mode = ''", Rule::SqlModeChange),
        ("SET sql_mode = 'STRICT_TRANS_TABLES'", Rule::SqlModeChange),
        (
            "SET sql_mode = concat('ANSI_QUOTES,', @@sql_mode)",
            Rule::SqlModeChange,
        ),
        (
            "SET sql_mode = concat(@@sql_mode, ',IGNORE_SPACE')",
            Rule::SqlModeChange,
        ),
        ("SET sql_mode = (SELECT 'ANSI_QUOTES')", Rule::SqlModeChange),
        ("SET sql_mode = DEFAULT", Rule::SqlModeChange),
        (
            "SET autocommit = 1, sql_mode = 'ANSI_QUOTES'",
            Rule::SqlModeChange,
        ),
        (
            "SET autocommit = 1, @@global.max_connections = 1",
            Rule::SessionVariable,
        ),
    ] {
        let denial = check_deny(sql, rule);
        // `:=` is refused on tokens, before the statement kind is known.
        if rule != Rule::ParseError && !sql.contains(":=") {
            assert_eq!(denial.kind, StatementKind::Set, "{sql}");
        }
    }
}

#[test]
fn executable_comments() {
    check_deny(
        "SELECT name FROM products /*!999999 LIMIT 1 */",
        Rule::ExecutableComment,
    );
    check_deny("/*M! DROP TABLE products */", Rule::ExecutableComment);
    check_deny(
        "SELECT 1 /*!50000 ; DROP TABLE products */",
        Rule::ExecutableComment,
    );
    check_deny("SELECT /*+ NO_INDEX(t) */ 1 FROM t", Rule::OptimizerHint);
}

#[test]
fn empty_and_stacked_text() {
    for sql in [
        "",
        "   ",
        ";",
        " ; ;",
        "-- only a comment",
        "/* only */",
        "# hash",
    ] {
        check_deny(sql, Rule::EmptyStatement);
    }
    check_deny("SELECT 1; DROP TABLE x", Rule::MultiStatement);
    check_deny("SELECT 1;SELECT 2;", Rule::MultiStatement);
    check_deny("SELECT 1; -- \n DELETE FROM orders", Rule::MultiStatement);
}

#[test]
fn unicode_whitespace_comment_tricks() {
    check_deny(
        "SELECT 1 --\u{a0}; DROP TABLE products",
        Rule::NonAsciiWhitespace,
    );
    check_deny(
        "SELECT * FROM t WHERE tenant_id = 2 --\u{3000}\nOR 1 = 1",
        Rule::NonAsciiWhitespace,
    );
    check_deny("SELECT\u{2003}1", Rule::NonAsciiWhitespace);
}

#[test]
fn ambiguous_operators_and_literals() {
    for (sql, rule) in [
        (
            "SELECT * FROM t WHERE tenant_id = 2 || 1 = 1",
            Rule::AmbiguousOperator,
        ),
        ("SELECT 1 && 1", Rule::AmbiguousOperator),
        ("SELECT 1 ^ 1", Rule::AmbiguousOperator),
        ("SELECT 1 XOR 1", Rule::AmbiguousOperator),
        ("SELECT !1", Rule::AmbiguousOperator),
        ("SELECT BINARY 'a' = 'A'", Rule::AmbiguousOperator),
        ("SELECT CAST('a' AS BINARY)", Rule::AmbiguousOperator),
        ("SELECT 0x41", Rule::HexLiteral),
        ("SELECT 0x4G", Rule::HexLiteral),
        ("SELECT X'41'", Rule::HexLiteral),
        ("SELECT b'01'", Rule::AmbiguousLiteral),
        ("SELECT 0b01", Rule::AmbiguousLiteral),
        ("SELECT _latin1'abc'", Rule::AmbiguousLiteral),
        ("SELECT _binary'abc'", Rule::AmbiguousLiteral),
    ] {
        check_deny(sql, rule);
    }
}

#[test]
fn functions_and_schemas() {
    for (sql, rule) in [
        ("SELECT SLEEP(10)", Rule::FunctionNotAllowed),
        ("SELECT sleep(1) FROM products", Rule::FunctionNotAllowed),
        (
            "SELECT BENCHMARK(1000000, MD5('a'))",
            Rule::FunctionNotAllowed,
        ),
        ("SELECT LOAD_FILE('/etc/passwd')", Rule::FunctionNotAllowed),
        ("SELECT GET_LOCK('x', 10)", Rule::FunctionNotAllowed),
        ("SELECT RELEASE_LOCK('x')", Rule::FunctionNotAllowed),
        ("SELECT sys_exec('id')", Rule::FunctionNotAllowed),
        ("SELECT sys_eval('id')", Rule::FunctionNotAllowed),
        ("SELECT shop.f(1)", Rule::FunctionNotAllowed),
        (
            "UPDATE orders SET status = 'x' WHERE id = (SELECT SLEEP(5))",
            Rule::FunctionNotAllowed,
        ),
        (
            "SELECT * FROM information_schema.tables",
            Rule::SystemSchema,
        ),
        (
            "SELECT * FROM INFORMATION_SCHEMA.TABLES",
            Rule::SystemSchema,
        ),
        ("SELECT user, password FROM mysql.user", Rule::SystemSchema),
        (
            "SELECT * FROM performance_schema.threads",
            Rule::SystemSchema,
        ),
        ("SELECT * FROM sys.session", Rule::SystemSchema),
        (
            "SELECT * FROM t WHERE a IN (SELECT b FROM mysql.db)",
            Rule::SystemSchema,
        ),
        ("INSERT INTO t SELECT * FROM mysql.user", Rule::SystemSchema),
        ("SELECT * FROM other.orders", Rule::OtherDatabase),
        (
            "SELECT * FROM orders JOIN other.customers c ON 1 = 1",
            Rule::OtherDatabase,
        ),
        (
            "INSERT INTO other.orders (id) VALUES ('1')",
            Rule::OtherDatabase,
        ),
        (
            "UPDATE other.orders SET a = 1 WHERE id = 1",
            Rule::OtherDatabase,
        ),
        ("SELECT other.orders.id FROM orders", Rule::OtherDatabase),
        ("SELECT a.b.c.d FROM t", Rule::OtherDatabase),
        ("SELECT 1 INTO @v", Rule::SelectInto),
        ("SELECT * FROM t FOR UPDATE", Rule::LockingClause),
        ("SELECT * FROM t FOR SHARE", Rule::LockingClause),
    ] {
        check_deny(sql, rule);
    }
    assert_eq!(rules_class(Rule::SystemSchema), DenyClass::TableAccess);
    assert_eq!(rules_class(Rule::OtherDatabase), DenyClass::TableAccess);
}

fn rules_class(rule: Rule) -> DenyClass {
    rule.class()
}

#[test]
fn allowed_statements_round_trip() {
    // Every shape the allowlist admits, re-parsed from its forwarded text,
    // gives the same AST (check() enforces it; this asserts none of these
    // trips the RoundTrip rule).
    for sql in [
        "SELECT a FROM t WHERE b = 'x' AND (c = 1 OR d IS NULL) ORDER BY a LIMIT 5 OFFSET 10",
        "SELECT CONCAT(a, 'x'), IFNULL(b, 0), COALESCE(c, d) FROM t GROUP BY a HAVING COUNT(*) > 1",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "SELECT 1 UNION ALL SELECT 2",
        "SELECT DATE_SUB(NOW(), INTERVAL 1 DAY)",
        "SELECT CASE WHEN a = 1 THEN 'x' ELSE 'y' END FROM t",
        "SELECT -1, +2, 3.5e2, 'x' COLLATE utf8mb4_bin",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')",
        "UPDATE t SET a = a + 1 WHERE id = 3 LIMIT 1",
    ] {
        match check(sql, &session(&read_write())) {
            Decision::Allow { sql: forwarded, .. } => {
                // Checking the forwarded text again changes nothing more than
                // predicates the guard adds each time (none for table `t`).
                match check(forwarded.as_str(), &session(&read_write())) {
                    Decision::Allow { sql: again, .. } => {
                        assert_eq!(again, forwarded, "forwarded text of {sql:?} is not stable")
                    }
                    other => panic!("forwarded text of {sql:?} is refused: {other:?}"),
                }
            }
            other => panic!("expected Allow for {sql:?}, got {other:?}"),
        }
    }
}

#[test]
fn size_limits() {
    check_deny(
        &format!("SELECT {}", "1+".repeat(300) + "1"),
        Rule::TooComplex,
    );
    check_deny(
        &format!("SELECT {}1{}", "(".repeat(40), ")".repeat(40)),
        Rule::TooComplex,
    );
    check_allow(
        &format!("SELECT {}1{}", "(".repeat(8), ")".repeat(8)),
        &format!("SELECT {}1{}", "(".repeat(8), ")".repeat(8)),
    );
    let long = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
    check_deny(&long, Rule::StatementTooLong);
}

/// Runs `check` on a thread with a 2 MiB stack (tokio threads get 8 MiB) and
/// returns the rule it denied with, if any. A stack overflow aborts the test
/// binary, so passing means the input was survived.
fn rule_on_small_stack(sql: String) -> Option<Rule> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let policy = read_write();
            match check(&sql, &session(&policy)) {
                Decision::Deny(d) => Some(d.rule),
                _ => None,
            }
        })
        .expect("spawn test thread")
        .join()
        .expect("check must not panic")
}

#[test]
fn hostile_sizes_do_not_crash() {
    let chain = |op: &str| {
        let mut s = String::from("SELECT 1");
        while s.len() + op.len() + 1 < MAX_STATEMENT_BYTES {
            s.push_str(op);
            s.push('1');
        }
        s
    };
    assert_eq!(rule_on_small_stack(chain("+")), Some(Rule::TooComplex));
    assert_eq!(rule_on_small_stack(chain(" AND ")), Some(Rule::TooComplex));
    assert_eq!(
        rule_on_small_stack(chain(" IS NULL OR ")),
        Some(Rule::TooComplex)
    );
    let units = MAX_STATEMENT_BYTES / 2 - 8;
    assert_eq!(
        rule_on_small_stack(format!(
            "SELECT {}1{}",
            "(".repeat(units),
            ")".repeat(units)
        )),
        Some(Rule::TooComplex)
    );
    let n = MAX_STATEMENT_BYTES / 10;
    assert_eq!(
        rule_on_small_stack(format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n))),
        Some(Rule::TooComplex)
    );
    assert_eq!(
        rule_on_small_stack(format!("SELECT {}1", "-".repeat(MAX_STATEMENT_BYTES - 10))),
        Some(Rule::TooComplex)
    );
    assert_eq!(
        rule_on_small_stack(format!("SELECT {}1", "NOT ".repeat(1000))),
        Some(Rule::TooComplex)
    );
    assert_eq!(
        rule_on_small_stack(format!("SELECT 1{}", " UNION SELECT 1".repeat(1000))),
        Some(Rule::TooComplex)
    );
}

#[test]
fn deepest_accepted_statements_survive_a_small_stack() {
    // Just inside every budget: the longest chain, inside the deepest
    // subqueries the parser accepts.
    let budget = ast_limits::MAX_EXPR_DEPTH - 10;
    let inner = format!("1{}", "+1".repeat(budget));
    let mut sql = String::new();
    let mut depth = 0;
    loop {
        let candidate = format!(
            "SELECT {}{}{}",
            "(SELECT ".repeat(depth + 1),
            inner,
            ")".repeat(depth + 1)
        );
        match rule_on_small_stack(candidate.clone()) {
            None => {
                sql = candidate;
                depth += 1;
            }
            Some(rule) => {
                assert_eq!(rule, Rule::TooComplex);
                break;
            }
        }
    }
    assert!(
        depth >= 3,
        "nested subqueries with a chain inside: only {depth} levels accepted"
    );
    assert_eq!(rule_on_small_stack(sql), None);
    let parens = format!(
        "SELECT {}1{}{}",
        "(".repeat(20),
        "+1".repeat(budget - 20),
        ")".repeat(20)
    );
    assert_eq!(rule_on_small_stack(parens), None);
    let ands = format!(
        "SELECT * FROM t WHERE {}",
        vec!["a = 1"; budget / 2].join(" AND ")
    );
    assert_eq!(rule_on_small_stack(ands), None);
    let in_list = format!(
        "SELECT * FROM t WHERE id IN ({})",
        vec!["'7b1c2f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f'"; 1500].join(", ")
    );
    assert_eq!(rule_on_small_stack(in_list), None);
}

#[test]
fn rule_names_are_unique() {
    let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}

#[test]
fn more_session_forms() {
    check_allow_with(
        &read_only(),
        "SHOW SESSION VARIABLES LIKE 'time_zone'",
        "SHOW SESSION VARIABLES LIKE 'time_zone'",
    );
    check_allow_with(
        &read_only(),
        "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'",
        "SET NAMES 'utf8mb4' COLLATE utf8mb4_unicode_ci",
    );
    check_allow_with(
        &read_only(),
        "SET sql_mode = CONCAT(@@session.sql_mode, ',NO_ZERO_DATE')",
        "SET sql_mode = CONCAT(@@session.sql_mode, ',NO_ZERO_DATE')",
    );
    check_deny("SET autocommit = (SELECT 1)", Rule::SessionVariable);
    check_deny("SELECT `sleep`(1)", Rule::FunctionNotAllowed);
    check_deny(
        "UPDATE orders JOIN mysql.user ON 1 = 1 SET a = 1 WHERE 1 = 1",
        Rule::SystemSchema,
    );
    check_deny("SELECT 1 UNION SELECT 2 INTO @x", Rule::SelectInto);
}

// ------------------------------------------------------------ policy engine

#[test]
fn every_table_reference_is_scoped() {
    // FROM, JOIN, LEFT JOIN (in ON), subqueries in SELECT/WHERE/HAVING,
    // derived tables, CTEs, UNION branches.
    check_allow(
        "SELECT p.name FROM products p JOIN orders o ON o.id = p.id LEFT JOIN customers c ON c.id = o.customer_id WHERE p.status = 'active' OR 1 = 1",
        "SELECT p.name FROM products p JOIN orders o ON o.id = p.id LEFT JOIN customers c ON (c.id = o.customer_id) AND c.tenant_id = 1 WHERE (p.status = 'active' OR 1 = 1) AND p.tenant_id = 1 AND o.tenant_id = 1 LIMIT 20",
    );
    check_allow(
        "SELECT (SELECT COUNT(*) FROM orders) AS n FROM customers WHERE id IN (SELECT customer_id FROM orders) GROUP BY id HAVING COUNT(*) > (SELECT 0 FROM packs LIMIT 1)",
        "SELECT (SELECT COUNT(*) FROM orders WHERE orders.tenant_id = 1) AS n FROM customers WHERE (id IN (SELECT customer_id FROM orders WHERE orders.tenant_id = 1)) AND customers.tenant_id = 1 GROUP BY id HAVING COUNT(*) > (SELECT 0 FROM packs WHERE packs.tenant_id = 1 LIMIT 1) LIMIT 20",
    );
    check_allow(
        "WITH c AS (SELECT id FROM customers) SELECT * FROM c, (SELECT id FROM orders) AS o UNION ALL SELECT id, id FROM shop.`products`",
        "WITH c AS (SELECT id FROM customers WHERE customers.tenant_id = 1) SELECT * FROM c, (SELECT id FROM orders WHERE orders.tenant_id = 1) AS o UNION ALL SELECT id, id FROM shop.`products` WHERE `products`.tenant_id = 1 LIMIT 20",
    );
}

#[test]
fn parent_scoped_and_key_scoped_tables() {
    check_allow(
        "SELECT content FROM messages WHERE conversation_id = 5",
        "SELECT content FROM messages WHERE (conversation_id = 5) AND messages.conversation_id IN (SELECT conversations.id FROM conversations WHERE conversations.tenant_id = 1) LIMIT 20",
    );
    check_allow(
        "SELECT name, slug FROM tenants",
        "SELECT name, slug FROM tenants WHERE tenants.id = 1 LIMIT 20",
    );
}

#[test]
fn limits_are_injected_and_clamped_at_the_top_only() {
    check_allow(
        "SELECT id FROM orders LIMIT 5, 1000",
        "SELECT id FROM orders WHERE orders.tenant_id = 1 LIMIT 5, 100",
    );
    check_allow(
        "SELECT id FROM orders LIMIT 1000 OFFSET 5",
        "SELECT id FROM orders WHERE orders.tenant_id = 1 LIMIT 100 OFFSET 5",
    );
    check_allow(
        "SELECT id FROM (SELECT id FROM orders LIMIT 500) AS x",
        "SELECT id FROM (SELECT id FROM orders WHERE orders.tenant_id = 1 LIMIT 500) AS x LIMIT 20",
    );
    check_deny("SELECT id FROM orders LIMIT 1 + 1", Rule::LimitNotLiteral);
}

#[test]
fn writes_get_the_tenant_and_respect_allowlists() {
    check_allow(
        "INSERT INTO orders (id, customer_id, total_price) VALUES (UUID(), 3, 10), (UUID(), '4', 20)",
        "INSERT INTO orders (id, customer_id, total_price, tenant_id) VALUES (UUID(), (SELECT customers.id FROM customers WHERE customers.tenant_id = 1 AND (customers.id = (3))), 10, 1), (UUID(), (SELECT customers.id FROM customers WHERE customers.tenant_id = 1 AND (customers.id = ('4'))), 20, 1)",
    );
    check_allow(
        "INSERT INTO orders (tenant_id, id, customer_id, total_price) VALUES (1, UUID(), 3, 10)",
        "INSERT INTO orders (tenant_id, id, customer_id, total_price) VALUES (1, UUID(), (SELECT customers.id FROM customers WHERE customers.tenant_id = 1 AND (customers.id = (3))), 10)",
    );
    check_deny(
        "INSERT INTO orders (tenant_id, id, customer_id, total_price) VALUES (2, UUID(), 3, 10)",
        Rule::TenantScope,
    );
    check_deny(
        "UPDATE orders SET tenant_id = 2 WHERE id = '6ec0bd7f-11c0-43da-975e-2a8ad9eb1001'",
        Rule::TenantScope,
    );
    check_deny(
        "UPDATE products SET price = 1 WHERE name = 'x'",
        Rule::WriteNotAllowed,
    );
    check_deny(
        "UPDATE orders SET total_price = 1, id = UUID() WHERE city = 'x'",
        Rule::WriteNotAllowed,
    );
    check_deny(
        "INSERT INTO products (name) VALUES ('x')",
        Rule::WriteNotAllowed,
    );
    check_deny(
        "INSERT INTO customers (phone) VALUES ('1') ON DUPLICATE KEY UPDATE phone = '2'",
        Rule::UpsertNotAllowed,
    );
    check_deny(
        "INSERT INTO customers VALUES (1, 1, '1')",
        Rule::InsertShape,
    );
    check_allow(
        "UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.status = 'Annulé' WHERE c.phone = '+212600000000'",
        "UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.status = 'Annulé' WHERE (c.phone = '+212600000000') AND o.tenant_id = 1 AND c.tenant_id = 1",
    );
}

#[test]
fn messages_insert_checks_the_parent_and_the_domain_guard() {
    check_allow(
        "INSERT INTO messages (conversation_id, sender, content) VALUES (1, 'ai', 'Salam')",
        "INSERT INTO messages (conversation_id, sender, content) VALUES ((SELECT conversations.id FROM conversations WHERE conversations.tenant_id = 1 AND (conversations.id = (1) AND conversations.status = 'active')), 'ai', 'Salam')",
    );
    check_allow(
        "INSERT INTO messages (conversation_id, sender, content) VALUES (1, 'customer', 'Salam')",
        "INSERT INTO messages (conversation_id, sender, content) VALUES ((SELECT conversations.id FROM conversations WHERE conversations.tenant_id = 1 AND (conversations.id = (1))), 'customer', 'Salam')",
    );
    // An expression as the parent id cannot break out of the lookup.
    check_allow(
        "INSERT INTO messages (conversation_id, sender, content) VALUES (1 OR 1 = 1, 'AI ', 'x')",
        "INSERT INTO messages (conversation_id, sender, content) VALUES ((SELECT conversations.id FROM conversations WHERE conversations.tenant_id = 1 AND (conversations.id = (1 OR 1 = 1) AND conversations.status = 'active')), 'AI ', 'x')",
    );
    check_deny(
        "INSERT INTO messages (sender, content) VALUES ('ai', 'x')",
        Rule::TenantScope,
    );
    check_deny(
        "UPDATE messages SET content = 'x' WHERE id = 1",
        Rule::WriteNotAllowed,
    );
}

#[test]
fn column_rules() {
    for sql in [
        "SELECT api_keys FROM tenants",
        "SELECT t.`API_KEYS` FROM tenants t",
        "SELECT name FROM tenants ORDER BY api_keys",
        "SELECT name FROM tenants WHERE JSON_EXTRACT(api_keys, '$.x') IS NOT NULL",
        "SELECT x FROM (SELECT api_keys AS x FROM tenants) AS d",
        "SELECT * FROM tenants",
        "SELECT t.* FROM tenants t",
        "SELECT * FROM (SELECT * FROM users) AS u",
        "SELECT c.phone FROM customers c JOIN users u USING (email)",
    ] {
        check_deny(sql, Rule::ColumnDenied);
    }
    let denial = check_deny("SELECT * FROM tenants", Rule::ColumnDenied);
    assert_eq!(
        denial.hint.as_deref(),
        Some(
            "columns you may read from tenants: id, name, slug, domain, settings, status, created_at, updated_at"
        )
    );
}

#[test]
fn typed_literals() {
    for sql in [
        "SELECT stock FROM products WHERE id = 'PRODUCT_UUID'",
        "SELECT stock FROM products WHERE id IN ('3f2504e0-4f89-41d3-9a0c-0305e82c1001', '1')",
        "SELECT stock FROM products p WHERE p.id = 42",
        "SELECT stock FROM products WHERE 'x' = id",
        "SELECT * FROM orders WHERE customer_id = 'CUST_ID'",
        "SELECT * FROM orders WHERE customer_id = 1.5",
        "INSERT INTO orders (id, customer_id, total_price) VALUES ('not-a-uuid', 1, 1)",
        "UPDATE orders SET status = 'x' WHERE id = '3f2504e0-4f89-41d3-9a0c-0305e82c100\\\\'",
    ] {
        check_deny(sql, Rule::TypedLiteral);
    }
    let denial = check_deny(
        "SELECT stock FROM products WHERE id = 'abc'",
        Rule::TypedLiteral,
    );
    assert_eq!(denial.rule.class(), DenyClass::Value);
    assert!(
        denial.message.contains("products.id") && denial.message.contains("'abc'"),
        "{}",
        denial.message
    );
}

#[test]
fn tables_outside_the_policy_and_odd_table_expressions() {
    check_deny("SELECT * FROM secrets", Rule::TableNotAllowed);
    check_deny(
        "SELECT * FROM products p RIGHT JOIN orders o ON o.id = p.id",
        Rule::JoinNotAllowed,
    );
    check_deny(
        "SELECT * FROM products NATURAL JOIN orders",
        Rule::JoinNotAllowed,
    );
    check_deny(
        "SELECT * FROM products p LEFT JOIN orders o USING (id)",
        Rule::JoinNotAllowed,
    );
    check_deny(
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
        Rule::RecursiveCte,
    );
    check_deny(
        "WITH products AS (SELECT * FROM products) SELECT * FROM products",
        Rule::CteShadowsTable,
    );
    check_deny(
        "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (a INT PATH '$')) AS j",
        Rule::JoinNotAllowed,
    );
}

// ------------------------------------------------------------ prepared statements

#[track_caller]
fn check_params(sql: &str, expected_sql: &str, expected: &[(ParamCheck, Option<&str>)]) {
    match check_prepared(sql, &session(&read_write())) {
        Decision::Allow {
            sql: forwarded,
            params,
            ..
        } => {
            assert_eq!(forwarded.as_str(), expected_sql, "{sql}");
            let got: Vec<(ParamCheck, Option<&str>)> = params
                .iter()
                .map(|p| (p.check.clone(), p.column.as_deref()))
                .collect();
            assert_eq!(got, expected, "{sql}");
        }
        other => panic!("expected Allow for {sql:?}, got {other:?}"),
    }
}

#[test]
fn placeholders_are_typed_in_mariadb_order() {
    use ParamCheck::*;
    check_params(
        "SELECT stock FROM products WHERE id = ?",
        "SELECT stock FROM products WHERE (id = ?) AND products.tenant_id = 1 LIMIT 20",
        &[(Uuid, Some("products.id"))],
    );
    check_params(
        "SELECT ?, o.id FROM orders o WHERE o.customer_id = ? AND o.id IN (?, ?) ORDER BY o.id LIMIT ?, ?",
        "SELECT ?, o.id FROM orders o WHERE (o.customer_id = ? AND o.id IN (?, ?)) AND o.tenant_id = 1 ORDER BY o.id LIMIT ?, ?",
        &[
            (Any, None),
            (Integer, Some("orders.customer_id")),
            (Uuid, Some("orders.id")),
            (Uuid, Some("orders.id")),
            (Any, None),
            (Limit { max: 100 }, None),
        ],
    );
    check_params(
        "INSERT INTO orders (tenant_id, id, customer_id, total_price) VALUES (?, ?, ?, ?)",
        "INSERT INTO orders (tenant_id, id, customer_id, total_price) VALUES (?, ?, (SELECT customers.id FROM customers WHERE customers.tenant_id = 1 AND (customers.id = (?))), ?)",
        &[
            (Tenant, Some("orders.tenant_id")),
            (Uuid, Some("orders.id")),
            (Integer, Some("orders.customer_id")),
            (Any, Some("orders.total_price")),
        ],
    );
    check_params(
        "INSERT INTO messages (conversation_id, sender, content) VALUES (?, ?, ?)",
        "INSERT INTO messages (conversation_id, sender, content) VALUES ((SELECT conversations.id FROM conversations WHERE conversations.tenant_id = 1 AND (conversations.id = (?) AND conversations.status = 'active')), ?, ?)",
        &[
            (Integer, Some("messages.conversation_id")),
            (Any, Some("messages.sender")),
            (Any, Some("messages.content")),
        ],
    );
    check_params(
        "UPDATE orders SET status = ?, city = ? WHERE id = ?",
        "UPDATE orders SET status = ?, city = ? WHERE (id = ?) AND orders.tenant_id = 1",
        &[
            (Any, Some("orders.status")),
            (Any, Some("orders.city")),
            (Uuid, Some("orders.id")),
        ],
    );
    // A literal that looks like a marker cannot confuse the numbering: the
    // template is refused rather than numbered wrongly.
    match check_prepared(
        "SELECT '?sqlguard_param_0', name FROM products WHERE id = ?",
        &session(&read_write()),
    ) {
        Decision::Deny(d) => assert_eq!(d.rule, Rule::RoundTrip),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn prepared_templates_follow_the_same_rules() {
    for (sql, rule) in [
        ("DELETE FROM orders WHERE id = ?", Rule::StatementNotAllowed),
        (
            "SELECT api_keys FROM tenants WHERE id = ?",
            Rule::ColumnDenied,
        ),
        ("SELECT * FROM secrets WHERE id = ?", Rule::TableNotAllowed),
        (
            "UPDATE orders SET tenant_id = ? WHERE id = ?",
            Rule::TenantScope,
        ),
    ] {
        match check_prepared(sql, &session(&read_write())) {
            Decision::Deny(d) => assert_eq!(d.rule, rule, "{sql}"),
            other => panic!("expected Deny({rule:?}) for {sql:?}, got {other:?}"),
        }
    }
}
