//! `host-sim up`: runs the real `.wasm` like `spin up` does, with wasmtime 48.
//!
//! The wasm32-wasip1 module is componentized with `wit-component` and the preview1
//! reactor adapter, compiled once and instantiated afresh for every request. The host
//! provides `wasi:http@0.2.0` (outgoing requests only to `allowed_outbound_hosts`,
//! refused otherwise with `HttpRequestDenied` as Spin does, over connections pooled for
//! the app as Spin pools them: see [`outbound`](self::outbound)),
//! `fermyon:spin/key-value@2.0.0` on SQLite in Spin's own file and table (see
//! [`StateDir`]) and `fermyon:spin/variables@2.0.0`, and enforces the platform's
//! limits: wall-clock time per invocation (epoch interruption for guest code, a
//! timeout around host I/O), linear memory, key and value sizes and the number of keys.
//!
//! Where Spin 3.6.3 itself answers (a guest that traps: `500` with an empty body, the
//! error in the log; an undeclared `--variable`: ignored), host-sim answers the same.

pub mod allowed_hosts;
pub mod manifest;
mod outbound;

use crate::http::{self, Body, Dropped};
use crate::kv::SqliteKv;
use crate::sample::splitmix64;
use allowed_hosts::Policy;
use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use outbound::{Hooks, Pool};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The file Spin keeps the `default` key-value store in, inside the state directory.
pub const KV_FILE_NAME: &str = "sqlite_key_value.db";

/// The application state directory, as Spin's `--state-dir` sets it.
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
}

impl StateDir {
    /// From the value of a `--state-dir` flag: absent is the default, empty is unset.
    pub fn from_flag(value: Option<&str>) -> StateDir {
        match value {
            None => StateDir::Default,
            Some("") => StateDir::Unset,
            Some(dir) => StateDir::Dir(PathBuf::from(dir)),
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
        })
    }
}

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin/host",
        with: {
            "fermyon:spin/key-value.store": super::KvHandle,
        },
    });
}

use bindings::fermyon::spin::{key_value, variables};

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
    /// The manifest.
    pub manifest: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// `--variable NAME=VALUE`.
    pub variables: Vec<(String, String)>,
    /// `--dir HOST::GUEST`.
    pub dirs: Vec<(PathBuf, String)>,
    /// The `default` key-value store's SQLite file, overriding the state directory's
    /// (host-sim's `--kv`).
    pub kv_path: Option<PathBuf>,
    /// Where the state lives, `--state-dir`: the `default` store is
    /// `sqlite_key_value.db` there, unless `kv_path` says otherwise.
    pub state_dir: StateDir,
    /// Keep outbound HTTP connections open and use them again across the app's
    /// requests, as Spin does by default; `false` opens one per request
    /// (`--no-connection-pooling`).
    pub connection_pooling: bool,
    /// Limits.
    pub limits: Limits,
    /// Share of invocations killed at a random instant.
    pub chaos_kill_rate: f64,
    /// Kill instants are drawn from `[0, chaos_window)`.
    pub chaos_window: Duration,
    /// Seed of the kills.
    pub seed: u64,
    /// Call `POST /tick` this often.
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
    /// Outbound requests.
    pub outbound: AtomicU64,
    /// Outbound connections opened (as many as requests without pooling).
    pub outbound_connections: Arc<AtomicU64>,
    /// Largest linear memory seen in any instance, bytes.
    pub peak_memory: AtomicU64,
}

/// A running host.
pub struct Running {
    /// Its address.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<HostStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The KV resource: which store label a handle is for.
pub struct KvHandle {
    label: String,
}

/// Per-invocation counters.
#[derive(Debug, Default)]
struct InvocationStats {
    outbound: AtomicU64,
    kv_read: AtomicU64,
    kv_written: AtomicU64,
}

/// The store data of one instance.
struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Hooks,
    kv: Arc<SqliteKv>,
    kv_labels: Arc<Vec<String>>,
    limits: Limits,
    variables: Arc<BTreeMap<String, String>>,
    memory: MemoryLimiter,
    stats: Arc<InvocationStats>,
}

