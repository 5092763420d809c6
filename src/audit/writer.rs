//! The audit writer: one thread owns the file. It takes entries from the
//! bounded queue in arrival order, gives each its `seq` and hash, and writes
//! them in batches (one write per batch, when the queue drains). A failed
//! write is retried with the very same bytes, so the chain never has a gap;
//! meanwhile the proxy is unhealthy and statements are refused. It also
//! rotates the file (by size, on SIGHUP, or when the path was moved away).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::{AuditError, Entry, GENESIS_HASH, HASH_FIELD, QUEUE_CAPACITY, Record};
use crate::config::AuditConfig;

/// A batch is written once the queue is empty or it holds this many bytes.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// After a write the writer sleeps this long before it looks at the queue
/// again, so records arriving meanwhile join one batch and their sessions
/// need not wake the thread. Without it a busy proxy paid a thread wake-up,
/// a write and a stat per statement (measured: a fifth of the proxy's CPU at
/// 10k statements/s); with it, at most one of each per millisecond. Records
/// reach the file at most this much later; sessions never wait for it.
const LINGER: Duration = Duration::from_millis(1);
/// How often the writer checks that the path still names its file (a
/// logrotate without SIGHUP): a stat per batch was a syscall per statement.
const IDENTITY_CHECK_EVERY: Duration = Duration::from_millis(250);
/// Retry delays while the log cannot be written.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(1);
/// A flush (shutdown) waits this long for a failing log before it gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

pub enum Msg {
    Record(Box<Entry>, SystemTime),
    /// Answer once everything queued before it is written and fsynced.
    Flush(oneshot::Sender<bool>),
    /// Look at the reopen flag now (SIGHUP).
    Wake,
}

/// What the sessions and the writer share.
pub struct State {
    pub healthy: AtomicBool,
    pub reopen: AtomicBool,
}

impl Default for State {
    fn default() -> Self {
        State {
            healthy: AtomicBool::new(true),
            reopen: AtomicBool::new(false),
        }
    }
}

/// Marks the log unhealthy if the writer thread ends for any reason
/// (including a panic), so no statement runs unaudited afterwards.
struct Unhealthy(Arc<State>);

impl Drop for Unhealthy {
    fn drop(&mut self) {
        self.0.healthy.store(false, Ordering::Release);
    }
}

