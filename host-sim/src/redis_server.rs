//! A real `redis-server`, run by tests as a child process: the store that several
//! `host-sim up` (and `spin up`) instances share through a runtime config file
//! (`[key_value_store.default] type = "redis"`), as a production deployment shares one.
//!
//! It listens on a free loopback port with persistence on (append-only file, fsync'd at
//! every write, in a temporary directory of its own; no RDB snapshots), so that
//! [`RedisServer::restart`] loses nothing it acknowledged. Dropping it kills it and
//! removes the directory.
//!
//! `redis-server` comes from `.ci/ensure-redis` (Debian's package), which `make setup`
//! runs, writing its path to `target/.redis-path`. A test starts with
//! `let Some(bin) = redis_server::require() else { return };`: without it the test is
//! skipped with a `SKIPPED (redis)` line, except in CI (`CI` set), where it fails, so
//! that a green CI never hides a missing install.

use anyhow::{bail, Context as _, Result};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before it is an error.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn usable(p: &Path) -> bool {
    p.is_file() && std::fs::metadata(p).is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
}

/// Where `redis-server` is: `$REDIS_SERVER`, else the path `make setup` wrote to
/// `target/.redis-path`, else `redis-server` on `PATH` or in `/usr/bin`; `Err` says why
/// none is usable.
pub fn redis_server_path() -> std::result::Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER").filter(|w| !w.is_empty()) {
        let bin = PathBuf::from(bin);
        return if usable(&bin) { Ok(bin) } else { Err(format!("REDIS_SERVER={} is not an executable file", bin.display())) };
    }
    let recorded = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/.redis-path");
    if let Ok(text) = std::fs::read_to_string(&recorded) {
        let bin = PathBuf::from(text.trim());
        if !text.trim().is_empty() && usable(&bin) {
            return Ok(bin);
        }
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("redis-server")).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(bin) = on_path.into_iter().chain([PathBuf::from("/usr/bin/redis-server")]).find(|p| usable(p)) {
        return Ok(bin);
    }
    Err(format!(
        "no redis-server: neither $REDIS_SERVER, {} nor PATH names one; run `make setup` (or .ci/ensure-redis) to install Debian's redis-server",
        recorded.display()
    ))
}

/// `redis-server`, or `None` after printing `SKIPPED (redis): <reason>`. With `CI` set
/// it panics instead: a green CI must not hide a missing install.
pub fn require() -> Option<PathBuf> {
    match redis_server_path() {
        Ok(bin) => Some(bin),
        Err(reason) if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => {
            panic!("Redis is required in CI (CI is set): {reason}")
        }
        Err(reason) => {
            // Straight to the stream: the test harness keeps println! to itself when the
            // test passes, and the skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED (redis): {reason}");
            None
        }
    }
}

/// A running `redis-server` with its data directory.
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    own_group: bool,
}

impl RedisServer {
    /// Starts `bin` on a free loopback port in a new temporary directory and waits
    /// (bounded) until it answers `PING`.
    pub async fn start(bin: &Path) -> Result<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let mut server = RedisServer { bin: bin.to_owned(), port, dir, child: None, own_group: false };
        server.launch().await?;
        Ok(server)
    }

    /// Like [`start`](Self::start), in a process group of its own, so that a Ctrl-C in
    /// the terminal reaches only its parent, which then stops it (dropping this) when
    /// it is done with it. For a parent that handles SIGINT, like `host-sim soak`.
    pub async fn start_own_group(bin: &Path) -> Result<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let mut server = RedisServer { bin: bin.to_owned(), port, dir, child: None, own_group: true };
        server.launch().await?;
        Ok(server)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// The data directory (the append-only files and the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The runtime config that makes this server the `default` key-value store, as
    /// both `spin up` and `host-sim up` read it.
    pub fn runtime_config_toml(&self) -> String {
        format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", self.url())
    }

    /// Writes [`runtime_config_toml`](Self::runtime_config_toml) to `path`.
    pub fn write_runtime_config(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.runtime_config_toml()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Stops the server (`SIGTERM`, as a service manager would; it finishes its
    /// append-only file) and starts it again on the same port and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }

    /// Stops the server and leaves it stopped (until [`restart`](Self::restart)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it is running (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    async fn launch(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("redis.log"))?;
        let mut command = Command::new(&self.bin);
        if self.own_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            // Every write on disk before it is acknowledged: a restart, even a kill,
            // loses nothing; no RDB snapshots besides.
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!("redis-server exited ({status}) before it answered PING; its log:\n{}", tail(&self.log(), 20));
            }
            if self.ping().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING within {READY_TIMEOUT:?}; its log:\n{}", tail(&self.log(), 20));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A fresh connection of its own (each call), for a test to look inside.
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        Ok(client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<()> {
        let mut c = self.connection().await?;
        let pong: String = redis::cmd("PING").query_async(&mut c).await?;
        anyhow::ensure!(pong == "PONG", "PING answered {pong:?}");
        Ok(())
    }

    /// Every key (`KEYS *`), sorted.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut self.connection().await?).await?;
        keys.sort();
        Ok(keys)
    }

    /// The value of `key` as bytes.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(redis::cmd("GET").arg(key).query_async(&mut self.connection().await?).await?)
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        Ok(redis::cmd("SET").arg(key).arg(value).query_async(&mut self.connection().await?).await?)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- last lines of redis-server's log ----\n{}", tail(&self.log(), 20));
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
