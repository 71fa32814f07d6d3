//! The wasm side of `host-sim up`: turning a wasm32-wasip1 module into a component,
//! the wasmtime engine every guest runs on, the epoch ticker that enforces time limits
//! inside guest code, the memory limiter, and running a wasm program to its end.

use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Turns a wasm32-wasip1 library module (a Spin component) into a component, with the
/// preview1 reactor adapter as Spin does (a component is used as is).
pub fn componentize(bytes: &[u8]) -> Result<Vec<u8>> {
    componentize::componentize(bytes, componentize::Adapter::Reactor)
}

/// Advances `engine`'s epoch every 10 ms: guest code yields at each tick (see
/// [`start`](super::server::start)), so a deadline or a kill takes effect within 10 ms
/// even in a tight loop. The ticking runs on a thread of its own, not on the runtime:
/// a guest looping on a worker yields only at a tick, and the runtime's timers are only
/// driven when a worker gets to them, so a ticker on the runtime could wait for the very
/// guest that waits for it (seen: a looping guest never killed by its time limit).
/// Aborting the returned task (or dropping the runtime) stops the thread.
pub fn epoch_ticker(engine: Engine) -> tokio::task::JoinHandle<()> {
    /// Stops the thread when the task is aborted or dropped.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
            engine.increment_epoch();
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker thread: {e}; guests will not be interrupted");
    }
    let guard = StopOnDrop(stop);
    tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
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
    let component = Component::new(&engine, componentize::componentize(wasm, componentize::Adapter::Command)?)?;
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

/// Enforces the memory limit of one instance and records its peak, and the host's.
pub(super) struct MemoryLimiter {
    limit: usize,
    peak: usize,
    /// The largest of all instances: updated as memory grows, not when the invocation
    /// ends, which may be long after its answer.
    host_peak: Arc<AtomicU64>,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory, recording the host's peak in
    /// `host_peak`.
    pub(super) fn new(limit: usize, host_peak: Arc<AtomicU64>) -> MemoryLimiter {
        MemoryLimiter { limit, peak: 0, host_peak }
    }

    /// The largest linear memory granted so far, in bytes.
    pub(super) fn peak(&self) -> usize {
        self.peak
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        self.host_peak.fetch_max(desired as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}
