//! Policy test cases: `policies/<name>.tests.toml` beside a policy (and the
//! golden corpus in `tests/golden/`), run through [`guard::check`].
//!
//! # Format
//!
//! ```toml
//! # Optional: the policy (file stem in policies/). Default: the file's stem,
//! # without `.tests` (`clawdbot.tests.toml` -> `clawdbot`).
//! policy = "clawdbot"
//!
//! # --- groups are ordinary TOML comments; bless keeps them
//! [[case]]
//! sql = "SELECT name FROM products"          # the client's text
//! tenant = 2                                 # optional, default 1
//! decision = "allow"                         # "allow" | "local" | "deny"
//! sql_out = "SELECT name FROM products ..."  # allow: the exact forwarded SQL
//! comment = "why this case exists"           # optional
//!
//! [[case]]
//! sql = "DELETE FROM orders WHERE id = '...'"
//! decision = "deny"
//! rule = "statement_not_allowed"             # deny: Rule::name()
//!
//! [[case]]                                    # an engine bug, reported, not blessed:
//! sql = "..."                                 # expected to fail until fixed; it fails
//! decision = "deny"                           # (strictly) once it passes, so the
//! rule = "tenant_scope"                       # marker gets removed
//! known_issue = "why the engine's current answer is wrong"
//! ```
//!
//! `decision = "local"` is [`Decision::LocalOk`]: answered by sqlguard, not
//! forwarded. An allow without `sql_out` or a deny without `rule` fails with
//! "no expectation" until blessed. Every statement runs as user `policy-test`
//! on database [`DATABASE`].
//!
//! [`bless`] rewrites `decision`, `sql_out` and `rule` from what the guard
//! answers now, keeping everything else (order, `sql`, `tenant`, `comment`,
//! TOML comments and layout); cases with `known_issue` are left as written.

use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, value};

use crate::guard::{self, Decision, SessionContext};
use crate::policy::{Policy, PolicyError};

/// The database every case runs against.
pub const DATABASE: &str = "shop";
/// The tenant of a case that names none.
pub const DEFAULT_TENANT: u64 = 1;
/// The user name cases run as (it only appears in messages).
pub const USER: &str = "policy-test";
/// Suffix of a policy's own test file: `policies/<name>.tests.toml`.
pub const TESTS_SUFFIX: &str = ".tests.toml";

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Forwarded; `None` until blessed.
    Allow { sql_out: Option<String> },
    /// Answered by sqlguard itself.
    Local,
    /// Refused; `None` until blessed.
    Deny { rule: Option<String> },
}

/// One `[[case]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// 1-based position in the file.
    pub number: usize,
    /// 1-based line of its `[[case]]` header.
    pub line: usize,
    pub sql: String,
    pub tenant: u64,
    pub expected: Expected,
    pub comment: Option<String>,
    pub known_issue: Option<String>,
}

/// A parsed test file; keeps the document so [`bless`] can rewrite it in place.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The `policy` key, if the file names its policy.
    pub policy: Option<String>,
    pub cases: Vec<Case>,
    doc: DocumentMut,
}

/// What the guard answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actual {
    Allow { sql: String },
    Local,
    Deny { rule: String, message: String },
}

impl Actual {
    pub fn of(decision: &Decision) -> Actual {
        match decision {
            Decision::Allow { sql, .. } => Actual::Allow {
                sql: sql.as_str().to_string(),
            },
            Decision::LocalOk { .. } => Actual::Local,
            Decision::Deny(denial) => Actual::Deny {
                rule: denial.rule.name().to_string(),
                message: denial.client_message(),
            },
        }
    }

    fn decision_name(&self) -> &'static str {
        match self {
            Actual::Allow { .. } => "allow",
            Actual::Local => "local",
            Actual::Deny { .. } => "deny",
        }
    }
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actual::Allow { sql } => write!(f, "allow: {sql}"),
            Actual::Local => f.write_str("local (answered by sqlguard)"),
            Actual::Deny { rule, message } => write!(f, "deny ({rule}): {message}"),
        }
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The guard's answer differs; the text explains how.
    Fail(String),
    /// Failed as recorded in `known_issue`.
    KnownIssue(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    pub actual: Actual,
    pub outcome: Outcome,
}

