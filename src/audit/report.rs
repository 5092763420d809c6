//! What `sqlguard audit` prints for a person: a table of records (one line
//! each, fixed widths so it streams) and `--summary`, a morning look at a
//! log (decisions, top denied rules, top tables, slowest statements) kept in
//! bounded memory however large the log.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Record;

const SQL_WIDTH: usize = 80;
const TOP: usize = 10;
/// Distinct table names counted by `--summary`; more are counted as "(other)".
const MAX_TABLES: usize = 10_000;

pub const TABLE_HEADER: &str =
    "TIME (UTC)           USER         TENANT  DECISION  RULE                      SQL";

/// One table row: time, user, tenant, decision, rule, SQL (truncated).
pub fn table_row(record: &Record) -> String {
    let time = record.ts.get(..19).unwrap_or(&record.ts).replace('T', " ");
    let tenant = record
        .tenant_id
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into());
    let what = record
        .sql
        .as_deref()
        .or(record.message.as_deref())
        .unwrap_or("");
    format!(
        "{time:<20} {:<12} {tenant:<7} {:<9} {:<25} {}",
        clip(&record.user, 12),
        record.decision,
        clip(record.rule.as_deref().unwrap_or("-"), 25),
        one_line(what, SQL_WIDTH),
    )
}

/// At most `width` characters, `…` marking a cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Whitespace runs (newlines included) as one space, then clipped.
fn one_line(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(width.min(text.len()));
    let mut count = 0;
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        if count + 1 >= width {
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// `--summary`, fed one record at a time.
#[derive(Debug, Default)]
pub struct Summary {
    records: u64,
    first_ts: Option<String>,
    last_ts: Option<String>,
    decisions: HashMap<String, u64>,
    commands: HashMap<String, u64>,
    denied_rules: HashMap<String, u64>,
    tables: HashMap<String, u64>,
    other_tables: u64,
    /// The slowest statements, slowest first (at most `TOP`).
    slowest: Vec<(u64, String)>,
}

impl Summary {
    pub fn add(&mut self, record: &Record) {
        self.records += 1;
        if self.first_ts.is_none() {
            self.first_ts = Some(record.ts.clone());
        }
        self.last_ts = Some(record.ts.clone());
        bump(&mut self.decisions, &record.decision);
        bump(&mut self.commands, &record.command);
        if record.decision == "deny" {
            bump(
                &mut self.denied_rules,
                record.rule.as_deref().unwrap_or("(none)"),
            );
        }
        let sql = record.executed_sql.as_deref().or(record.sql.as_deref());
        if let Some(sql) = sql {
            let mut seen: Vec<String> = Vec::new();
            for table in tables_named(sql) {
                if seen.contains(&table) {
                    continue;
                }
                if let Some(n) = self.tables.get_mut(&table) {
                    *n += 1;
                } else if self.tables.len() < MAX_TABLES {
                    self.tables.insert(table.clone(), 1);
                } else {
                    self.other_tables += 1;
                }
                seen.push(table);
            }
        }
        if record.command != "login"
            && (self.slowest.len() < TOP
                || self
                    .slowest
                    .last()
                    .is_some_and(|(d, _)| record.duration_us > *d))
        {
            let line = format!(
                "{:>10} us  {}  #{}  {}  {}",
                record.duration_us,
                record.ts.get(..19).unwrap_or(&record.ts).replace('T', " "),
                record.seq,
                clip(&record.user, 12),
                one_line(record.sql.as_deref().unwrap_or(""), SQL_WIDTH)
            );
            let at = self
                .slowest
                .partition_point(|(d, _)| *d >= record.duration_us);
            self.slowest.insert(at, (record.duration_us, line));
            self.slowest.truncate(TOP);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "records: {} ({} .. {})",
            self.records,
            self.first_ts.as_deref().unwrap_or("-"),
            self.last_ts.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "\nby decision:");
        for (name, n) in top(&self.decisions, usize::MAX) {
            let _ = writeln!(out, "  {name:<26} {n}");
        }
        let _ = writeln!(out, "\nby command:");
        for (name, n) in top(&self.commands, usize::MAX) {
            let _ = writeln!(out, "  {name:<26} {n}");
        }
        let _ = writeln!(out, "\ntop denied rules:");
        for (name, n) in top(&self.denied_rules, TOP) {
            let _ = writeln!(out, "  {name:<26} {n}");
        }
        let _ = writeln!(out, "\ntop tables (records naming them):");
        for (name, n) in top(&self.tables, TOP) {
            let _ = writeln!(out, "  {name:<26} {n}");
        }
        if self.other_tables > 0 {
            let _ = writeln!(out, "  {:<26} {}", "(other)", self.other_tables);
        }
        let _ = writeln!(out, "\nslowest statements:");
        for (_, line) in &self.slowest {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

/// Most frequent first, ties by name.
fn top(map: &HashMap<String, u64>, n: usize) -> Vec<(&str, u64)> {
    let mut all: Vec<(&str, u64)> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    all.truncate(n);
    all
}

/// Table names after FROM, JOIN, INTO and UPDATE (lowercase, without schema
/// or backticks). A quick scan, not a parse: enough for a summary.
pub fn tables_named(sql: &str) -> Vec<String> {
    let mut tables = Vec::new();
    let mut expect_table = false;
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' => {
                // Skip the string literal (backslash escapes, doubled quotes).
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == b {
                        if bytes.get(i + 1) == Some(&b) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                expect_table = false;
            }
            b'`' | b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let (word, next) = identifier_path(bytes, i);
                i = next;
                if expect_table {
                    // `UPDATE LOW_PRIORITY t`, `INSERT IGNORE INTO t`: keep looking.
                    if !is_modifier(&word) {
                        if !word.is_empty()
                            && !matches!(word.as_str(), "select" | "dual" | "lateral")
                        {
                            tables.push(word);
                        }
                        expect_table = false;
                    }
                } else {
                    expect_table = matches!(word.as_str(), "from" | "join" | "into" | "update");
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            _ => {
                expect_table = false;
                i += 1;
            }
        }
    }
    tables
}

/// A possibly qualified, possibly backquoted name starting at `i`: its last
/// part, lowercase, and the index after it.
fn identifier_path(bytes: &[u8], mut i: usize) -> (String, usize) {
    let mut last = String::new();
    loop {
        last.clear();
        if bytes.get(i) == Some(&b'`') {
            i += 1;
            while i < bytes.len() && bytes[i] != b'`' {
                last.push(bytes[i].to_ascii_lowercase() as char);
                i += 1;
            }
            i += 1;
        } else {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'$'))
            {
                last.push(bytes[i].to_ascii_lowercase() as char);
                i += 1;
            }
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            continue;
        }
        return (last, i);
    }
}

fn is_modifier(word: &str) -> bool {
    matches!(
        word,
        "low_priority" | "ignore" | "high_priority" | "delayed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        assert_eq!(
            tables_named("SELECT a FROM `shop`.`Products` p JOIN orders o ON 'from x' = o.id"),
            vec!["products", "orders"]
        );
        assert_eq!(
            tables_named("INSERT INTO customers (phone) VALUES ('update t')"),
            vec!["customers"]
        );
        assert_eq!(
            tables_named("SELECT * FROM (SELECT 1 FROM dual) t"),
            Vec::<String>::new()
        );
        assert_eq!(
            tables_named("UPDATE LOW_PRIORITY orders SET x = 1"),
            vec!["orders"]
        );
    }

    #[test]
    fn rows_are_one_line() {
        assert_eq!(one_line("SELECT\n  a,\tb  ", 80), "SELECT a, b");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(clip("clawdbot_tenant_two", 12), "clawdbot_te…");
    }
}
