//! A private `mariadbd` started from the machine's installed binaries, for
//! `sqlguard demo` and the tests.
//!
//! Each [`PrivateMariaDb`] owns a fresh directory under the system temp dir
//! (data dir, socket, pid file, error log), listens on a random free port on
//! 127.0.0.1 only, and lets `root` in without a password. Dropping it kills the
//! server and removes the directory, so instances never share state and any
//! number of them can run side by side (tests run in parallel).
//!
//! This module does not know the proxy; it only launches and seeds MariaDB.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::process::{Child, Command};

/// What a missing installation is told to do.
const INSTALL_HINT: &str = "apt-get install mariadb-server";

/// Where Debian and most distributions put the binaries; searched before `PATH`
/// because `/usr/sbin` is often missing from a non-root `PATH`.
const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

/// A fresh server is ready in well under a second; 30 s covers a loaded CI
/// machine and InnoDB crash recovery after [`PrivateMariaDb::kill`].
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one readiness probe (TCP connect + login + `SELECT`) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// A graceful shutdown of an idle test server takes well under a second; after
/// this, [`PrivateMariaDb::stop`] falls back to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `Drop` blocks waiting for the killed server to exit before it
/// removes the directory anyway.
const DROP_WAIT: Duration = Duration::from_secs(5);

/// The free port is found by binding port 0 and releasing it, so another
/// process can take it before `mariadbd` binds it. Retrying with a new port a
/// few times makes that race harmless.
const PORT_ATTEMPTS: u32 = 5;

/// [`PrivateMariaDb::restart`] must reuse the port; if it is briefly still
/// held, it retries this many times, [`RESTART_RETRY_PAUSE`] apart.
const RESTART_ATTEMPTS: u32 = 10;
const RESTART_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Lines of `error.log` quoted in launch errors.
const LOG_TAIL_LINES: usize = 25;

/// Prefix of every instance directory in the temp dir; also how leftovers of
/// killed test runs are recognised (see [`reap_orphans`]).
const DIR_PREFIX: &str = "sqlguard-mdb-";

/// The database [`PrivateMariaDb::load_demo`] creates and fills.
pub const DEMO_DATABASE: &str = "shop";

/// The backend account [`PrivateMariaDb::load_demo`] creates for the proxy.
pub const BACKEND_USER: &str = "sqlguard";

/// Hosts the backend account is created for: the proxy connects over TCP to
/// 127.0.0.1; `localhost` is for the `mariadb` CLI over the socket.
const BACKEND_HOSTS: &[&str] = &["127.0.0.1", "localhost"];

/// Why a private MariaDB could not be started or seeded.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The server binaries are not installed.
    #[error("{binary} not found: install it with: {INSTALL_HINT}")]
    NotInstalled { binary: &'static str },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// `mariadb-install-db` could not create the data directory.
    #[error("mariadb-install-db failed ({status}):\n{output}")]
    InstallDb { status: ExitStatus, output: String },
    /// `mariadbd` exited before it accepted connections.
    #[error("mariadbd exited before it was ready ({status}); {log}")]
    Exited { status: ExitStatus, log: String },
    /// `mariadbd` did not accept connections in time.
    #[error("mariadbd on 127.0.0.1:{port} not ready after {waited:?}: {last_error}; {log}")]
    NotReady {
        port: u16,
        waited: Duration,
        last_error: String,
        log: String,
    },
    /// A statement sent while seeding failed.
    #[error("{what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: mysql_async::Error,
    },
}

impl LaunchError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        LaunchError::Io {
            what: what.into(),
            source,
        }
    }

    fn sql(what: impl Into<String>, source: mysql_async::Error) -> Self {
        LaunchError::Sql {
            what: what.into(),
            source,
        }
    }

    /// The server could not bind its port (someone else took it).
    fn is_port_clash(&self) -> bool {
        match self {
            LaunchError::Exited { log, .. } => {
                log.contains("Address already in use") || log.contains("Bind on TCP/IP port")
            }
            _ => false,
        }
    }
}

/// A running private `mariadbd`. See the module documentation.
pub struct PrivateMariaDb {
    /// The instance directory: `data/`, the socket, pid file and logs.
    /// Removed on drop.
    root: PathBuf,
    /// TCP port on 127.0.0.1; kept across [`PrivateMariaDb::restart`].
    port: u16,
    /// The `mariadbd` binary, found once at start.
    mariadbd: PathBuf,
    /// The server process; `None` after [`PrivateMariaDb::kill`] or
    /// [`PrivateMariaDb::stop`].
    child: Option<Child>,
    /// Options added to every launch (e.g. `--ssl-cert=...` for TLS tests).
    extra_args: Vec<String>,
}

