//! `proxy.toml`: read once at start-up into validated types. A bad file is
//! reported as a list of `key: problem` lines, never as a panic or a serde dump.
//! Policies are loaded here too, so a running proxy only ever sees valid ones.

mod raw;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::frontend::auth::NativePasswordHash;
use crate::limits::{self, Limits};
use crate::logging::LogFormat;
use crate::policy::{Policy, PolicyError};
use sha2::{Digest, Sha256};

/// A valid configuration. Every field has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub backend: BackendConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub users: Vec<UserConfig>,
    /// Where the config was read from, for a reload (SIGHUP); `None` for
    /// text loaded from elsewhere (the demo, tests), which cannot be reloaded.
    pub source: Option<ConfigSource>,
}

/// The file a config came from and the command-line overrides applied to it.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub overrides: Overrides,
}

/// `[limits]`: the defaults of every user, and the packet cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    /// Users without overrides get these.
    pub defaults: Limits,
    /// The largest client command read; a larger one closes the connection.
    pub max_packet_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub address: SocketAddr,
    /// Clients beyond this get MySQL error 1040 and are disconnected.
    pub max_connections: usize,
    /// Time a client has from TCP accept to a completed login.
    pub handshake_timeout: Duration,
    /// A logged-in client that sends nothing for this long is disconnected.
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long (the client
    /// stopped reading) closes the connection.
    pub write_timeout: Duration,
    /// On SIGTERM/SIGINT, how long running statements may take to finish.
    pub shutdown_grace: Duration,
    /// From `tls_cert` and `tls_key`: clients may switch to TLS (and
    /// `require_tls` users must).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Clone)]
pub struct BackendConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Resolved from `password_env` (or the URL); never logged.
    pub password: Option<String>,
    /// The one database sessions may use.
    pub database: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Enforced by MariaDB itself (`max_statement_time`); zero means none.
    pub query_timeout: Duration,
    /// `tls = true`: every backend connection is TLS, and the server's
    /// certificate is verified (chain and host name); never skipped.
    pub tls: Option<BackendTls>,
}

#[derive(Debug, Clone)]
pub struct BackendTls {
    /// PEM of `tls_ca`, the only CA trusted; `None`: the Mozilla roots
    /// (webpki-roots) for a database with a publicly trusted certificate.
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("tls", &self.tls.as_ref().map(|t| t.ca_pem.is_some()))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: Option<PathBuf>,
    /// Size-based rotation: once the file reaches this many bytes it becomes
    /// `<path>.1` (older ones shift to `.2`, ...). `None`: only on SIGHUP.
    pub rotate_bytes: Option<u64>,
    /// How many rotated files (`<path>.1` .. `<path>.N`) size-based rotation keeps.
    pub rotate_keep: usize,
}

/// Rotated audit files kept by size-based rotation unless `audit.rotate_keep` says otherwise.
pub const DEFAULT_AUDIT_ROTATE_KEEP: usize = 10;

impl Default for AuditConfig {
    /// No file: records are only counted.
    fn default() -> Self {
        AuditConfig {
            path: None,
            rotate_bytes: None,
            rotate_keep: DEFAULT_AUDIT_ROTATE_KEEP,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub address: Option<SocketAddr>,
}

/// `[cache]`: the result cache (cache.rs; which tables, and for how long,
/// is each policy's `cache_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Memory for cached results; 0 turns the cache off.
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: crate::cache::DEFAULT_MAX_BYTES,
        }
    }
}

/// The largest `cache.max_bytes` accepted (a typo of a few digits should not
/// let the cache take the machine's memory).
const MAX_CACHE_BYTES: i64 = 16 * 1024 * 1024 * 1024;

