//! The serde mirror of `proxy.toml`: shapes only, no meaning. Unknown keys are
//! errors, so a typo never silently falls back to a default.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<RawListen>,
    pub backend: Option<RawBackend>,
    pub audit: Option<RawAudit>,
    pub metrics: Option<RawMetrics>,
    pub log: Option<RawLog>,
    pub limits: Option<RawLimits>,
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub users: Vec<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub address: Option<String>,
    pub max_connections: Option<usize>,
    pub handshake_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub url: Option<String>,
    pub password_env: Option<String>,
    pub pool_size: Option<usize>,
    pub connect_timeout: Option<String>,
    pub query_timeout: Option<String>,
    pub tls: Option<bool>,
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub path: Option<PathBuf>,
    pub rotate_bytes: Option<u64>,
    pub rotate_keep: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password_hash: String,
    pub tenant_id: u64,
    pub policy: String,
    pub require_tls: Option<bool>,
    /// Overrides of `[limits]` for this user.
    pub limits: Option<RawLimits>,
}

/// `[limits]`, and the same keys per user (`[users.limits]`), except
/// `max_packet_bytes`, which is read before anyone has logged in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_user_connections: Option<i64>,
    pub max_concurrent_statements: Option<i64>,
    pub statements_per_second: Option<f64>,
    pub statement_burst: Option<i64>,
    pub max_statement_bytes: Option<i64>,
    pub max_result_rows: Option<i64>,
    pub max_result_bytes: Option<i64>,
    pub max_packet_bytes: Option<i64>,
}