impl std::fmt::Debug for PrivateMariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateMariaDb")
            .field("root", &self.root)
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().and_then(Child::id))
            .finish()
    }
}

impl PrivateMariaDb {
    /// Creates a fresh data directory and starts `mariadbd` on
    /// 127.0.0.1:<random free port>; returns once it accepts connections.
    /// `root@127.0.0.1` and `root@localhost` have an empty password.
    pub async fn start() -> Result<PrivateMariaDb, LaunchError> {
        Self::start_with_args(Vec::new()).await
    }

    /// [`PrivateMariaDb::start`] with extra `mariadbd` options, kept for
    /// restarts, e.g. `--ssl-cert=PATH`, `--ssl-key=PATH`, `--ssl-ca=PATH`.
    pub async fn start_with_args(extra_args: Vec<String>) -> Result<PrivateMariaDb, LaunchError> {
        let mariadbd =
            find_binary("mariadbd").ok_or(LaunchError::NotInstalled { binary: "mariadbd" })?;
        let install_db = find_binary("mariadb-install-db").ok_or(LaunchError::NotInstalled {
            binary: "mariadb-install-db",
        })?;
        reap_orphans();

        let root = create_instance_dir()?;
        // From here on, Drop removes the directory whatever happens.
        let mut db = PrivateMariaDb {
            root,
            port: 0,
            mariadbd,
            child: None,
            extra_args,
        };
        db.install(&install_db).await?;

        let mut attempt = 1;
        loop {
            db.port = free_port()?;
            match db.launch().await {
                Ok(()) => return Ok(db),
                Err(e) if e.is_port_clash() && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT/`
    pub fn root_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }

    /// Connection options for `root` over TCP (never the socket), optionally
    /// with a default database.
    pub fn root_opts(&self, database: Option<&str>) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some("root"))
            .db_name(database)
            .prefer_socket(false)
            .into()
    }

    /// The Unix socket the server also listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("mysqld.sock")
    }

    /// The server's error log (quoted in launch errors).
    pub fn error_log_path(&self) -> PathBuf {
        self.root.join("error.log")
    }

    /// Whether the server process is running (not killed or stopped).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// (Re)creates database `shop` from [`crate::DEMO_FIXTURE_SQL`] and the
    /// backend account `sqlguard`@`127.0.0.1` and @`localhost` with
    /// `backend_password` and `SELECT, INSERT, UPDATE ON shop.*` (no DELETE,
    /// no DDL). Calling it again resets the data to the fixture.
    pub async fn load_demo(&self, backend_password: &str) -> Result<(), LaunchError> {
        let mut conn = Conn::new(self.root_opts(None))
            .await
            .map_err(|e| LaunchError::sql("connect as root", e))?;
        let create = format!(
            "DROP DATABASE IF EXISTS `{DEMO_DATABASE}`; \
             CREATE DATABASE `{DEMO_DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        );
        conn.query_drop(create)
            .await
            .map_err(|e| LaunchError::sql(format!("create database {DEMO_DATABASE}"), e))?;
        conn.query_drop(format!("USE `{DEMO_DATABASE}`"))
            .await
            .map_err(|e| LaunchError::sql(format!("use {DEMO_DATABASE}"), e))?;
        // The fixture is one multi-statement text; the connection has
        // CLIENT_MULTI_STATEMENTS and query_drop reads every result set, so an
        // error in any statement is reported here.
        conn.query_drop(crate::DEMO_FIXTURE_SQL)
            .await
            .map_err(|e| LaunchError::sql("load fixtures/demo.sql", e))?;

        let password = sql_string(backend_password);
        for host in BACKEND_HOSTS {
            let account = format!("'{BACKEND_USER}'@'{host}'");
            let sql = format!(
                "CREATE OR REPLACE USER {account} IDENTIFIED BY {password}; \
                 GRANT SELECT, INSERT, UPDATE ON `{DEMO_DATABASE}`.* TO {account}"
            );
            conn.query_drop(sql)
                .await
                .map_err(|e| LaunchError::sql(format!("create backend user {account}"), e))?;
        }
        conn.disconnect()
            .await
            .map_err(|e| LaunchError::sql("disconnect", e))?;
        Ok(())
    }

    /// Kills the server with SIGKILL (fault injection) and waits for it to exit.
    /// The data directory is kept; [`PrivateMariaDb::restart`] brings it back.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means the process has already exited; wait() reaps it.
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Freezes the server with SIGSTOP (fault injection: a hung database).
    /// Connections stay open and nothing answers until [`PrivateMariaDb::resume`].
    pub async fn pause(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            send_signal("STOP", pid).await;
        }
    }

    /// Lets a paused server run again (SIGCONT).
    pub async fn resume(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            send_signal("CONT", pid).await;
        }
    }