/// The results of one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run (a path, for messages).
    pub source: String,
    pub policy: String,
    pub results: Vec<CaseResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Pass))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }

    pub fn known_issues(&self) -> usize {
        self.count(|o| matches!(o, Outcome::KnownIssue(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
    }

    /// One line per failure: `path:line: case N (tenant T): SQL: what differs`
    /// (the explanation may continue on indented lines).
    pub fn failure_lines(&self) -> Vec<String> {
        self.failures()
            .map(|r| {
                let Outcome::Fail(why) = &r.outcome else {
                    unreachable!()
                };
                format!(
                    "{}:{}: case {} (tenant {}): {}\n{}",
                    self.source,
                    r.case.line,
                    r.case.number,
                    r.case.tenant,
                    one_line(&r.case.sql),
                    indent(why)
                )
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {}", .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

const CASE_KEYS: &[&str] = &[
    "sql",
    "tenant",
    "decision",
    "sql_out",
    "rule",
    "comment",
    "known_issue",
];
const TOP_KEYS: &[&str] = &["policy", "description", "case"];

impl TestFile {
    /// Parses test-file text; every problem is reported as `case N (line L): problem`.
    pub fn parse(text: &str) -> Result<TestFile, Vec<String>> {
        let doc: DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| vec![e.to_string().trim().to_string()])?;
        let mut problems = Vec::new();
        for (key, _) in doc.iter() {
            if !TOP_KEYS.contains(&key) {
                problems.push(format!(
                    "unknown key {key:?} (known: policy, description, [[case]])"
                ));
            }
        }
        let policy = match doc.get("policy") {
            None => None,
            Some(item) => match item.as_str() {
                Some(p) => Some(p.to_string()),
                None => {
                    problems.push("policy: must be a string (a file stem in policies/)".into());
                    None
                }
            },
        };
        let lines = case_header_lines(text);
        let mut cases = Vec::new();
        match doc.get("case") {
            None => {}
            Some(item) => match item.as_array_of_tables() {
                None => problems.push("case: write each case as a [[case]] table".into()),
                Some(tables) => {
                    for (i, table) in tables.iter().enumerate() {
                        let line = lines.get(i).copied().unwrap_or(0);
                        match parse_case(i + 1, line, table) {
                            Ok(case) => cases.push(case),
                            Err(p) => problems.extend(
                                p.into_iter()
                                    .map(|p| format!("case {} (line {line}): {p}", i + 1)),
                            ),
                        }
                    }
                }
            },
        }
        if problems.is_empty() {
            Ok(TestFile { policy, cases, doc })
        } else {
            Err(problems)
        }
    }

    pub fn load(path: &Path) -> Result<TestFile, TestFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TestFile::parse(&text).map_err(|problems| TestFileError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// The policy this file tests: its `policy` key, else the file stem of
    /// `path` without `.tests.toml` / `.toml`.
    pub fn policy_name(&self, path: &Path) -> Option<String> {
        self.policy.clone().or_else(|| policy_name_from_path(path))
    }
}

/// `policies/clawdbot.tests.toml` -> `clawdbot`; `tests/golden/clawdbot.toml` -> `clawdbot`.
pub fn policy_name_from_path(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(TESTS_SUFFIX)
        .or_else(|| file.strip_suffix(".toml"))?;
    (!stem.is_empty()).then(|| stem.to_string())
}

/// The test file of a policy: `<policies dir>/<name>.tests.toml`.
pub fn tests_path(policy_dir: &Path, name: &str) -> PathBuf {
    policy_dir.join(format!("{name}{TESTS_SUFFIX}"))
}

fn case_header_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix("[[")
                .map(|rest| {
                    rest.trim_start()
                        .strip_prefix("case")
                        .is_some_and(|r| r.trim_start().starts_with("]]"))
                })
                .unwrap_or(false)
        })
        .map(|(i, _)| i + 1)
        .collect()
}

fn parse_case(number: usize, line: usize, table: &Table) -> Result<Case, Vec<String>> {
    let mut problems = Vec::new();
    for (key, _) in table.iter() {
        if !CASE_KEYS.contains(&key) {
            problems.push(format!(
                "unknown key {key:?} (known: {})",
                CASE_KEYS.join(", ")
            ));
        }
    }
    let string = |key: &str, problems: &mut Vec<String>| -> Option<String> {
        let item = table.get(key)?;
        match item.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                problems.push(format!("{key}: must be a string"));
                None
            }
        }
    };
    let sql = string("sql", &mut problems);
    if sql.is_none() && !table.contains_key("sql") {
        problems.push("sql: missing".into());
    }
    let tenant = match table.get("tenant") {
        None => DEFAULT_TENANT,
        Some(item) => match item.as_integer() {
            Some(t) if t > 0 => t as u64,
            _ => {
                problems.push("tenant: must be a positive integer".into());
                DEFAULT_TENANT
            }
        },
    };
    let sql_out = string("sql_out", &mut problems);
    let rule = string("rule", &mut problems);
    let comment = string("comment", &mut problems);
    let known_issue = string("known_issue", &mut problems);
    let expected = match string("decision", &mut problems).as_deref() {
        Some("allow") => {
            if rule.is_some() {
                problems.push("rule: only for decision = \"deny\"".into());
            }
            Some(Expected::Allow { sql_out })
        }
        Some("local") => {
            if rule.is_some() || sql_out.is_some() {
                problems.push("decision = \"local\" takes neither sql_out nor rule".into());
            }
            Some(Expected::Local)
        }
        Some("deny") => {
            if sql_out.is_some() {
                problems.push("sql_out: only for decision = \"allow\"".into());
            }
            if let Some(r) = &rule {
                if !guard::Rule::ALL.iter().any(|k| k.name() == r) {
                    problems.push(format!("rule: no rule is named {r:?}"));
                }
            }
            Some(Expected::Deny { rule })
        }
        Some(other) => {
            problems.push(format!(
                "decision: {other:?} is not one of \"allow\", \"local\", \"deny\""
            ));
            None
        }
        None => {
            if !table.contains_key("decision") {
                problems.push("decision: missing (\"allow\", \"local\" or \"deny\")".into());
            }
            None
        }
    };
    match (sql, expected) {
        (Some(sql), Some(expected)) if problems.is_empty() => Ok(Case {
            number,
            line,
            sql,
            tenant,
            expected,
            comment,
            known_issue,
        }),
        _ => Err(problems),
    }
}

/// Runs one case's SQL as `tenant` under `policy`.
pub fn run_sql(sql: &str, tenant: u64, policy: &Policy) -> Actual {
    let ctx = SessionContext {
        user: USER,
        tenant_id: tenant,
        database: DATABASE,
        policy,
    };
    Actual::of(&guard::check(sql, &ctx))
}

/// Compares what a case expects with what the guard answered.
/// `None`: they agree; `Some(explanation)`: they do not.
pub fn compare(expected: &Expected, actual: &Actual) -> Option<String> {
    match (expected, actual) {
        (
            Expected::Allow {
                sql_out: Some(want),
            },
            Actual::Allow { sql },
        ) => (want != sql).then(|| diff_text(want, sql)),
        (Expected::Allow { sql_out: None }, Actual::Allow { sql }) => Some(format!(
            "no expectation: sql_out is missing (bless to record it)\n+ actual:   {sql}"
        )),
        (Expected::Local, Actual::Local) => None,
        (Expected::Deny { rule: Some(want) }, Actual::Deny { rule, message }) => (want != rule)
            .then(|| format!("- expected: deny ({want})\n+ actual:   deny ({rule}): {message}")),
        (Expected::Deny { rule: None }, Actual::Deny { rule, message }) => Some(format!(
            "no expectation: rule is missing (bless to record it)\n+ actual:   deny ({rule}): {message}"
        )),
        (expected, actual) => Some(format!(
            "- expected: {}\n+ actual:   {actual}",
            describe(expected)
        )),
    }
}

fn describe(expected: &Expected) -> String {
    match expected {
        Expected::Allow { sql_out: Some(s) } => format!("allow: {s}"),
        Expected::Allow { sql_out: None } => "allow".into(),
        Expected::Local => "local (answered by sqlguard)".into(),
        Expected::Deny { rule: Some(r) } => format!("deny ({r})"),
        Expected::Deny { rule: None } => "deny".into(),
    }
}

/// Two SQL texts, one above the other, with a caret under the first difference.
fn diff_text(want: &str, got: &str) -> String {
    let at = want
        .char_indices()
        .zip(got.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| want.len().min(got.len()));
    let column = want[..at].chars().count();
    format!(
        "- sql_out:  {want}\n+ actual:   {got}\n            {}^ first difference at character {}",
        " ".repeat(column),
        column + 1
    )
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs every case of `file` under `policy`.
pub fn run(file: &TestFile, policy: &Policy, source: &str) -> Report {
    let results = file
        .cases
        .iter()
        .map(|case| {
            let actual = run_sql(&case.sql, case.tenant, policy);
            let outcome = match (compare(&case.expected, &actual), &case.known_issue) {
                (None, None) => Outcome::Pass,
                (Some(why), None) => Outcome::Fail(why),
                (Some(why), Some(_)) => Outcome::KnownIssue(why),
                (None, Some(issue)) => Outcome::Fail(format!(
                    "known_issue now passes (remove the known_issue line): {issue}"
                )),
            };
            CaseResult {
                case: case.clone(),
                actual,
                outcome,
            }
        })
        .collect();
    Report {
        source: source.to_string(),
        policy: policy.name.clone(),
        results,
    }
}

/// One expectation that [`bless`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blessed {
    pub case: Case,
    pub before: String,
    pub after: String,
    /// The decision itself changed (allow <-> deny), not just its details:
    /// review these first.
    pub decision_changed: bool,
}

impl Blessed {
    /// What a bless changed in `path`, for a person to review.
    pub fn describe(&self, path: &Path) -> String {
        format!(
            "blessed {}:{}: case {}{}: {}\n    was: {}\n    now: {}",
            path.display(),
            self.case.line,
            self.case.number,
            if self.decision_changed {
                " (DECISION CHANGED)"
            } else {
                ""
            },
            self.case.sql,
            self.before,
            self.after
        )
    }
}

/// Rewrites the expectations of `file` from what the guard answers now under
/// `policy`. Returns the new text and what changed. `sql`, `tenant`, `comment`,
/// order and TOML comments are kept; `known_issue` cases are not touched.
pub fn bless(file: &TestFile, policy: &Policy) -> (String, Vec<Blessed>) {
    let mut doc = file.doc.clone();
    let mut changes = Vec::new();
    if let Some(tables) = doc.get_mut("case").and_then(Item::as_array_of_tables_mut) {
        for (table, case) in tables.iter_mut().zip(&file.cases) {
            if case.known_issue.is_some() {
                continue;
            }
            let actual = run_sql(&case.sql, case.tenant, policy);
            if compare(&case.expected, &actual).is_none() {
                continue;
            }
            let decision_changed = !matches!(
                (&case.expected, &actual),
                (Expected::Allow { .. }, Actual::Allow { .. })
                    | (Expected::Local, Actual::Local)
                    | (Expected::Deny { .. }, Actual::Deny { .. })
            );
            set_string(table, "decision", actual.decision_name());
            match &actual {
                Actual::Allow { sql } => {
                    table.remove("rule");
                    set_string(table, "sql_out", sql);
                }
                Actual::Local => {
                    table.remove("rule");
                    table.remove("sql_out");
                }
                Actual::Deny { rule, .. } => {
                    table.remove("sql_out");
                    set_string(table, "rule", rule);
                }
            }
            changes.push(Blessed {
                case: case.clone(),
                before: describe(&case.expected),
                after: actual.to_string(),
                decision_changed,
            });
        }
    }
    (doc.to_string(), changes)
}

/// Sets `key` keeping the key's position (and its comments) if it exists.
fn set_string(table: &mut Table, key: &str, text: &str) {
    match table.get_mut(key) {
        Some(item) if item.is_value() => {
            let decor = item.as_value().map(|v| v.decor().clone());
            *item = value(text);
            if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
                *v.decor_mut() = decor;
            }
        }
        _ => {
            table.insert(key, value(text));
        }
    }
}

