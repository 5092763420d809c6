//! Differential test: the statements of tests/data/differential.sql run
//! directly against one private MariaDB and through sqlguard against a twin
//! (same fixture, same state) must give identical column names, types, flags,
//! values, NULLs, affected rows, last insert ids and error codes.
//!
//! Column definitions are compared field by field (schema, table, original
//! names, charset, length, type, flags, decimals), as are warning counts,
//! OK info strings and SQLSTATEs.

mod common;

use common::mariadb::{backend_opts_at, start_fixture};
use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};

/// Everything observable about one statement's result.
#[derive(Debug, PartialEq)]
enum Observed {
    Rows {
        columns: Vec<ColumnDefinition>,
        rows: Vec<Vec<Option<Vec<u8>>>>,
        warnings: u16,
    },
    Ok {
        affected_rows: u64,
        last_insert_id: Option<u64>,
        warnings: u16,
        info: String,
    },
    Error {
        code: u16,
        state: String,
        message: String,
    },
}

#[derive(Debug, PartialEq)]
struct ColumnDefinition {
    schema: Vec<u8>,
    table: Vec<u8>,
    org_table: Vec<u8>,
    name: Vec<u8>,
    org_name: Vec<u8>,
    charset: u16,
    length: u32,
    column_type: u8,
    flags: u16,
    decimals: u8,
}

async fn observe(conn: &mut Conn, sql: &str) -> Observed {
    let mut result = match conn.query_iter(sql).await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) => {
            return Observed::Error {
                code: e.code,
                state: e.state,
                message: e.message,
            };
        }
        Err(e) => panic!("{sql}: {e}"),
    };
    let columns: Vec<_> = result
        .columns_ref()
        .iter()
        .map(|c| ColumnDefinition {
            schema: c.schema_ref().to_vec(),
            table: c.table_ref().to_vec(),
            org_table: c.org_table_ref().to_vec(),
            name: c.name_ref().to_vec(),
            org_name: c.org_name_ref().to_vec(),
            charset: c.character_set(),
            length: c.column_length(),
            column_type: c.column_type() as u8,
            flags: c.flags().bits(),
            decimals: c.decimals(),
        })
        .collect();
    if columns.is_empty() {
        let _ = result.next().await;
        return Observed::Ok {
            affected_rows: result.affected_rows(),
            last_insert_id: result.last_insert_id(),
            warnings: result.warnings(),
            info: result.info().into_owned(),
        };
    }
    let mut rows = Vec::new();
    loop {
        match result.next().await {
            Ok(Some(row)) => rows.push(
                (0..columns.len())
                    .map(|i| match row.as_ref(i) {
                        Some(Value::Bytes(b)) => Some(b.clone()),
                        Some(Value::NULL) | None => None,
                        Some(other) => panic!("{sql}: unexpected text-protocol value {other:?}"),
                    })
                    .collect(),
            ),
            Ok(None) => break,
            Err(mysql_async::Error::Server(e)) => {
                return Observed::Error {
                    code: e.code,
                    state: e.state,
                    message: e.message,
                };
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    drop(result);
    let warnings = conn.get_warnings();
    Observed::Rows {
        columns,
        rows,
        warnings,
    }
}

fn statements() -> Vec<String> {
    let text = std::fs::read_to_string(repo_path("tests/data/differential.sql"))
        .expect("tests/data/differential.sql");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn direct_and_proxied_results_are_identical() {
    let direct_db = start_fixture().await;
    let proxied_db = start_fixture().await;
    let proxy = start_proxy(test_config(proxied_db.port())).await;
    let mut direct = Conn::new(backend_opts_at(direct_db.port())).await.unwrap();
    let mut proxied = Conn::new(proxy_opts(&proxy, CLAWDBOT)).await.unwrap();

    let statements = statements();
    assert!(
        statements.len() >= 20,
        "the corpus should cover every column type"
    );
    let mut row_results = 0;
    for sql in &statements {
        let expected = observe(&mut direct, sql).await;
        let got = observe(&mut proxied, sql).await;
        assert!(
            !matches!(expected, Observed::Error { .. }) || sql.contains("-- expect error"),
            "{sql}: fails directly, fix the corpus: {expected:?}"
        );
        if matches!(expected, Observed::Rows { .. }) {
            row_results += 1;
        }
        assert_eq!(got, expected, "{sql}");
    }
    assert!(row_results >= 10);
}
