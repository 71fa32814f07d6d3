//! `host-sim bench`: the uploader's figures, measured side by side in one process
//! against the simulator and the file server over loopback, reported as raw figures
//! and ratios (absolute times are not stable on shared machines; ratios are).
//!
//! Every case is a function returning its table rows and its JSON; `run` strings them
//! together. Timed runs that are compared with each other are interleaved (wasm,
//! native, floor, wasm, ...) and summarized by their median, so a burst of load from
//! elsewhere on the machine lands on all of them alike.

use crate::client::VodClient;
use crate::kv::SqliteKv;
use crate::native::NativeIo;
use crate::stack::{Stack, StackOptions};
use crate::{http, up, vod};
use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use http_body_util::BodyExt;
use md5::Digest as _;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vod_uploader::protocol::{Credentials, InitUpload};
use vod_uploader::sign::Algorithm;

mod scale;

const MIB: u64 = 1 << 20;
const TOKEN: &str = "bench-token";
/// The part size of every upload here (the service's larger size).
const PART: u64 = MIB;
/// The component's default read-once threshold (`read_once_mib` in spin.toml).
const READ_ONCE_MIB: u64 = 8;

/// The benchmark's cases, as `--cases` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// SHA-1 and MD5 throughput inside wasm vs natively.
    Hash,
    /// A whole upload: wasm component vs the same engine natively vs a minimal program.
    E2e,
    /// Per-invocation cost of an advance with no work, and of one that checkpoints.
    Overhead,
    /// Peak memory and source reads by file size.
    Memory,
    /// Many small uploads at once.
    Many,
    /// One large file by one instance, then by several on one Redis (see `scale`).
    Scale,
}

/// Which e2e runs to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The wasm component under `host-sim up`.
    Wasm,
    /// The same engine compiled natively.
    Native,
    /// A minimal native program: one hashing pass, every part sent once.
    Floor,
}

/// Benchmark settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The cases to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Case::Hash, Case::E2e, Case::Overhead, Case::Memory, Case::Many, Case::Scale])]
    pub cases: Vec<Case>,
    /// Size of the end-to-end file, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub e2e_mib: u64,
    /// End-to-end rounds (each runs every mode once; medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// The e2e runs to make (one alone is handy under a profiler).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Mode::Wasm, Mode::Native, Mode::Floor])]
    pub modes: Vec<Mode>,
    /// Sizes whose peak memory and reads are compared, in MiB.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256u64, 4096])]
    pub memory_mib: Vec<u64>,
    /// Concurrent small uploads for the `many` case.
    #[arg(long, default_value_t = 200)]
    pub many: u64,
    /// Size of the `scale` case's file, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub scale_mib: u64,
    /// Instances of the `scale` case's second run (the first has one).
    #[arg(long, default_value_t = 3)]
    pub scale_instances: usize,
    /// Each instance's outbound cap in the `scale` case, megabits per second each way:
    /// low enough that the instances together stay well within this machine.
    #[arg(long, default_value_t = 240.0)]
    pub scale_mbps: f64,
    /// Run the component with one outbound connection per request (`host-sim up
    /// --no-connection-pooling`), to compare with the pooled default, as Spin's.
    #[arg(long)]
    pub no_connection_pooling: bool,
    /// The component's budget per invocation, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub budget_ms: u64,
    /// Parts in flight at once (component and native alike).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// MiB hashed per round in the `hash` case.
    #[arg(long, default_value_t = 64)]
    pub hash_mib: u64,
    /// Rounds per figure in the `hash` case (the best is kept).
    #[arg(long, default_value_t = 5)]
    pub hash_rounds: u32,
    /// The hashing harness built for wasm32-wasip1 (`make bench` builds it).
    #[arg(long, default_value = "target/wasm32-wasip1/release/hashbench.wasm")]
    pub hash_wasm: PathBuf,
    /// The hashing harness built natively with the sha1 crate's portable backend
    /// (`--cfg sha1_backend="soft"`; `make bench` builds it).
    #[arg(long, default_value = "target/portable/release/hashbench")]
    pub hash_portable: PathBuf,
    /// The application manifest.
    #[arg(long, default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Where to write the JSON copy of the results.
    #[arg(long, default_value = "target/bench.json")]
    pub json: PathBuf,
}

