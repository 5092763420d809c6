//! Reading the log back: the files of a rotated log in order, streamed line
//! by line in constant memory; the hash chain verified across them (naming
//! the first broken file and line); and the filters of `sqlguard audit`.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{GENESIS_HASH, HASH_FIELD, Record};

/// The files of the log at `path`, oldest first: `<path>.N` … `<path>.1`
/// (logrotate's names; compressed ones such as `.2.gz` are not read), then
/// `<path>` itself. An error if none exists.
pub fn log_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut rotated: Vec<(u64, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{name}.");
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(n) = file_name
                    .to_str()
                    .and_then(|f| f.strip_prefix(&prefix))
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                rotated.push((n, path.with_file_name(&file_name)));
            }
        }
    }
    rotated.sort_by(|a, b| b.0.cmp(&a.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    match std::fs::metadata(path) {
        Ok(_) => files.push(path.to_path_buf()),
        Err(e) if files.is_empty() => return Err(e),
        Err(_) => {}
    }
    Ok(files)
}

/// Calls `each(file, line_number, line)` for every line of `files` in order
/// (line numbers 1-based within each file, the newline removed), reading one
/// line at a time. Stops early when `each` returns `Some`.
pub fn each_line<T>(
    files: &[PathBuf],
    mut each: impl FnMut(&Path, usize, &[u8]) -> Option<T>,
) -> io::Result<Option<T>> {
    let mut buf = Vec::with_capacity(64 * 1024);
    for path in files {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
        let mut n = 0;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            n += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(stop) = each(path, n, line) {
                return Ok(Some(stop));
            }
        }
    }
    Ok(None)
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub file: PathBuf,
    /// 1-based, within `file`.
    pub line: usize,
    pub why: String,
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Keep it elsewhere: a log rewritten from some line on, hashes and all,
    /// no longer ends with it.
    pub last_hash: String,
}

/// Checks the hash of every line and its link (`prev_hash`, `seq`) to the
/// line before, across files. The first record may continue an earlier file
/// that is gone (rotated away); every later one must follow its predecessor.
pub fn verify_files(files: &[PathBuf]) -> io::Result<Result<Verified, Broken>> {
    let mut chain = Verifier::default();
    let broken = each_line(files, |file, line, text| {
        chain.line(text).err().map(|why| Broken {
            file: file.to_path_buf(),
            line,
            why,
        })
    })?;
    Ok(match broken {
        Some(b) => Err(b),
        None => Ok(chain.verified()),
    })
}

/// `verify_files` for one text in memory: `Ok(records)` or `Err((line, why))`.
pub fn verify(text: &str) -> Result<u64, (usize, String)> {
    let mut chain = Verifier::default();
    for (i, line) in text.lines().enumerate() {
        chain.line(line.as_bytes()).map_err(|why| (i + 1, why))?;
    }
    Ok(chain.verified().records)
}

/// The chain seen so far.
#[derive(Debug, Default)]
pub struct Verifier {
    prev: Option<(u64, [u8; 64])>,
    first_seq: Option<u64>,
    records: u64,
}

impl Verifier {
    /// Checks one line (without its newline). Blank lines are not records.
    pub fn line(&mut self, line: &[u8]) -> Result<(), String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| "not UTF-8 text".to_string())?;
        let at = line
            .rfind(HASH_FIELD)
            .ok_or("no hash field (not an audit record, or a line cut short)")?;
        let (body, tail) = line.split_at(at);
        let stored = tail[HASH_FIELD.len()..]
            .strip_suffix("\"}")
            .filter(|h| h.len() == 64)
            .ok_or("the hash field is not the last field of the line")?;
        let mut computed = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(body.as_bytes()), &mut computed)
            .map_err(|e| e.to_string())?;
        if computed != stored.as_bytes() {
            return Err("hash does not match the record (the line was edited)".into());
        }
        #[derive(serde::Deserialize)]
        struct Link<'a> {
            seq: u64,
            #[serde(borrow)]
            prev_hash: &'a str,
        }
        let link: Link =
            serde_json::from_str(line).map_err(|e| format!("not an audit record: {e}"))?;
        match &self.prev {
            Some((seq, hash)) => {
                if link.prev_hash.as_bytes() != hash {
                    return Err("prev_hash does not match the previous record (a record before this line was deleted, or lines were reordered)".into());
                }
                if link.seq != seq + 1 {
                    return Err(format!("seq {} follows seq {seq}", link.seq));
                }
            }
            None => {
                if link.seq == 1 && link.prev_hash != GENESIS_HASH {
                    return Err("the first record (seq 1) does not start the chain".into());
                }
                self.first_seq = Some(link.seq);
            }
        }
        self.prev = Some((link.seq, computed));
        self.records += 1;
        Ok(())
    }

    pub fn verified(&self) -> Verified {
        Verified {
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.prev.map(|(seq, _)| seq),
            last_hash: match &self.prev {
                Some((_, hash)) => String::from_utf8_lossy(hash).into_owned(),
                None => GENESIS_HASH.to_string(),
            },
        }
    }
}

/// What `sqlguard audit` shows.
#[derive(Debug, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub tenant: Option<u64>,
    pub decision: Option<String>,
    pub since: Option<Duration>,
}

impl Filter {
    pub fn matches(&self, record: &Record, now: SystemTime) -> bool {
        if self.user.as_deref().is_some_and(|u| u != record.user) {
            return false;
        }
        if self.tenant.is_some() && self.tenant != record.tenant_id {
            return false;
        }
        if self
            .decision
            .as_deref()
            .is_some_and(|d| d != record.decision)
        {
            return false;
        }
        if let Some(since) = self.since {
            let cutoff =
                super::rfc3339_micros(now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH));
            // RFC 3339 timestamps in UTC with fixed width sort as text.
            if record.ts < cutoff {
                return false;
            }
        }
        true
    }
}
