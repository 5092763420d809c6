//! `sqlguard audit`: reads the log, filters it, and verifies the hash chain
//! (naming the first broken line).

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{GENESIS_HASH, HASH_FIELD, Record};

/// Checks every line's hash and its link to the previous one. `Ok(n)`: `n`
/// records, all intact. `Err((line, why))`: the first broken line (1-based).
pub fn verify(text: &str) -> Result<usize, (usize, String)> {
    let mut prev_hash = None::<String>;
    let mut prev_seq = None::<u64>;
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some(at) = line.rfind(HASH_FIELD) else {
            return Err((n, "no hash field".into()));
        };
        let (body, tail) = line.split_at(at);
        let stored = tail[HASH_FIELD.len()..].trim_end_matches("\"}");
        if hex::encode(Sha256::digest(body.as_bytes())) != stored {
            return Err((n, "hash does not match the record".into()));
        }
        let record: Record =
            serde_json::from_str(line).map_err(|e| (n, format!("not an audit record: {e}")))?;
        let expected_prev = prev_hash.as_deref().unwrap_or(GENESIS_HASH);
        // The first line of a log may continue an earlier (rotated) file.
        if prev_hash.is_some() && record.prev_hash != expected_prev {
            return Err((
                n,
                "prev_hash does not match the previous line (a line was removed or reordered)"
                    .into(),
            ));
        }
        if let Some(seq) = prev_seq {
            if record.seq != seq + 1 {
                return Err((n, format!("seq {} follows {seq}", record.seq)));
            }
        }
        prev_hash = Some(stored.to_string());
        prev_seq = Some(record.seq);
        count += 1;
    }
    Ok(count)
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
            let cutoff = super::rfc3339_micros(now - since);
            // RFC 3339 timestamps in UTC with fixed width sort as text.
            if record.ts < cutoff {
                return false;
            }
        }
        true
    }
}

/// One line for a person: time, user, decision, rule, statement.
pub fn human(record: &Record) -> String {
    let sql = record.sql.as_deref().unwrap_or("");
    let sql: String = sql.chars().take(160).collect();
    format!(
        "{} #{} conn {} {}@tenant {} {} {} {}{} {}",
        record.ts,
        record.seq,
        record.conn_id,
        record.user,
        record
            .tenant_id
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        record.command,
        record.kind,
        record.decision,
        record
            .rule
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        sql.replace('\n', " ")
    )
}
