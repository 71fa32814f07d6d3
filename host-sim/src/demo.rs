//! `host-sim demo` (the README's main job) and `host-sim upload FILE`: the VOD
//! simulator, a Range file server holding the file, and `host-sim up` running the
//! real component from `spin.toml` with short invocation budgets; an upload created
//! through the component's API and driven to the end, then checked byte for byte.

use crate::stack::{Stack, StackOptions};
use crate::{http, up, vod};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Demo settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Size of the generated sample file, in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Seed of the sample data and of the simulator's faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the component runs.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `host-sim upload` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    /// The file to upload.
    pub file: PathBuf,
    /// How the component runs.
    #[command(flatten)]
    pub run: RunArgs,
}

/// How the component runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The application manifest.
    #[arg(long, default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// The component's work budget per invocation, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub budget_ms: u64,
    /// Parts in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Share of the simulator's answers that are faulty (0..1).
    #[arg(long, default_value_t = 0.02)]
    pub fault_rate: f64,
}

/// What a finished run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final status from the component.
    pub status: Value,
    /// Wall time from creation to done.
    pub seconds: f64,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let path = work.path().join("sample-video.mp4");
    println!("generating a {} MiB sample file ...", args.size_mib);
    let (p, size, seed) = (path.clone(), args.size_mib << 20, args.seed);
    tokio::task::spawn_blocking(move || crate::sample::write_sample(&p, size, seed)).await??;
    upload_with_component(&path, &args.run, args.seed).await.map(|_| ())
}

/// Uploads a user's file.
pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    upload_with_component(&args.file, &args.run, 1).await.map(|_| ())
}

async fn api(client: &http::HttpClient, addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    http::api_call(client, addr, method, path, body, Some(DEMO_TOKEN)).await
}

/// The API token the demo's component is started with.
pub const DEMO_TOKEN: &str = "demo-token";

/// Starts the simulator, a file server for `file`'s directory and the component,
/// uploads `file` through the component's API and verifies the simulator's copy.
pub async fn upload_with_component(file: &Path, run: &RunArgs, seed: u64) -> anyhow::Result<Outcome> {
    let file = std::fs::canonicalize(file)?;
    let size = std::fs::metadata(&file)?.len();
    anyhow::ensure!(size > 0, "{} is empty", file.display());
    let dir = file.parent().unwrap_or(Path::new("/")).to_owned();
    let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow::anyhow!("file name is not UTF-8"))?;

    let faults = vod::faults::Faults::new(run.fault_rate, &[], seed, Duration::from_millis(20));
    let stack = Stack::start(StackOptions { faults, files_root: Some(dir), ..StackOptions::default() }).await?;
    let (budget, concurrency) = (run.budget_ms.to_string(), run.concurrency.to_string());
    let mut config = stack.up_config(&run.manifest, DEMO_TOKEN, &[("budget_ms", &budget), ("concurrency", &concurrency)]);
    config.seed = seed;
    let host = up::server::start(config).await?;
    let (sim, server) = (&stack.sim, &stack.files);
    println!("VOD simulator on {}, file server on {}, component on {}", sim.addr, server.addr, host.addr);

    let client = http::client();
    let started = Instant::now();
    let body = serde_json::json!({ "source": format!("http://{}/{}", server.addr, name) }).to_string();
    let (status, mut state) = api(&client, host.addr, "POST", "/uploads", &body).await?;
    anyhow::ensure!(status == 201 || status == 200, "POST /uploads answered {status}: {state}");
    let id = state["id"].as_str().unwrap_or_default().to_owned();
    println!("upload {id}: {} bytes in {}-byte parts, {} ms per invocation", size, state["dataSize"], run.budget_ms);
    let bar = indicatif::ProgressBar::new(2 * size)
        .with_style(indicatif::ProgressStyle::with_template("{bar:40} {msg}").expect("valid template"));
    loop {
        let hashed = state["hashedBytes"].as_u64().unwrap_or(0);
        let uploaded = state["uploadedBytes"].as_u64().unwrap_or(0);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_position(hashed + uploaded);
        bar.set_message(format!(
            "{:>9} | hashed {} MiB, uploaded {} MiB | {} invocations | {:.0} MiB/s",
            state["state"].as_str().unwrap_or("?"),
            hashed >> 20,
            uploaded >> 20,
            state["invocations"],
            (hashed + uploaded) as f64 / 2.0 / 1048576.0 / secs,
        ));
        match state["state"].as_str() {
            Some("done") => break,
            Some("failed") | Some("cancelled") => anyhow::bail!("upload ended {}: {}", state["state"], state["error"]),
            _ => {}
        }
        let (status, next) = api(&client, host.addr, "POST", &format!("/uploads/{id}/advance"), "").await?;
        // An invocation killed by the platform answers 500; the next one resumes.
        if status == 200 {
            state = next;
        }
    }
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "done in {seconds:.1} s over {} invocations: fileId {} url {}",
        state["invocations"],
        state["fileId"].as_str().unwrap_or("?"),
        state["url"].as_str().unwrap_or("?")
    );

    // Verify: the simulator's stored copy has the source's SHA-1.
    let expected = crate::sample::sha1_of_file(&file)?.0;
    let (received, actual) = stack.stored_sha1(state["fileId"].as_str().unwrap_or("")).await?;
    anyhow::ensure!(
        received == size && actual == expected && state["fileSha"].as_str() == Some(expected.as_str()),
        "verification failed: the simulator holds {received} bytes with SHA-1 {actual}; the source has {size} bytes with SHA-1 {expected}"
    );
    println!("verified: the simulator's copy is byte-identical to the source (SHA-1 {actual})");
    let stats = &host.stats;
    println!(
        "platform: {} invocations, {} outbound requests, peak linear memory {} MiB",
        stats.invocations.load(std::sync::atomic::Ordering::Relaxed),
        stats.outbound.load(std::sync::atomic::Ordering::Relaxed),
        stats.peak_memory.load(std::sync::atomic::Ordering::Relaxed) >> 20
    );
    Ok(Outcome { status: state, seconds })
}
