//! The end-to-end benchmark (scripts/bench.sh) cannot rot unnoticed: its
//! shell and Python parse, its configuration loads with the limits raised,
//! the sysbench policy's cases pass, the report reads sysbench's output, and
//! the Clawdbot workload's SQL for direct and HAProxy is exactly what the
//! guard forwards for the bot's SQL (so all targets do the same database
//! work). Cheap: no database, no release build, no load.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlguard::config::{self, Config, Overrides};
use sqlguard::guard::{self, Decision, SessionContext};
use sqlguard::policy_tests;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bench_dir() -> PathBuf {
    root().join("scripts/bench")
}

fn bench_config() -> Config {
    let overrides = Overrides {
        skip_backend_password: true,
        ..Overrides::default()
    };
    config::load(&bench_dir().join("proxy.toml"), &overrides)
        .unwrap_or_else(|e| panic!("scripts/bench/proxy.toml: {e}"))
}

/// Runs a command and returns its stdout; panics with its output on failure.
fn run(cmd: &mut Command, what: &str) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn script_and_report_parse() {
    run(
        Command::new("bash")
            .arg("-n")
            .arg(root().join("scripts/bench.sh")),
        "bash -n scripts/bench.sh",
    );
    // Compiles to memory only: no __pycache__ left in the repository.
    let report = bench_dir().join("report.py");
    run(
        Command::new("python3")
            .arg("-c")
            .arg("import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')")
            .arg(&report),
        "python3 (compile scripts/bench/report.py)",
    );
}

#[test]
fn config_raises_every_limit_the_benchmark_would_hit() {
    let config = bench_config();
    // 1,000 idle clients, each pinning one backend connection.
    assert!(config.listen.max_connections > 1000);
    assert!(config.backend.pool_size > 1000);
    for user in &config.users {
        let limits = &user.limits;
        assert!(limits.max_user_connections > 1000, "{}", user.name);
        // Far above what 8 sysbench threads can send on this machine.
        assert!(limits.statements_per_second >= 1e6, "{}", user.name);
        assert!(limits.statement_burst >= 1_000_000, "{}", user.name);
        assert!(limits.max_concurrent_statements >= 8, "{}", user.name);
        // The memory phase streams exactly 1,000,000 rows.
        assert!(limits.max_result_rows > 1_000_000, "{}", user.name);
    }
    let names: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["sysbench", "clawdbot"]);
}

#[test]
fn sysbench_policy_allows_what_sysbench_sends_without_clamping() {
    let dir = bench_dir().join("policies");
    let path = policy_tests::tests_path(&dir, "sysbench");
    let (report, _) = policy_tests::run_path(&path, &dir, false)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(report.passed() >= 8, "{} cases passed", report.passed());
    assert_eq!(
        report.failed(),
        0,
        "sqlguard test-policy --config scripts/bench/proxy.toml sysbench:\n{}",
        report.failure_lines().join("\n")
    );
}

/// The statements of `clawdbot.lua dump` in one SQL form.
fn clawdbot_statements(form: &str) -> Vec<String> {
    let stdout = run(
        Command::new("sysbench")
            .arg(bench_dir().join("clawdbot.lua"))
            .arg(format!("--sql_form={form}"))
            .arg("dump"),
        "sysbench clawdbot.lua dump (apt-get install sysbench; .ci/run installs it)",
    );
    // sysbench prints its banner first.
    stdout
        .lines()
        .filter(|l| {
            ["SELECT ", "INSERT ", "UPDATE "]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn clawdbot_workload_sends_direct_what_the_guard_forwards() {
    let bot = clawdbot_statements("bot");
    let app = clawdbot_statements("app");
    assert_eq!(
        bot.len(),
        app.len(),
        "both forms dump the same conversations"
    );
    // 20 conversations of 8 to 10 statements, some with an order.
    assert!(bot.len() >= 160, "{} statements", bot.len());
    assert!(bot.iter().any(|s| s.starts_with("INSERT INTO orders")));
    assert!(bot.iter().any(|s| s.starts_with("UPDATE orders")));

    let config = bench_config();
    let user = config
        .users
        .iter()
        .find(|u| u.name == "clawdbot")
        .expect("the bench config has the clawdbot user");
    assert_eq!(
        user.policy.name, "clawdbot",
        "the bot's own policy, not a bench copy"
    );
    let ctx = SessionContext {
        user: &user.name,
        tenant_id: user.tenant_id,
        database: &config.backend.database,
        policy: &user.policy,
    };
    for (bot_sql, app_sql) in bot.iter().zip(&app) {
        match guard::check(bot_sql, &ctx) {
            Decision::Allow { sql, .. } => assert_eq!(
                sql.as_str(),
                app_sql,
                "the direct/HAProxy form of\n  {bot_sql}\nmust be what sqlguard forwards"
            ),
            other => panic!("the bot's statement is not allowed: {bot_sql}\n{other:?}"),
        }
    }
}

#[test]
fn report_reads_sysbench_output() {
    let sample = root().join("tests/data/bench/sysbench-point-select.txt");
    let stdout = run(
        Command::new("python3")
            .arg(bench_dir().join("report.py"))
            .arg("sysbench")
            .arg(&sample),
        "python3 scripts/bench/report.py sysbench",
    );
    let run: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let field = |k: &str| run[k].as_f64().unwrap_or_else(|| panic!("{k} in {stdout}"));
    // The sample (a real run of oltp_point_select, 8 threads, --histogram=on)
    // and its own summary lines.
    assert_eq!(field("queries"), 35974.0);
    assert_eq!(field("qps"), 11971.58);
    assert_eq!(field("errors"), 0.0);
    // sysbench printed "95th percentile: 1.23" (ms, two decimals) from the
    // same histogram; report.py reads the bucket value with three.
    let p95 = field("p95_ms");
    assert!((p95 - 1.23).abs() < 0.006, "p95 {p95}");
    assert!(field("p50_ms") <= p95 && p95 <= field("p99_ms"));
}

#[test]
fn policy_dir_links_to_the_bots_real_policy() {
    // The Clawdbot workload runs under policies/clawdbot.toml itself.
    let link = bench_dir().join("policies/clawdbot.toml");
    let target = std::fs::canonicalize(&link).expect("scripts/bench/policies/clawdbot.toml");
    assert_eq!(
        target,
        std::fs::canonicalize(Path::new(&root()).join("policies/clawdbot.toml")).unwrap()
    );
}
