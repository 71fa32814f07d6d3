//! `host-sim bench`: the uploader's figures, measured side by side in one process
//! against the simulator and the file server over loopback, reported as raw figures
//! and ratios (absolute times are not stable on shared machines; ratios are).

use crate::client::VodClient;
use crate::kv::SqliteKv;
use crate::native::NativeIo;
use crate::{files, http, up, vod};
use bytes::Bytes;
use http_body_util::BodyExt;
use md5::Digest as _;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vod_uploader::protocol::{Credentials, Endpoint, InitUpload, Signer};
use vod_uploader::sign::Algorithm;

const MIB: u64 = 1 << 20;
const TOKEN: &str = "bench-token";

/// Benchmark settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Size of the end-to-end file, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub e2e_mib: u64,
    /// Sizes whose peak memory and reads are compared, in MiB.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256u64, 4096])]
    pub memory_mib: Vec<u64>,
    /// Concurrent small uploads for the `many` case.
    #[arg(long, default_value_t = 200)]
    pub many: u64,
    /// The component's budget per invocation, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub budget_ms: u64,
    /// Parts in flight at once (component and native alike).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The application manifest.
    #[arg(long, default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Where to write the JSON copy of the results.
    #[arg(long, default_value = "target/bench.json")]
    pub json: PathBuf,
}

struct Servers {
    sim: vod::Running,
    files: files::Running,
    _dirs: Vec<tempfile::TempDir>,
}

async fn servers() -> anyhow::Result<Servers> {
    let shm = std::path::Path::new("/dev/shm");
    let sim_dir = if shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
    let root = tempfile::tempdir()?;
    let mut config = vod::Config::new(sim_dir.path().to_owned());
    // Limits of the real service would only measure waiting; the benchmark measures work.
    config.limits = vod::ratelimit::Limits { init: 0, part: 0, finish: 0 };
    let sim = vod::start(config).await?;
    let files = files::start(root.path().to_owned(), "127.0.0.1:0".parse()?).await?;
    Ok(Servers { sim, files, _dirs: vec![sim_dir, root] })
}

async fn host(args: &BenchArgs, s: &Servers, kv: &std::path::Path) -> anyhow::Result<up::Running> {
    up::start(up::UpConfig {
        manifest: args.manifest.clone(),
        listen: "127.0.0.1:0".parse()?,
        variables: vec![
            ("vod_secret_id".into(), vod::DEV_SECRET_ID.into()),
            ("vod_secret_key".into(), vod::DEV_SECRET_KEY.into()),
            ("vod_endpoint".into(), s.sim.endpoint()),
            ("vod_origin".into(), format!("http://{}", s.sim.addr)),
            ("source_origin".into(), format!("http://{}", s.files.addr)),
            ("api_token".into(), TOKEN.into()),
            ("budget_ms".into(), args.budget_ms.to_string()),
            ("concurrency".into(), args.concurrency.to_string()),
        ],
        dirs: vec![],
        kv_path: kv.to_owned(),
        limits: up::Limits { time: Duration::from_millis(args.budget_ms + 20_000), ..up::Limits::default() },
        chaos_kill_rate: 0.0,
        chaos_window: Duration::ZERO,
        seed: 0,
        tick: None,
    })
    .await
}

async fn call(client: &http::HttpClient, addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    http::api_call(client, addr, method, path, body, Some(TOKEN)).await
}

/// One upload measured.
#[derive(Debug, Clone, Default)]
struct Run {
    seconds: f64,
    invocations: u64,
    source_bytes: u64,
    source_requests: u64,
    outbound: u64,
    kv_writes: u64,
    peak_memory: u64,
}

fn gen_url(s: &Servers, size: u64, seed: u64) -> String {
    format!("http://{}/gen/{size}/{seed}", s.files.addr)
}

