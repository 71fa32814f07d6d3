//! `host-sim up`: runs the real `.wasm` like `spin up` does, with wasmtime 48.
//!
//! The wasm32-wasip1 module is componentized with `wit-component` and the preview1
//! reactor adapter, compiled once and instantiated afresh for every request. The host
//! provides `wasi:http@0.2.0` (outgoing requests only to `allowed_outbound_hosts`,
//! refused otherwise with `HttpRequestDenied` as Spin does, over connections pooled for
//! the app as Spin pools them: see `outbound`),
//! `fermyon:spin/key-value@2.0.0` on SQLite in Spin's own file and table (see
//! [`StateDir`]) or on the stores a Spin runtime config file defines (Redis shared by
//! several instances: see [`runtime_config`], [`stores`]) and
//! `fermyon:spin/variables@2.0.0`, and enforces the platform's
//! limits: wall-clock time per invocation (epoch interruption for guest code, a
//! timeout around host I/O), linear memory, key and value sizes and the number of keys.
//! It can cap the instance's outbound bandwidth (`outbound::bandwidth`) and counts what
//! platforms meter by the hour or second ([`usage`]).
//!
//! The response goes out once the guest sets it, and the guest may go on working after
//! it under the same limits, as in Spin ("answer 202, then keep working").
//!
//! Where Spin 3.6.3 itself answers (a guest that traps: `500` with an empty body, the
//! error in the log; an undeclared `--variable`: ignored), host-sim answers the same.
//!
//! - [`wasm`]: componentizing, the engine, the epoch ticker, the memory limiter.
//! - `imports`: what a guest imports (WASI, HTTP, key-value, variables).
//! - `outbound`: the guest's outgoing HTTP requests, and their bandwidth cap.
//! - [`server`]: [`start`](server::start) and one invocation per request.
//! - [`runtime_config`] and [`stores`]: which store each key-value label is.
//! - [`usage`]: counters per time window.
//! - this module: the configuration, the limits and the counters they all share.

pub mod allowed_hosts;
mod imports;
pub mod manifest;
mod outbound;
pub mod runtime_config;
pub mod server;
pub mod stores;
pub mod usage;
pub mod wasm;

pub use stores::{StateDir, KV_FILE_NAME};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

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
    /// Where the `default` key-value store lives (`--state-dir`, or `--kv`) when the
    /// runtime config does not define it.
    pub state_dir: StateDir,
    /// Spin's `runtime-config.toml` (`--runtime-config-file`): the key-value stores
    /// it defines replace the state directory's (see [`stores`]).
    pub runtime_config: Option<PathBuf>,
    /// This instance's outbound HTTP bandwidth in megabits per second, each direction
    /// on its own (request bodies sent, response bodies received), shared by all its
    /// concurrent requests (`--outbound-mbps`); `None`: uncapped.
    pub outbound_mbps: Option<f64>,
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
    /// Outbound requests per unix hour and key-value writes per unix second, for
    /// platform quotas (see [`usage`]).
    pub usage: Arc<usage::Usage>,
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
