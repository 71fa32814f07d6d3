//! The HTTP side of `host-sim up`: [`start`] loads the app and serves it, and every
//! request is one invocation of a fresh instance, under the platform's limits and the
//! chaos kills, logged in one line as Spin logs it. As in Spin, the response goes out
//! as soon as the guest sets it (`response-outparam.set`), its body streamed as the
//! guest writes it, and the guest may go on working, still under the limits; the
//! invocation is counted and logged when the guest ends (`ending`).

use super::allowed_hosts::Policy;
use super::imports::{self, Ctx};
use super::outbound::bandwidth::Bandwidth;
use super::outbound::{Hooks, Pool};
use super::runtime_config::RuntimeConfig;
use super::stores::Stores;
use super::wasm::{componentize, engine, epoch_ticker, MemoryLimiter};
use super::{manifest, redact, HostStats, InvocationStats, Limits, Running, UpConfig};
use crate::http::{self, Body, Dropped};
use crate::sample::splitmix64;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

mod ending;
mod sync_body;

/// What every invocation of the app shares.
struct Shared {
    engine: Engine,
    pre: ProxyPre<Ctx>,
    app: manifest::App,
    variables: Arc<BTreeMap<String, String>>,
    policy: Arc<Policy>,
    pool: Option<Arc<Pool>>,
    stores: Arc<Stores>,
    bandwidth: Option<Bandwidth>,
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

/// Loads the app of `config.manifest`, compiles its component and serves it on
/// `config.listen` (with the `/tick` caller when asked); everything stops when the
/// returned [`Running`] is dropped.
pub async fn start(config: UpConfig) -> Result<Running> {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("SPIN_VARIABLE_")).collect();
    let app = manifest::load(&config.manifest, &config.variables, &env)?;
    for name in &app.ignored_variables {
        // Spin ignores them without a word; a warning says what a typo cost. The value
        // may be a secret: only the name is told.
        tracing::warn!(variable = %name, "--variable {name}: the manifest declares no variable of that name; ignored, as Spin ignores it");
    }
    // Read before the component is compiled: a bad file is told at once.
    let runtime_config = config.runtime_config.as_deref().map(RuntimeConfig::load).transpose()?;
    let stores =
        Arc::new(Stores::open(&app.key_value_stores, &app.component, &config.manifest, runtime_config.as_ref(), &config.state_dir)?);
    let bandwidth = match config.outbound_mbps {
        None => None,
        Some(mbps) => Some(Bandwidth::new(mbps).with_context(|| format!("--outbound-mbps {mbps}: must be a number above 0"))?),
    };
    let wasm = std::fs::read(&app.source)
        .with_context(|| format!("cannot read the component {} (build it with `make wasm`)", app.source.display()))?;
    let engine = engine()?;
    let component = Component::new(&engine, componentize(&wasm)?)?;
    let pre = ProxyPre::new(imports::linker(&engine)?.instantiate_pre(&component)?)?;
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
        secrets,
        app,
        stores,
        bandwidth,
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
                "ended": s.ended.load(Ordering::Relaxed),
                "outbound": s.outbound.load(Ordering::Relaxed),
                "outboundConnections": s.outbound_connections.load(Ordering::Relaxed),
                "peakMemory": s.peak_memory.load(Ordering::Relaxed),
                "usage": s.usage.to_json(),
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
            requests: shared.stats.outbound.clone(),
            secrets: shared.secrets.clone(),
            bandwidth: shared.bandwidth.clone(),
            usage: shared.stats.usage.clone(),
        },
        stores: shared.stores.clone(),
        usage: shared.stats.usage.clone(),
        limits: shared.limits.clone(),
        variables: shared.variables.clone(),
        memory: MemoryLimiter::new(shared.limits.memory, shared.stats.peak_memory.clone()),
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
        anyhow::Ok(store.data().memory.peak())
    };
    // The guest runs on its own task, under the time limit from its start to its end:
    // what it does after setting its response (the body, then any further work) counts.
    let task = tokio::spawn(tokio::time::timeout(limit, Busy { inner: Box::pin(run), busy: Duration::ZERO }));
    // Accounted on a task of its own, so that the counters are right even when the
    // client goes away and hyper drops this future.
    let ending = tokio::spawn(ending::account(shared.clone(), task, kill_at));
    let invocation = ending::Invocation { shared: shared.clone(), route, started, stats };
    // The sender lives in the guest's store: the receiver resolves when the guest sets
    // its response, or when the store is gone (the guest ended, failed or was killed
    // without setting one).
    match receiver.await {
        Ok(set) => {
            // As Spin does: the response goes out now, its body streamed as the guest
            // writes it, and the guest goes on. What happens to it later is only
            // logged; a guest killed before finishing its body cuts the body short.
            let response = match set {
                Ok(response) => response.map(sync_body::stream),
                Err(code) => internal_error(shared, &format!("the guest set an error as its response: {code:?}")),
            };
            let status = response.status().as_u16();
            tokio::spawn(async move {
                if let Ok(ended) = ending.await {
                    if let Some(failure) = &ended.failure {
                        tracing::error!("Component error after response started: {}", redact(failure, &invocation.shared.secrets));
                    }
                    invocation.log(status, &ended);
                }
            });
            response
        }
        Err(_) => {
            let Ok(ended) = ending.await else {
                return internal_error(shared, "the invocation's accounting panicked");
            };
            let response = match &ended.failure {
                // host-sim's own limits (Spin has none locally) keep their explanatory answer.
                _ if ended.killed => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("invocation {}", ended.note)),
                Some(failure) => internal_error(shared, failure),
                None => internal_error(shared, "the guest ended without a response"),
            };
            invocation.log(response.status().as_u16(), &ended);
            response
        }
    }
}
