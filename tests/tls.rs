//! TLS, with certificates made in the test (rcgen): clients to sqlguard (the
//! `mariadb` CLI with `--ssl`, Node's mysql2 with `ssl: { ca }`, mysql_async),
//! `require_tls` users, plain clients of a proxy that offers TLS, and
//! sqlguard to a MariaDB that has TLS, with the certificate verified.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::mariadb::{BACKEND_PASSWORD, start_fixture_with_args};
use common::proxy::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use sqlguard::config::{self, Config, ConfigError, Overrides};
use sqlguard::frontend::auth::NativePasswordHash;

/// A user of the test config that must use TLS.
const TLS_USER: (&str, &str) = ("tlsbot", "tls-only-pw");

/// A test CA, a certificate it signed for the proxy (localhost and
/// 127.0.0.1), one for the database (localhost only, so connecting to
/// 127.0.0.1 fails the host-name check), and an unrelated CA.
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    proxy_cert: PathBuf,
    proxy_key: PathBuf,
    db_cert: PathBuf,
    db_key: PathBuf,
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sqlguard-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("sqlguard test CA");
        let (other_cert, _) = ca("some other CA");
        let leaf = |names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "localhost");
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (proxy_cert, proxy_key) = leaf(&["localhost", "127.0.0.1"]);
        let (db_cert, db_key) = leaf(&["localhost"]);
        Certs {
            ca: write("ca.pem", ca_cert.pem()),
            other_ca: write("other-ca.pem", other_cert.pem()),
            proxy_cert: write("proxy-cert.pem", proxy_cert),
            proxy_key: write("proxy-key.pem", proxy_key),
            db_cert: write("db-cert.pem", db_cert),
            db_key: write("db-key.pem", db_key),
        }
    })
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// The demo proxy.toml with `listen_extra` lines in [listen],
/// `backend_extra` in [backend], and [`TLS_USER`] (require_tls) added.
fn load_config(
    db_port: u16,
    backend_host: &str,
    listen_extra: &str,
    backend_extra: &str,
) -> Result<Config, ConfigError> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let audit = std::env::temp_dir().join(format!(
        "sqlguard-tls-test-audit-{}-{n}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&audit);
    let text = sqlguard::DEMO_PROXY_TOML
        .replace("[listen]\n", &format!("[listen]\n{listen_extra}\n"))
        .replace("[backend]\n", &format!("[backend]\n{backend_extra}\n"))
        + &format!(
            "\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\ntenant_id = 1\npolicy = \"clawdbot\"\nrequire_tls = true\n",
            TLS_USER.0,
            NativePasswordHash::of_password(TLS_USER.1.as_bytes()).to_hex()
        );
    let overrides = Overrides {
        audit_log: Some(audit),
        listen: Some("127.0.0.1:0".into()),
        metrics_listen: Some("127.0.0.1:0".into()),
        backend_url: Some(format!("mysql://sqlguard@{backend_host}:{db_port}/shop")),
        backend_password: Some(BACKEND_PASSWORD.into()),
        ..Overrides::default()
    };
    config::load_str(
        &text,
        Path::new("proxy.toml"),
        &repo_path("policies"),
        &overrides,
    )
}

fn listen_tls() -> String {
    let c = certs();
    format!(
        "tls_cert = {}\ntls_key = {}",
        toml_path(&c.proxy_cert),
        toml_path(&c.proxy_key)
    )
}

/// A proxy offering TLS, in front of the shared (plain) MariaDB.
async fn tls_proxy() -> sqlguard::frontend::listener::RunningProxy {
    let config = load_config(shared_db_port(), "127.0.0.1", &listen_tls(), "")
        .unwrap_or_else(|e| panic!("TLS config does not load: {e}"));
    start_proxy(config).await
}

fn opts(port: u16, (user, password): (&str, &str), ca: Option<&Path>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .ssl_opts(ca.map(|ca| {
            SslOpts::default()
                .with_root_certs(vec![ca.to_path_buf().into()])
                .with_disable_built_in_roots(true)
        }))
        .into()
}

fn problems(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected the config to be refused"),
        Err(e) => e.to_string(),
    }
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        command.output().unwrap_or_else(|e| {
            panic!("cannot run {command:?}: {e} (run .ci/run once to install the test clients)")
        })
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mariadb_cli(port: u16, (user, password): (&str, &str), args: &[&str]) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .args(["--database=shop", "--batch"])
        .args(args);
    cmd
}

