//! `sqlguard validate` end to end: the real binary against a private MariaDB
//! loaded with the demo fixture.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mysql_async::prelude::Queryable;

use common::mariadb::BACKEND_PASSWORD;
use common::proxy::{repo_path, shared_db_port};

/// The variable the test configs name in `backend.password_env`.
const PASSWORD_VAR: &str = "SQLGUARD_VALIDATE_TEST_PW";

/// A temporary directory with `proxy.toml` (the demo one, backend on
/// `db_port`, password from [`PASSWORD_VAR`]) and copies of the repo's policies.
struct TempConfig {
    dir: PathBuf,
}

impl TempConfig {
    fn new(tag: &str, db_port: u16) -> TempConfig {
        let dir =
            std::env::temp_dir().join(format!("sqlguard-validate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("create temp dir");
        let proxy = sqlguard::DEMO_PROXY_TOML
            .replace(
                "mysql://sqlguard@127.0.0.1:3306/shop",
                &format!("mysql://sqlguard@127.0.0.1:{db_port}/shop"),
            )
            .replace("SQLGUARD_BACKEND_PASSWORD", PASSWORD_VAR);
        assert!(
            proxy.contains(&format!(":{db_port}/shop")),
            "demo proxy.toml changed its URL"
        );
        std::fs::write(dir.join("proxy.toml"), proxy).expect("write proxy.toml");
        for entry in std::fs::read_dir(repo_path("policies")).expect("policies/") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, dir.join("policies").join(path.file_name().unwrap()))
                    .expect("copy policy");
            }
        }
        TempConfig { dir }
    }

    fn policy(&self, stem: &str) -> PathBuf {
        self.dir.join("policies").join(format!("{stem}.toml"))
    }

    fn edit_policy(&self, stem: &str, from: &str, to: &str) {
        let path = self.policy(stem);
        let text = std::fs::read_to_string(&path).expect("read policy");
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write policy");
    }

    /// Runs `sqlguard validate --config <dir>/proxy.toml`; `password` is put
    /// in [`PASSWORD_VAR`] (or the variable is removed).
    fn validate(&self, password: Option<&str>) -> (i32, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlguard"));
        cmd.arg("validate")
            .arg("--config")
            .arg(self.dir.join("proxy.toml"))
            .env_remove("SQLGUARD_BACKEND_PASSWORD")
            .env("SQLGUARD_LOG", "warn");
        match password {
            Some(p) => cmd.env(PASSWORD_VAR, p),
            None => cmd.env_remove(PASSWORD_VAR),
        };
        let output = cmd.output().expect("run sqlguard validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().expect("exit code"), text)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn policy_tables(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read policy");
    let value: toml::Value = toml::from_str(&text).expect("policy toml");
    value["tables"]
        .as_table()
        .expect("tables")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_demo_policies_match_the_fixture() {
    let config = TempConfig::new("ok", shared_db_port());
    let (code, out) = config.validate(Some(BACKEND_PASSWORD));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("error:"), "{out}");
    assert!(!out.contains("skipped"), "{out}");
    for stem in ["clawdbot", "readonly"] {
        let tables = policy_tables(&repo_path(&format!("policies/{stem}.toml")));
        assert!(tables.len() >= 10, "{stem}: {tables:?}");
        for table in tables {
            let line = format!("ok: policies/{stem}.toml: tables.{table}: shop.{table} (");
            let line_abs = format!(
                "ok: {}: tables.{table}: shop.{table} (",
                config.policy(stem).display()
            );
            assert!(
                out.contains(&line) || out.contains(&line_abs),
                "no ok line for {stem}.{table}:\n{out}"
            );
        }
    }
    assert!(out.contains("summary: 2 policies"), "{out}");
    assert!(out.contains(" 0 error(s), 0 warning(s)"), "{out}");
}