fn validate_cache(raw: Option<raw::RawCache>, problems: &mut Vec<String>) -> CacheConfig {
    match raw.and_then(|c| c.max_bytes) {
        None => CacheConfig::default(),
        Some(n) if (0..=MAX_CACHE_BYTES).contains(&n) => CacheConfig {
            max_bytes: usize::try_from(n).unwrap_or(usize::MAX),
        },
        Some(n) => {
            problems.push(format!(
                "cache.max_bytes: must be from 0 (off) to {MAX_CACHE_BYTES} (got {n})"
            ));
            CacheConfig::default()
        }
    }
}

/// `[log]`: process logs (the audit log is `[audit]`).
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    /// `text` (default) or `json`; `--log-format` wins.
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    pub password_hash: NativePasswordHash,
    pub tenant_id: u64,
    pub policy: Arc<Policy>,
    /// First 12 hex digits of the SHA-256 of the policy file's text: which
    /// policy a decision used (written to the audit log).
    pub policy_version: Arc<str>,
    /// `[limits]` with this user's `[users.limits]` applied.
    pub limits: Limits,
    /// Log in only over TLS (refused with 1045 over plain TCP).
    pub require_tls: bool,
}

/// Overrides from the command line (`serve --listen ...`); they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub backend_url: Option<String>,
    pub metrics_listen: Option<String>,
    pub audit_log: Option<PathBuf>,
    /// The backend password itself, for `sqlguard demo` (never a CLI flag).
    pub backend_password: Option<String>,
    /// `check` and `validate` do not connect, so they need no password.
    pub skip_backend_password: bool,
}

/// Everything wrong with a configuration, one `key: problem` per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {}", .problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Loads and validates `path`; policies are looked up in `policies/` beside it.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut config = load_str(&text, path, &dir.join("policies"), overrides)?;
    config.source = Some(ConfigSource {
        path: path.to_path_buf(),
        overrides: overrides.clone(),
    });
    Ok(config)
}

/// Validates config text; `origin` is only used in messages.
pub fn load_str(
    text: &str,
    origin: &Path,
    policy_dir: &Path,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: origin.to_path_buf(),
        problems,
    };
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| invalid(vec![toml_problem(&e)]))?;
    let mut problems = Vec::new();
    let config = validate(raw, policy_dir, overrides, &mut problems);
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(invalid(problems)),
    }
}

/// Turns a toml/serde error into `key: problem` (the toml crate already names
/// the key for unknown fields and type errors; we drop its source excerpt).
fn toml_problem(e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("{message} (at byte {})", span.start),
        None => message,
    }
}