/// Uploads a generated source through the wasm component on a fresh host.
async fn wasm_upload(args: &BenchArgs, s: &Servers, size: u64, seed: u64) -> anyhow::Result<Run> {
    let kv_dir = tempfile::tempdir()?;
    let host = host(args, s, &kv_dir.path().join("kv.sqlite")).await?;
    let client = http::client();
    let (bytes0, requests0) = (s.files.stats.bytes.load(Ordering::Relaxed), s.files.stats.requests.load(Ordering::Relaxed));
    let started = Instant::now();
    let (status, mut v) = call(&client, host.addr, "POST", "/uploads", &json!({ "source": gen_url(s, size, seed) }).to_string()).await?;
    anyhow::ensure!(status == 201, "create answered {status}: {v}");
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    while v["state"] != "done" {
        anyhow::ensure!(v["state"] != "failed", "upload failed: {v}");
        let (status, next) = call(&client, host.addr, "POST", &format!("/uploads/{id}/advance"), "").await?;
        anyhow::ensure!(status == 200, "advance answered {status}: {next}");
        v = next;
    }
    Ok(Run {
        seconds: started.elapsed().as_secs_f64(),
        invocations: v["invocations"].as_u64().unwrap_or(0),
        source_bytes: s.files.stats.bytes.load(Ordering::Relaxed) - bytes0,
        source_requests: s.files.stats.requests.load(Ordering::Relaxed) - requests0,
        outbound: host.stats.outbound.load(Ordering::Relaxed),
        kv_writes: v["stats"]["kvWrites"].as_u64().unwrap_or(0),
        peak_memory: host.stats.peak_memory.load(Ordering::Relaxed),
    })
}

/// The same core compiled natively, driving the same servers.
async fn native_upload(args: &BenchArgs, s: &Servers, size: u64, seed: u64) -> anyhow::Result<Run> {
    let kv_dir = tempfile::tempdir()?;
    let io = NativeIo::new(Arc::new(SqliteKv::open(&kv_dir.path().join("kv.sqlite"))?));
    let mut settings = vod_uploader::engine::Settings::new(Signer {
        endpoint: Endpoint::parse(&s.sim.endpoint())?,
        credentials: Credentials::new(vod::DEV_SECRET_ID, vod::DEV_SECRET_KEY),
        region: "gz".into(),
        algorithm: Algorithm::HmacSha1,
    });
    settings.budget = Duration::from_millis(args.budget_ms);
    settings.concurrency = args.concurrency;
    let source = vod_uploader::source::Source::Url(gen_url(s, size, seed));
    let (file_name, file_type) = source.default_names();
    let spec = vod_uploader::checkpoint::Spec {
        source,
        file_name,
        file_type,
        tags: vec![],
        class_id: None,
        is_transcode: false,
        is_screenshot: false,
        is_watermark: false,
        data_size: MIB,
    };
    let (bytes0, requests0) = (s.files.stats.bytes.load(Ordering::Relaxed), s.files.stats.requests.load(Ordering::Relaxed));
    let started = Instant::now();
    let (rec, _) = vod_uploader::engine::create(&io, spec).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let rec = loop {
        let rec = vod_uploader::engine::advance(&io, &settings, &rec.id, Instant::now() + settings.budget)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .ok_or_else(|| anyhow::anyhow!("upload vanished"))?;
        if rec.state.is_final() {
            break rec;
        }
    };
    anyhow::ensure!(rec.state == vod_uploader::checkpoint::State::Done, "native upload ended {:?}", rec.error);
    Ok(Run {
        seconds: started.elapsed().as_secs_f64(),
        invocations: rec.invocations,
        source_bytes: s.files.stats.bytes.load(Ordering::Relaxed) - bytes0,
        source_requests: s.files.stats.requests.load(Ordering::Relaxed) - requests0,
        outbound: io.counters().requests,
        kv_writes: io.counters().kv_writes,
        peak_memory: 0,
    })
}

