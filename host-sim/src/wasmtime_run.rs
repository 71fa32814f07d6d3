//! `host-sim wasmtime-run`: a command component run as wasmtime 48's CLI runs it with
//! `wasmtime run [-S http] [-S inherit-network] [--dir HOST[::GUEST]]... [--env
//! NAME[=VALUE]]... WASM [ARGS]...`, for machines without the wasmtime CLI (its
//! crates are ours already) and for tests that kill the process mid-run.
//!
//! What it sets up as the CLI does: the same wasmtime crates and defaults; WASI p2 with
//! the standard streams inherited (a terminal stays one); the program's name as
//! `argv[0]` as given; each `--dir` preopened read-write; each `--env NAME` inherited
//! and `--env NAME=VALUE` set; with `-S http`, `wasi:http` outgoing requests to any
//! host (core modules refused, as the CLI refuses them); with `-S inherit-network`,
//! sockets. The exit code is the program's own (`exit(N)`), 1 when `run` returns an
//! error, and 128 + SIGABRT on a trap (as wasmtime on Unix).

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::PathBuf;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The arguments, as `wasmtime run` takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A host directory the program may use, at GUEST (default: the same path).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    pub dirs: Vec<String>,
    /// An environment variable: NAME inherits it from this process, NAME=VALUE sets it.
    #[arg(long = "env", value_name = "NAME[=VAL]")]
    pub envs: Vec<String>,
    /// WASI options: `http` (wasi:http outgoing requests), `inherit-network`; `cli` is on.
    #[arg(short = 'S', value_name = "KEY[=VAL]")]
    pub wasi: Vec<String>,
    /// The command component (a core module is run with the preview1 command adapter,
    /// unless `-S http`), then the program's arguments: everything after WASM is the
    /// program's, flags included, as `wasmtime run` reads it.
    #[arg(value_name = "WASM [ARGS]...", trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub wasm_and_args: Vec<String>,
}

/// `-S` options.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WasiOptions {
    http: bool,
    inherit_network: bool,
}

fn wasi_options(given: &[String]) -> Result<WasiOptions> {
    let mut options = WasiOptions::default();
    for option in given.iter().flat_map(|o| o.split(',')) {
        let (key, value) = option.split_once('=').unwrap_or((option, "y"));
        let on = match value {
            "y" | "yes" | "true" => true,
            "n" | "no" | "false" => false,
            other => bail!("-S {key}={other}: use y or n"),
        };
        match key {
            "http" => options.http = on,
            "inherit-network" => options.inherit_network = on,
            "cli" | "common" => {}
            other => bail!("unknown -S option {other:?} (this stand-in knows http, inherit-network, cli)"),
        }
    }
    Ok(options)
}

/// `HOST[::GUEST]`.
fn dir(text: &str) -> (String, String) {
    match text.split_once("::") {
        Some((host, guest)) => (host.to_owned(), guest.to_owned()),
        None => (text.to_owned(), text.to_owned()),
    }
}

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: wasmtime_wasi_http::default_hooks() }
    }
}

/// Runs the program; returns its exit code.
pub async fn run(args: RunArgs) -> Result<i32> {
    let options = wasi_options(&args.wasi)?;
    let (wasm, program_args) = args.wasm_and_args.split_first().context("the WASM file is missing")?;
    let wasm = PathBuf::from(wasm);
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    if options.http && componentize::is_core_module(&bytes) {
        bail!("cannot enable wasi-http for core wasm modules: {} must be a component", wasm.display());
    }
    let engine = Engine::new(&wasmtime::Config::new())?;
    let component = Component::new(&engine, componentize::componentize(&bytes, componentize::Adapter::Command)?)
        .map_err(|e| anyhow!("{} is not a component wasmtime can run: {e}", wasm.display()))?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    if options.http {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    }
    let mut wasi = WasiCtx::builder();
    let argv0 = wasm.display().to_string();
    let argv: Vec<&str> = std::iter::once(argv0.as_str()).chain(program_args.iter().map(String::as_str)).collect();
    wasi.args(&argv).inherit_stdio();
    for env in &args.envs {
        match env.split_once('=') {
            Some((name, value)) => wasi.env(name, value),
            None => match std::env::var(env) {
                Ok(value) => wasi.env(env, value),
                Err(_) => &mut wasi,
            },
        };
    }
    for text in &args.dirs {
        let (host, guest) = dir(text);
        wasi.preopened_dir(&host, &guest, FsPerms::ReadWrite).map_err(|e| anyhow!("failed to open directory '{host}': {e}"))?;
    }
    if options.inherit_network {
        wasi.inherit_network().allow_ip_name_lookup(true);
    }
    let mut store = Store::new(&engine, State { wasi: wasi.build(), http: WasiHttpCtx::new(), table: ResourceTable::new() });
    let ran = async {
        let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(&mut store, &component, &linker).await?;
        command.wasi_cli_run().call_run(&mut store).await
    }
    .await;
    Ok(match ran {
        Ok(Ok(())) => 0,
        Ok(Err(())) => 1,
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None if e.downcast_ref::<wasmtime::Trap>().is_some() => {
                eprintln!("Error: {e:#}");
                128 + 6
            }
            // As the CLI says it, with the flag a component importing wasi:http lacks.
            None if !options.http && format!("{e:#}").contains("wasi:http") => {
                return Err(anyhow!("{e:#}\n(the program uses wasi:http: run it with -S http)"))
            }
            None => return Err(anyhow!("{e:#}")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_the_cli_reads_them() {
        let s = |v: &[&str]| wasi_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["http", "inherit-network"]).unwrap(), WasiOptions { http: true, inherit_network: true });
        assert_eq!(s(&["http=n,inherit-network=y"]).unwrap(), WasiOptions { http: false, inherit_network: true });
        assert!(s(&["threads"]).unwrap_err().to_string().contains("threads"));
        assert_eq!(dir(".::/data"), (".".into(), "/data".into()));
        assert_eq!(dir("/tmp"), ("/tmp".into(), "/tmp".into()));
    }
}