/// Starts the writer thread for `path`; returns the queue's sending side.
pub fn start(
    config: &AuditConfig,
    path: &Path,
    state: Arc<State>,
    records: Arc<AtomicU64>,
    write_errors: Arc<AtomicU64>,
) -> Result<mpsc::Sender<Msg>, AuditError> {
    let (seq, last_hash) = last_link(path);
    let mut writer = Writer {
        path: path.to_path_buf(),
        file: None,
        identity: None,
        identity_checked: Instant::now(),
        good_len: 0,
        rotate_bytes: config.rotate_bytes,
        rotate_keep: config.rotate_keep,
        next_rotation: config.rotate_bytes,
        seq,
        last_hash,
        pending: Vec::with_capacity(64 * 1024),
        pending_records: 0,
        waiting: Vec::new(),
        state,
        records,
        write_errors,
    };
    // Open now, so a path that cannot be opened at all stops the start-up.
    writer.open().map_err(|source| AuditError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let (queue, inbox) = mpsc::channel(QUEUE_CAPACITY);
    std::thread::Builder::new()
        .name("sqlguard-audit".into())
        .spawn(move || writer.run(inbox))
        .map_err(AuditError::Spawn)?;
    Ok(queue)
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of `file`: if the path names another file (moved by
    /// logrotate, replaced), the writer opens the path again.
    identity: Option<(u64, u64)>,
    identity_checked: Instant,
    /// Length of `file` after the last successful write: a failed write may
    /// have left part of a batch, which is cut off before the retry.
    good_len: u64,
    rotate_bytes: Option<u64>,
    rotate_keep: usize,
    next_rotation: Option<u64>,
    seq: u64,
    last_hash: String,
    /// Sealed lines not written yet.
    pending: Vec<u8>,
    pending_records: u64,
    /// Flushes waiting for `pending` to be written.
    waiting: Vec<oneshot::Sender<bool>>,
    state: Arc<State>,
    records: Arc<AtomicU64>,
    write_errors: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut inbox: mpsc::Receiver<Msg>) {
        let _unhealthy_on_exit = Unhealthy(self.state.clone());
        let mut closed = false;
        let mut failing_since = None::<Instant>;
        let mut retry = FIRST_RETRY;
        loop {
            // While failing, retry even if nothing new arrives (the path may
            // be writable again before the next client speaks).
            if self.pending.is_empty() && self.waiting.is_empty() && failing_since.is_none() {
                if closed {
                    break;
                }
                match inbox.blocking_recv() {
                    Some(msg) => self.take(msg),
                    None => closed = true,
                }
            }
            // Everything queued meanwhile joins the batch.
            let mut full = false;
            while !closed {
                if self.pending.len() >= MAX_BATCH_BYTES {
                    full = true;
                    break;
                }
                match inbox.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            match self.write_pending() {
                Ok(()) => {
                    if failing_since.take().is_some() {
                        tracing::warn!("the audit log can be written again; statements run again");
                    }
                    retry = FIRST_RETRY;
                    self.state.healthy.store(true, Ordering::Release);
                    if !closed && !full {
                        std::thread::sleep(LINGER);
                    }
                }
                Err(e) => {
                    self.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.state.healthy.store(false, Ordering::Release);
                    let since = *failing_since.get_or_insert_with(|| {
                        tracing::error!(
                            path = %self.path.display(), error = %e,
                            "cannot write the audit log; statements are refused until it can be written"
                        );
                        Instant::now()
                    });
                    if since.elapsed() >= GIVE_UP_AFTER {
                        for done in self.waiting.drain(..) {
                            let _ = done.send(false);
                        }
                        if closed {
                            tracing::error!(
                                path = %self.path.display(), error = %e, records = self.pending_records,
                                "giving up: these audit records were never written"
                            );
                            return;
                        }
                    }
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
        if let Some(file) = &self.file {
            let _ = file.sync_all();
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Record(entry, at) => self.seal(*entry, at),
            Msg::Flush(done) => self.waiting.push(done),
            Msg::Wake => {}
        }
    }

    /// Gives the entry the next seq, links it to the last hash, and appends
    /// its line to the batch.
    fn seal(&mut self, entry: Entry, at: SystemTime) {
        let redact = entry
            .policy
            .as_deref()
            .map(|p| p.redact.as_slice())
            .unwrap_or(&[]);
        let sql = super::redact::sql(entry.sql, redact);
        let executed_sql = super::redact::sql(entry.executed_sql, redact);
        let record = Record {
            ts: super::rfc3339_micros(at),
            seq: self.seq + 1,
            conn_id: entry.conn_id,
            user: entry.user,
            tenant_id: entry.tenant_id,
            client_addr: entry.client_addr,
            command: entry.command.to_string(),
            kind: entry.kind.to_string(),
            decision: entry.decision.to_string(),
            rule: entry.rule.map(str::to_string),
            message: entry.message,
            sql,
            executed_sql,
            params: entry.params,
            rewrites: entry.rewrites,
            policy_version: entry.policy_version.map(|v| v.to_string()),
            rows: entry.rows,
            cache: entry.cache.map(str::to_string),
            duration_us: entry.duration_us,
            backend_us: entry.backend_us,
            prev_hash: std::mem::take(&mut self.last_hash),
        };
        match super::seal(&record) {
            Some((line, hash)) => {
                self.pending.extend_from_slice(line.as_bytes());
                self.pending_records += 1;
                self.seq = record.seq;
                self.last_hash = hash;
            }
            None => {
                // Serializing plain strings and numbers cannot fail; if it
                // ever did, the chain stays as it was and the failure counts.
                self.last_hash = record.prev_hash;
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(seq = record.seq, "cannot serialize an audit record");
            }
        }
    }

    /// Writes the batch (opening the path again first if asked to or if it
    /// names another file now), answers waiting flushes, rotates by size.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.state.reopen.swap(false, Ordering::AcqRel) {
            tracing::info!(path = %self.path.display(), "reopening the audit log");
            self.close();
        } else if self.file.is_some()
            && (self.identity_check_due() || self.rotation_follows())
            && !self.still_at_path()
        {
            tracing::info!(path = %self.path.display(), "the audit log was moved; opening the path again");
            self.close();
        }
        if self.file.is_none() {
            self.open()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no audit file"));
        };
        if !self.pending.is_empty() {
            if let Err(e) = file.write_all(&self.pending) {
                // Closed, so the retry opens the path again and cuts off
                // whatever part of the batch reached the file.
                self.file = None;
                return Err(e);
            }
            self.good_len += self.pending.len() as u64;
            self.state.healthy.store(true, Ordering::Release);
            self.records
                .fetch_add(self.pending_records, Ordering::Relaxed);
            self.pending.clear();
            self.pending_records = 0;
        }
        // Rotated before a flush is answered, so whoever flushed sees the files
        // as they stay (rotation fsyncs the file it closes).
        let mut synced = true;
        if self.next_rotation.is_some_and(|at| self.good_len >= at) {
            self.rotate();
        } else if !self.waiting.is_empty() {
            synced = file.sync_data().is_ok();
        }
        for done in self.waiting.drain(..) {
            let _ = done.send(synced);
        }
        Ok(())
    }

    /// This batch will make the file reach `rotate_bytes`: rotation renames
    /// by path, so the path must still name the open file.
    fn rotation_follows(&self) -> bool {
        self.next_rotation
            .is_some_and(|at| self.good_len + self.pending.len() as u64 >= at)
    }

    fn identity_check_due(&mut self) -> bool {
        let due = self.identity_checked.elapsed() >= IDENTITY_CHECK_EVERY;
        if due {
            self.identity_checked = Instant::now();
        }
        due
    }

    fn still_at_path(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| Some((m.dev(), m.ino())) == self.identity)
    }

    fn close(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = file.sync_all();
        }
    }

    /// Opens (or creates) the path for appending. If it is the file a failed
    /// write left part of a batch in, that part is cut off first.
    fn open(&mut self) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::other("the audit log path is a directory"));
        }
        let identity = (meta.dev(), meta.ino());
        if meta.is_file() {
            if self.identity == Some(identity) && meta.len() > self.good_len {
                file.set_len(self.good_len)?;
            } else if self.identity != Some(identity) {
                self.good_len = meta.len();
                // A line cut short (a crash mid-write) stays visible to
                // --verify; the next record starts on a line of its own.
                if ends_without_newline(&mut file, meta.len())? {
                    file.write_all(b"\n")?;
                    self.good_len += 1;
                }
            }
        }
        self.identity = Some(identity);
        self.file = Some(file);
        Ok(())
    }

    /// `<path>` becomes `<path>.1`, `.1` becomes `.2`, ..., the oldest
    /// beyond `rotate_keep` is deleted (logrotate's naming). A failure is
    /// logged and retried after another `rotate_bytes`; records keep going
    /// to the current file meanwhile.
    fn rotate(&mut self) {
        self.close();
        let result = (|| -> io::Result<()> {
            remove_if_exists(&rotated(&self.path, self.rotate_keep))?;
            for n in (1..self.rotate_keep).rev() {
                rename_if_exists(&rotated(&self.path, n), &rotated(&self.path, n + 1))?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))
        })();
        if let Err(e) = &result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot rotate the audit log");
        }
        self.next_rotation = self.rotate_bytes.map(|b| {
            if result.is_ok() {
                b
            } else {
                self.good_len.saturating_add(b)
            }
        });
        if result.is_ok() {
            self.identity = None;
            self.good_len = 0;
            // The new file exists at once (a failure is retried by the next write).
            let _ = self.open();
        }
    }
}