/// The floor: a minimal native program doing only what the protocol needs, with no
/// checkpoints: one streamed pass for the SHA-1 and part MD5s, then every part sent
/// once while the source streams again, at the same concurrency.
async fn floor_upload(args: &BenchArgs, s: &Servers, size: u64, seed: u64) -> anyhow::Result<f64> {
    let client = http::client();
    let url: hyper::Uri = gen_url(s, size, seed).parse()?;
    let vod = VodClient::new(&s.sim.endpoint(), Credentials::new(vod::DEV_SECRET_ID, vod::DEV_SECRET_KEY), Algorithm::HmacSha1)?;
    let started = Instant::now();
    let mut sha = sha1::Sha1::new();
    let mut md5s = Vec::new();
    let mut part = md5::Md5::new();
    let mut in_part = 0u64;
    let mut body = client.get(url.clone()).await?.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(mut data) = frame?.into_data() {
            sha.update(&data);
            while !data.is_empty() {
                let take = (MIB - in_part).min(data.len() as u64) as usize;
                part.update(&data[..take]);
                in_part += take as u64;
                data = data.slice(take..);
                if in_part == MIB {
                    md5s.push(vod_uploader::hex::encode(&std::mem::replace(&mut part, md5::Md5::new()).finalize()));
                    in_part = 0;
                }
            }
        }
    }
    if in_part > 0 {
        md5s.push(vod_uploader::hex::encode(&part.finalize()));
    }
    let file_sha = vod_uploader::hex::encode(&sha.finalize());
    vod.init(InitUpload { file_name: "floor".into(), file_sha: file_sha.clone(), file_size: size, data_size: MIB, file_type: "mp4".into(), ..Default::default() })
        .await?;
    let mut body = client.get(url).await?.into_body();
    let mut tasks = tokio::task::JoinSet::new();
    let mut buf = Vec::with_capacity(MIB as usize);
    let mut index = 0usize;
    let flush = |buf: &mut Vec<u8>, index: &mut usize, tasks: &mut tokio::task::JoinSet<_>| {
        let (vod, sha, md5) = (vod.clone(), file_sha.clone(), md5s[*index].clone());
        let offset = *index as u64 * MIB;
        let bytes = Bytes::from(std::mem::replace(buf, Vec::with_capacity(MIB as usize)));
        tasks.spawn(async move { vod.part_with_md5(&sha, offset, bytes, md5).await });
        *index += 1;
    };
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let mut data = &data[..];
            while !data.is_empty() {
                let take = (MIB as usize - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if buf.len() == MIB as usize {
                    while tasks.len() >= args.concurrency {
                        tasks.join_next().await.expect("running")??;
                    }
                    flush(&mut buf, &mut index, &mut tasks);
                }
            }
        }
    }
    if !buf.is_empty() {
        flush(&mut buf, &mut index, &mut tasks);
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    vod.finish(&file_sha).await?;
    Ok(started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs every case and prints the table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let s = servers().await?;
    let size = args.e2e_mib * MIB;
    eprintln!("e2e: {} MiB through the wasm component, natively, and the floor ...", args.e2e_mib);
    let wasm = wasm_upload(&args, &s, size, 1).await?;
    let native = native_upload(&args, &s, size, 2).await?;
    let floor = floor_upload(&args, &s, size, 3).await?;
    let mb = |secs: f64| size as f64 / 1e6 / secs;

    eprintln!("overhead: idle advances ...");
    let kv_dir = tempfile::tempdir()?;
    let h = host(&args, &s, &kv_dir.path().join("kv.sqlite")).await?;
    let client = http::client();
    let (_, done) = call(&client, h.addr, "POST", "/uploads", &json!({ "source": gen_url(&s, MIB, 9) }).to_string()).await?;
    let id = done["id"].as_str().unwrap_or_default().to_owned();
    let mut idle = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        call(&client, h.addr, "POST", &format!("/uploads/{id}/advance"), "").await?;
        idle.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    idle.sort_by(f64::total_cmp);

    eprintln!("memory and reads: {:?} MiB ...", args.memory_mib);
    let mut by_size = Vec::new();
    for (i, mib) in args.memory_mib.iter().enumerate() {
        by_size.push((*mib, wasm_upload(&args, &s, mib * MIB, 100 + i as u64).await?));
    }

    eprintln!("many: {} concurrent small uploads ...", args.many);
    let kv_dir = tempfile::tempdir()?;
    let h = host(&args, &s, &kv_dir.path().join("kv.sqlite")).await?;
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..args.many {
        let (client, addr) = (http::client(), h.addr);
        let body = json!({ "source": gen_url(&s, (1 + i % 5) * MIB, 1000 + i) }).to_string();
        creates.spawn(async move { call(&client, addr, "POST", "/uploads", &body).await });
    }
    while let Some(done) = creates.join_next().await {
        done??;
    }
    loop {
        let (_, v) = call(&client, h.addr, "POST", "/tick", "").await?;
        if v["waiting"] == 0 {
            break;
        }
    }
    let many_secs = started.elapsed().as_secs_f64();

    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let e2e_gib = gib(size);
    let table = json!({
        "e2e": {
            "mib": args.e2e_mib, "budget_ms": args.budget_ms, "concurrency": args.concurrency,
            "wasm_mb_s": mb(wasm.seconds), "native_mb_s": mb(native.seconds), "floor_mb_s": mb(floor),
            "wasm_over_native": native.seconds / wasm.seconds, "wasm_over_floor": floor / wasm.seconds,
            "wasm_invocations": wasm.invocations, "native_invocations": native.invocations,
        },
        "overhead": { "idle_advance_ms_median": percentile(&idle, 0.5), "idle_advance_ms_p95": percentile(&idle, 0.95) },
        "memory": by_size.iter().map(|(mib, r)| json!({ "mib": mib, "peak_linear_memory_mib": r.peak_memory as f64 / MIB as f64 })).collect::<Vec<_>>(),
        "reads": by_size.iter().chain(std::iter::once(&(args.e2e_mib, wasm.clone()))).map(|(mib, r)| json!({
            "mib": mib, "bytes_read_over_size": r.source_bytes as f64 / (mib * MIB) as f64,
            "source_requests_per_gib": r.source_requests as f64 / gib(mib * MIB),
        })).collect::<Vec<_>>(),
        "requests": {
            "wasm_outbound_per_gib": wasm.outbound as f64 / e2e_gib, "wasm_kv_writes_per_gib": wasm.kv_writes as f64 / e2e_gib,
            "native_outbound_per_gib": native.outbound as f64 / e2e_gib, "native_kv_writes_per_gib": native.kv_writes as f64 / e2e_gib,
            "parts_per_gib": 1024,
        },
        "many": { "uploads": args.many, "seconds": many_secs, "uploads_per_s": args.many as f64 / many_secs },
    });
    println!("| id | figure |\n|---|---|");
    println!("| e2e | wasm {:.0} MB/s, native {:.0} MB/s, floor {:.0} MB/s; wasm/native {:.2}, wasm/floor {:.2}; invocations wasm {} native {} ({} MiB, {} ms budget) |",
        mb(wasm.seconds), mb(native.seconds), mb(floor), native.seconds / wasm.seconds, floor / wasm.seconds, wasm.invocations, native.invocations, args.e2e_mib, args.budget_ms);
    println!("| overhead | idle advance {:.1} ms median, {:.1} ms p95 |", percentile(&idle, 0.5), percentile(&idle, 0.95));
    for (mib, r) in &by_size {
        println!(
            "| memory/reads {mib} MiB | peak linear memory {:.1} MiB; read {:.3} x size in {} source requests ({:.1}/GiB) |",
            r.peak_memory as f64 / MIB as f64,
            r.source_bytes as f64 / (mib * MIB) as f64,
            r.source_requests,
            r.source_requests as f64 / gib(mib * MIB)
        );
    }
    println!(
        "| requests | wasm: {:.0} outbound and {:.0} KV writes per GiB (1024 parts/GiB); native: {:.0} and {:.0} |",
        wasm.outbound as f64 / e2e_gib, wasm.kv_writes as f64 / e2e_gib, native.outbound as f64 / e2e_gib, native.kv_writes as f64 / e2e_gib
    );
    println!("| many | {} uploads of 1-5 MiB in {:.1} s: {:.1} uploads/s |", args.many, many_secs, args.many as f64 / many_secs);
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_vec_pretty(&table)?)?;
    eprintln!("JSON written to {}", args.json.display());
    Ok(())
}