fn validate(
    raw: raw::RawConfig,
    policy_dir: &Path,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> Option<Config> {
    let listen = validate_listen(raw.listen, overrides, problems);
    let backend = validate_backend(raw.backend, overrides, problems);
    let audit = validate_audit(raw.audit, overrides, problems);
    let metrics_address = overrides
        .metrics_listen
        .clone()
        .or(raw.metrics.and_then(|m| m.address));
    let metrics = MetricsConfig {
        address: metrics_address.and_then(|a| parse_addr("metrics.address", &a, problems)),
    };
    let log = LogConfig {
        format: match raw.log.and_then(|l| l.format) {
            None => LogFormat::default(),
            Some(f) => LogFormat::parse(&f).unwrap_or_else(|| {
                problems.push(format!(
                    "log.format: must be \"text\" or \"json\" (got {f:?})"
                ));
                LogFormat::default()
            }),
        },
    };
    let limits = validate_limits(raw.limits, problems);
    let cache = validate_cache(raw.cache, problems);
    let tls_offered = listen.as_ref().is_some_and(|l| l.tls.is_some());
    let users = validate_users(
        raw.users,
        policy_dir,
        &limits.defaults,
        tls_offered,
        problems,
    );
    Some(Config {
        listen: listen?,
        backend: backend?,
        audit,
        metrics,
        log,
        limits,
        cache,
        users,
        source: None,
    })
}

fn validate_audit(
    raw: Option<raw::RawAudit>,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> AuditConfig {
    let (path, rotate_bytes, rotate_keep) = match raw {
        Some(a) => (a.path, a.rotate_bytes, a.rotate_keep),
        None => (None, None, None),
    };
    if rotate_bytes == Some(0) {
        problems.push(
            "audit.rotate_bytes: must be at least 1 (leave it out to rotate only on SIGHUP)".into(),
        );
    }
    if rotate_keep == Some(0) {
        problems.push("audit.rotate_keep: must be at least 1".into());
    }
    AuditConfig {
        path: overrides.audit_log.clone().or(path),
        rotate_bytes,
        rotate_keep: rotate_keep.unwrap_or(DEFAULT_AUDIT_ROTATE_KEEP),
    }
}

/// A chat bot's session is short; 8 hours matches MariaDB's `wait_timeout`.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Long enough for a slow client on a bad link, short enough to shed port scanners.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that reads nothing of its result for this long is gone; its
/// connection (and the backend connection behind it) is released.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// MariaDB's own default `max_connections` is 151; the proxy pins one backend
/// connection per client, so the two should agree.
const DEFAULT_MAX_CONNECTIONS: usize = 151;
const DEFAULT_POOL_SIZE: usize = 151;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

fn validate_listen(
    raw: Option<raw::RawListen>,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> Option<ListenConfig> {
    let raw = raw.unwrap_or_default();
    let address = match overrides.listen.clone().or(raw.address) {
        Some(a) => parse_addr("listen.address", &a, problems),
        None => {
            problems.push("listen.address: missing (e.g. \"127.0.0.1:3307\")".into());
            None
        }
    };
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        problems.push("listen.max_connections: must be greater than 0 (got 0)".into());
    }
    let handshake_timeout = duration(
        "listen.handshake_timeout",
        raw.handshake_timeout,
        DEFAULT_HANDSHAKE_TIMEOUT,
        problems,
    );
    let idle_timeout = duration(
        "listen.idle_timeout",
        raw.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
        problems,
    );
    let write_timeout = duration(
        "listen.write_timeout",
        raw.write_timeout,
        DEFAULT_WRITE_TIMEOUT,
        problems,
    );
    let shutdown_grace = duration(
        "listen.shutdown_grace",
        raw.shutdown_grace,
        DEFAULT_SHUTDOWN_GRACE,
        problems,
    );
    for (key, value) in [
        ("listen.handshake_timeout", handshake_timeout),
        ("listen.idle_timeout", idle_timeout),
        ("listen.write_timeout", write_timeout),
    ] {
        if value.is_zero() {
            problems.push(format!("{key}: must be greater than 0"));
        }
    }
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => match crate::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err((which, problem)) => {
                let key = match which {
                    crate::tls::ServerTlsKey::Cert => "listen.tls_cert",
                    crate::tls::ServerTlsKey::Key => "listen.tls_key",
                };
                problems.push(format!("{key}: {problem}"));
                None
            }
        },
        (Some(_), None) => {
            problems.push("listen.tls_key: missing (tls_cert is set)".into());
            None
        }
        (None, Some(_)) => {
            problems.push("listen.tls_cert: missing (tls_key is set)".into());
            None
        }
        (None, None) => None,
    };
    Some(ListenConfig {
        address: address?,
        max_connections,
        handshake_timeout,
        idle_timeout,
        write_timeout,
        shutdown_grace,
        tls,
    })
}