/// Enforces the memory limit and records the peak.
struct MemoryLimiter {
    limit: usize,
    peak: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

fn kv_other(e: impl std::fmt::Display) -> key_value::Error {
    key_value::Error::Other(e.to_string())
}

impl key_value::Host for Ctx {}

impl key_value::HostStore for Ctx {
    fn open(&mut self, label: String) -> Result<Resource<KvHandle>, key_value::Error> {
        if !self.kv_labels.contains(&label) {
            return Err(key_value::Error::AccessDenied);
        }
        if label != "default" {
            return Err(key_value::Error::NoSuchStore);
        }
        self.table.push(KvHandle { label }).map_err(kv_other)
    }

    fn get(&mut self, store: Resource<KvHandle>, key: String) -> Result<Option<Vec<u8>>, key_value::Error> {
        self.table.get(&store).map_err(kv_other)?;
        let value = self.kv.get(&key).map_err(kv_other)?;
        self.stats.kv_read.fetch_add(value.as_ref().map_or(0, |v| v.len() as u64), Ordering::Relaxed);
        Ok(value)
    }

    fn set(&mut self, store: Resource<KvHandle>, key: String, value: Vec<u8>) -> Result<(), key_value::Error> {
        self.table.get(&store).map_err(kv_other)?;
        if key.len() > self.limits.key_bytes {
            return Err(kv_other(format!("key is {} bytes; the limit is {}", key.len(), self.limits.key_bytes)));
        }
        if value.len() > self.limits.value_bytes {
            return Err(kv_other(format!("value is {} bytes; the limit is {}", value.len(), self.limits.value_bytes)));
        }
        if !self.kv.exists(&key).map_err(kv_other)? && self.kv.keys().map_err(kv_other)?.len() as u64 >= self.limits.keys {
            return Err(key_value::Error::StoreTableFull);
        }
        self.stats.kv_written.fetch_add(value.len() as u64, Ordering::Relaxed);
        self.kv.set(&key, &value).map_err(kv_other)
    }

    fn delete(&mut self, store: Resource<KvHandle>, key: String) -> Result<(), key_value::Error> {
        self.table.get(&store).map_err(kv_other)?;
        self.kv.delete(&key).map_err(kv_other)
    }

    fn exists(&mut self, store: Resource<KvHandle>, key: String) -> Result<bool, key_value::Error> {
        self.table.get(&store).map_err(kv_other)?;
        self.kv.exists(&key).map_err(kv_other)
    }

    fn get_keys(&mut self, store: Resource<KvHandle>) -> Result<Vec<String>, key_value::Error> {
        let handle = self.table.get(&store).map_err(kv_other)?;
        debug_assert_eq!(handle.label, "default");
        self.kv.keys().map_err(kv_other)
    }

    fn drop(&mut self, store: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl variables::Host for Ctx {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(variables::Error::InvalidName(name));
        }
        self.variables.get(&name).cloned().ok_or(variables::Error::Undefined(name))
    }
}

/// Turns a wasm32-wasip1 library module (a Spin component) into a component, with the
/// preview1 reactor adapter as Spin does (a component is used as is).
pub fn componentize(bytes: &[u8]) -> Result<Vec<u8>> {
    componentize_with(bytes, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
}

/// Turns a wasm32-wasip1 module into a component with the given preview1 adapter: the
/// reactor one for libraries, the command one for programs with `fn main`.
pub fn componentize_with(bytes: &[u8], adapter: &[u8]) -> Result<Vec<u8>> {
    if bytes.get(4..8) != Some(&[1, 0, 0, 0]) {
        return Ok(bytes.to_vec());
    }
    wit_component::ComponentEncoder::default().validate(true).module(bytes)?.adapter("wasi_snapshot_preview1", adapter)?.encode()
}

/// Advances `engine`'s epoch every 10 ms: guest code yields at each tick (see
/// [`start`]), so a deadline or a kill takes effect within 10 ms even in a tight loop.
pub fn epoch_ticker(engine: Engine) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        loop {
            interval.tick().await;
            engine.increment_epoch();
        }
    })
}

/// The wasmtime engine every guest of host-sim runs on: epoch interruption on (the
/// time limit), everything else at wasmtime's defaults, as Spin runs components.
/// `HOST_SIM_PROFILE=perfmap` (or `jitdump`) makes guest code visible to `perf`.
pub fn engine() -> Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    match std::env::var("HOST_SIM_PROFILE").as_deref() {
        Ok("perfmap") => {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        Ok("jitdump") => {
            config.profiler(wasmtime::ProfilingStrategy::JitDump);
        }
        Ok("") | Err(_) => {}
        Ok(other) => anyhow::bail!("HOST_SIM_PROFILE={other}: use perfmap or jitdump"),
    }
    Ok(Engine::new(&config)?)
}

