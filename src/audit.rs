//! The audit log: one JSON line per statement (allowed, denied or failed) and
//! per failed login, chained by SHA-256 so a deleted or edited line breaks
//! the chain. If a record cannot be written, statements are denied until the
//! log works again: nothing runs unaudited.

pub mod read;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Every line ends with this field; the hash covers everything before it.
pub const HASH_FIELD: &str = ",\"hash\":\"";

/// One record, in the order its fields are written (DESIGN.md "Audit log").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub ts: String,
    pub seq: u64,
    pub conn_id: u32,
    pub user: String,
    pub tenant_id: Option<u64>,
    pub client_addr: String,
    /// query | prepare | execute | login
    pub command: String,
    /// select | insert | update | delete | ...
    pub kind: String,
    /// allow | deny | error
    pub decision: String,
    pub rule: Option<String>,
    pub message: Option<String>,
    /// As received.
    pub sql: Option<String>,
    /// As forwarded (null when nothing was forwarded).
    pub executed_sql: Option<String>,
    /// Bound values of an execute (redacted where the policy says so).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub params: Option<Vec<String>>,
    /// What the guard changed (LIMIT, tenant scope).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rewrites: Option<String>,
    /// Which policy decided: the first 12 hex digits of the SHA-256 of the
    /// policy file (changes when a reload brings a new policy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_version: Option<String>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    pub duration_us: u64,
    pub backend_us: Option<u64>,
    pub prev_hash: String,
}

/// What the session knows about a statement when it is done.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    pub conn_id: u32,
    pub user: String,
    pub tenant_id: Option<u64>,
    pub client_addr: String,
    pub command: &'static str,
    pub kind: &'static str,
    pub decision: &'static str,
    pub rule: Option<&'static str>,
    pub message: Option<String>,
    pub sql: Option<String>,
    pub executed_sql: Option<String>,
    pub params: Option<Vec<String>>,
    pub rewrites: Option<String>,
    pub policy_version: Option<std::sync::Arc<str>>,
    pub rows: Option<u64>,
    pub duration_us: u64,
    pub backend_us: Option<u64>,
    /// For metrics only (not written to the log).
    pub guard_us: Option<u64>,
    pub backend_code: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Chain {
    file: Option<File>,
    seq: u64,
    last_hash: String,
}

/// The audit log of one proxy. `None` path: records are only counted.
pub struct AuditLog {
    path: Option<PathBuf>,
    chain: Mutex<Chain>,
    healthy: AtomicBool,
    pub records: AtomicU64,
    pub write_errors: AtomicU64,
}

impl AuditLog {
    /// Opens (or creates) the log and continues the chain of its last line.
    pub fn open(path: Option<&Path>) -> Result<AuditLog, AuditError> {
        let (file, seq, last_hash) = match path {
            None => (None, 0, GENESIS_HASH.to_string()),
            Some(path) => {
                let (seq, last_hash) = last_link(path);
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AuditError::Open {
                        path: path.to_path_buf(),
                        source,
                    })?;
                (Some(file), seq, last_hash)
            }
        };
        Ok(AuditLog {
            path: path.map(Path::to_path_buf),
            chain: Mutex::new(Chain {
                file,
                seq,
                last_hash,
            }),
            healthy: AtomicBool::new(true),
            records: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        })
    }

    /// False after a failed write: statements must be refused, not run unaudited.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends one record. Returns false if it could not be written.
    pub fn write(&self, entry: Entry) -> bool {
        let mut chain = match self.chain.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let record = Record {
            ts: rfc3339_micros(SystemTime::now()),
            seq: chain.seq + 1,
            conn_id: entry.conn_id,
            user: entry.user,
            tenant_id: entry.tenant_id,
            client_addr: entry.client_addr,
            command: entry.command.to_string(),
            kind: entry.kind.to_string(),
            decision: entry.decision.to_string(),
            rule: entry.rule.map(str::to_string),
            message: entry.message,
            sql: entry.sql,
            executed_sql: entry.executed_sql,
            params: entry.params,
            rewrites: entry.rewrites,
            policy_version: entry.policy_version.map(|v| v.to_string()),
            rows: entry.rows,
            duration_us: entry.duration_us,
            backend_us: entry.backend_us,
            prev_hash: chain.last_hash.clone(),
        };
        let (line, hash) = match seal(&record) {
            Some(sealed) => sealed,
            None => return self.failed("cannot serialize an audit record"),
        };
        if let Some(file) = chain.file.as_mut() {
            if let Err(e) = file.write_all(line.as_bytes()) {
                drop(chain);
                return self.failed(&format!("cannot write the audit log: {e}"));
            }
        }
        chain.seq = record.seq;
        chain.last_hash = hash;
        self.records.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Release);
        true
    }

    fn failed(&self, why: &str) -> bool {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!("{why}; statements are refused until the audit log can be written");
        }
        false
    }
}

/// The line for `record` (newline included) and its hash.
pub fn seal(record: &Record) -> Option<(String, String)> {
    let json = serde_json::to_string(record).ok()?;
    let body = json.strip_suffix('}')?;
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    Some((format!("{body}{HASH_FIELD}{hash}\"}}\n"), hash))
}

/// The seq and hash of the last line of an existing log (genesis if none).
fn last_link(path: &Path) -> (u64, String) {
    // Only a regular file has a chain to continue (a device such as
    // /dev/full would read forever).
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    let (true, Ok(file)) = (regular, File::open(path)) else {
        return (0, GENESIS_HASH.to_string());
    };
    let mut last = None;
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    let Some(line) = last else {
        return (0, GENESIS_HASH.to_string());
    };
    let seq = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
        .unwrap_or(0);
    let hash = line
        .rfind(HASH_FIELD)
        .map(|at| {
            line[at + HASH_FIELD.len()..]
                .trim_end_matches("\"}")
                .to_string()
        })
        .unwrap_or_else(|| GENESIS_HASH.to_string());
    (seq, hash)
}

/// `2026-11-25T12:20:04.123456Z`.
pub fn rfc3339_micros(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_436_404_123_456);
        assert_eq!(rfc3339_micros(t), "2026-11-23T12:20:04.123456Z");
        assert_eq!(
            rfc3339_micros(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn chain_survives_a_restart_and_detects_edits() {
        let dir = std::env::temp_dir().join(format!("sqlguard-audit-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let entry = |sql: &str| Entry {
            user: "clawdbot".into(),
            command: "query",
            kind: "select",
            decision: "allow",
            sql: Some(sql.into()),
            ..Entry::default()
        };
        let log = AuditLog::open(Some(&path)).unwrap();
        assert!(log.write(entry("SELECT 1")));
        assert!(log.write(entry("SELECT 2")));
        drop(log);
        let log = AuditLog::open(Some(&path)).unwrap();
        assert!(log.write(entry("SELECT 3")));
        let text = std::fs::read_to_string(&path).unwrap();
        let report = read::verify(&text);
        assert_eq!(report, Ok(3), "{text}");
        let edited = text.replace("SELECT 2", "SELECT 9");
        assert_eq!(
            read::verify(&edited),
            Err((2, "hash does not match the record".into()))
        );
        let lines: Vec<&str> = text.lines().collect();
        let deleted = format!("{}\n{}\n", lines[0], lines[2]);
        assert!(matches!(read::verify(&deleted), Err((2, _))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