fn validate_backend(
    raw: Option<raw::RawBackend>,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> Option<BackendConfig> {
    let Some(raw) = raw else {
        problems.push(
            "backend: missing section [backend] with url = \"mysql://user@host:port/database\""
                .into(),
        );
        return None;
    };
    let url = match overrides.backend_url.clone().or(raw.url) {
        Some(url) => url,
        None => {
            problems.push(
                "backend.url: missing (e.g. \"mysql://sqlguard@127.0.0.1:3306/shop\")".into(),
            );
            return None;
        }
    };
    let parsed = match parse_backend_url(&url) {
        Ok(p) => p,
        Err(problem) => {
            problems.push(format!("backend.url: {problem}"));
            return None;
        }
    };
    let password = match &raw.password_env {
        _ if overrides.backend_password.is_some() => overrides.backend_password.clone(),
        Some(_) if overrides.skip_backend_password => None,
        Some(var) => match std::env::var(var) {
            Ok(value) => Some(value),
            Err(_) => {
                problems.push(format!(
                    "backend.password_env: environment variable {var} is not set"
                ));
                None
            }
        },
        None => parsed.password,
    };
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if pool_size == 0 {
        problems.push("backend.pool_size: must be greater than 0 (got 0)".into());
    }
    let connect_timeout = duration(
        "backend.connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
        problems,
    );
    if connect_timeout.is_zero() {
        problems.push("backend.connect_timeout: must be greater than 0".into());
    }
    let query_timeout = duration(
        "backend.query_timeout",
        raw.query_timeout,
        DEFAULT_QUERY_TIMEOUT,
        problems,
    );
    let tls = validate_backend_tls(raw.tls, raw.tls_ca, problems);
    Some(BackendConfig {
        host: parsed.host,
        port: parsed.port,
        user: parsed.user,
        password,
        database: parsed.database,
        pool_size,
        connect_timeout,
        query_timeout,
        tls,
    })
}

fn validate_backend_tls(
    tls: Option<bool>,
    ca: Option<PathBuf>,
    problems: &mut Vec<String>,
) -> Option<BackendTls> {
    match (tls.unwrap_or(false), ca) {
        (false, None) => None,
        (false, Some(_)) => {
            // Fail closed: a CA without `tls = true` reads like TLS was wanted.
            problems.push("backend.tls_ca: set, but backend.tls is not true".into());
            None
        }
        (true, None) => Some(BackendTls { ca_pem: None }),
        (true, Some(path)) => match crate::tls::backend_ca(&path) {
            Ok(pem) => Some(BackendTls { ca_pem: Some(pem) }),
            Err(problem) => {
                problems.push(format!("backend.tls_ca: {problem}"));
                None
            }
        },
    }
}

fn validate_users(
    raw: Vec<raw::RawUser>,
    policy_dir: &Path,
    default_limits: &Limits,
    tls_offered: bool,
    problems: &mut Vec<String>,
) -> Vec<UserConfig> {
    if raw.is_empty() {
        problems.push("users: no [[users]] defined; nobody could log in".into());
    }
    let mut policies: HashMap<String, (Arc<Policy>, Arc<str>)> = HashMap::new();
    let mut seen = HashMap::new();
    let mut users = Vec::new();
    for (i, user) in raw.into_iter().enumerate() {
        let key = format!("users[{i}]");
        if user.name.is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
            continue;
        }
        let key = format!("users[{i}] ({})", user.name);
        if let Some(first) = seen.insert(user.name.clone(), i) {
            problems.push(format!("{key}.name: duplicate of users[{first}]"));
        }
        let hash = match NativePasswordHash::parse(&user.password_hash) {
            Ok(h) => Some(h),
            Err(problem) => {
                problems.push(format!(
                    "{key}.password_hash: {problem} (make one with `sqlguard hash-password`)"
                ));
                None
            }
        };
        if user.tenant_id == 0 {
            problems.push(format!(
                "{key}.tenant_id: must be a positive tenant id (got 0)"
            ));
        }
        let policy = match policies.get(&user.policy) {
            Some(p) => Some(p.clone()),
            None => match load_policy(policy_dir, &user.policy) {
                Ok((p, version)) => {
                    let p = (Arc::new(p), Arc::from(version));
                    policies.insert(user.policy.clone(), p.clone());
                    Some(p)
                }
                Err(e) => {
                    problems.push(format!("{key}.policy: {e}"));
                    None
                }
            },
        };
        let limits = match &user.limits {
            Some(raw) => {
                if raw.max_packet_bytes.is_some() {
                    problems.push(format!(
                        "{key}.limits.max_packet_bytes: only in [limits] (it applies before login)"
                    ));
                }
                merge_limits(&format!("{key}.limits"), raw, default_limits, problems)
            }
            None => *default_limits,
        };
        let require_tls = user.require_tls.unwrap_or(false);
        if require_tls && !tls_offered {
            problems.push(format!(
                "{key}.require_tls: listen.tls_cert and listen.tls_key are not set, so this user could never log in"
            ));
        }
        if let (Some(password_hash), Some((policy, policy_version))) = (hash, policy) {
            users.push(UserConfig {
                name: user.name,
                password_hash,
                tenant_id: user.tenant_id,
                policy,
                policy_version,
                limits,
                require_tls,
            });
        }
    }
    users
}