    /// Starts the server again on the same port and data directory (after
    /// [`PrivateMariaDb::kill`] or [`PrivateMariaDb::stop`]; a running server
    /// is stopped first) and waits until it is ready.
    pub async fn restart(&mut self) -> Result<(), LaunchError> {
        if self.child.is_some() {
            self.stop().await;
        }
        let mut attempt = 1;
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_port_clash() && attempt < RESTART_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(RESTART_RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops the server gracefully (`SHUTDOWN`, else SIGTERM) and waits for it
    /// to exit; SIGKILL if it takes longer than 30 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if !self.shutdown_statement().await {
            if let Some(pid) = child.id() {
                send_signal("TERM", pid).await;
            }
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    port = self.port,
                    "mariadbd did not stop in time; killing it"
                );
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// Sends `SHUTDOWN` as root; true if the server accepted it.
    async fn shutdown_statement(&self) -> bool {
        let attempt = async {
            let mut conn = Conn::new(self.root_opts(None)).await?;
            conn.query_drop("SHUTDOWN").await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(())) => true,
            // The server may close the connection before the OK arrives.
            Ok(Err(mysql_async::Error::Io(_))) => true,
            _ => false,
        }
    }

    fn datadir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server's own temp dir: concurrent bootstraps sharing /tmp trip over
    /// each other's temporary tables.
    fn tmpdir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Runs `mariadb-install-db` into `root/data`.
    async fn install(&self, install_db: &Path) -> Result<(), LaunchError> {
        let tmpdir = self.tmpdir();
        fs::create_dir_all(&tmpdir)
            .map_err(|e| LaunchError::io(format!("create {}", tmpdir.display()), e))?;
        let mut cmd = Command::new(install_db);
        // --no-defaults must come first: no /etc/mysql config leaks in.
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.datadir().display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--tmpdir={}", self.tmpdir().display()))
            .arg("--skip-name-resolve")
            // Passed through to the bootstrap server: keep it small.
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--innodb-log-file-size=8M");
        if running_as_root() {
            cmd.arg("--user=root");
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        let output = cmd
            .output()
            .await
            .map_err(|e| LaunchError::io(format!("run {}", install_db.display()), e))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(LaunchError::InstallDb {
                status: output.status,
                output: tail(&text, LOG_TAIL_LINES),
            });
        }
        Ok(())
    }

