//! The command line: `serve`, `demo`, `check`, `validate`, `hash-password`,
//! `test-policy`.
//! Each subcommand is a function returning an exit code; `main` only dispatches.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config, Overrides};
use crate::frontend::auth::NativePasswordHash;
use crate::frontend::listener;
use crate::guard::{self, Decision};
use crate::mariadb::PrivateMariaDb;

#[derive(Debug, Parser)]
#[command(
    name = "sqlguard",
    version,
    about = "A guarded SQL proxy for MariaDB: authenticates, checks and rewrites every statement before it reaches the database."
)]
pub struct Cli {
    /// Process log format on stderr (default: `log.format` of the config, else text).
    /// The level comes from SQLGUARD_LOG or RUST_LOG (default info).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<crate::logging::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the proxy in front of an existing database.
    Serve {
        #[arg(long, default_value = "proxy.toml")]
        config: PathBuf,
        /// Address to listen on (overrides listen.address).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// mysql://user@host:port/database (overrides backend.url).
        #[arg(long, value_name = "URL")]
        backend_url: Option<String>,
        /// Address for /metrics (overrides metrics.address).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
        /// Audit log path (overrides audit.path).
        #[arg(long, value_name = "PATH")]
        audit_log: Option<PathBuf>,
    },
    /// Start a private MariaDB with the demo data and serve the demo config in front of it.
    Demo {
        /// Address to listen on (default: listen.address of the demo proxy.toml).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Dry run: print the guard's decision and the SQL that would be forwarded.
    /// Exit 0 allow, 1 deny, 2 error.
    Check {
        #[arg(long, default_value = "proxy.toml")]
        config: PathBuf,
        /// The proxy user whose tenant and policy apply.
        #[arg(long)]
        user: String,
        /// The statement, or `-` (or nothing) to read it from stdin.
        sql: Option<String>,
    },
    /// Check the configuration and its policies.
    Validate {
        #[arg(long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Read a password on stdin and print its mysql_native_password hash.
    HashPassword,
    /// Read and filter the audit log (with its rotated files <file>.N, oldest
    /// first); --verify checks its hash chain. Exit 0 ok, 1 chain broken
    /// (--verify), 2 error (unreadable file, a line that is not a record).
    Audit {
        #[arg(long, default_value = "audit.log")]
        file: PathBuf,
        /// Check the hash chain across the files and name the first broken file and line.
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        tenant: Option<u64>,
        /// allow, deny or error.
        #[arg(long, value_parser = ["allow", "deny", "error"])]
        decision: Option<String>,
        /// Only records newer than this, e.g. 10m, 2h.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Print the matching records as JSON lines (as written, hashes included).
        #[arg(long, conflicts_with = "summary")]
        json: bool,
        /// Counts by decision and command, top denied rules, top tables, slowest statements.
        #[arg(long)]
        summary: bool,
    },
    /// Run each policy's test cases (`policies/<name>.tests.toml`).
    /// Exit 0 all pass, 1 failures, 2 error.
    TestPolicy {
        #[arg(long, default_value = "proxy.toml")]
        config: PathBuf,
        /// Rewrite the expectations from the guard's current answers.
        #[arg(long)]
        bless: bool,
        /// Policies to test (file stems in policies/); default: every policy the config's users name.
        names: Vec<String>,
    },
}

/// Runs a subcommand and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let log_format = cli.log_format;
    if !matches!(cli.command, Command::Serve { .. }) {
        crate::logging::init(log_format.unwrap_or_default());
    }
    match cli.command {
        Command::Serve {
            config,
            listen,
            backend_url,
            metrics_listen,
            audit_log,
        } => {
            let overrides = Overrides {
                listen,
                backend_url,
                metrics_listen,
                audit_log,
                ..Overrides::default()
            };
            let config = load_config(&config, &overrides)?;
            crate::logging::init(log_format.unwrap_or(config.log.format));
            serve(config).await
        }
        Command::Demo { listen } => demo(listen).await,
        Command::Check { config, user, sql } => check(&config, &user, sql),
        Command::Validate { config } => crate::validate::run(&config).await,
        Command::HashPassword => hash_password(),
        Command::Audit {
            file,
            verify,
            user,
            tenant,
            decision,
            since,
            json,
            summary,
        } => {
            let since = match since.as_deref().map(config::parse_duration) {
                None => None,
                Some(Some(d)) => Some(d),
                Some(None) => {
                    eprintln!("error: --since: not a duration (write e.g. 10m, 2h)");
                    return Ok(2);
                }
            };
            let filter = crate::audit::read::Filter {
                user,
                tenant,
                decision,
                since,
            };
            let output = if summary {
                AuditOutput::Summary
            } else if json {
                AuditOutput::Json
            } else {
                AuditOutput::Table
            };
            audit(&file, verify, &filter, output)
        }
        Command::TestPolicy {
            config,
            bless,
            names,
        } => test_policy(&config, bless, names),
    }
}

fn load_config(path: &Path, overrides: &Overrides) -> anyhow::Result<Config> {
    Ok(config::load(path, overrides)?)
}

async fn serve(config: Config) -> anyhow::Result<i32> {
    let proxy = listener::start(config)
        .await
        .context("cannot start listener")?;
    let token = proxy.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, finishing running statements");
        token.cancel();
    });
    proxy.wait().await;
    Ok(0)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The demo's backend password: only ever used between the proxy and its own