/// Loads `dir/<stem>.toml` and its version (see [`policy_version`]).
fn load_policy(dir: &Path, stem: &str) -> Result<(Policy, String), PolicyError> {
    let valid_stem = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_stem {
        return Err(PolicyError::BadName(stem.to_string()));
    }
    let path = dir.join(format!("{stem}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
        path: path.clone(),
        source,
    })?;
    let policy = Policy::from_toml(stem, &text)
        .map_err(|problems| PolicyError::Invalid { path, problems })?;
    Ok((policy, policy_version(&text)))
}

/// The first 12 hex digits of the SHA-256 of a policy file's text: short
/// enough to read in a log line, long enough that two edits never collide.
pub fn policy_version(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..6])
}

/// `[limits]`; every value must be positive (there is no "unlimited").
fn validate_limits(raw: Option<raw::RawLimits>, problems: &mut Vec<String>) -> LimitsConfig {
    let raw = raw.unwrap_or_default();
    let defaults = merge_limits("limits", &raw, &Limits::default(), problems);
    let max_packet_bytes = positive(
        "limits.max_packet_bytes",
        raw.max_packet_bytes,
        limits::DEFAULT_MAX_PACKET_BYTES as u64,
        limits::MAX_MAX_PACKET_BYTES as u64,
        problems,
    ) as usize;
    if max_packet_bytes < defaults.max_statement_bytes {
        problems.push(format!(
            "limits.max_packet_bytes: {max_packet_bytes} is below limits.max_statement_bytes ({})",
            defaults.max_statement_bytes
        ));
    }
    LimitsConfig {
        defaults,
        max_packet_bytes,
    }
}

/// `base` with the values `raw` sets; `section` names the keys in problems.
fn merge_limits(
    section: &str,
    raw: &raw::RawLimits,
    base: &Limits,
    problems: &mut Vec<String>,
) -> Limits {
    let mut key = |name: &str, value: Option<i64>, default: u64, max: u64| {
        positive(&format!("{section}.{name}"), value, default, max, problems)
    };
    let u32_max = u64::from(u32::MAX);
    let max_user_connections = key(
        "max_user_connections",
        raw.max_user_connections,
        u64::from(base.max_user_connections),
        u32_max,
    ) as u32;
    let max_concurrent_statements = key(
        "max_concurrent_statements",
        raw.max_concurrent_statements,
        u64::from(base.max_concurrent_statements),
        u32_max,
    ) as u32;
    let statement_burst = key(
        "statement_burst",
        raw.statement_burst,
        u64::from(base.statement_burst),
        u32_max,
    ) as u32;
    let max_statement_bytes = key(
        "max_statement_bytes",
        raw.max_statement_bytes,
        base.max_statement_bytes as u64,
        crate::guard::MAX_STATEMENT_BYTES as u64,
    ) as usize;
    let max_result_rows = key(
        "max_result_rows",
        raw.max_result_rows,
        base.max_result_rows,
        u64::MAX,
    );
    let max_result_bytes = key(
        "max_result_bytes",
        raw.max_result_bytes,
        base.max_result_bytes,
        u64::MAX,
    );
    let statements_per_second = match raw.statements_per_second {
        None => base.statements_per_second,
        Some(rate) if rate.is_finite() && rate > 0.0 && rate <= 1e9 => rate,
        Some(rate) => {
            problems.push(format!(
                "{section}.statements_per_second: must be a number above 0 (got {rate})"
            ));
            base.statements_per_second
        }
    };
    Limits {
        max_user_connections,
        max_concurrent_statements,
        statements_per_second,
        statement_burst,
        max_statement_bytes,
        max_result_rows,
        max_result_bytes,
    }
}