async fn audit_records(proxy: &sqlguard::frontend::listener::RunningProxy) -> Vec<Value> {
    let path = proxy.shared.config.audit.path.clone().expect("audit path");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn mariadb_cli_over_tls_verifies_the_proxy_and_reports_its_cipher() {
    let proxy = tls_proxy().await;
    let port = proxy.addr.port();
    let ca = certs().ca.display().to_string();
    let ssl = [
        "--ssl",
        &format!("--ssl-ca={ca}"),
        "--ssl-verify-server-cert",
    ];

    // `status` reports the client library's own view of the connection.
    let mut args = ssl.to_vec();
    args.extend(["-e", "status"]);
    let out = run(mariadb_cli(port, CLAWDBOT, &args)).await;
    let status = text(&out);
    assert!(out.status.success(), "{status}");
    let cipher_line = status
        .lines()
        .find(|l| l.starts_with("SSL:"))
        .unwrap_or_else(|| panic!("no SSL line in: {status}"));
    assert!(
        cipher_line.contains("Cipher in use is"),
        "the CLI says the connection is not encrypted: {cipher_line}"
    );

    let mut args = ssl.to_vec();
    args.extend([
        "-e",
        "SELECT name FROM products WHERE status = 'active' ORDER BY name",
    ]);
    let out = run(mariadb_cli(port, CLAWDBOT, &args)).await;
    assert!(out.status.success(), "{}", text(&out));
    let rows = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(rows.starts_with("name\n"), "{rows}");
    assert!(rows.contains("Montre connectée FitMaroc X2"), "{rows}");
    assert!(!rows.contains("Babouches"), "another tenant's rows: {rows}");

    // The require_tls user gets in with --ssl, and not without.
    let mut args = ssl.to_vec();
    args.extend(["-e", "SELECT COUNT(*) AS n FROM products"]);
    let out = run(mariadb_cli(port, TLS_USER, &args)).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(mariadb_cli(
        port,
        TLS_USER,
        &["--skip-ssl", "-e", "SELECT 1"],
    ))
    .await;
    assert!(!out.status.success());
    let refused = text(&out);
    assert!(
        refused.contains("ERROR 1045") && refused.contains("must connect with TLS"),
        "{refused}"
    );

    // A CA that did not sign the proxy's certificate: the CLI refuses it.
    let other = format!("--ssl-ca={}", certs().other_ca.display());
    let out = run(mariadb_cli(
        port,
        CLAWDBOT,
        &[
            "--ssl",
            &other,
            "--ssl-verify-server-cert",
            "-e",
            "SELECT 1",
        ],
    ))
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ERROR 2026"), "{}", text(&out));
}

#[tokio::test]
async fn node_mysql2_over_tls() {
    let proxy = tls_proxy().await;
    let dir = repo_path("tests/clients");
    assert!(
        dir.join("node_modules/mysql2").exists(),
        "mysql2 is not installed: run `npm ci --prefix tests/clients` (done by .ci/run)"
    );
    let c = certs();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("mysql2_tls.js"))
        .arg(proxy.addr.port().to_string())
        .arg(&c.ca)
        .arg(TLS_USER.0)
        .arg(TLS_USER.1)
        .arg(&c.other_ca);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&out)));

    for key in ["tls", "requiredTls"] {
        assert_eq!(v[key]["encrypted"], true, "{key}: {v}");
        assert_eq!(v[key]["authorized"], true, "{key}: {v}");
        let protocol = v[key]["protocol"].as_str().unwrap_or_default();
        assert!(protocol == "TLSv1.3" || protocol == "TLSv1.2", "{key}: {v}");
    }
    assert_eq!(v["plainTls"]["encrypted"], false, "{v}");
    assert_eq!(v["products"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(v["activeCount"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["denied"]["code"], 1227, "{v}");
    assert!(v["plainCount"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(v["requiredCount"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["requiredPlain"]["code"], 1045, "{v}");
    let message = v["requiredPlain"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("must connect with TLS"), "{v}");
    // mysql2 refused the proxy's certificate under another CA.
    assert!(v["wrongCa"]["message"].is_string(), "{v}");
    assert!(v["wrongCa"]["code"].is_null(), "not a server error: {v}");
}

#[tokio::test]
async fn python_pymysql_over_tls() {
    let proxy = tls_proxy().await;
    let mut cmd = Command::new("python3");
    cmd.arg(repo_path("tests/clients/pymysql_tls.py"))
        .arg(proxy.addr.port().to_string())
        .arg(&certs().ca)
        .arg(TLS_USER.0)
        .arg(TLS_USER.1);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&out)));
    let version = v["tls"]["version"].as_str().unwrap_or_default();
    assert!(version == "TLSv1.3" || version == "TLSv1.2", "{v}");
    assert!(v["tls"]["cipher"].is_string(), "{v}");
    assert!(v["activeCount"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["afterRollback"], 0, "{v}");
    assert_eq!(v["plain"]["code"], 1045, "{v}");
    let message = v["plain"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("must connect with TLS"), "{v}");
    assert!(v["preferred"]["cipher"].is_string(), "{v}");
}

#[tokio::test]
async fn require_tls_user_is_refused_in_plain_and_audited() {
    let proxy = tls_proxy().await;
    let port = proxy.addr.port();
    let ca = certs().ca.clone();

    let (code, message) = server_error(Conn::new(opts(port, TLS_USER, None)).await);
    assert_eq!(code, 1045, "{message}");
    assert!(message.contains("must connect with TLS"), "{message}");
    // A wrong password over plain TCP learns nothing about TLS.
    let (code, message) = server_error(Conn::new(opts(port, (TLS_USER.0, "wrong"), None)).await);
    assert_eq!(code, 1045);
    assert!(!message.contains("TLS"), "{message}");

    let mut conn = Conn::new(opts(port, TLS_USER, Some(&ca)))
        .await
        .expect("require_tls user over TLS");
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM products")
        .await
        .unwrap();
    assert!(n.is_some_and(|n| n > 0));
    let ids: Vec<u64> = conn
        .exec(
            "SELECT COUNT(*) FROM products WHERE status = ?",
            ("active",),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    conn.disconnect().await.unwrap();

    let mut found = None;
    for _ in 0..100 {
        found = audit_records(&proxy)
            .await
            .into_iter()
            .find(|r| r["command"] == "login" && r["rule"] == "require_tls");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let record = found.expect("an audited require_tls refusal");
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["user"], TLS_USER.0);
}

#[tokio::test]
async fn plain_clients_still_work_when_tls_is_offered() {
    let proxy = tls_proxy().await;
    let port = proxy.addr.port();
    let mut conn = Conn::new(opts(port, CLAWDBOT, None)).await.unwrap();
    let names: Vec<String> = conn
        .query("SELECT name FROM products WHERE status = 'active'")
        .await
        .unwrap();
    assert!(!names.is_empty());
    conn.disconnect().await.unwrap();

    let out = run(mariadb_cli(
        port,
        READONLY,
        &["--skip-ssl", "-e", "SELECT COUNT(*) AS n FROM products"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out));

    // mysql_async over TLS, for a user that does not require it.
    let mut conn = Conn::new(opts(port, CLAWDBOT, Some(&certs().ca)))
        .await
        .unwrap();
    let n: Option<u64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(n, Some(1));
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn plain_proxy_refuses_a_client_that_asks_for_tls() {
    // The demo config has no TLS: CLIENT_SSL is not offered, and a client
    // that insists is disconnected rather than read in plaintext.
    let proxy = shared_proxy().await;
    let err = Conn::new(opts(proxy.addr.port(), CLAWDBOT, Some(&certs().ca)))
        .await
        .expect_err("TLS to a proxy without TLS");
    assert!(
        matches!(
            err,
            mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
        ),
        "{err:?}"
    );
    // The 10.11 CLI falls back to plaintext with a bare --ssl; with
    // verification it insists, and stops.
    let out = run(mariadb_cli(
        proxy.addr.port(),
        CLAWDBOT,
        &["--ssl", "--ssl-verify-server-cert", "-e", "SELECT 1"],
    ))
    .await;
    assert!(!out.status.success(), "{}", text(&out));

    // A client that sends an SSLRequest anyway is disconnected: nothing it
    // sends afterwards is read as a plaintext handshake.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut greeting = vec![0u8; len];
    tcp.read_exact(&mut greeting).await.unwrap();
    let nul = greeting[1..].iter().position(|&b| b == 0).unwrap();
    let caps = 1 + nul + 1 + 4 + 8 + 1;
    assert_eq!(
        greeting[caps + 1] & 0x08,
        0,
        "CLIENT_SSL offered without TLS"
    );
    // SSLRequest: CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION ...
    let flags: u32 = 0x0000_0200 | 0x0000_0800 | 0x0000_8000 | 0x0008_0000;
    let mut ssl_request = vec![32, 0, 0, 1];
    ssl_request.extend_from_slice(&flags.to_le_bytes());
    ssl_request.extend_from_slice(&[0, 0, 0, 1, 45]);
    ssl_request.extend_from_slice(&[0; 23]);
    tcp.write_all(&ssl_request).await.unwrap();
    // Then a plaintext handshake response, which a careless server would
    // answer (here with an access-denied ERR).
    let mut response = (flags & !0x0800).to_le_bytes().to_vec();
    response.extend_from_slice(&[0, 0, 0, 1, 45]);
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(b"clawdbot\0\0");
    let mut packet = (response.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(2);
    packet.extend_from_slice(&response);
    let _ = tcp.write_all(&packet).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut rest),
    )
    .await
    .expect("the proxy keeps a client that asked for TLS it does not offer");
    assert!(read.is_err() || rest.is_empty(), "answered: {rest:?}");
}

#[tokio::test]
async fn tls_config_problems_name_their_key() {
    let c = certs();
    let port = shared_db_port();
    let missing = Path::new("/nonexistent/sqlguard-cert.pem");
    let p = problems(load_config(
        port,
        "127.0.0.1",
        &format!(
            "tls_cert = {}\ntls_key = {}",
            toml_path(missing),
            toml_path(&c.proxy_key)
        ),
        "",
    ));
    assert!(
        p.contains("listen.tls_cert: cannot read /nonexistent/sqlguard-cert.pem"),
        "{p}"
    );
    // The database's key does not belong to the proxy's certificate.
    let p = problems(load_config(
        port,
        "127.0.0.1",
        &format!(
            "tls_cert = {}\ntls_key = {}",
            toml_path(&c.proxy_cert),
            toml_path(&c.db_key)
        ),
        "",
    ));
    assert!(p.contains("listen.tls_key: "), "{p}");
    // A certificate where the key should be.
    let p = problems(load_config(
        port,
        "127.0.0.1",
        &format!(
            "tls_cert = {}\ntls_key = {}",
            toml_path(&c.proxy_cert),
            toml_path(&c.proxy_cert)
        ),
        "",
    ));
    assert!(
        p.contains("listen.tls_key: ") && p.contains("no private key"),
        "{p}"
    );
    // require_tls without TLS: nobody could log in as that user.
    let p = problems(load_config(port, "127.0.0.1", "", ""));
    assert!(p.contains("(tlsbot).require_tls: "), "{p}");
    // Backend: the CA file is read at start; a CA without tls = true is refused.
    let p = problems(load_config(
        port,
        "127.0.0.1",
        &listen_tls(),
        &format!("tls = true\ntls_ca = {}", toml_path(missing)),
    ));
    assert!(p.contains("backend.tls_ca: cannot read"), "{p}");
    let p = problems(load_config(
        port,
        "127.0.0.1",
        &listen_tls(),
        &format!("tls_ca = {}", toml_path(&c.ca)),
    ));
    assert!(
        p.contains("backend.tls_ca: set, but backend.tls is not true"),
        "{p}"
    );
    let p = problems(load_config(
        port,
        "127.0.0.1",
        &listen_tls(),
        &format!("tls = true\ntls_ca = {}", toml_path(&c.proxy_key)),
    ));
    assert!(p.contains("backend.tls_ca: no certificate"), "{p}");
}

#[tokio::test]
async fn backend_tls_verifies_the_database_certificate() {
    let c = certs();
    let db = start_fixture_with_args(vec![
        format!("--ssl-cert={}", c.db_cert.display()),
        format!("--ssl-key={}", c.db_key.display()),
        format!("--ssl-ca={}", c.ca.display()),
    ])
    .await;
    // The backend account may only log in over TLS: a proxy that connected
    // in plaintext would be refused by MariaDB itself.
    let mut root = Conn::new(db.root_opts(None)).await.unwrap();
    root.query_drop("ALTER USER 'sqlguard'@'127.0.0.1' REQUIRE SSL")
        .await
        .unwrap();
    root.disconnect().await.unwrap();

    let backend_tls = |ca: &Path| format!("tls = true\ntls_ca = {}", toml_path(ca));
    // mysql_async asks the server for settings while connecting, so the
    // backend's refusal may come at connect or at the first statement.
    let query = |proxy_port: u16| async move {
        let mut conn = Conn::new(opts(proxy_port, CLAWDBOT, None)).await?;
        let result: Result<Option<u64>, _> =
            conn.query_first("SELECT COUNT(*) FROM products").await;
        let _ = conn.disconnect().await;
        result
    };

    // Verified: the CA signed the certificate, which names `localhost`.
    let config = load_config(db.port(), "localhost", &listen_tls(), &backend_tls(&c.ca));
    let config = match config {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let proxy = start_proxy(config).await;
    let n = query(proxy.addr.port())
        .await
        .expect("query over backend TLS");
    assert!(n.is_some_and(|n| n > 0));
    proxy.shutdown().await;

    // Without backend TLS, MariaDB refuses the account (the check above
    // could not pass in plaintext).
    let config =
        load_config(db.port(), "localhost", &listen_tls(), "").unwrap_or_else(|e| panic!("{e}"));
    let proxy = start_proxy(config).await;
    let (code, message) = server_error(query(proxy.addr.port()).await);
    assert_eq!(code, 1105, "{message}");
    assert!(message.contains("1045"), "{message}");
    proxy.shutdown().await;

    // A CA that did not sign the database's certificate.
    let config = load_config(
        db.port(),
        "localhost",
        &listen_tls(),
        &backend_tls(&c.other_ca),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let proxy = start_proxy(config).await;
    let (code, message) = server_error(query(proxy.addr.port()).await);
    assert_eq!(code, 1105, "{message}");
    assert!(
        message.contains("database is unavailable") && message.contains("UnknownIssuer"),
        "{message}"
    );
    proxy.shutdown().await;

    // The right CA, but the certificate does not name 127.0.0.1.
    let config = load_config(db.port(), "127.0.0.1", &listen_tls(), &backend_tls(&c.ca))
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = start_proxy(config).await;
    let (code, message) = server_error(query(proxy.addr.port()).await);
    assert_eq!(code, 1105, "{message}");
    assert!(
        message.contains(r#"certificate not valid for name "127.0.0.1""#),
        "{message}"
    );
    proxy.shutdown().await;
}