/// private, loopback-only MariaDB.
const DEMO_BACKEND_PASSWORD: &str = "sqlguard-demo-backend";

async fn demo(listen: Option<String>) -> anyhow::Result<i32> {
    eprintln!("starting a private MariaDB with the demo data...");
    let db = PrivateMariaDb::start().await?;
    db.load_demo(DEMO_BACKEND_PASSWORD).await?;

    let dir = std::env::temp_dir().join(format!("sqlguard-demo-{}", std::process::id()));
    let policy_dir = dir.join("policies");
    std::fs::create_dir_all(&policy_dir)
        .with_context(|| format!("cannot create {}", policy_dir.display()))?;
    for (stem, text) in crate::DEMO_POLICIES {
        std::fs::write(policy_dir.join(format!("{stem}.toml")), text)?;
    }
    let overrides = Overrides {
        listen,
        backend_url: Some(format!("mysql://sqlguard@127.0.0.1:{}/shop", db.port())),
        backend_password: Some(DEMO_BACKEND_PASSWORD.to_string()),
        audit_log: Some(dir.join("audit.log")),
        // Any free port: a second demo (or a real proxy) may hold 9187.
        metrics_listen: Some("127.0.0.1:0".to_string()),
        ..Overrides::default()
    };
    let config = config::load_str(
        crate::DEMO_PROXY_TOML,
        Path::new("proxy.toml (demo)"),
        &policy_dir,
        &overrides,
    )?;
    let proxy = match listener::start(config).await {
        Ok(p) => p,
        Err(e) => anyhow::bail!(
            "cannot listen on the demo address: {e}; pick another with `sqlguard demo --listen 127.0.0.1:13307`"
        ),
    };
    let port = proxy.addr.port();
    println!(
        "\nsqlguard demo is ready: a guarded MariaDB on {addr}\n\
         \n  mariadb -h 127.0.0.1 -P {port} -u clawdbot -pmeyram-demo shop\n\
         \nDemo users (passwords are for this demo only):\n\
         \x20 clawdbot    / meyram-demo   tenant 1, reads and writes\n\
         \x20 readonly    / reader-demo   tenant 1, reads only\n\
         \x20 clawdbot_t2 / tenant2-demo  tenant 2, reads and writes\n\
         \nThe private MariaDB itself (unguarded, root without password) is on 127.0.0.1:{dbport}.\n\
         Audit log: {audit} (sqlguard audit --file {audit}); metrics: http://{metrics}/metrics\n\
         Press Ctrl-C to stop; the demo database is thrown away.",
        addr = proxy.addr,
        dbport = db.port(),
        audit = dir.join("audit.log").display(),
        metrics = proxy
            .metrics_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(none)".into()),
    );
    let token = proxy.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        token.cancel();
    });
    proxy.wait().await;
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(0)
}