    /// Spawns `mariadbd` on `self.port` and waits until it is ready; on
    /// failure the process is killed and `self.child` stays `None`.
    async fn launch(&mut self) -> Result<(), LaunchError> {
        let stderr_path = self.root.join("stderr.log");
        let stderr = fs::File::create(&stderr_path)
            .map_err(|e| LaunchError::io(format!("create {}", stderr_path.display()), e))?;
        let mut cmd = Command::new(&self.mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.datadir().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!(
                "--pid-file={}",
                self.root.join("mariadbd.pid").display()
            ))
            .arg(format!("--log-error={}", self.error_log_path().display()))
            .arg(format!("--tmpdir={}", self.tmpdir().display()))
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--performance-schema=OFF")
            // The Debian package's server defaults, so results match the
            // installed server; a fixed time zone so TIMESTAMP values do not
            // depend on the machine.
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_general_ci")
            .arg("--default-time-zone=+00:00")
            // The demo proxy pools up to 151 backend connections; tests add
            // their own direct connections on top.
            .arg("--max-connections=500")
            // Small and fast: a test server holds a few MB of data. Neither
            // setting loses committed data when only the process is killed.
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--innodb-log-file-size=8M")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--innodb-doublewrite=0")
            .args(&self.extra_args);
        if running_as_root() {
            // mariadbd refuses to run as root unless told to.
            cmd.arg("--user=root");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| LaunchError::io(format!("start {}", self.mariadbd.display()), e))?;
        self.child = Some(child);
        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill().await;
                Err(e)
            }
        }
    }

    /// Polls until our server answers `SELECT @@socket` with its own socket
    /// path (so a foreign server that grabbed the port is not mistaken for it).
    async fn wait_ready(&mut self) -> Result<(), LaunchError> {
        let started = Instant::now();
        let expected_socket = self.socket_path().display().to_string();
        loop {
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => {
                        self.child = None;
                        return Err(LaunchError::Exited {
                            status,
                            log: self.log_tail(),
                        });
                    }
                    Err(e) => return Err(LaunchError::io("wait for mariadbd", e)),
                }
            }
            let last_error = match tokio::time::timeout(PROBE_TIMEOUT, self.probe()).await {
                Ok(Ok(socket)) if socket == expected_socket => return Ok(()),
                Ok(Ok(socket)) => {
                    format!("port {} is served by another server ({socket})", self.port)
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("probe timed out after {PROBE_TIMEOUT:?}"),
            };
            if started.elapsed() >= READY_TIMEOUT {
                return Err(LaunchError::NotReady {
                    port: self.port,
                    waited: started.elapsed(),
                    last_error,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// One readiness probe: connect as root and read `@@socket`.
    async fn probe(&self) -> Result<String, mysql_async::Error> {
        // A cheap TCP connect first: while the port is closed this fails in
        // microseconds without the driver's error plumbing.
        tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut conn = Conn::new(self.root_opts(None)).await?;
        let socket: Option<String> = conn.query_first("SELECT @@socket").await?;
        conn.disconnect().await?;
        Ok(socket.unwrap_or_default())
    }

    /// The end of `error.log` and of the captured stderr, for error messages.
    fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in [self.error_log_path(), self.root.join("stderr.log")] {
            match fs::read(&path) {
                Ok(bytes) if !bytes.is_empty() => {
                    let text = String::from_utf8_lossy(&bytes);
                    let _ = write!(
                        out,
                        "\n--- {} (last {LOG_TAIL_LINES} lines) ---\n{}",
                        path.display(),
                        tail(&text, LOG_TAIL_LINES)
                    );
                }
                _ => {}
            }
        }
        if out.is_empty() {
            out.push_str("the server wrote no log");
        }
        out
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Wait (briefly, blocking) so the server does not write into the
            // directory while it is being removed.
            let deadline = Instant::now() + DROP_WAIT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Looks for `name` in [`SEARCH_DIRS`], then in `PATH`.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    SEARCH_DIRS
        .iter()
        .map(PathBuf::from)
        .chain(path_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True if the effective user is root (from `/proc/self/status`, so no libc).
fn running_as_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Creates `<tmp>/sqlguard-mdb-<pid>-<n>-<random>` and records the owning
/// process in it, for [`reap_orphans`]. Kept short: the socket path inside it
/// must fit in 108 bytes.
fn create_instance_dir() -> Result<PathBuf, LaunchError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let nonce: u32 = rand::random();
    let root = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{n}-{nonce:08x}"));
    fs::create_dir(&root).map_err(|e| LaunchError::io(format!("create {}", root.display()), e))?;
    let owner = root.join("owner.pid");
    fs::write(&owner, pid.to_string())
        .map_err(|e| LaunchError::io(format!("write {}", owner.display()), e))?;
    Ok(root)
}

/// Removes instances left behind by processes that died without running
/// `Drop` (a test binary killed by a timeout, Ctrl-C on `cargo test` or
/// `sqlguard demo`: mariadbd ignores SIGINT, so it outlives them). An instance
/// is an orphan when the pid in its `owner.pid` no longer exists; its server
/// is killed only if that process's command line names the instance directory.
fn reap_orphans() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let root = entry.path();
        let Some(owner) = read_pid(&root.join("owner.pid")) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Some(server) = read_pid(&root.join("mariadbd.pid")) {
            let cmdline = fs::read(format!("/proc/{server}/cmdline")).unwrap_or_default();
            let root_text = root.display().to_string();
            if String::from_utf8_lossy(&cmdline).contains(&root_text) {
                tracing::info!(pid = server, dir = %root_text, "killing orphaned private mariadbd");
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &server.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let deadline = Instant::now() + DROP_WAIT;
                while Path::new(&format!("/proc/{server}")).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let _ = fs::remove_dir_all(&root);
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Sends a signal with the `kill` utility (std has only SIGKILL, and this
/// avoids an unsafe libc call for a fallback path).
async fn send_signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// A free TCP port on 127.0.0.1, found by binding port 0. The port is
/// released before mariadbd binds it; [`PORT_ATTEMPTS`] covers the race.
fn free_port() -> Result<u16, LaunchError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| LaunchError::io("bind 127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| LaunchError::io("read local address", e))?
        .port();
    Ok(port)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `s` as a single-quoted SQL string literal (default sql_mode, where
/// backslash is an escape character).
fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_string_escapes_quotes_backslashes_and_nul() {
        assert_eq!(sql_string("pw"), "'pw'");
        assert_eq!(sql_string("it's"), "'it''s'");
        assert_eq!(sql_string(r"a\'b"), r"'a\\''b'");
        assert_eq!(sql_string("a\0b"), r"'a\0b'");
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn not_installed_message_names_the_package() {
        let e = LaunchError::NotInstalled { binary: "mariadbd" };
        assert_eq!(
            e.to_string(),
            "mariadbd not found: install it with: apt-get install mariadb-server"
        );
    }
}
