//! sqlguard: a MySQL-protocol proxy that enforces an SQL policy in front of MariaDB.
//!
//! # Layout
//! Data flows one way: `frontend` → `session` → `guard` → `backend`.
//!
//! - [`frontend`]: the front door. TCP listener, connection limit, handshake,
//!   authentication, and the opensrv-mysql shim that turns protocol commands
//!   into session calls and backend results into packets.
//! - [`session`]: one client connection's state (user, tenant, pinned backend
//!   connection). The only place that calls guard → backend, in that order.
//! - [`guard`]: pure, no I/O. Decides `Decision::Allow(CheckedSql)` or
//!   `Decision::Deny(Denial)` for one statement.
//! - [`backend`]: the mysql_async pool towards MariaDB; runs only `CheckedSql`.
//! - [`cache`]: the result cache: catalogue SELECTs answered from memory
//!   until their TTL ends or a write through sqlguard invalidates them.
//! - [`audit`]: the hash-chained JSON-lines audit log, and its reader.
//! - [`config`]: `proxy.toml` parsed once, at start-up, into validated types.
//! - [`policy`]: `policies/<name>.toml` compiled into what the guard reads.
//! - [`limits`]: per-user connection, concurrency, rate, statement and result limits.
//! - [`registry`]: the users and policies in force, swapped whole on SIGHUP.
//! - [`error`]: the one mapping from errors to MySQL error codes.
//! - [`metrics`]: Prometheus metrics, /metrics, /healthz and /readyz.
//! - [`logging`]: process logs (text or JSON) to stderr.
//! - [`tls`]: certificates and keys for client and backend TLS, loaded at start-up.
//! - [`mariadb`]: starts a private `mariadbd` (used by `sqlguard demo` and tests).
//! - [`cli`]: the command line.

pub mod audit;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod config;
pub mod decision_cache;
pub mod error;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod limits;
pub mod logging;
pub mod mariadb;
pub mod metrics;
pub mod policy;
pub mod policy_tests;
pub mod registry;
pub mod session;
pub mod tls;
pub mod validate;

/// The demo schema and data (two tenants), loaded by `sqlguard demo` and the tests.
pub const DEMO_FIXTURE_SQL: &str = include_str!("../fixtures/demo.sql");

/// The demo `proxy.toml`, embedded so `sqlguard demo` works from any directory.
pub const DEMO_PROXY_TOML: &str = include_str!("../proxy.toml");

/// The policies the demo `proxy.toml` names, as `(file stem, text)`.
pub const DEMO_POLICIES: &[(&str, &str)] = &[
    ("clawdbot", include_str!("../policies/clawdbot.toml")),
    ("readonly", include_str!("../policies/readonly.toml")),
];