/// What a case reports: table rows (id, figure, target) and its JSON.
struct Report {
    rows: Vec<[String; 3]>,
    json: Value,
}

fn row(id: impl Into<String>, figure: impl Into<String>, target: impl Into<String>) -> [String; 3] {
    [id.into(), figure.into(), target.into()]
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// The simulator and the file server of a run: the simulator's data in tmpfs and no
/// rate limits, since the limits of the real service would only measure waiting and the
/// benchmark measures work.
async fn servers() -> anyhow::Result<Stack> {
    let no_limits = vod::ratelimit::Limits { init: 0, part: 0, finish: 0 };
    Stack::start(StackOptions { vod_limits: Some(no_limits), sim_data_on_tmpfs: true, ..StackOptions::default() }).await
}

/// A fresh `host-sim up` with its own key-value store, working `budget_ms` per invocation.
async fn host(args: &BenchArgs, s: &Stack, budget_ms: u64) -> anyhow::Result<up::Running> {
    let (budget, concurrency) = (budget_ms.to_string(), args.concurrency.to_string());
    let mut config = s.up_config(&args.manifest, TOKEN, &[("budget_ms", &budget), ("concurrency", &concurrency)]);
    config.connection_pooling = !args.no_connection_pooling;
    config.limits = up::Limits { time: Duration::from_millis(budget_ms + 20_000), ..up::Limits::default() };
    up::server::start(config).await
}

async fn call(client: &http::HttpClient, addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    http::api_call(client, addr, method, path, body, Some(TOKEN)).await
}

/// One upload measured.
#[derive(Debug, Clone, Default)]
struct Run {
    size: u64,
    seconds: f64,
    invocations: u64,
    source_bytes: u64,
    source_requests: u64,
    outbound: u64,
    /// Outbound connections opened (wasm only: the host's count).
    connections: u64,
    kv_writes: u64,
    peak_memory: u64,
}

impl Run {
    fn mb_s(&self) -> f64 {
        self.size as f64 / 1e6 / self.seconds
    }

    fn parts(&self) -> u64 {
        self.size.div_ceil(PART)
    }

    /// The bound on outbound requests: every part once, two source reads per
    /// invocation (one hashing, one uploading), and the probe, InitUpload and FinishUpload.
    fn request_bound(&self) -> u64 {
        self.parts() + 2 * self.invocations + 3
    }
}

fn source_counters(s: &Stack) -> (u64, u64) {
    (s.files.stats.bytes.load(Ordering::Relaxed), s.files.stats.requests.load(Ordering::Relaxed))
}

/// Uploads a generated source through the wasm component on a fresh host.
async fn wasm_upload(args: &BenchArgs, s: &Stack, size: u64, seed: u64) -> anyhow::Result<Run> {
    let host = host(args, s, args.budget_ms).await?;
    let addr = host.addr;
    let client = http::client();
    let (bytes0, requests0) = source_counters(s);
    let started = Instant::now();
    let (status, mut v) = call(&client, addr, "POST", "/uploads", &json!({ "source": s.gen_url(size, seed) }).to_string()).await?;
    anyhow::ensure!(status == 201, "create answered {status}: {v}");
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    while v["state"] != "done" {
        anyhow::ensure!(v["state"] != "failed", "upload failed: {v}");
        let (status, next) = call(&client, addr, "POST", &format!("/uploads/{id}/advance"), "").await?;
        anyhow::ensure!(status == 200, "advance answered {status}: {next}");
        v = next;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (bytes1, requests1) = source_counters(s);
    Ok(Run {
        size,
        seconds,
        invocations: v["invocations"].as_u64().unwrap_or(0),
        source_bytes: bytes1 - bytes0,
        source_requests: requests1 - requests0,
        outbound: host.stats.outbound.load(Ordering::Relaxed),
        connections: host.stats.outbound_connections.load(Ordering::Relaxed),
        kv_writes: v["stats"]["kvWrites"].as_u64().unwrap_or(0),
        peak_memory: host.stats.peak_memory.load(Ordering::Relaxed),
    })
}

/// The same core compiled natively, driving the same servers.
async fn native_upload(args: &BenchArgs, s: &Stack, size: u64, seed: u64) -> anyhow::Result<Run> {
    let io = NativeIo::new(Arc::new(SqliteKv::open(&s.kv_file())?));
    let mut settings = s.settings();
    settings.budget = Duration::from_millis(args.budget_ms);
    settings.concurrency = args.concurrency;
    let spec = vod_uploader::upload::Spec::for_source(vod_uploader::source::Source::Url(s.gen_url(size, seed)), PART);
    let (bytes0, requests0) = source_counters(s);
    let started = Instant::now();
    let (rec, _) = vod_uploader::engine::create(&io, &settings, spec).await.map_err(|e| anyhow!("{e}"))?;
    let rec = loop {
        let rec = vod_uploader::engine::advance(&io, &settings, &rec.id, vod_uploader::engine::Io::now(&io))
            .await
            .map_err(|e| anyhow!("{e}"))?
            .ok_or_else(|| anyhow!("upload vanished"))?;
        if rec.state().is_final() {
            break rec;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(rec.state() == vod_uploader::upload::State::Done, "native upload ended {:?}", rec.error());
    let (bytes1, requests1) = source_counters(s);
    Ok(Run {
        size,
        seconds,
        invocations: rec.invocations,
        source_bytes: bytes1 - bytes0,
        source_requests: requests1 - requests0,
        outbound: io.counters().requests,
        connections: 0,
        kv_writes: io.counters().kv_writes,
        peak_memory: 0,
    })
}

/// The floor: a minimal native program doing only what the protocol needs, with no
/// checkpoints: one streamed pass for the SHA-1 and part MD5s, then every part sent
/// once while the source streams again, at the same concurrency.
async fn floor_upload(args: &BenchArgs, s: &Stack, size: u64, seed: u64) -> anyhow::Result<Run> {
    let client = http::client();
    let url: hyper::Uri = s.gen_url(size, seed).parse()?;
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
                let take = (PART - in_part).min(data.len() as u64) as usize;
                part.update(&data[..take]);
                in_part += take as u64;
                data = data.slice(take..);
                if in_part == PART {
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
    vod.init(InitUpload {
        file_name: "floor".into(),
        file_sha: file_sha.clone(),
        file_size: size,
        data_size: PART,
        file_type: "mp4".into(),
        ..Default::default()
    })
    .await?;
    let mut body = client.get(url).await?.into_body();
    let mut tasks = tokio::task::JoinSet::new();
    let mut buf = Vec::with_capacity(PART as usize);
    let mut index = 0usize;
    let flush = |buf: &mut Vec<u8>, index: &mut usize, tasks: &mut tokio::task::JoinSet<_>| {
        let (vod, sha, md5) = (vod.clone(), file_sha.clone(), md5s[*index].clone());
        let offset = *index as u64 * PART;
        let bytes = Bytes::from(std::mem::replace(buf, Vec::with_capacity(PART as usize)));
        tasks.spawn(async move { vod.part_with_md5(&sha, offset, bytes, md5).await });
        *index += 1;
    };
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let mut data = &data[..];
            while !data.is_empty() {
                let take = (PART as usize - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if buf.len() == PART as usize {
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
    Ok(Run { size, seconds: started.elapsed().as_secs_f64(), invocations: 1, ..Run::default() })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

/// Hashing figures by name (`sha1`, `md5`, `pass`), MB/s.
type HashFigures = Vec<(String, f64)>;

fn parse_hash_output(what: &str, stdout: &[u8]) -> anyhow::Result<HashFigures> {
    let text = String::from_utf8_lossy(stdout);
    hashbench::from_json(&text).ok_or_else(|| anyhow!("{what} printed {text:?}, not its figures"))
}

/// Runs the wasm hashing harness the way the component runs (see [`up::wasm::run_command`]).
async fn hash_in_wasm(args: &BenchArgs) -> anyhow::Result<HashFigures> {
    let bytes =
        std::fs::read(&args.hash_wasm).with_context(|| format!("cannot read {} (build it with `make bench`)", args.hash_wasm.display()))?;
    let stdout = up::wasm::run_command(&bytes, &[args.hash_mib.to_string(), args.hash_rounds.to_string()]).await?;
    parse_hash_output("the wasm hashing harness", &stdout)
}

/// The `hash` case: the component's hashing code inside wasm, natively with the sha1
/// crate's best backend (in this process), and natively with its portable backend.
async fn hash_case(args: &BenchArgs) -> anyhow::Result<Report> {
    eprintln!("hash: {} MiB, best of {} rounds, in wasm and natively ...", args.hash_mib, args.hash_rounds);
    let wasm = hash_in_wasm(args).await?;
    let portable = {
        let (path, mib, rounds) = (args.hash_portable.clone(), args.hash_mib, args.hash_rounds);
        let out =
            tokio::task::spawn_blocking(move || std::process::Command::new(&path).arg(mib.to_string()).arg(rounds.to_string()).output())
                .await?
                .with_context(|| format!("cannot run {} (build it with `make bench`)", args.hash_portable.display()))?;
        anyhow::ensure!(out.status.success(), "{} failed: {}", args.hash_portable.display(), String::from_utf8_lossy(&out.stderr));
        parse_hash_output("the portable hashing harness", &out.stdout)?
    };
    let plan = hashbench::Plan { bytes: (args.hash_mib * MIB) as usize, rounds: args.hash_rounds, ..hashbench::Plan::default() };
    let best: HashFigures = tokio::task::spawn_blocking(move || hashbench::measure(&plan, &hashbench::sample(plan.bytes)))
        .await?
        .into_iter()
        .map(|f| (f.name.to_owned(), f.mb_s))
        .collect();
    let get = |figures: &HashFigures, name: &str| figures.iter().find(|(n, _)| n == name).map_or(f64::NAN, |(_, v)| *v);
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    for (name, what) in [
        ("sha1", "SHA-1 (sha1 crate)"),
        ("md5", "MD5 (md-5 crate, one message)"),
        ("md5x4", "MD5 of 4 parts at once (md5x4)"),
        ("pass", "hashing pass (SHA-1 + part MD5s)"),
    ] {
        let (w, p, b) = (get(&wasm, name), get(&portable, name), get(&best, name));
        let target = if name == "sha1" { format!("wasm/portable >= 0.90: {}", verdict(w / p >= 0.90)) } else { "reported".to_owned() };
        rows.push(row(
            format!("hash {name}"),
            format!(
                "{what}: wasm {w:.0} MB/s, native portable {p:.0} MB/s, native best {b:.0} MB/s; wasm/portable {:.2}, wasm/best {:.2}",
                w / p,
                w / b
            ),
            target,
        ));
        json.insert(
            name.to_owned(),
            json!({ "wasm_mb_s": w, "native_portable_mb_s": p, "native_best_mb_s": b, "wasm_over_portable": w / p, "wasm_over_best": w / b }),
        );
    }
    Ok(Report { rows, json: json!({ "mib": args.hash_mib, "rounds": args.hash_rounds, "figures": json }) })
}

/// The `e2e` case: interleaved rounds of every mode, medians compared. Returns the
/// first wasm and native runs too, for the request and read counts.
async fn e2e_case(args: &BenchArgs) -> anyhow::Result<(Report, Option<Run>, Option<Run>)> {
    let size = args.e2e_mib * MIB;
    eprintln!("e2e: {} MiB, {} rounds of {:?} ...", args.e2e_mib, args.rounds, args.modes);
    let mut runs: Vec<(Mode, Run)> = Vec::new();
    for round in 0..args.rounds.max(1) as u64 {
        for (i, mode) in args.modes.iter().enumerate() {
            // A new source every run: the same bytes again would be an instant upload.
            let seed = 1 + round * 16 + i as u64;
            // Fresh servers too: a simulator holding the earlier runs' files in tmpfs
            // slows down run after run (measured: 1.3 s per GiB by the third round).
            let s = servers().await?;
            let run = match mode {
                Mode::Wasm => wasm_upload(args, &s, size, seed).await?,
                Mode::Native => native_upload(args, &s, size, seed).await?,
                Mode::Floor => floor_upload(args, &s, size, seed).await?,
            };
            eprintln!("  round {} {mode:?}: {:.2} s ({:.0} MB/s)", round + 1, run.seconds, run.mb_s());
            runs.push((*mode, run));
        }
    }
    let of = |m: Mode| -> Vec<Run> { runs.iter().filter(|(mode, _)| *mode == m).map(|(_, r)| r.clone()).collect() };
    let secs = |m: Mode| -> Option<(f64, f64, f64)> {
        let v: Vec<f64> = of(m).iter().map(|r| r.seconds).collect();
        (!v.is_empty()).then(|| (median(&v), v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max)))
    };
    let mb = |secs: f64| size as f64 / 1e6 / secs;
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    json.insert("mib".into(), json!(args.e2e_mib));
    json.insert("rounds".into(), json!(args.rounds));
    json.insert("budget_ms".into(), json!(args.budget_ms));
    json.insert("concurrency".into(), json!(args.concurrency));
    let mut figures = Vec::new();
    for mode in &args.modes {
        if let Some((med, min, max)) = secs(*mode) {
            let name = format!("{mode:?}").to_lowercase();
            figures.push(format!("{name} {:.0} MB/s ({:.0}-{:.0})", mb(med), mb(max), mb(min)));
            let invocations: Vec<u64> = of(*mode).iter().map(|r| r.invocations).collect();
            json.insert(name, json!({ "median_s": med, "min_s": min, "max_s": max, "median_mb_s": mb(med), "invocations": invocations }));
        }
    }
    let mut ratios = Vec::new();
    let mut targets = Vec::new();
    if let (Some((w, ..)), Some((n, ..))) = (secs(Mode::Wasm), secs(Mode::Native)) {
        ratios.push(format!("wasm/native {:.2}", n / w));
        targets.push(format!(">= 0.80: {}", verdict(n / w >= 0.80)));
        json.insert("wasm_over_native".into(), json!(n / w));
    }
    if let (Some((w, ..)), Some((f, ..))) = (secs(Mode::Wasm), secs(Mode::Floor)) {
        ratios.push(format!("wasm/floor {:.2}", f / w));
        targets.push(format!(">= 0.70: {}", verdict(f / w >= 0.70)));
        json.insert("wasm_over_floor".into(), json!(f / w));
    }
    let invocations = of(Mode::Wasm).first().map_or(String::new(), |r| format!("; wasm invocations {}", r.invocations));
    rows.push(row(
        "e2e",
        format!("{} MiB, median of {} (range): {}; **{}**{invocations}", args.e2e_mib, args.rounds, figures.join(", "), ratios.join(", ")),
        targets.join("; "),
    ));
    Ok((Report { rows, json: Value::Object(json) }, of(Mode::Wasm).first().cloned(), of(Mode::Native).first().cloned()))
}

/// The `requests` figures of a run: outbound requests and KV writes per GiB.
fn requests_report(wasm: &Run, native: Option<&Run>) -> Report {
    let gib = wasm.size as f64 / (1u64 << 30) as f64;
    let bound = wasm.request_bound();
    let native_text = native.map_or(String::new(), |n| format!("; native {} outbound, {} KV writes", n.outbound, n.kv_writes));
    Report {
        rows: vec![row(
            "requests",
            format!(
                "{} MiB in {} invocations: wasm {} outbound requests ({:.0}/GiB; {} of them to the source) over {} connections, {} KV writes ({:.1}/GiB){native_text}",
                wasm.size / MIB,
                wasm.invocations,
                wasm.outbound,
                wasm.outbound as f64 / gib,
                wasm.source_requests,
                wasm.connections,
                wasm.kv_writes,
                wasm.kv_writes as f64 / gib
            ),
            format!("<= parts + 2/invocation + 3 = {bound}: {}", verdict(wasm.outbound <= bound)),
        )],
        json: json!({
            "mib": wasm.size / MIB, "invocations": wasm.invocations, "parts": wasm.parts(),
            "wasm_outbound": wasm.outbound, "wasm_source_requests": wasm.source_requests, "wasm_connections": wasm.connections, "wasm_kv_writes": wasm.kv_writes, "bound": bound,
            "outbound_per_gib": wasm.outbound as f64 / gib, "kv_writes_per_gib": wasm.kv_writes as f64 / gib,
            "native_outbound": native.map(|n| n.outbound), "native_kv_writes": native.map(|n| n.kv_writes),
        }),
    }
}

/// Times `n` calls of `path` on a host, in milliseconds, sorted.
async fn time_calls(addr: SocketAddr, path: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let client = http::client();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, v) = call(&client, addr, "POST", path, "").await?;
        anyhow::ensure!(status == 200, "{path} answered {status}: {v}");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// The `overhead` case: an advance with nothing to do (a finished upload), and an
/// advance with a zero budget on a large upload being hashed, which does the least
/// work there is (one source read, one chunk hashed) and saves a checkpoint.
async fn overhead_case(args: &BenchArgs, s: &Stack) -> anyhow::Result<Report> {
    eprintln!("overhead: idle and checkpointing advances ...");
    let n = 50;
    let idle_host = host(args, s, args.budget_ms).await?;
    let client = http::client();
    let (_, done) = call(&client, idle_host.addr, "POST", "/uploads", &json!({ "source": s.gen_url(MIB, 9) }).to_string()).await?;
    anyhow::ensure!(done["state"] == "done", "the small upload did not finish in one invocation: {done}");
    let idle = time_calls(idle_host.addr, &format!("/uploads/{}/advance", done["id"].as_str().unwrap_or_default()), n).await?;

    let step_host = host(args, s, 0).await?;
    let (status, big) =
        call(&client, step_host.addr, "POST", "/uploads", &json!({ "source": s.gen_url(64 << 30, 10) }).to_string()).await?;
    anyhow::ensure!(status == 201, "create answered {status}: {big}");
    let path = format!("/uploads/{}/advance", big["id"].as_str().unwrap_or_default());
    let writes_before = big["stats"]["kvWrites"].as_u64().unwrap_or(0);
    let step = time_calls(step_host.addr, &path, n).await?;
    let (_, after) = call(&client, step_host.addr, "GET", &path.replace("/advance", ""), "").await?;
    let writes = after["stats"]["kvWrites"].as_u64().unwrap_or(0) - writes_before;
    anyhow::ensure!(writes >= n as u64, "{n} checkpointing advances wrote only {writes} checkpoints");
    let (im, ip) = (percentile(&idle, 0.5), percentile(&idle, 0.95));
    let (cm, cp) = (percentile(&step, 0.5), percentile(&step, 0.95));
    Ok(Report {
        rows: vec![
            row(
                "overhead idle",
                format!("advance with no work: {im:.2} ms median, {ip:.2} ms p95 (n={n})"),
                format!("<= 5 ms median: {}", verdict(im <= 5.0)),
            ),
            row(
                "overhead checkpoint",
                format!(
                    "advance that reads one chunk and saves a checkpoint: {cm:.2} ms median, {cp:.2} ms p95 (n={n}, {writes} KV writes)"
                ),
                "reported",
            ),
        ],
        json: json!({
            "idle_ms_median": im, "idle_ms_p95": ip,
            "checkpoint_ms_median": cm, "checkpoint_ms_p95": cp, "checkpoint_kv_writes": writes, "n": n,
        }),
    })
}

/// The `memory` case: peak linear memory and source reads for each size, and a file at
/// the read-once threshold.
async fn memory_case(args: &BenchArgs, e2e: Option<&Run>) -> anyhow::Result<Report> {
    eprintln!("memory and reads: {:?} MiB ...", args.memory_mib);
    let mut runs = Vec::new();
    for (i, mib) in args.memory_mib.iter().enumerate() {
        runs.push(wasm_upload(args, &servers().await?, mib * MIB, 100 + i as u64).await?);
    }
    let read_once = wasm_upload(args, &servers().await?, READ_ONCE_MIB * MIB, 99).await?;
    let bound = 8.0 + (args.concurrency as u64 * PART) as f64 / MIB as f64;
    let peaks: Vec<f64> = runs.iter().map(|r| r.peak_memory as f64 / MIB as f64).collect();
    let spread = peaks.iter().copied().fold(0.0, f64::max) - peaks.iter().copied().fold(f64::INFINITY, f64::min);
    let mut rows = vec![row(
        "memory",
        format!(
            "peak linear memory: {}",
            runs.iter().zip(&peaks).map(|(r, p)| format!("{p:.1} MiB for {} MiB", r.size / MIB)).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "same for every size (spread {spread:.2} MiB), <= {bound:.0} MiB: {}",
            verdict(spread <= 0.5 && peaks.iter().all(|p| *p <= bound))
        ),
    )];
    let mut reads_json = Vec::new();
    for r in e2e.into_iter().chain(&runs) {
        let over = r.source_bytes as f64 / r.size as f64;
        let per_gib = r.source_requests as f64 / (r.size as f64 / (1u64 << 30) as f64);
        rows.push(row(
            format!("reads {} MiB", r.size / MIB),
            format!("read {over:.3} x size in {} source requests ({per_gib:.1}/GiB), {} invocations", r.source_requests, r.invocations),
            format!("<= 2.02: {}", verdict(over <= 2.02)),
        ));
        reads_json.push(json!({ "mib": r.size / MIB, "bytes_read_over_size": over, "source_requests": r.source_requests, "source_requests_per_gib": per_gib }));
    }
    let once = read_once.source_bytes as f64 / read_once.size as f64;
    rows.push(row(
        format!("reads {READ_ONCE_MIB} MiB"),
        format!(
            "at the read-once threshold: read {once:.3} x size in {} source requests; peak linear memory {:.1} MiB",
            read_once.source_requests,
            read_once.peak_memory as f64 / MIB as f64
        ),
        format!("read once: {}", verdict(read_once.source_bytes <= read_once.size + 1)),
    ));
    Ok(Report {
        rows,
        json: json!({
            "bound_mib": bound,
            "peak_linear_memory_mib": runs.iter().zip(&peaks).map(|(r, p)| json!({ "mib": r.size / MIB, "peak_mib": p })).collect::<Vec<_>>(),
            "reads": reads_json,
            "read_once": { "mib": READ_ONCE_MIB, "bytes_read_over_size": once, "peak_mib": read_once.peak_memory as f64 / MIB as f64 },
        }),
    })
}

/// The `many` case: small uploads created at once, then driven by `/tick`.
async fn many_case(args: &BenchArgs, s: &Stack) -> anyhow::Result<Report> {
    eprintln!("many: {} concurrent small uploads ...", args.many);
    let h = host(args, s, args.budget_ms).await?;
    let client = http::client();
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..args.many {
        let (client, addr) = (http::client(), h.addr);
        let body = json!({ "source": s.gen_url((1 + i % 5) * MIB, 1000 + i) }).to_string();
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
    let secs = started.elapsed().as_secs_f64();
    Ok(Report {
        rows: vec![row(
            "many",
            format!("{} uploads of 1-5 MiB via POST /uploads + /tick in {secs:.1} s: {:.1} uploads/s", args.many, args.many as f64 / secs),
            "reported",
        )],
        json: json!({ "uploads": args.many, "seconds": secs, "uploads_per_s": args.many as f64 / secs }),
    })
}

/// Runs the chosen cases and prints the table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let s = servers().await?;
    let has = |c: Case| args.cases.contains(&c);
    let mut reports: Vec<(&str, Report)> = Vec::new();
    if has(Case::Hash) {
        reports.push(("hash", hash_case(&args).await?));
    }
    let mut e2e_wasm = None;
    if has(Case::E2e) {
        let (report, wasm, native) = e2e_case(&args).await?;
        reports.push(("e2e", report));
        if let Some(wasm) = &wasm {
            reports.push(("requests", requests_report(wasm, native.as_ref())));
        }
        e2e_wasm = wasm;
    }
    if has(Case::Overhead) {
        reports.push(("overhead", overhead_case(&args, &s).await?));
    }
    if has(Case::Memory) {
        reports.push(("memory", memory_case(&args, e2e_wasm.as_ref()).await?));
    }
    if has(Case::Many) {
        reports.push(("many", many_case(&args, &s).await?));
    }
    if has(Case::Scale) {
        reports.push(("scale", scale::scale_case(&args).await?));
    }
    println!("| id | figure | target |\n|---|---|---|");
    for (_, report) in &reports {
        for [id, figure, target] in &report.rows {
            println!("| {id} | {figure} | {target} |");
        }
    }
    let json: serde_json::Map<String, Value> = reports.into_iter().map(|(k, r)| (k.to_owned(), r.json)).collect();
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_vec_pretty(&Value::Object(json))?)?;
    eprintln!("JSON written to {}", args.json.display());
    Ok(())
}
