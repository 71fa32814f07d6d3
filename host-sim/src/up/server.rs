//! The HTTP side of `host-sim up`: [`start`] loads the app and serves it, and every
//! request is one invocation of a fresh instance, under the platform's limits and the
//! chaos kills, logged in one line as Spin logs it.

use super::allowed_hosts::Policy;
use super::imports::{self, Ctx};
use super::outbound::{Hooks, Pool};
use super::wasm::{componentize, engine, epoch_ticker, MemoryLimiter};
use super::{manifest, redact, HostStats, InvocationStats, Limits, Running, UpConfig};
use crate::http::{self, Body, Dropped};
use crate::kv::SqliteKv;
use crate::sample::splitmix64;
use anyhow::{anyhow, Context as _, Result};
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

/// What every invocation of the app shares.
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
    let wasm = std::fs::read(&app.source)
        .with_context(|| format!("cannot read the component {} (build it with `make wasm`)", app.source.display()))?;
    let engine = engine()?;
    let component = Component::new(&engine, componentize(&wasm)?)?;
    let pre = ProxyPre::new(imports::linker(&engine)?.instantiate_pre(&component)?)?;
    let kv = Arc::new(config.state_dir.open_kv(&config.manifest)?);
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
        memory: MemoryLimiter::new(shared.limits.memory),
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
