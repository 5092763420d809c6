//! Starting sqlguard in front of a private MariaDB, for integration tests.
//!
//! Each test binary shares one private MariaDB with the demo fixture
//! ([`shared_db_port`]); each test starts its own proxy on `127.0.0.1:0`.
//! Tests that kill the database start a private one of their own.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use mysql_async::{Opts, OptsBuilder};
use sqlguard::config::{self, Config, Overrides};
use sqlguard::frontend::listener::{self, RunningProxy};
use sqlguard::mariadb::PrivateMariaDb;

use super::mariadb::{BACKEND_PASSWORD, start_fixture};

/// Demo users from proxy.toml: (name, password, tenant).
pub const CLAWDBOT: (&str, &str) = ("clawdbot", "meyram-demo");
pub const READONLY: (&str, &str) = ("readonly", "reader-demo");
pub const CLAWDBOT_T2: (&str, &str) = ("clawdbot_t2", "tenant2-demo");

static SHARED_DB: OnceLock<Mutex<Option<PrivateMariaDb>>> = OnceLock::new();
static SHARED_PORT: OnceLock<u16> = OnceLock::new();

/// Kills the shared MariaDB when the test binary exits (statics are never
/// dropped; the test harness leaves through `exit`, which runs atexit hooks).
extern "C" fn stop_shared_db() {
    if let Some(slot) = SHARED_DB.get() {
        if let Ok(mut db) = slot.lock() {
            drop(db.take());
        }
    }
}

/// The port of this test binary's shared MariaDB, started on first use.
pub fn shared_db_port() -> u16 {
    *SHARED_PORT.get_or_init(|| {
        // Started on a thread of its own: the caller may be inside a runtime.
        let db = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(start_fixture())
        })
        .join()
        .expect("starting MariaDB panicked");
        let port = db.port();
        SHARED_DB.get_or_init(|| Mutex::new(Some(db)));
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(stop_shared_db);
        }
        port
    })
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The demo proxy.toml, listening on a free port, in front of `db_port`,
/// with an audit log of its own in the temp directory.
pub fn test_config(db_port: u16) -> Config {
    config_from_toml(sqlguard::DEMO_PROXY_TOML, db_port)
}

/// Like [`test_config`], for a variant of the demo proxy.toml (e.g. with limits).
pub fn config_from_toml(toml: &str, db_port: u16) -> Config {
    config_with_policies(toml, db_port, &repo_path("policies"))
}

/// Like [`config_from_toml`], with the policies read from `policy_dir`.
pub fn config_with_policies(toml: &str, db_port: u16, policy_dir: &Path) -> Config {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let audit = std::env::temp_dir().join(format!(
        "sqlguard-test-audit-{}-{n}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&audit);
    let overrides = Overrides {
        audit_log: Some(audit),
        listen: Some("127.0.0.1:0".into()),
        metrics_listen: Some("127.0.0.1:0".into()),
        backend_url: Some(format!("mysql://sqlguard@127.0.0.1:{db_port}/shop")),
        backend_password: Some(BACKEND_PASSWORD.into()),
        ..Overrides::default()
    };
    match config::load_str(toml, Path::new("proxy.toml"), policy_dir, &overrides) {
        Ok(c) => c,
        Err(e) => panic!("demo proxy.toml does not load: {e}"),
    }
}

pub async fn start_proxy(config: Config) -> RunningProxy {
    match listener::start(config).await {
        Ok(p) => p,
        Err(e) => panic!("cannot start proxy: {e}"),
    }
}

/// A proxy with the demo config in front of the shared MariaDB.
pub async fn shared_proxy() -> RunningProxy {
    start_proxy(test_config(shared_db_port())).await
}

/// mysql_async options for a proxy user (database `shop`).
pub fn proxy_opts(proxy: &RunningProxy, (user, password): (&str, &str)) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.addr.port())
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into()
}

/// The (code, message) of a server error, or a panic naming what came instead.
pub fn server_error<T: std::fmt::Debug>(result: Result<T, mysql_async::Error>) -> (u16, String) {
    match result {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}
