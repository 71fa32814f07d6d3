//! The `host-sim` command line.

use clap::{Parser, Subcommand};
use host_sim::vod::{self, faults::FaultKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vod_uploader::protocol::Credentials;

#[derive(Parser)]
#[command(name = "host-sim", version, about = "Stand-in for the VOD service and the Spin host that vod-uploader runs against")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a simulator of the VOD server-upload API (legacy v2) on /v2/index.php and /v3/index.php.
    Vod(VodArgs),
    /// Print the Base64 API v2 signature of a request (HmacSHA256 when SignatureMethod=HmacSHA256 is among the parameters).
    Sign(SignArgs),
    /// The main job: simulator + file server + the real component under `host-sim up`; upload a generated sample file through the component's API and verify the stored copy.
    Demo(host_sim::demo::DemoArgs),
    /// Like demo, for a file of yours.
    Upload(host_sim::demo::UploadArgs),
    /// Measure the simulator's ingest rate: concurrent clients sending 1 MiB UploadParts over loopback.
    BenchVod(host_sim::vod_bench::BenchArgs),
    /// The uploader's benchmarks: wasm vs native vs floor, overhead, memory, reads, requests, many uploads.
    Bench(host_sim::uploader_bench::BenchArgs),
    /// Run the component from spin.toml like `spin up`: wasmtime, Spin's imports, Spin's limits.
    Up(UpArgs),
    /// Serve files with Range, ETag and Last-Modified, like object storage (and /gen/{size}/{seed}).
    Files(FilesArgs),
    /// Soak: three `host-sim up` on one Redis with chaos kills, a faulty simulator, Redis and the simulator restarted mid-run, quotas checked; every upload must end done and byte-identical (exit code 1 otherwise).
    Soak(host_sim::soak::SoakArgs),
    /// Receive the component's completion webhooks, check their signatures, print one JSON line each.
    Hooks(host_sim::hooks_cli::HooksArgs),
    /// Run a command component as `wasmtime run` (wasmtime 48's CLI) does: -S http, --dir HOST::GUEST, --env NAME[=VAL]; exits with the program's code.
    WasmtimeRun(host_sim::wasmtime_run::RunArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest.
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on; port 0 picks a free port. The address is printed once ready.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// An application variable, NAME=VALUE (SPIN_VARIABLE_NAME in the environment works too).
    #[arg(long = "variable", value_parser = parse_param)]
    variables: Vec<(String, String)>,
    /// Mount a host directory read-only for the guest: HOST::GUEST.
    #[arg(long = "dir", value_parser = parse_dir)]
    dirs: Vec<(PathBuf, String)>,
    /// SQLite file of the `default` key-value store, instead of the state directory's
    /// sqlite_key_value.db.
    #[arg(long)]
    kv: Option<PathBuf>,
    /// Application state directory, as Spin's: the `default` key-value store is
    /// sqlite_key_value.db in it. Default: .spin next to the manifest (where `spin up`
    /// keeps it); "" keeps the store in memory.
    #[arg(long)]
    state_dir: Option<String>,
    /// Spin's runtime configuration file (runtime-config.toml): its
    /// [key_value_store.LABEL] tables define those stores (type "redis" with url, or
    /// "spin" with path), replacing the state directory's for the labels they name.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Cap this instance's outbound HTTP bandwidth at this many megabits per second,
    /// each direction on its own (request bodies sent, response bodies received),
    /// shared by all its concurrent requests. Default: no cap.
    #[arg(long, value_parser = parse_mbps)]
    outbound_mbps: Option<f64>,
    /// Open a new connection for every outbound HTTP request instead of keeping
    /// connections for the app's later requests (Spin's `connection_pooling = false`).
    #[arg(long)]
    no_connection_pooling: bool,
    /// Wall-clock limit per invocation, in milliseconds (Fermyon Cloud: 30 s).
    #[arg(long, default_value_t = 30_000)]
    time_limit_ms: u64,
    /// Linear memory limit per instance, in MiB.
    #[arg(long, default_value_t = 128)]
    memory_limit_mib: usize,
    /// Key length limit in bytes (Fermyon Cloud: 255).
    #[arg(long, default_value_t = 255)]
    key_limit: usize,
    /// Value size limit in bytes (Fermyon Cloud: 1 MB).
    #[arg(long, default_value_t = 1 << 20)]
    value_limit: usize,
    /// Keys per store (Fermyon Cloud: 1024).
    #[arg(long, default_value_t = 1024)]
    keys_limit: u64,
    /// Call POST /tick this often (milliseconds), as a cron trigger would.
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Share of invocations (0..1) killed at a random instant.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    chaos_kill_rate: f64,
    /// Kill instants are drawn from [0, this many milliseconds).
    #[arg(long, default_value_t = 1000)]
    chaos_window_ms: u64,
    /// Seed of the kills.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct FilesArgs {
    /// Directory to serve.
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port. The address is printed once ready.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve as a private S3 bucket (path style, /BUCKET/KEY): every request must be
    /// signed with AWS SigV4 by this key, given as KEYID:SECRET.
    #[arg(long, env = "HOST_SIM_SIGV4", value_name = "KEYID:SECRET", hide_env_values = true)]
    sigv4: Option<host_sim::files_auth::Auth>,
}

fn parse_mbps(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m > 0.0)
        .ok_or_else(|| format!("{s:?} is not a bandwidth in megabits per second (a number above 0, e.g. 100 or 2.5)"))
}

