//! Stored functions cannot be reached through sqlguard: only built-ins on the
//! guard's allowlist may be called. Checked on a private MariaDB that holds a
//! stored function whose body writes a row, so a call that slipped through
//! would leave a trace; and the allowlist itself is checked against MariaDB's
//! name resolution (no allowed name can resolve to a stored function).

mod common;

use common::mariadb::{direct_opts, start_fixture};
use common::proxy::*;
use mysql_async::Conn;
use mysql_async::prelude::*;

const MARKER: &str = "stored-marker";

/// Every allowed name, called unquoted, is MariaDB's built-in even when the
/// database holds a stored function of the same name.
async fn allowlist_never_resolves_to_a_stored_function(root: &mut Conn) {
    let names = sqlguard::guard::allowed_functions();
    let mut shadowed = 0;
    for name in names {
        let create = format!(
            "CREATE FUNCTION `{name}`() RETURNS VARCHAR(20) DETERMINISTIC RETURN '{MARKER}'"
        );
        if root.query_drop(&create).await.is_ok() {
            shadowed += 1;
        }
        let called: Result<Option<Option<String>>, _> =
            root.query_first(format!("SELECT {name}()")).await;
        match called {
            Ok(Some(Some(value))) => assert_ne!(value, MARKER, "{name}() ran the stored function"),
            Ok(_) => {}
            Err(mysql_async::Error::Server(e)) => {
                assert_ne!(
                    e.code, 1305,
                    "{name}() is not a MariaDB built-in: {}",
                    e.message
                )
            }
            Err(e) => panic!("{name}(): {e}"),
        }
        let _ = root
            .query_drop(format!("DROP FUNCTION IF EXISTS `{name}`"))
            .await;
    }
    // Most names can be shadowed by a stored function, so the check bites.
    assert!(shadowed > names.len() / 2, "{shadowed} of {}", names.len());
}

#[tokio::test]
async fn stored_functions_are_denied_and_never_run() {
    let db = start_fixture().await;
    let mut root = Conn::new(direct_opts(&db)).await.unwrap();
    allowlist_never_resolves_to_a_stored_function(&mut root).await;

    // A stored function with a visible side effect, and one named like the
    // keyword-level built-in IF, which MariaDB calls when the name is quoted.
    root.query_drop("CREATE TABLE fn_probe (n INT)")
        .await
        .unwrap();
    root.query_drop(
        "CREATE FUNCTION concat_x(a INT) RETURNS INT MODIFIES SQL DATA \
         BEGIN INSERT INTO fn_probe VALUES (a); RETURN a; END",
    )
    .await
    .unwrap();
    root.query_drop(
        "CREATE FUNCTION `if`(a INT, b INT, c INT) RETURNS INT MODIFIES SQL DATA \
         BEGIN INSERT INTO fn_probe VALUES (-a); RETURN b; END",
    )
    .await
    .unwrap();

    let proxy = start_proxy(test_config(db.port())).await;
    let mut conn = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();
    let denied = [
        "SELECT concat_x(1) FROM products",
        "SELECT CONCAT_X(2)",
        "SELECT Concat_X(3) AS x",
        "SELECT `concat_x`(4)",
        "SELECT name FROM products WHERE concat_x(5) = 5",
        "SELECT name FROM products ORDER BY concat_x(6)",
        "INSERT INTO customers (phone, notes) VALUES ('+212600000099', concat_x(7))",
        "UPDATE orders SET city = concat_x(8) WHERE id = '6ec0bd7f-11c0-43da-975e-2a8ad9eb1001'",
        "SELECT name FROM products WHERE id IN (SELECT id FROM products WHERE concat_x(9) > 0)",
        "SELECT COALESCE(NULL, CONCAT('a', concat_x(10)))",
        "SELECT `if`(11, 1, 0)",
        "SELECT `IF`(12, 1, 0) FROM products",
        "SELECT shop.concat_x(13)",
    ];
    for sql in denied {
        let (code, message) = server_error(conn.query_drop(sql).await);
        assert_eq!(code, 1227, "{sql}: {message}");
        assert!(message.contains("function_not_allowed"), "{sql}: {message}");
    }
    // The same through a prepared statement.
    let (code, message) = server_error(conn.exec_drop("SELECT concat_x(?)", (14,)).await);
    assert_eq!(code, 1227, "{message}");
    assert!(message.contains("stored functions are not"), "{message}");

    // Built-ins still work, in any case, including unquoted IF.
    let row: Option<(String, i64)> = conn
        .query_first("SELECT CONCAT_WS('-', 'a', 'b'), if(1, 2, 3)")
        .await
        .unwrap();
    assert_eq!(row, Some(("a-b".to_string(), 2)));

    let runs: Option<i64> = root
        .query_first("SELECT COUNT(*) FROM fn_probe")
        .await
        .unwrap();
    assert_eq!(
        runs,
        Some(0),
        "a stored function body ran through the proxy"
    );
    // The probes do run when called directly, so the count above can fail.
    root.query_drop("SELECT concat_x(100), `if`(101, 1, 0)")
        .await
        .unwrap();
    let runs: Option<i64> = root
        .query_first("SELECT COUNT(*) FROM fn_probe")
        .await
        .unwrap();
    assert_eq!(runs, Some(2));
}
