//! `host-sim up`: runs the real `.wasm` like `spin up` does, with wasmtime 48.
//!
//! The wasm32-wasip1 module is componentized with `wit-component` and the preview1
//! reactor adapter, compiled once and instantiated afresh for every request. The host
//! provides `wasi:http@0.2.0` (outgoing requests only to `allowed_outbound_hosts`,
//! refused otherwise with `HttpRequestDenied` as Spin does, over connections pooled for
//! the app as Spin pools them: see `outbound`),
//! `fermyon:spin/key-value@2.0.0` on SQLite in Spin's own file and table (see
//! [`StateDir`]) and `fermyon:spin/variables@2.0.0`, and enforces the platform's
//! limits: wall-clock time per invocation (epoch interruption for guest code, a
//! timeout around host I/O), linear memory, key and value sizes and the number of keys.
//!
//! The response goes out once the guest sets it, and the guest may go on working after
//! it under the same limits, as in Spin ("answer 202, then keep working").
//!
//! Where Spin 3.6.3 itself answers (a guest that traps: `500` with an empty body, the
//! error in the log; an undeclared `--variable`: ignored), host-sim answers the same.
//!
//! - [`wasm`]: componentizing, the engine, the epoch ticker, the memory limiter.
//! - `imports`: what a guest imports (WASI, HTTP, key-value, variables).
//! - `outbound`: the guest's outgoing HTTP requests.
//! - [`server`]: [`start`](server::start) and one invocation per request.
//! - this module: the configuration, the limits and the counters they all share.

pub mod allowed_hosts;
mod imports;
pub mod manifest;
mod outbound;
pub mod server;
pub mod wasm;

use crate::kv::SqliteKv;
use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// The file Spin keeps the `default` key-value store in, inside the state directory.
pub const KV_FILE_NAME: &str = "sqlite_key_value.db";

/// Where the `default` key-value store lives: the application state directory, as
/// Spin's `--state-dir` sets it, or host-sim's own `--kv` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateDir {
    /// `.spin` in the manifest's directory, Spin's default (whatever the working
    /// directory), so that `spin up` and `host-sim up` of one app share their state.
    #[default]
    Default,
    /// A directory given by the user; a relative one is taken from the working
    /// directory, as Spin takes it.
    Dir(PathBuf),
    /// No state directory (`--state-dir ""`): the `default` store lives in memory and
    /// is gone when the host stops, as in Spin.
    Unset,
    /// host-sim's `--kv FILE`: the `default` store's SQLite file itself, wherever the
    /// state directory is (tests and the demo keep their store in a temporary
    /// directory this way).
    KvFile(PathBuf),
}

impl StateDir {
    /// From the `--kv` and `--state-dir` flags: `--kv` wins; then an absent
    /// `--state-dir` is the default, an empty one unset.
    pub fn from_flags(kv: Option<PathBuf>, state_dir: Option<&str>) -> StateDir {
        match (kv, state_dir) {
            (Some(file), _) => StateDir::KvFile(file),
            (None, None) => StateDir::Default,
            (None, Some("")) => StateDir::Unset,
            (None, Some(dir)) => StateDir::Dir(PathBuf::from(dir)),
        }
    }

    /// The SQLite file of the `default` store for the app of `manifest`; `None`: in
    /// memory.
    pub fn kv_file(&self, manifest: &Path) -> Result<Option<PathBuf>> {
        Ok(match self {
            StateDir::Default => {
                let dir = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                Some(std::path::absolute(dir)?.join(".spin").join(KV_FILE_NAME))
            }
            StateDir::Dir(dir) => Some(std::path::absolute(dir)?.join(KV_FILE_NAME)),
            StateDir::Unset => None,
            StateDir::KvFile(file) => Some(file.clone()),
        })
    }

