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
use crate::logging::LogFormat;
use crate::policy::{Policy, PolicyError};

/// A valid configuration. Every field has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub backend: BackendConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub users: Vec<UserConfig>,
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
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
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
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub address: Option<SocketAddr>,
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
    load_str(&text, path, &dir.join("policies"), overrides)
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
    let audit = AuditConfig {
        path: overrides
            .audit_log
            .clone()
            .or(raw.audit.and_then(|a| a.path)),
    };
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
    let users = validate_users(raw.users, policy_dir, problems);
    Some(Config {
        listen: listen?,
        backend: backend?,
        audit,
        metrics,
        log,
        users,
    })
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
    match (&raw.tls_cert, &raw.tls_key) {
        (Some(_), Some(_)) => problems.push(
            "listen.tls_cert: TLS is not supported by this build yet; remove tls_cert and tls_key"
                .into(),
        ),
        (Some(_), None) => problems.push("listen.tls_key: missing (tls_cert is set)".into()),
        (None, Some(_)) => problems.push("listen.tls_cert: missing (tls_key is set)".into()),
        (None, None) => {}
    }
    Some(ListenConfig {
        address: address?,
        max_connections,
        handshake_timeout,
        idle_timeout,
        write_timeout,
        shutdown_grace,
        tls_cert: raw.tls_cert,
        tls_key: raw.tls_key,
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
    Some(BackendConfig {
        host: parsed.host,
        port: parsed.port,
        user: parsed.user,
        password,
        database: parsed.database,
        pool_size,
        connect_timeout,
        query_timeout,
    })
}

fn validate_users(
    raw: Vec<raw::RawUser>,
    policy_dir: &Path,
    problems: &mut Vec<String>,
) -> Vec<UserConfig> {
    if raw.is_empty() {
        problems.push("users: no [[users]] defined; nobody could log in".into());
    }
    let mut policies: HashMap<String, Arc<Policy>> = HashMap::new();
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
                Ok(p) => {
                    let p = Arc::new(p);
                    policies.insert(user.policy.clone(), p.clone());
                    Some(p)
                }
                Err(e) => {
                    problems.push(format!("{key}.policy: {e}"));
                    None
                }
            },
        };
        if let (Some(password_hash), Some(policy)) = (hash, policy) {
            users.push(UserConfig {
                name: user.name,
                password_hash,
                tenant_id: user.tenant_id,
                policy,
            });
        }
    }
    users
}

fn load_policy(dir: &Path, stem: &str) -> Result<Policy, PolicyError> {
    let valid_stem = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_stem {
        return Err(PolicyError::BadName(stem.to_string()));
    }
    Policy::load(&dir.join(format!("{stem}.toml")))
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
    let database = database.split('?').next().unwrap_or_default();
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
