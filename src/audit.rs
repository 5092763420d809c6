//! The audit log: one JSON line per statement (allowed, denied or failed) and
//! per failed login, chained by SHA-256 so a deleted or edited line breaks
//! the chain. Sessions hand entries to one writer thread over a bounded queue
//! (`writer`); while records cannot be written, statements are refused:
//! nothing runs unaudited. Format and operations: docs/AUDIT.md.

pub mod read;
pub mod redact;
pub mod report;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::config::AuditConfig;
use crate::policy::Policy;

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
    /// The result cache's answer for a cacheable SELECT: `hit` (served from
    /// memory, not forwarded: `backend_us` is absent) or `miss`. Absent
    /// when the cache was not consulted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache: Option<String>,
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
    /// `hit` | `miss` (see [`Record::cache`]).
    pub cache: Option<&'static str>,
    pub duration_us: u64,
    pub backend_us: Option<u64>,
    /// For metrics only (not written to the log).
    pub guard_us: Option<u64>,
    pub backend_code: Option<u16>,
    /// Whose `redact` columns are masked in `sql` and `executed_sql` (by the
    /// writer, off the session's path).
    pub policy: Option<Arc<Policy>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the audit writer: {0}")]
    Spawn(std::io::Error),
}

/// How many entries may wait for the writer before sessions wait for it
/// (backpressure: an entry is never dropped).
pub const QUEUE_CAPACITY: usize = 8192;