/// An integer in `1..=max`, or `default` when absent (or invalid, with a problem).
fn positive(
    key: &str,
    value: Option<i64>,
    default: u64,
    max: u64,
    problems: &mut Vec<String>,
) -> u64 {
    match value {
        None => default,
        Some(v) if v >= 1 && (v as u64) <= max => v as u64,
        Some(v) => {
            problems.push(format!("{key}: must be from 1 to {max} (got {v})"));
            default
        }
    }
}

fn parse_addr(key: &str, value: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "{key}: not an address of the form IP:PORT (got {value:?})"
            ));
            None
        }
    }
}

fn duration(
    key: &str,
    value: Option<String>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match value {
        None => default,
        Some(text) => match parse_duration(&text) {
            Some(d) => d,
            None => {
                problems.push(format!(
                    "{key}: not a duration (got {text:?}; write e.g. \"500ms\", \"10s\", \"5m\", \"8h\")"
                ));
                default
            }
        },
    }
}

/// Parses `500ms`, `10s`, `5m`, `8h`, `0`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

struct BackendUrl {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
}

/// `mysql://user[:password]@host[:port]/database`. A password in the URL is
/// accepted for local use; production configs should use `password_env`.
fn parse_backend_url(url: &str) -> Result<BackendUrl, String> {
    let rest = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
        .ok_or_else(|| format!("must start with mysql:// (got {:?})", redact_url(url)))?;
    let (authority, database) = rest
        .split_once('/')
        .ok_or("missing /database at the end (sessions are bound to one database)")?;
    if database.contains('?') {
        // Driver options such as ?ssl-mode=... would be silently ignored.
        return Err(
            "options after '?' are not supported; for TLS set backend.tls (and backend.tls_ca)"
                .into(),
        );
    }
    if database.is_empty() {
        return Err("missing /database at the end (sessions are bound to one database)".into());
    }
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    {
        return Err(format!(
            "database name {database:?} must be letters, digits, _ or $"
        ));
    }
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .ok_or("missing user@ before the host")?;
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u.to_string(), Some(p.to_string())),
        None => (userinfo.to_string(), None),
    };
    if user.is_empty() {
        return Err("missing user name before @".into());
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?,
        ),
        None => (hostport.to_string(), 3306),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    Ok(BackendUrl {
        host,
        port,
        user,
        password,
        database: database.to_string(),
    })
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        match load_str(text, Path::new("proxy.toml"), &dir, &Overrides::default()) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => vec![e.to_string()],
        }
    }

    const GOOD: &str = r#"
        [listen]
        address = "127.0.0.1:3307"
        [backend]
        url = "mysql://root@127.0.0.1:3306/shop"
        [[users]]
        name = "clawdbot"
        password_hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        tenant_id = 1
        policy = "clawdbot"
    "#;

    #[test]
    fn good_config_loads() {
        assert_eq!(problems_of(GOOD), Vec::<String>::new());
    }

    #[test]
    fn bad_values_name_their_key() {
        let text = GOOD
            .replace("127.0.0.1:3307", "localhost")
            .replace("tenant_id = 1", "tenant_id = 0")
            .replace("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", "secret")
            .replace("policy = \"clawdbot\"", "policy = \"nope\"");
        let problems = problems_of(&text).join("\n");
        assert!(problems.contains("listen.address"), "{problems}");
        assert!(
            problems.contains("users[0] (clawdbot).tenant_id"),
            "{problems}"
        );
        assert!(
            problems.contains("users[0] (clawdbot).password_hash"),
            "{problems}"
        );
        assert!(
            problems.contains("users[0] (clawdbot).policy"),
            "{problems}"
        );
    }

    #[test]
    fn cache_max_bytes() {
        let config = |extra: &str| {
            load_str(
                &format!("{GOOD}\n{extra}"),
                Path::new("t.toml"),
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
                &Overrides::default(),
            )
        };
        let default = config("").map(|c| c.cache.max_bytes);
        assert_eq!(default.ok(), Some(crate::cache::DEFAULT_MAX_BYTES));
        let off = config("[cache]\nmax_bytes = 0").map(|c| c.cache.max_bytes);
        assert_eq!(off.ok(), Some(0));
        let problems = problems_of(&format!("{GOOD}\n[cache]\nmax_bytes = -1")).join("\n");
        assert!(
            problems.contains("cache.max_bytes: must be from 0"),
            "{problems}"
        );
        let problems = problems_of(&format!("{GOOD}\n[cache]\nmax_byte = 1")).join("\n");
        assert!(problems.contains("max_byte"), "{problems}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("[listen]", "[listen]\nmax_conections = 3");
        let problems = problems_of(&text).join("\n");
        assert!(problems.contains("max_conections"), "{problems}");
    }

    #[test]
    fn log_format() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let load =
            |text: &str| load_str(text, Path::new("proxy.toml"), &dir, &Overrides::default());
        assert_eq!(load(GOOD).unwrap().log.format, LogFormat::Text);
        let json = format!("{GOOD}\n[log]\nformat = \"json\"\n");
        assert_eq!(load(&json).unwrap().log.format, LogFormat::Json);
        let bad = problems_of(&format!("{GOOD}\n[log]\nformat = \"xml\"\n")).join("\n");
        assert!(bad.contains("log.format: must be"), "{bad}");
    }

    #[test]
    fn limits_default_and_per_user() {
        let text = GOOD.replace(
            "policy = \"clawdbot\"",
            "policy = \"clawdbot\"\nlimits = { max_user_connections = 2, statements_per_second = 0.5 }",
        ) + "\n[limits]\nmax_result_rows = 10\nstatement_burst = 4\n";
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let config = load_str(&text, Path::new("proxy.toml"), &dir, &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let user = &config.users[0].limits;
        assert_eq!(user.max_user_connections, 2);
        assert_eq!(user.statements_per_second, 0.5);
        // Not overridden: [limits], then the built-in default.
        assert_eq!(user.max_result_rows, 10);
        assert_eq!(user.statement_burst, 4);
        assert_eq!(
            user.max_concurrent_statements,
            Limits::default().max_concurrent_statements
        );
        assert_eq!(config.users[0].policy_version.len(), 12);
    }

    #[test]
    fn bad_limits_name_their_key() {
        let text = GOOD.replace(
            "policy = \"clawdbot\"",
            "policy = \"clawdbot\"\nlimits = { max_concurrent_statements = 0, max_packet_bytes = 5 }",
        ) + "\n[limits]\nstatements_per_second = -1\nmax_statement_bytes = 100000000\n";
        let problems = problems_of(&text).join("\n");
        for key in [
            "users[0] (clawdbot).limits.max_concurrent_statements",
            "users[0] (clawdbot).limits.max_packet_bytes",
            "limits.statements_per_second",
            "limits.max_statement_bytes",
        ] {
            assert!(problems.contains(key), "{key} in {problems}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn backend_url_needs_a_database() {
        assert!(parse_backend_url("mysql://root@127.0.0.1:3306").is_err());
        // Driver options would be ignored, TLS ones silently: refused.
        let e = parse_backend_url("mysql://root@db/shop?ssl-mode=REQUIRED").err();
        assert!(e.is_some_and(|e| e.contains("backend.tls")));
        let u = parse_backend_url("mysql://bot:pw@db:3310/shop").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_str(),
                u.database.as_str()
            ),
            ("db", 3310, "bot", "shop")
        );
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(
            redact_url("mysql://bot:pw@db/shop"),
            "mysql://bot:***@db/shop"
        );
    }
}