fn parse_dir(s: &str) -> Result<(PathBuf, String), String> {
    s.split_once("::")
        .filter(|(h, g)| !h.is_empty() && g.starts_with('/'))
        .map(|(h, g)| (PathBuf::from(h), g.to_owned()))
        .ok_or_else(|| format!("{s:?} is not HOST::/GUEST"))
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    let running = host_sim::up::server::start(host_sim::up::UpConfig {
        manifest: args.manifest,
        listen: args.listen,
        variables: args.variables,
        dirs: args.dirs,
        state_dir: host_sim::up::StateDir::from_flags(args.kv, args.state_dir.as_deref()),
        runtime_config: args.runtime_config_file,
        outbound_mbps: args.outbound_mbps,
        connection_pooling: !args.no_connection_pooling,
        limits: host_sim::up::Limits {
            time: Duration::from_millis(args.time_limit_ms),
            memory: args.memory_limit_mib << 20,
            key_bytes: args.key_limit,
            value_bytes: args.value_limit,
            keys: args.keys_limit,
        },
        chaos_kill_rate: args.chaos_kill_rate,
        chaos_window: Duration::from_millis(args.chaos_window_ms),
        seed: args.seed,
        tick: args.tick_ms.map(Duration::from_millis),
    })
    .await?;
    println!("host-sim up listening on {}", running.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn run_files(args: FilesArgs) -> anyhow::Result<()> {
    let running = host_sim::files::start_with(args.root, args.listen, args.sigv4).await?;
    println!("host-sim files listening on {}", running.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[derive(clap::Args)]
struct VodArgs {
    /// Address to listen on; port 0 picks a free port. The address is printed once ready.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Data directory: SQLite database (sessions, parts, files) and part data.
    #[arg(long, default_value = ".sim-data/vod")]
    data: PathBuf,
    /// Accepted SecretId; repeat together with --secret-key for several key pairs.
    /// Without any, the built-in development pair is used (see the README).
    #[arg(long = "secret-id", env = "VOD_SECRET_ID", value_delimiter = ',')]
    secret_ids: Vec<String>,
    /// SecretKey of the --secret-id at the same position.
    #[arg(long = "secret-key", env = "VOD_SECRET_KEY", value_delimiter = ',', hide_env_values = true)]
    secret_keys: Vec<String>,
    /// Allowed distance between a request's Timestamp and the server's clock, in seconds.
    #[arg(long, default_value_t = 300)]
    timestamp_window: u64,
    /// InitUpload calls per minute per SecretId (0 = unlimited).
    #[arg(long, default_value_t = 100)]
    rate_init: u32,
    /// UploadPart calls per minute per SecretId (0 = unlimited).
    #[arg(long, default_value_t = 10_000)]
    rate_part: u32,
    /// FinishUpload calls per minute per SecretId (0 = unlimited).
    #[arg(long, default_value_t = 100)]
    rate_finish: u32,
    /// Share of protocol requests (0..1) that meet an injected fault.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fault_rate: f64,
    /// Narrow the injected faults to these kinds (comma-separated); all kinds when absent.
    #[arg(long, value_enum, value_delimiter = ',')]
    fault_kinds: Vec<FaultKind>,
    /// Seed that makes the injected faults reproducible.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay of a "slow" fault, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    slow_ms: u64,
    /// POST the NewFileUpload event here after each finished upload (5 s timeout, 2 retries).
    #[arg(long)]
    notify_url: Option<String>,
    /// App id used in play URLs (http://APP.vod2.myqcloud.com/vodAPP/FILEID/f0.TYPE).
    #[arg(long, default_value_t = 10013)]
    app_id: u64,
}

#[derive(clap::Args)]
struct SignArgs {
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Host the request is sent to (as in the Host header).
    #[arg(long)]
    host: String,
    /// Path, e.g. /v2/index.php.
    #[arg(long, default_value = "/v2/index.php")]
    path: String,
    /// SecretKey.
    #[arg(long, env = "VOD_SECRET_KEY", hide_env_values = true)]
    key: String,
    /// Print the string that is signed on stderr too.
    #[arg(long)]
    show_string: bool,
    /// Request parameters, NAME=VALUE with raw (un-encoded) values.
    #[arg(required = true, value_parser = parse_param)]
    params: Vec<(String, String)>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

fn credentials(ids: Vec<String>, keys: Vec<String>) -> anyhow::Result<Vec<Credentials>> {
    anyhow::ensure!(
        ids.len() == keys.len(),
        "--secret-id was given {} times but --secret-key {} times: give them in pairs",
        ids.len(),
        keys.len()
    );
    if ids.is_empty() {
        eprintln!("no --secret-id/--secret-key given: accepting the built-in development SecretId {}", vod::DEV_SECRET_ID);
        return Ok(vec![Credentials::new(vod::DEV_SECRET_ID, vod::DEV_SECRET_KEY)]);
    }
    Ok(ids.into_iter().zip(keys).map(|(id, key)| Credentials::new(id, key)).collect())
}

async fn run_vod(args: VodArgs) -> anyhow::Result<()> {
    let config = vod::Config {
        listen: args.listen,
        data: args.data,
        credentials: credentials(args.secret_ids, args.secret_keys)?,
        timestamp_window_secs: args.timestamp_window,
        limits: vod::ratelimit::Limits { init: args.rate_init, part: args.rate_part, finish: args.rate_finish },
        faults: vod::faults::Faults::new(args.fault_rate, &args.fault_kinds, args.seed, Duration::from_millis(args.slow_ms)),
        notify_url: args.notify_url,
        app_id: args.app_id,
    };
    let running = vod::start(config).await?;
    // Tests and scripts read this line to learn the port.
    println!("host-sim vod listening on {}", running.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn run_soak(args: host_sim::soak::SoakArgs) -> anyhow::Result<()> {
    let json = args.json.clone();
    let report = host_sim::soak::run(args).await?;
    println!("{}", report.text());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report.to_json())?)?;
        eprintln!("JSON written to {}", path.display());
    }
    let failures = report.failures();
    anyhow::ensure!(failures.is_empty(), "the soak failed:\n- {}", failures.join("\n- "));
    println!("soak passed");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The server logs each call; the one-shot commands only warnings.
    // Servers log each call; one-shot commands only warnings (and not the HTTP
    // layer's, which the demo's injected faults would fill).
    host_sim::init_logging(if matches!(cli.command, Command::Vod(_) | Command::Up(_) | Command::Files(_)) {
        "info"
    } else {
        "warn,wasmtime_wasi_http=error,host_sim::up=error"
    });
    if let Command::WasmtimeRun(args) = cli.command {
        return match host_sim::wasmtime_run::run(args).await {
            Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("Error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Command::Vod(args) => run_vod(args).await,
        Command::Sign(args) => {
            let params = args.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            if args.show_string {
                eprintln!("{}", vod_uploader::sign::string_to_sign(&args.method, &args.host, &args.path, params.clone()));
            }
            vod_uploader::sign::sign(&args.key, &args.method, &args.host, &args.path, params)
                .map(|signature| println!("{signature}"))
                .map_err(anyhow::Error::from)
        }
        Command::Demo(args) => host_sim::demo::run(args).await,
        Command::Upload(args) => host_sim::demo::upload(args).await,
        Command::BenchVod(args) => host_sim::vod_bench::run(args).await,
        Command::Bench(args) => host_sim::uploader_bench::run(args).await,
        Command::Up(args) => run_up(args).await,
        Command::Files(args) => run_files(args).await,
        Command::Hooks(args) => host_sim::hooks_cli::run(args).await,
        Command::Soak(args) => run_soak(args).await,
        Command::WasmtimeRun(_) => unreachable!("run above"),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