/// `<path>.<n>`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn ends_without_newline(file: &mut File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The seq and hash of the last record of an existing log, or of `<path>.1`
/// if the log is empty (rotated just before a restart); genesis if none.
fn last_link(path: &Path) -> (u64, String) {
    for candidate in [path.to_path_buf(), rotated(path, 1)] {
        if let Some(link) = last_line(&candidate).and_then(|line| link_of(&line)) {
            return link;
        }
    }
    (0, GENESIS_HASH.to_string())
}

fn link_of(line: &str) -> Option<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct Link {
        seq: u64,
        hash: String,
    }
    let link: Link = serde_json::from_str(line).ok()?;
    // The hash field is written last; anything else is not our line.
    line.rfind(HASH_FIELD)?;
    Some((link.seq, link.hash))
}

/// The last complete, non-empty line of a regular file, read from the end
/// (a 1 GB log is not read through at start-up).
fn last_line(path: &Path) -> Option<String> {
    // Only a regular file has a chain to continue (a device such as
    // /dev/full would read forever).
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut file = File::open(path).ok()?;
    let len = meta.len();
    let mut chunk = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut tail = Vec::new();
        (&mut file).take(len - start).read_to_end(&mut tail).ok()?;
        // Only complete lines: a trailing piece without its newline is no link.
        let complete = match tail.iter().rposition(|&b| b == b'\n') {
            Some(end) => &tail[..end],
            None if start == 0 => return None,
            None => {
                chunk = chunk.saturating_mul(4);
                continue;
            }
        };
        let pieces: Vec<&[u8]> = complete.split(|&b| b == b'\n').collect();
        for (i, piece) in pieces.iter().enumerate().rev() {
            if piece.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if i == 0 && start > 0 {
                // May be the end of a longer line: read more.
                break;
            }
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            return String::from_utf8(piece.to_vec()).ok();
        }
        if start == 0 {
            return None;
        }
        chunk = chunk.saturating_mul(4);
    }
}