/// The audit log of one proxy: the sessions' handle on the writer thread.
/// Without a path, records are only counted.
pub struct AuditLog {
    path: Option<PathBuf>,
    /// `None` without a path (nothing to write).
    queue: Option<mpsc::Sender<writer::Msg>>,
    state: Arc<writer::State>,
    /// Records written (shared with the writer).
    pub records: Arc<AtomicU64>,
    /// Failed attempts to write (shared with the writer).
    pub write_errors: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (or creates) the log, continues the chain of its last line (or
    /// of `<path>.1` if the log is empty), and starts the writer thread.
    pub fn open(config: &AuditConfig) -> Result<AuditLog, AuditError> {
        let state = Arc::new(writer::State::default());
        let records = Arc::new(AtomicU64::new(0));
        let write_errors = Arc::new(AtomicU64::new(0));
        let queue = match &config.path {
            None => None,
            Some(path) => Some(writer::start(
                config,
                path,
                state.clone(),
                records.clone(),
                write_errors.clone(),
            )?),
        };
        Ok(AuditLog {
            path: config.path.clone(),
            queue,
            state,
            records,
            write_errors,
        })
    }

    /// False while records cannot be written: statements must be refused,
    /// not run unaudited. True again once the writer's retry succeeds.
    pub fn is_healthy(&self) -> bool {
        self.state.healthy.load(Ordering::Acquire)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Queues one record; waits (never drops) while the queue is full.
    pub async fn write(&self, entry: Entry) {
        let Some(queue) = &self.queue else {
            self.records.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let msg = writer::Msg::Record(Box::new(entry), SystemTime::now());
        if queue.send(msg).await.is_err() {
            // The writer is gone (it only stops when every handle is): refuse.
            self.write_errors.fetch_add(1, Ordering::Relaxed);
            self.state.healthy.store(false, Ordering::Release);
        }
    }

    /// SIGHUP: the writer closes the file and opens the path again (after
    /// logrotate moved it away). The chain continues in the new file.
    pub fn reopen(&self) {
        self.state.reopen.store(true, Ordering::Release);
        if let Some(queue) = &self.queue {
            // A full queue means the writer is busy and will see the flag.
            let _ = queue.try_send(writer::Msg::Wake);
        }
    }

    /// Waits until every record queued so far is written and fsynced.
    /// False if they could not be written (the writer gives up waiting after
    /// [`writer::GIVE_UP_AFTER`] of failed retries).
    pub async fn flush(&self) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        let (done, wait) = oneshot::channel();
        if queue.send(writer::Msg::Flush(done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

/// The line for `record` (newline included) and its hash.
pub fn seal(record: &Record) -> Option<(String, String)> {
    let json = serde_json::to_string(record).ok()?;
    let body = json.strip_suffix('}')?;
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    Some((format!("{body}{HASH_FIELD}{hash}\"}}\n"), hash))
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

    fn config(path: &Path) -> AuditConfig {
        AuditConfig {
            path: Some(path.to_path_buf()),
            rotate_bytes: None,
            rotate_keep: 3,
        }
    }

    fn entry(sql: &str) -> Entry {
        Entry {
            user: "clawdbot".into(),
            command: "query",
            kind: "select",
            decision: "allow",
            sql: Some(sql.into()),
            ..Entry::default()
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sqlguard-audit-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn chain_survives_a_restart_and_detects_edits() {
        let dir = temp_dir("restart");
        let path = dir.join("audit.log");
        let log = AuditLog::open(&config(&path)).unwrap();
        log.write(entry("SELECT 1")).await;
        log.write(entry("SELECT 2")).await;
        assert!(log.flush().await);
        drop(log);
        let log = AuditLog::open(&config(&path)).unwrap();
        log.write(entry("SELECT 3")).await;
        assert!(log.flush().await);
        assert_eq!(log.records.load(Ordering::Relaxed), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let report = read::verify(&text);
        assert_eq!(report, Ok(3), "{text}");
        let edited = text.replace("SELECT 2", "SELECT 9");
        assert!(matches!(read::verify(&edited), Err((2, why)) if why.contains("edited")));
        let lines: Vec<&str> = text.lines().collect();
        let deleted = format!("{}\n{}\n", lines[0], lines[2]);
        assert!(matches!(read::verify(&deleted), Err((2, _))));
        let swapped = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]);
        assert!(matches!(read::verify(&swapped), Err((2, _))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn size_rotation_keeps_the_chain_across_files() {
        let dir = temp_dir("rotate");
        let path = dir.join("audit.log");
        let mut cfg = config(&path);
        cfg.rotate_bytes = Some(600);
        let log = AuditLog::open(&cfg).unwrap();
        for i in 0..40 {
            log.write(entry(&format!("SELECT {i}"))).await;
            // One record per batch, so each write can rotate.
            assert!(log.flush().await);
        }
        let files = read::log_files(&path).unwrap();
        // rotate_keep = 3: audit.log.3, .2, .1 and audit.log.
        assert_eq!(
            files,
            vec![
                writer::rotated(&path, 3),
                writer::rotated(&path, 2),
                writer::rotated(&path, 1),
                path.clone()
            ]
        );
        let verified = read::verify_files(&files).unwrap().unwrap();
        assert_eq!(verified.last_seq, Some(40));
        // A missing middle file breaks the chain at the first line after it.
        std::fs::remove_file(writer::rotated(&path, 2)).unwrap();
        let files = read::log_files(&path).unwrap();
        let broken = read::verify_files(&files).unwrap().unwrap_err();
        assert_eq!((broken.file, broken.line), (writer::rotated(&path, 1), 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_without_a_gap() {
        let dir = temp_dir("retry");
        let path = dir.join("audit.log");
        let log = AuditLog::open(&config(&path)).unwrap();
        log.write(entry("SELECT 1")).await;
        assert!(log.flush().await);
        // The path turns into a directory: within its identity-check
        // interval the writer notices that the path names another file
        // (records until then go to the moved file), cannot open it, and
        // keeps the records.
        std::fs::rename(&path, writer::rotated(&path, 1)).unwrap();
        std::fs::create_dir(&path).unwrap();
        let mut written = 1u64;
        for _ in 0..200 {
            if !log.is_healthy() {
                break;
            }
            written += 1;
            log.write(entry(&format!("SELECT {written}"))).await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!log.is_healthy());
        assert!(log.write_errors.load(Ordering::Relaxed) >= 1);
        std::fs::remove_dir(&path).unwrap();
        assert!(log.flush().await);
        assert!(log.is_healthy());
        let files = read::log_files(&path).unwrap();
        let verified = read::verify_files(&files).unwrap().unwrap();
        assert_eq!(
            (verified.records, verified.last_seq),
            (written, Some(written))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
