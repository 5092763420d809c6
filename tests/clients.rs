//! Real client programs against sqlguard: the `mariadb` CLI in batch mode,
//! Node's mysql2 and Python's PyMySQL. The scripts in tests/clients/ print
//! what they observed as JSON; the assertions live here.

mod common;

use std::process::{Command, Output};

use common::proxy::*;
use serde_json::Value;

fn run(mut command: Command, what: &str) -> Output {
    match command.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run {what}: {e} (run .ci/run once to install the test clients)"),
    }
}

fn json_of(output: Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout) {
        Ok(v) => v,
        Err(e) => panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ),
    }
}

/// Runs a Node script of tests/clients against the proxy and reads its JSON.
async fn node_script(script: &'static str, port: u16) -> Value {
    let dir = repo_path("tests/clients");
    assert!(
        dir.join("node_modules/mysql2").exists(),
        "mysql2 is not installed: run `npm ci --prefix tests/clients` (done by .ci/run)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).arg(port.to_string());
    let output = tokio::task::spawn_blocking(move || run(cmd, "node"))
        .await
        .unwrap();
    json_of(output, script)
}

/// What every driver must have seen: the same checks, whatever the driver.
fn assert_common_observations(v: &Value, driver: &str) {
    assert_eq!(v["badLogin"]["code"], 1045, "{driver}: {v}");
    let products = v["products"]
        .as_array()
        .unwrap_or_else(|| panic!("{driver}: {v}"));
    assert!(!products.is_empty() && products.len() <= 5, "{driver}: {v}");
    for key in ["deleteError", "dropError"] {
        assert_eq!(v[key]["code"], 1227, "{driver} {key}: {v}");
        let message = v[key]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("sqlguard: "),
            "{driver} {key}: {message}"
        );
    }
    assert_eq!(v["afterRollback"], 0, "{driver}: {v}");
    assert_eq!(v["affectedRows"], 1, "{driver}: {v}");
    assert_eq!(v["insertId"], v["lastInsertId"], "{driver}: {v}");
    assert_ne!(v["insertId"], "0", "{driver}: {v}");
    assert_eq!(v["text"]["t"], "Salam 👋 شحال الثمن؟ é", "{driver}: {v}");
    assert_eq!(v["text"]["n"], Value::Null, "{driver}: {v}");
    assert_eq!(v["text"]["u"], "18446744073709551615", "{driver}: {v}");
}

#[tokio::test]
async fn node_mysql2_query() {
    let proxy = shared_proxy().await;
    let v = node_script("mysql2_client.js", proxy.addr.port()).await;
    assert_common_observations(&v, "mysql2");
    assert_eq!(v["stackedError"]["code"], 1227, "{v}");
    assert!(v["likeCount"].as_u64().is_some(), "{v}");
}

#[tokio::test]
async fn python_pymysql() {
    let proxy = shared_proxy().await;
    let mut cmd = Command::new("python3");
    cmd.arg(repo_path("tests/clients/pymysql_client.py"))
        .arg(proxy.addr.port().to_string());
    let output = tokio::task::spawn_blocking(move || run(cmd, "python3"))
        .await
        .unwrap();
    let v = json_of(output, "pymysql_client.py");
    assert_common_observations(&v, "PyMySQL");
}

fn mariadb_cli(port: u16, user: (&str, &str), args: &[&str]) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-P",
        &port.to_string(),
        "-u",
        user.0,
    ])
    .arg(format!("-p{}", user.1))
    .arg("--batch")
    .args(args);
    cmd
}

async fn cli(port: u16, user: (&str, &str), args: &[&str]) -> Output {
    let cmd = mariadb_cli(port, user, args);
    tokio::task::spawn_blocking(move || run(cmd, "mariadb"))
        .await
        .unwrap()
}

#[tokio::test]
async fn mariadb_cli_batch_mode() {
    let proxy = shared_proxy().await;
    let port = proxy.addr.port();

    let out = cli(
        port,
        CLAWDBOT,
        &[
            "shop",
            "-e",
            "SELECT name, price FROM products WHERE status = 'active' LIMIT 5",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("name\tprice"));
    assert!(lines.count() >= 1, "{stdout}");

    let out = cli(port, CLAWDBOT, &["shop", "-e", "DELETE FROM orders"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR 1227 (42000)") && stderr.contains("sqlguard: "),
        "{stderr}"
    );

    let out = cli(port, ("clawdbot", "nope"), &["shop", "-e", "SELECT 1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1045 (28000)"), "{stderr}");

    // The database named at connect goes through on_init (1044 for others).
    let out = cli(port, CLAWDBOT, &["mysql", "-e", "SELECT 1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1044"), "{stderr}");

    // The CLI turns `use x` into COM_INIT_DB.
    let out = cli(port, CLAWDBOT, &["shop", "-e", "use mysql"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1044"), "{stderr}");
    let out = cli(
        port,
        CLAWDBOT,
        &["shop", "-e", "use shop; SELECT DATABASE()"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("shop"));

    // Statements separated by ';' are sent one at a time by the CLI: the
    // first runs, the DROP is refused.
    let out = cli(
        port,
        CLAWDBOT,
        &["shop", "-e", "SELECT 1; DROP TABLE products"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1227"), "{stderr}");
}

#[tokio::test]
async fn node_mysql2_execute_prepared_workflow() {
    let proxy = shared_proxy().await;
    let v = node_script("mysql2_execute.js", proxy.addr.port()).await;
    let products = v["products"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(!products.is_empty() && products.len() <= 5, "{v}");
    assert_eq!(v["price"][0]["price"], "549.00", "{v}");
    assert_eq!(v["stock"][0]["stock"], 25, "{v}");
    assert_eq!(
        v["foreignStock"].as_array().map(Vec::len),
        Some(0),
        "another tenant's product: {v}"
    );
    assert_eq!(v["badUuid"]["code"], 1411, "{v}");
    assert_eq!(v["customer"][0]["phone"], "+212612345678", "{v}");
    assert_eq!(v["orderInserted"], 1, "{v}");
    assert_eq!(v["confirmed"], 1, "{v}");
    assert_eq!(v["order"]["status"], "Confirmé", "{v}");
    assert_eq!(v["order"]["city"], "Casablanca", "{v}");
    assert_eq!(v["deleteError"]["code"], 1227, "{v}");
    assert_eq!(v["echo"], "Salam 👋 شحال الثمن؟ é", "{v}");
}