/// Runs a wasm32-wasip1 program (`fn main`) to its end on [`engine`], componentized
/// with the preview1 command adapter, the epoch ticking as for components: the guest
/// code is compiled and runs exactly as the component's would. Returns its stdout;
/// its stderr is inherited. For the `hash` case of `host-sim bench` and the tests of
/// code that must be checked where it runs.
pub async fn run_command(wasm: &[u8], args: &[String]) -> Result<Vec<u8>> {
    struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
        }
    }
    let engine = engine()?;
    let adapter = wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER;
    let component = Component::new(&engine, componentize_with(wasm, adapter)?)?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
    let mut wasi = WasiCtx::builder();
    let argv: Vec<&str> = std::iter::once("main").chain(args.iter().map(String::as_str)).collect();
    wasi.args(&argv).stdout(stdout.clone()).inherit_stderr();
    let mut store = Store::new(&engine, State { wasi: wasi.build(), table: ResourceTable::new() });
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    let ticker = epoch_ticker(engine.clone());
    let ran = async {
        let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(&mut store, &component, &linker).await?;
        command.wasi_cli_run().call_run(&mut store).await
    }
    .await;
    ticker.abort();
    ran?.map_err(|()| anyhow!("the program exited with an error"))?;
    Ok(stdout.contents().to_vec())
}

struct Shared {
    engine: Engine,
    pre: ProxyPre<Ctx>,
    app: manifest::App,
    variables: Arc<BTreeMap<String, String>>,
    policy: Arc<Policy>,
    pool: Option<Arc<Pool>>,
    kv_labels: Arc<Vec<String>>,
    kv: Arc<SqliteKv>,
    dirs: Vec<(PathBuf, String)>,
    limits: Limits,
    chaos_kill_rate: f64,
    chaos_window: Duration,
    seed: u64,
    stats: Arc<HostStats>,
    secrets: Arc<Vec<String>>,
    log_lock: Mutex<()>,
}

/// Measures the time spent inside `poll`: the guest's own run time (with the host
/// calls it makes synchronously), as opposed to waiting on I/O.
struct Busy<F> {
    inner: Pin<Box<F>>,
    busy: Duration,
}

impl<F: Future> Future for Busy<F> {
    type Output = (F::Output, Duration);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy += started.elapsed();
        polled.map(|out| (out, self.busy))
    }
}