/// Loads the test file at `path` and its policy from `policy_dir`.
pub fn load_with_policy(
    path: &Path,
    policy_dir: &Path,
) -> Result<(TestFile, Policy), TestFileError> {
    let file = TestFile::load(path)?;
    let Some(name) = file.policy_name(path) else {
        return Err(TestFileError::Invalid {
            path: path.to_path_buf(),
            problems: vec!["cannot tell which policy it tests: add policy = \"<name>\"".into()],
        });
    };
    let policy = Policy::load(&policy_dir.join(format!("{name}.toml")))?;
    Ok((file, policy))
}

/// Runs the file at `path` (or blesses it, writing it back, then runs it).
pub fn run_path(
    path: &Path,
    policy_dir: &Path,
    bless_it: bool,
) -> Result<(Report, Vec<Blessed>), TestFileError> {
    let (mut file, policy) = load_with_policy(path, policy_dir)?;
    let mut changes = Vec::new();
    if bless_it {
        let (text, blessed) = bless(&file, &policy);
        if !blessed.is_empty() {
            std::fs::write(path, &text).map_err(|source| TestFileError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            file = TestFile::parse(&text).map_err(|problems| TestFileError::Invalid {
                path: path.to_path_buf(),
                problems,
            })?;
        }
        changes = blessed;
    }
    let report = run(&file, &policy, &path.display().to_string());
    Ok((report, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"policy = "t"

# --- group one
[[case]]
sql = "SELECT 1"
decision = "allow"
sql_out = "SELECT 2"
comment = "kept"

# --- group two
[[case]]
sql = "DROP TABLE products"
tenant = 2
decision = "allow"

[[case]]
sql = "USE shop"
decision = "local"

[[case]]
sql = "DELETE FROM x"
decision = "deny"
rule = "parse_error"
known_issue = "left alone"
"#;

    fn policy() -> Policy {
        Policy::read_write("t")
    }

    #[test]
    fn parses_cases_with_lines() {
        let file = TestFile::parse(FILE).unwrap();
        assert_eq!(file.policy.as_deref(), Some("t"));
        assert_eq!(file.cases.len(), 4);
        assert_eq!(file.cases[0].line, 4);
        assert_eq!(file.cases[1].tenant, 2);
        assert_eq!(file.cases[0].comment.as_deref(), Some("kept"));
        assert_eq!(file.cases[2].expected, Expected::Local);
    }

    #[test]
    fn reports_mismatches_and_missing_expectations() {
        let file = TestFile::parse(FILE).unwrap();
        let report = run(&file, &policy(), "f.toml");
        assert_eq!(report.passed(), 1, "{:#?}", report.results);
        assert_eq!(report.failed(), 2);
        assert_eq!(report.known_issues(), 1);
        let lines = report.failure_lines().join("\n");
        assert!(
            lines.contains("f.toml:4: case 1 (tenant 1): SELECT 1"),
            "{lines}"
        );
        assert!(
            lines.contains("- sql_out:  SELECT 2\n    + actual:   SELECT 1"),
            "{lines}"
        );
        assert!(
            lines.contains("^ first difference at character 8"),
            "{lines}"
        );
        assert!(
            lines.contains("expected: allow\n    + actual:   deny (statement_not_allowed)"),
            "{lines}"
        );
    }

    #[test]
    fn bless_rewrites_expectations_and_keeps_the_rest() {
        let file = TestFile::parse(FILE).unwrap();
        let (text, changes) = bless(&file, &policy());
        assert_eq!(changes.len(), 2);
        assert!(!changes[0].decision_changed);
        assert!(changes[1].decision_changed);
        let again = TestFile::parse(&text).unwrap();
        assert_eq!(
            again.cases[0].expected,
            Expected::Allow {
                sql_out: Some("SELECT 1".into())
            }
        );
        assert_eq!(
            again.cases[1].expected,
            Expected::Deny {
                rule: Some("statement_not_allowed".into())
            }
        );
        assert_eq!(again.cases[1].tenant, 2);
        assert_eq!(again.cases[3].expected, file.cases[3].expected);
        assert_eq!(again.cases[3].known_issue, file.cases[3].known_issue);
        assert!(text.contains("# --- group one\n[[case]]"), "{text}");
        assert!(text.contains("# --- group two\n[[case]]"), "{text}");
        assert!(text.contains("comment = \"kept\""), "{text}");
        let report = run(&again, &policy(), "f.toml");
        assert_eq!(report.failed(), 0, "{:?}", report.failure_lines());
    }

    #[test]
    fn mistakes_are_reported() {
        let text = "polcy = \"x\"\n[[case]]\nsql = \"SELECT 1\"\ndecision = \"alow\"\n[[case]]\ndecision = \"deny\"\nrule = \"no_such_rule\"\nsqll = \"x\"\n";
        let problems = TestFile::parse(text).unwrap_err().join("\n");
        assert!(problems.contains("unknown key \"polcy\""), "{problems}");
        assert!(
            problems.contains("case 1 (line 2): decision: \"alow\""),
            "{problems}"
        );
        assert!(
            problems.contains("case 2 (line 5): unknown key \"sqll\""),
            "{problems}"
        );
        assert!(
            problems.contains("case 2 (line 5): sql: missing"),
            "{problems}"
        );
        assert!(
            problems.contains("no rule is named \"no_such_rule\""),
            "{problems}"
        );
    }

    #[test]
    fn policy_names_from_paths() {
        assert_eq!(
            policy_name_from_path(Path::new("policies/clawdbot.tests.toml")).as_deref(),
            Some("clawdbot")
        );
        assert_eq!(
            policy_name_from_path(Path::new("tests/golden/readonly.toml")).as_deref(),
            Some("readonly")
        );
    }
}