#[test]
fn a_misspelled_column_is_an_error_naming_it() {
    let config = TempConfig::new("typo", shared_db_port());
    config.edit_policy(
        "clawdbot",
        "[tables.products]\nscope = \"tenant\"\nuuid = [\"id\"]",
        "[tables.products]\nscope = \"tenant\"\nuuid = [\"idd\"]",
    );
    let (code, out) = config.validate(Some(BACKEND_PASSWORD));
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "error: {}: tables.products.uuid: column \"idd\" does not exist in shop.products",
        config.policy("clawdbot").display()
    );
    assert!(out.contains(&expected), "{out}");
    assert!(out.contains(" 1 error(s)"), "{out}");
    // The other policy, untouched, is still ok for products.
    assert!(
        out.contains("policies/readonly.toml: tables.products: shop.products ("),
        "{out}"
    );
}

#[test]
fn an_unreachable_backend_is_skipped() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = TempConfig::new("down", port);
    let (code, out) = config.validate(Some(BACKEND_PASSWORD));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "skipped: backend check: 127.0.0.1:{port} is unreachable"
        )),
        "{out}"
    );
    assert!(
        out.contains("ok: policies/clawdbot.toml") || out.contains("clawdbot.toml: "),
        "{out}"
    );
}

#[test]
fn a_missing_password_variable_skips_the_backend_check() {
    let config = TempConfig::new("nopw", shared_db_port());
    let (code, out) = config.validate(None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("skipped: backend check: environment variable {PASSWORD_VAR} (backend.password_env) is not set")),
        "{out}"
    );
}

#[test]
fn a_wrong_password_is_an_error() {
    let config = TempConfig::new("badpw", shared_db_port());
    let (code, out) = config.validate(Some("not-the-password"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: backend: sqlguard@127.0.0.1:"), "{out}");
    assert!(out.contains("1045"), "{out}");
}

#[test]
fn an_invalid_policy_file_exits_2() {
    let config = TempConfig::new("invalid", shared_db_port());
    config.edit_policy("readonly", "scope = \"key\"", "scope = \"kee\"");
    let (code, out) = config.validate(Some(BACKEND_PASSWORD));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("tables.tenants.scope: unknown scope \"kee\""),
        "{out}"
    );
    assert!(!out.contains("ok: backend"), "{out}");
}

#[test]
fn tables_no_policy_names_are_listed() {
    // A database of its own on the shared server, so the other tests' schema
    // stays the fixture's: a copy of products and one extra table.
    let port = shared_db_port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("root"))
            .prefer_socket(false);
        let mut conn = mysql_async::Conn::new(opts).await.expect("root connection");
        conn.query_drop(
            "CREATE OR REPLACE DATABASE shop_extra; \
             CREATE TABLE shop_extra.products LIKE shop.products; \
             CREATE TABLE shop_extra.messages (id BIGINT PRIMARY KEY, conversation_id BIGINT NULL, \
               sender VARCHAR(20), type VARCHAR(20), content TEXT, transcription TEXT); \
             CREATE TABLE shop_extra.conversations LIKE shop.conversations; \
             CREATE TABLE shop_extra.audit_notes (id INT PRIMARY KEY); \
             GRANT SELECT ON shop_extra.* TO 'sqlguard'@'127.0.0.1'; \
             GRANT SELECT ON shop_extra.* TO 'sqlguard'@'localhost'",
        )
        .await
        .expect("create shop_extra");
        conn.disconnect().await.expect("disconnect");
    });
    let config = TempConfig::new("extra", port);
    let proxy = config.dir.join("proxy.toml");
    let text = std::fs::read_to_string(&proxy)
        .unwrap()
        .replace(&format!(":{port}/shop\""), &format!(":{port}/shop_extra\""));
    std::fs::write(&proxy, text).unwrap();
    let (code, out) = config.validate(Some(BACKEND_PASSWORD));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "info: table shop_extra.audit_notes is named in no policy (denied to every user)"
        ),
        "{out}"
    );
    assert!(
        out.contains("tables.orders: table \"orders\" does not exist in shop_extra"),
        "{out}"
    );
    assert!(
        out.contains("tables.messages.parent_column: column \"conversation_id\" of shop_extra.messages is nullable"),
        "{out}"
    );
    assert!(
        out.contains("tables.products: shop_extra.products ("),
        "{out}"
    );
}
