//! Live reload: a `sqlguard serve` child process with its config and policies
//! in a temp directory; the files are edited and the process gets SIGHUP.
//! An existing connection's next statement follows the new policy, an invalid
//! policy is refused (logged, counted) while the old one keeps serving, users
//! come and go, and the audit log names the policy version of each decision.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::mariadb::BACKEND_PASSWORD;
use common::proxy::{CLAWDBOT, READONLY, repo_path, server_error, shared_db_port};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use sqlguard::audit::Record;
use sqlguard::config::policy_version;
use sqlguard::frontend::auth::NativePasswordHash;

const UPDATE: &str = "UPDATE customers SET notes = 'reload test' WHERE id = 1";
const NEWBOT: (&str, &str) = ("newbot", "newbot-pw");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

/// The running child; killed when dropped, so a failed test leaves no process.
struct Served {
    child: Child,
    log: Receiver<String>,
    dir: PathBuf,
    port: u16,
    metrics_port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Served {
    fn start(dir: &Path) -> Served {
        let port = free_port();
        let metrics_port = free_port();
        let toml = sqlguard::DEMO_PROXY_TOML
            .replace("127.0.0.1:3307", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9187", &format!("127.0.0.1:{metrics_port}"))
            .replace("127.0.0.1:3306", &format!("127.0.0.1:{}", shared_db_port()));
        std::fs::create_dir_all(dir.join("policies")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("proxy.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
        for stem in ["clawdbot", "readonly"] {
            let file = format!("policies/{stem}.toml");
            std::fs::copy(repo_path(&file), dir.join(&file)).unwrap_or_else(|e| panic!("{e}"));
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
            .args(["serve", "--config", "proxy.toml"])
            .current_dir(dir)
            .env("SQLGUARD_BACKEND_PASSWORD", BACKEND_PASSWORD)
            .env("SQLGUARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sqlguard serve: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let served = Served {
            child,
            log,
            dir: dir.to_path_buf(),
            port,
            metrics_port,
        };
        served.wait_for_log("sqlguard listening");
        served
    }

    /// Waits for a log line containing `text` (the child logs every reload).
    fn wait_for_log(&self, text: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {text:?}: {e}"),
            }
        }
    }

    fn hangup(&self) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill -HUP failed");
    }

    fn opts(&self, (user, password): (&str, &str)) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some("shop"))
            .prefer_socket(false)
            .into()
    }

    async fn connect(&self, user: (&str, &str)) -> Conn {
        Conn::new(self.opts(user))
            .await
            .unwrap_or_else(|e| panic!("{} cannot connect: {e}", user.0))
    }

    fn edit(&self, file: &str, from: &str, to: &str) -> String {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains(from), "{file} has no {from:?}");
        let text = text.replacen(from, to, 1);
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        text
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .unwrap_or_else(|e| panic!("{e}"));
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut body = String::new();
        s.read_to_string(&mut body)
            .unwrap_or_else(|e| panic!("{e}"));
        body
    }

    fn audit(&self) -> Vec<Record> {
        let text =
            std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_else(|e| panic!("{e}"));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[tokio::test]
async fn sighup_reloads_users_and_policies() {
    let dir = std::env::temp_dir().join(format!("sqlguard-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let served = Served::start(&dir);
    let old_version = policy_version(
        &std::fs::read_to_string(dir.join("policies/clawdbot.toml"))
            .unwrap_or_else(|e| panic!("{e}")),
    );

    let mut bot = served.connect(CLAWDBOT).await;
    let mut reader = served.connect(READONLY).await;
    bot.query_drop(UPDATE)
        .await
        .unwrap_or_else(|e| panic!("allowed before the reload: {e}"));

    // New policy: clawdbot may only read. New users: readonly out, newbot in.
    let new_policy = served.edit(
        "policies/clawdbot.toml",
        "capabilities = [\"sql_read\", \"sql_write\"]",
        "capabilities = [\"sql_read\"]",
    );
    let newbot_hash = NativePasswordHash::of_password(NEWBOT.1.as_bytes()).to_hex();
    let config = std::fs::read_to_string(dir.join("proxy.toml")).unwrap_or_else(|e| panic!("{e}"));
    let readonly_at = config
        .find("[[users]]\nname = \"readonly\"")
        .unwrap_or_else(|| panic!("no readonly user in proxy.toml"));
    let next = config[readonly_at + 1..]
        .find("[[users]]")
        .map_or(config.len(), |i| readonly_at + 1 + i);
    let config = format!(
        "{}{}\n[[users]]\nname = \"newbot\"\npassword_hash = \"{newbot_hash}\"\ntenant_id = 1\npolicy = \"readonly\"\n",
        &config[..readonly_at],
        &config[next..]
    );
    std::fs::write(dir.join("proxy.toml"), config).unwrap_or_else(|e| panic!("{e}"));

    served.hangup();
    served.wait_for_log("configuration reloaded");

    // The existing connection's next statement follows the new policy.
    let (code, message) = server_error(bot.query_drop(UPDATE).await);
    assert_eq!(code, 1227, "{message}");
    let n: Option<i64> = bot
        .query_first("SELECT COUNT(*) FROM products")
        .await
        .unwrap_or_else(|e| panic!("reads still allowed: {e}"));
    assert!(n.is_some_and(|n| n > 0));
    // readonly is gone: its open connection and new logins are refused.
    let (code, message) = server_error(reader.query_drop("SELECT 1").await);
    assert_eq!(code, 1045, "{message}");
    let (code, _) = server_error(Conn::new(served.opts(READONLY)).await);
    assert_eq!(code, 1045);
    let mut newbot = served.connect(NEWBOT).await;
    newbot
        .query_drop("SELECT 1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // An invalid policy is refused; the one in force keeps serving.
    served.edit(
        "policies/clawdbot.toml",
        "capabilities = [",
        "capabilities = [[",
    );
    served.hangup();
    let line = served.wait_for_log("configuration reload failed");
    assert!(line.contains("clawdbot"), "{line}");
    let (code, _) = server_error(bot.query_drop(UPDATE).await);
    assert_eq!(code, 1227);
    bot.query_drop("SELECT 1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = served.metrics();
    assert!(
        metrics.contains("sqlguard_config_reloads_total{result=\"ok\"} 1")
            && metrics.contains("sqlguard_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );

    // The audit log says which policy decided each statement.
    drop(bot);
    // The audit writer may still be appending the last record.
    let mut records = served.audit();
    for _ in 0..200 {
        let n = records
            .iter()
            .filter(|r| r.user == "clawdbot" && r.sql.as_deref() == Some(UPDATE))
            .count();
        if n >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        records = served.audit();
    }
    let updates: Vec<&Record> = records
        .iter()
        .filter(|r| r.user == "clawdbot" && r.sql.as_deref() == Some(UPDATE))
        .collect();
    assert_eq!(updates.len(), 3, "{updates:?}");
    assert_eq!(updates[0].decision, "allow");
    assert_eq!(
        updates[0].policy_version.as_deref(),
        Some(old_version.as_str())
    );
    let new_version = policy_version(&new_policy);
    assert_ne!(old_version, new_version);
    for denied in &updates[1..] {
        assert_eq!(denied.decision, "deny");
        assert_eq!(denied.policy_version.as_deref(), Some(new_version.as_str()));
    }
}