/// Starts the host.
pub async fn start(config: UpConfig) -> Result<Running> {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("SPIN_VARIABLE_")).collect();
    let app = manifest::load(&config.manifest, &config.variables, &env)?;
    for name in &app.ignored_variables {
        // Spin ignores them without a word; a warning says what a typo cost. The value
        // may be a secret: only the name is told.
        tracing::warn!(variable = %name, "--variable {name}: the manifest declares no variable of that name; ignored, as Spin ignores it");
    }
    let wasm = std::fs::read(&app.source)
        .with_context(|| format!("cannot read the component {} (build it with `make wasm`)", app.source.display()))?;
    let engine = engine()?;
    let component = Component::new(&engine, componentize(&wasm)?)?;
    let mut linker: Linker<Ctx> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    key_value::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |c| c)?;
    variables::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |c| c)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let kv_file = match &config.kv_path {
        Some(path) => Some(path.clone()),
        None => config.state_dir.kv_file(&config.manifest)?,
    };
    let kv = match &kv_file {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create the key-value store's directory {}", parent.display()))?;
            }
            tracing::info!("Storing default key-value data to {:?}.", path.display().to_string());
            SqliteKv::open(path).with_context(|| format!("cannot open the key-value store {}", path.display()))?
        }
        None => {
            tracing::info!("Storing default key-value data to a temporary in-memory store.");
            SqliteKv::open_in_memory()?
        }
    };
    let kv = Arc::new(kv);
    let secrets = Arc::new(app.secrets.clone());
    let policy = Policy::resolve(&app.allowed_outbound_hosts);
    if let Policy::Invalid(error) = &policy {
        // Spin starts all the same and denies every outbound request; it says why at
        // each one. Saying it once more at the start points at the cause sooner.
        tracing::error!(
            "Error parsing allowed outbound hosts of component {}: {}; every outbound request will be denied",
            app.component,
            redact(error, &secrets)
        );
    }
    let mut dirs = app.files.clone();
    dirs.extend(config.dirs.iter().cloned());
    let stats = Arc::new(HostStats::default());
    let pool = config.connection_pooling.then(|| Arc::new(Pool::new(stats.outbound_connections.clone())));
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        pre,
        variables: Arc::new(app.variables.clone()),
        policy: Arc::new(policy),
        pool,
        kv_labels: Arc::new(app.key_value_stores.clone()),
        secrets,
        app,
        kv,
        dirs,
        limits: config.limits.clone(),
        chaos_kill_rate: config.chaos_kill_rate,
        chaos_window: config.chaos_window,
        seed: config.seed,
        stats: stats.clone(),
        log_lock: Mutex::new(()),
    });
    let ticker = epoch_ticker(engine.clone());
    let served = shared.clone();
    let (addr, server) = http::serve(config.listen, move |req| {
        let shared = served.clone();
        async move { Ok::<_, Dropped>(invoke(&shared, req).await) }
    })
    .await?;
    let mut tasks = vec![ticker, server];
    if let Some(every) = config.tick {
        let token = shared.variables.get("api_token").cloned().unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let client = http::client();
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                let request = hyper::Request::post(format!("http://{addr}/tick"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(http::full(Bytes::new()))
                    .expect("valid request");
                if let Ok(response) = client.request(request).await {
                    let _ = response.into_body().collect().await;
                }
            }
        }));
    }
    Ok(Running { addr, stats, tasks })
}

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    http::json(status, &serde_json::json!({ "error": { "code": "platform", "message": message } }))
}