/// The config for commands that do not connect (`check`, `test-policy`):
/// no backend password needed. Problems are printed; `None` means exit 2.
fn load_offline(path: &Path) -> Option<Config> {
    let overrides = Overrides {
        skip_backend_password: true,
        ..Overrides::default()
    };
    match config::load(path, &overrides) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn check(config_path: &Path, user: &str, sql: Option<String>) -> anyhow::Result<i32> {
    let Some(config) = load_offline(config_path) else {
        return Ok(2);
    };
    let Some(user) = config.users.iter().find(|u| u.name == user) else {
        eprintln!("error: no user {user:?} in {}", config_path.display());
        return Ok(2);
    };
    let sql = match sql.as_deref() {
        Some("-") | None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
        Some(text) => text.to_string(),
    };
    let ctx = guard::SessionContext {
        user: &user.name,
        tenant_id: user.tenant_id,
        database: &config.backend.database,
        policy: &user.policy,
    };
    match guard::check(&sql, &ctx) {
        Decision::Allow {
            kind,
            sql,
            rewrites,
            access,
            ..
        } => {
            let cache = match access.cache_ttl {
                Some(ttl) => format!("result cache: yes, for up to {ttl:?}"),
                None => "result cache: no".to_string(),
            };
            say(&format!(
                "decision: allow\nkind: {kind}\nrewrites: {}\n{cache}\nsql: {sql}",
                rewrites.describe()
            ));
            Ok(0)
        }
        Decision::LocalOk { kind } => {
            say(&format!(
                "decision: allow\nkind: {kind}\nsql: (answered by sqlguard, not forwarded)"
            ));
            Ok(0)
        }
        Decision::Deny(denial) => {
            say(&format!(
                "decision: deny\nkind: {}\nrule: {}\nmessage: {}",
                denial.kind,
                denial.rule,
                denial.client_message()
            ));
            Ok(1)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditOutput {
    Table,
    Json,
    Summary,
}

/// `sqlguard audit`: streams the log's files (oldest first) one line at a
/// time, so a 1 GB log takes constant memory.
fn audit(
    file: &Path,
    verify: bool,
    filter: &crate::audit::read::Filter,
    output: AuditOutput,
) -> anyhow::Result<i32> {
    use crate::audit::{read, report};
    let files = match read::log_files(file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return Ok(2);
        }
    };
    if verify {
        return Ok(match read::verify_files(&files) {
            Ok(Ok(v)) => {
                say(&format!(
                    "ok: {} records in {} file(s), hash chain intact (seq {}..{}); last hash {}",
                    v.records,
                    files.len(),
                    v.first_seq
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    v.last_seq
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    v.last_hash
                ));
                0
            }
            Ok(Err(broken)) => {
                say(&format!(
                    "broken: {} line {}: {}",
                    broken.file.display(),
                    broken.line,
                    broken.why
                ));
                1
            }
            Err(e) => {
                eprintln!("error: cannot read the audit log: {e}");
                2
            }
        });
    }
    use std::io::Write;
    let now = std::time::SystemTime::now();
    let mut summary = report::Summary::default();
    let mut bad_lines = 0u64;
    // Buffered: one write per 64 KiB, not per line. A closed pipe (`| head`)
    // ends the listing quietly.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    if output == AuditOutput::Table && writeln!(out, "{}", report::TABLE_HEADER).is_err() {
        return Ok(0);
    }
    let read = read::each_line(&files, |path, n, line| {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let record: crate::audit::Record = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                bad_lines += 1;
                eprintln!(
                    "error: {} line {n}: not an audit record: {e}",
                    path.display()
                );
                return None;
            }
        };
        if filter.matches(&record, now) {
            let written = match output {
                AuditOutput::Json => out.write_all(line).and_then(|()| out.write_all(b"\n")),
                AuditOutput::Table => writeln!(out, "{}", report::table_row(&record)),
                AuditOutput::Summary => {
                    summary.add(&record);
                    Ok(())
                }
            };
            if written.is_err() {
                return Some(());
            }
        }
        None
    });
    if let Err(e) = read {
        eprintln!("error: cannot read the audit log: {e}");
        return Ok(2);
    }
    if output == AuditOutput::Summary {
        let _ = writeln!(out, "{}", summary.render().trim_end());
    }
    let _ = out.flush();
    Ok(if bad_lines > 0 { 2 } else { 0 })
}

fn test_policy(config_path: &Path, bless: bool, mut names: Vec<String>) -> anyhow::Result<i32> {
    use crate::policy_tests;
    let dir = config_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let policy_dir = dir.join("policies");
    if names.is_empty() {
        let Some(config) = load_offline(config_path) else {
            return Ok(2);
        };
        for user in &config.users {
            if !names.contains(&user.policy.name) {
                names.push(user.policy.name.clone());
            }
        }
    }
    let (mut passed, mut failed, mut known, mut errors) = (0, 0, 0, 0);
    for name in &names {
        let path = policy_tests::tests_path(&policy_dir, name);
        match policy_tests::run_path(&path, &policy_dir, bless) {
            Ok((report, changes)) => {
                for change in &changes {
                    say(&change.describe(&path));
                }
                for line in report.failure_lines() {
                    say(&format!("FAIL {line}"));
                }
                passed += report.passed();
                failed += report.failed();
                known += report.known_issues();
            }
            Err(e) => {
                eprintln!("error: {e}");
                errors += 1;
            }
        }
    }
    if known > 0 {
        say(&format!(
            "{known} known issue(s) still failing as recorded (known_issue)"
        ));
    }
    say(&format!("{passed} passed, {failed} failed"));
    Ok(if errors > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    })
}

/// Prints to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn hash_password() -> anyhow::Result<i32> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("error: empty password on stdin");
        return Ok(2);
    }
    println!(
        "{}",
        NativePasswordHash::of_password(password.as_bytes()).to_hex()
    );
    Ok(0)
}