    /// Opens the `default` store for the app of `manifest` (creating its directory),
    /// and says where it is in the log, in Spin's words.
    pub fn open_kv(&self, manifest: &Path) -> Result<SqliteKv> {
        match self.kv_file(manifest)? {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create the key-value store's directory {}", parent.display()))?;
                }
                tracing::info!("Storing default key-value data to {:?}.", path.display().to_string());
                SqliteKv::open(&path).with_context(|| format!("cannot open the key-value store {}", path.display()))
            }
            None => {
                tracing::info!("Storing default key-value data to a temporary in-memory store.");
                Ok(SqliteKv::open_in_memory()?)
            }
        }
    }
}

/// Platform limits, at Fermyon Cloud's values by default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time per invocation.
    pub time: Duration,
    /// Linear memory per instance.
    pub memory: usize,
    /// Key length in bytes.
    pub key_bytes: usize,
    /// Value length in bytes.
    pub value_bytes: usize,
    /// Keys per store.
    pub keys: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { time: Duration::from_secs(30), memory: 128 << 20, key_bytes: 255, value_bytes: 1 << 20, keys: 1024 }
    }
}

/// How `host-sim up` runs.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The app's `spin.toml`; its component's `source` and `files` are taken from
    /// the manifest's directory, as Spin takes them.
    pub manifest: PathBuf,
    /// Where to listen; port 0 picks a free one (see [`Running::addr`]).
    pub listen: SocketAddr,
    /// Values for the manifest's variables (`--variable NAME=VALUE`); those the
    /// manifest does not declare are ignored, as Spin ignores them.
    pub variables: Vec<(String, String)>,
    /// Host directories mounted read-only for the guest (`--dir HOST::GUEST`), besides
    /// the manifest's `files`.
    pub dirs: Vec<(PathBuf, String)>,
    /// Where the `default` key-value store lives (`--state-dir`, or `--kv`).
    pub state_dir: StateDir,
    /// Keep outbound HTTP connections open and use them again across the app's
    /// requests, as Spin does by default; `false` opens one per request
    /// (`--no-connection-pooling`).
    pub connection_pooling: bool,
    /// The platform's limits on each invocation and on the store.
    pub limits: Limits,
    /// Share of invocations killed at a random instant.
    pub chaos_kill_rate: f64,
    /// Kill instants are drawn from `[0, chaos_window)`.
    pub chaos_window: Duration,
    /// Seed of the kills.
    pub seed: u64,
    /// Call `POST /tick` with the app's `api_token` this often, as a cron trigger would.
    pub tick: Option<Duration>,
}

/// Counters over all invocations.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Invocations started.
    pub invocations: AtomicU64,
    /// Invocations killed by chaos.
    pub chaos_kills: AtomicU64,
    /// Invocations killed by the time limit.
    pub timeouts: AtomicU64,
    /// Invocations that trapped or failed.
    pub failures: AtomicU64,
    /// Invocations whose guest has ended, however (counted after the counters above):
    /// a guest may go on working after its answer, as on Spin.
    pub ended: AtomicU64,
    /// Outbound requests, counted as they are sent.
    pub outbound: Arc<AtomicU64>,
    /// Outbound connections opened (as many as requests without pooling).
    pub outbound_connections: Arc<AtomicU64>,
    /// Largest linear memory seen in any instance, bytes, counted as memory grows.
    pub peak_memory: Arc<AtomicU64>,
}

/// A running host; dropping it stops it.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its counters, also served at `/.well-known/host-sim/stats`.
    pub stats: Arc<HostStats>,
    /// The server, the epoch ticker and the `/tick` caller, aborted on drop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Per-invocation counters, for the invocation's log line.
#[derive(Debug, Default)]
struct InvocationStats {
    outbound: AtomicU64,
    kv_read: AtomicU64,
    kv_written: AtomicU64,
}

/// Removes secret variable values from text bound for logs or answers.
fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| s.len() >= 4).fold(text.to_owned(), |t, s| t.replace(s.as_str(), "<redacted>"))
}