/// Spin's answer when a request cannot be served (the guest trapped, or ended without
/// a response, or its instance could not be made): `500` and no body, the reason in
/// the log only. A body would tell the caller the host's internals, and a JSON one
/// would look like the component's own answer.
fn internal_error(shared: &Shared, error: &str) -> Response<Body> {
    tracing::error!("Error processing request: {}", redact(error, &shared.secrets));
    let mut response = Response::new(http::full(Bytes::new()));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// One invocation: a fresh instance, the request, the limits, a log line.
async fn invoke(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let route = format!("{} {}", req.method(), req.uri().path());
    if req.uri().path() == "/.well-known/host-sim/stats" {
        let s = &shared.stats;
        return http::json(
            StatusCode::OK,
            &serde_json::json!({
                "invocations": s.invocations.load(Ordering::Relaxed),
                "chaosKills": s.chaos_kills.load(Ordering::Relaxed),
                "timeouts": s.timeouts.load(Ordering::Relaxed),
                "failures": s.failures.load(Ordering::Relaxed),
                "outbound": s.outbound.load(Ordering::Relaxed),
                "outboundConnections": s.outbound_connections.load(Ordering::Relaxed),
                "peakMemory": s.peak_memory.load(Ordering::Relaxed),
            }),
        );
    }
    let n = shared.stats.invocations.fetch_add(1, Ordering::Relaxed);
    let roll = splitmix64(shared.seed ^ splitmix64(n));
    let kill_at = ((roll >> 11) as f64 / (1u64 << 53) as f64) < shared.chaos_kill_rate;
    let kill_at = kill_at.then(|| shared.chaos_window.mul_f64((splitmix64(roll) % 10_000) as f64 / 10_000.0));
    let limit = kill_at.map_or(shared.limits.time, |k| k.min(shared.limits.time));

    let stats = Arc::new(InvocationStats::default());
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stderr();
    for (host, guest) in &shared.dirs {
        if let Err(e) = wasi.preopened_dir(host, guest, FsPerms::ReadOnly) {
            return internal_error(shared, &format!("cannot mount {}: {e}", host.display()));
        }
    }
    let ctx = Ctx {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: Hooks {
            policy: shared.policy.clone(),
            pool: shared.pool.clone(),
            stats: stats.clone(),
            connections: shared.stats.outbound_connections.clone(),
            secrets: shared.secrets.clone(),
        },
        kv: shared.kv.clone(),
        kv_labels: shared.kv_labels.clone(),
        limits: shared.limits.clone(),
        variables: shared.variables.clone(),
        memory: MemoryLimiter { limit: shared.limits.memory, peak: 0 },
        stats: stats.clone(),
    };
    let mut store = Store::new(&shared.engine, ctx);
    store.limiter(|c| &mut c.memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);

    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = req.map(|body| body.map_err(wasmtime_wasi_http::p2::hyper_response_error).boxed_unsync());
    let prepared = (|| -> Result<_> {
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        Ok((req, out))
    })();
    let (incoming, out) = match prepared {
        Ok(p) => p,
        Err(e) => return internal_error(shared, &format!("cannot prepare the request: {e:?}")),
    };
    let pre = shared.pre.clone();
    let run = async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, out).await?;
        anyhow::Ok(store.data().memory.peak)
    };
    // The guest runs on its own task so that it may go on writing the body after it
    // set the response; the whole invocation, body included, must end inside `limit`.
    let task = tokio::spawn(tokio::time::timeout(limit, Busy { inner: Box::pin(run), busy: Duration::ZERO }));
    let answer = async {
        let response = receiver.await.map_err(|_| anyhow!("the guest ended without a response"))??;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|e| anyhow!("response body failed: {e:?}"))?.to_bytes();
        anyhow::Ok(Response::from_parts(parts, http::full(bytes)))
    };
    let answer = tokio::time::timeout(limit + Duration::from_millis(50), answer).await;
    let outcome = task.await;
    // `failure`: the guest's error in full (with its wasm backtrace), for the log.
    let (status_note, busy, peak, failure) = match &outcome {
        Ok(Ok((Ok(peak), busy))) => ("ok".to_owned(), *busy, *peak, None),
        Ok(Ok((Err(e), busy))) => {
            shared.stats.failures.fetch_add(1, Ordering::Relaxed);
            (format!("failed: {e:#}"), *busy, 0, Some(format!("guest invocation failed: {e:?}")))
        }
        Ok(Err(_)) if kill_at.is_some() => {
            shared.stats.chaos_kills.fetch_add(1, Ordering::Relaxed);
            ("killed by chaos".to_owned(), Duration::ZERO, 0, None)
        }
        Ok(Err(_)) => {
            shared.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            (format!("killed: time limit of {:?}", shared.limits.time), Duration::ZERO, 0, None)
        }
        Err(e) => {
            shared.stats.failures.fetch_add(1, Ordering::Relaxed);
            (format!("panicked: {e}"), Duration::ZERO, 0, Some(format!("guest invocation panicked: {e:?}")))
        }
    };
    shared.stats.outbound.fetch_add(stats.outbound.load(Ordering::Relaxed), Ordering::Relaxed);
    shared.stats.peak_memory.fetch_max(peak as u64, Ordering::Relaxed);
    let response = match (answer, failure) {
        // host-sim's own limits (Spin has none locally) keep their explanatory answer.
        _ if status_note.starts_with("killed") => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("invocation {status_note}")),
        (Ok(Ok(response)), None) => response,
        // The whole response was out before the guest failed: Spin has sent it by
        // then, and only logs the failure.
        (Ok(Ok(response)), Some(failure)) => {
            tracing::error!("Component error after response started: {}", redact(&failure, &shared.secrets));
            response
        }
        (_, Some(failure)) => internal_error(shared, &failure),
        (Ok(Err(e)), None) => internal_error(shared, &format!("{e:?}")),
        (Err(_), None) => internal_error(shared, "the response did not end in time"),
    };
    let _serialized = shared.log_lock.lock().unwrap_or_else(|p| p.into_inner());
    tracing::info!(
        component = %shared.app.component,
        route = %route,
        status = response.status().as_u16(),
        wall_ms = started.elapsed().as_millis() as u64,
        guest_ms = busy.as_millis() as u64,
        outbound = stats.outbound.load(Ordering::Relaxed),
        kv_read = stats.kv_read.load(Ordering::Relaxed),
        kv_written = stats.kv_written.load(Ordering::Relaxed),
        peak_memory_kib = peak as u64 / 1024,
        outcome = %redact(&status_note, &shared.secrets),
        "invocation"
    );
    response
}

/// Removes secret variable values from text bound for logs or answers.
fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| s.len() >= 4).fold(text.to_owned(), |t, s| t.replace(s.as_str(), "<redacted>"))
}
