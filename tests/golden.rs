//! The golden corpus (`tests/golden/*.toml`) and every policy's own test cases
//! (`policies/*.tests.toml`), run through the guard. Format: src/policy_tests.rs.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expectations from
//! the guard's current answers (bless); review the diff before committing it:
//! a blessed `sql_out` is a claim that the forwarded SQL is secure.

use std::path::{Path, PathBuf};

use sqlguard::policy_tests;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn blessing() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

fn run_all(paths: &[PathBuf]) {
    assert!(!paths.is_empty(), "no test files found");
    let policy_dir = root().join("policies");
    let bless = blessing();
    let (mut passed, mut failed, mut known) = (0, 0, 0);
    let mut out = String::new();
    for path in paths {
        let (report, changes) =
            policy_tests::run_path(path, &policy_dir, bless).unwrap_or_else(|e| panic!("{e}"));
        for change in &changes {
            eprintln!("{}", change.describe(path));
        }
        for line in report.failure_lines() {
            out.push_str(&format!("FAIL {line}\n"));
        }
        passed += report.passed();
        failed += report.failed();
        known += report.known_issues();
    }
    eprintln!("golden: {passed} passed, {failed} failed, {known} known issues");
    assert!(
        failed == 0,
        "{out}{failed} case(s) failed; if the new output is right, bless with UPDATE_GOLDEN=1 cargo test --test golden and review the diff"
    );
}

#[test]
fn golden_corpus() {
    run_all(&files(&root().join("tests/golden"), ".toml"));
}

#[test]
fn policy_test_cases() {
    run_all(&files(&root().join("policies"), policy_tests::TESTS_SUFFIX));
}
