//! Everything a soak runs: a real `redis-server` (AOF on) as the shared store, the VOD
//! simulator as a process of its own (so it can be killed and started again on the
//! same port and data), the Range file server in this process (the sources, never
//! restarted) and the `host-sim up` instances, each a process on the Redis through
//! Spin's runtime config, with chaos kills and a tick of their own.

use super::procs::{tail, Proc};
use super::SoakArgs;
use crate::http::{self, HttpClient};
use crate::redis_server::RedisServer;
use crate::vod::SimStats;
use crate::{files, stack};
use anyhow::Context as _;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The bearer token of the soak's instances.
pub const TOKEN: &str = "soak-token";
/// Longest wait for any one answer: a call that hangs is a failure, not a slow soak.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The running servers and what the soak remembers across restarts.
pub struct World {
    /// The shared store.
    pub redis: RedisServer,
    /// The VOD simulator.
    pub vod: Proc,
    /// The sources (`/gen/{size}/{seed}`).
    pub files: files::Running,
    /// The `host-sim up` instances.
    pub ups: Vec<Proc>,
    /// The simulator's counters read before each of its restarts, added up.
    pub sim_before: SimStats,
    /// When the simulator was killed (unix seconds), if it was.
    pub vod_killed_at: Option<u64>,
    /// Whether Redis was restarted.
    pub redis_restarted: bool,
    client: HttpClient,
    /// Logs and the runtime config.
    pub dir: tempfile::TempDir,
    _sim_dir: tempfile::TempDir,
    _files_root: tempfile::TempDir,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl World {
    /// Starts Redis, the simulator, the file server and the instances.
    pub async fn start(args: &SoakArgs, bin: &Path, redis_bin: &Path) -> anyhow::Result<World> {
        let dir = tempfile::Builder::new().prefix("soak-").tempdir()?;
        let shm = Path::new("/dev/shm");
        // The simulator's data on tmpfs when there is one: gigabytes of parts, written
        // and hashed again at FinishUpload, would otherwise measure the disk. Its name
        // carries this process's id, so that a later soak removes what a soak killed
        // before its cleanup left there (RAM that nothing else would give back).
        let sim_dir = if shm.is_dir() {
            remove_orphans(shm);
            tempfile::Builder::new().prefix(&format!("{SIM_DIR_PREFIX}{}-", std::process::id())).tempdir_in(shm)?
        } else {
            tempfile::tempdir()?
        };
        let redis = RedisServer::start_own_group(redis_bin).await?;
        let rc = dir.path().join("runtime-config.toml");
        redis.write_runtime_config(&rc)?;
        let mut vod_args: Vec<String> = ["vod", "--data"].map(String::from).to_vec();
        vod_args.push(sim_dir.path().join("vod").display().to_string());
        vod_args.extend(["--fault-rate".into(), args.fault_rate.to_string(), "--seed".into(), args.seed.to_string()]);
        vod_args.extend(["--slow-ms".into(), args.slow_ms.to_string()]);
        if !args.vod_rate_limits {
            vod_args.extend(["--rate-init", "0", "--rate-part", "0", "--rate-finish", "0"].map(String::from));
        }
        let vod = Proc::start("vod", bin, vod_args, "warn", dir.path()).await?;
        let files_root = tempfile::tempdir()?;
        let files = files::start(files_root.path().to_owned(), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let mut ups = Vec::new();
        for i in 0..args.instances {
            let up_args = up_args(args, &rc, vod.addr, files.addr, i as u64);
            // The invocation lines (and the component's own JSON lines on stderr) are
            // what the soak counts kills in working invocations from.
            ups.push(Proc::start(&format!("up{}", i + 1), bin, up_args, "warn,host_sim::up::server=info", dir.path()).await?);
        }
        Ok(World {
            redis,
            vod,
            files,
            ups,
            sim_before: SimStats::default(),
            vod_killed_at: None,
            redis_restarted: false,
            client: http::client(),
            dir,
            _sim_dir: sim_dir,
            _files_root: files_root,
        })
    }

    /// The instances' addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ups.iter().map(|u| u.addr).collect()
    }

    /// The URL of a generated source.
    pub fn source_url(&self, size: u64, seed: u64) -> String {
        format!("http://{}/gen/{size}/{seed}", self.files.addr)
    }

    /// A plain GET answered 200 with JSON, within [`CALL_TIMEOUT`].
    pub async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let (status, v) = tokio::time::timeout(CALL_TIMEOUT, http::api_call(&self.client, url_addr(url)?, "GET", url_path(url), "", None))
            .await
            .with_context(|| format!("GET {url}: no answer within {CALL_TIMEOUT:?}"))??;
        anyhow::ensure!(status == 200, "GET {url} answered {status}: {v}");
        Ok(v)
    }

    /// The simulator's counters since its last start.
    pub async fn sim_stats(&self) -> anyhow::Result<SimStats> {
        let v = self.get_json(&format!("http://{}/sim/stats", self.vod.addr)).await?;
        SimStats::from_json(&v).with_context(|| format!("the simulator's stats lack a counter: {v}"))
    }

    /// Its counters over every run: those read before each restart, plus now.
    pub async fn sim_total(&self) -> anyhow::Result<SimStats> {
        let mut total = self.sim_before.clone();
        total.add(&self.sim_stats().await?);
        Ok(total)
    }

    /// Reads the simulator's counters, kills it at once (`SIGKILL`, mid-request) and
    /// starts it on the same port and data directory. What it counted between the read
    /// and the kill (a millisecond or so) is lost with it.
    pub async fn restart_vod(&mut self) -> anyhow::Result<()> {
        let stats = self.sim_stats().await?;
        self.vod.kill();
        self.vod_killed_at = Some(unix_now());
        self.sim_before.add(&stats);
        self.vod.restart().await
    }

    /// Releases the bytes of a finished file the soak checked (the simulator keeps its
    /// record, and answers for its fileSha as before).
    pub async fn release_file(&self, file_id: &str) -> anyhow::Result<()> {
        let url = format!("http://{}/sim/files/{file_id}/data", self.vod.addr);
        let call = http::api_call(&self.client, self.vod.addr, "DELETE", url_path(&url), "", None);
        let (status, v) = tokio::time::timeout(CALL_TIMEOUT, call).await.with_context(|| format!("DELETE {url}: no answer"))??;
        anyhow::ensure!(status == 200, "DELETE {url} answered {status}: {v}");
        Ok(())
    }

    /// Restarts Redis on its port and data (its append-only file is the store).
    pub async fn restart_redis(&mut self) -> anyhow::Result<()> {
        self.redis.restart().await?;
        self.redis_restarted = true;
        Ok(())
    }

    /// Instance `i`'s host counters (`/.well-known/host-sim/stats`).
    pub async fn host_stats(&self, i: usize) -> anyhow::Result<Value> {
        self.get_json(&format!("http://{}/.well-known/host-sim/stats", self.ups[i].addr)).await
    }

    /// The end of every process's log, for a failure's message.
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        for p in self.ups.iter().chain([&self.vod]) {
            out.push_str(&format!("---- {} ({}) ----\n{}\n", p.name, p.log.display(), tail(&p.log_text(), n)));
        }
        out
    }
}

/// The start of the name of a soak's simulator directory on tmpfs, before the id of
/// the process that made it.
const SIM_DIR_PREFIX: &str = "host-sim-soak-";

/// Removes the simulator directories in `dir` whose soak process is gone (killed, so
/// its cleanup never ran).
fn remove_orphans(dir: &Path) {
    // Without /proc, whether a process lives is not known here: remove nothing.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(SIM_DIR_PREFIX)).and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            eprintln!("soak: removing {}, left by soak process {pid}, which is gone", entry.path().display());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `host-sim up` of the real component on the runtime config's Redis (its own state
/// in memory: the runtime config's store is the store), talking to the simulator at
/// `vod` and reading from `files`.
fn up_args(args: &SoakArgs, rc: &Path, vod: SocketAddr, files: SocketAddr, i: u64) -> Vec<String> {
    let manifest: PathBuf = args.manifest.clone();
    let mut out: Vec<String> = vec!["up".into(), "--manifest".into(), manifest.display().to_string()];
    out.extend(["--runtime-config-file".into(), rc.display().to_string(), "--state-dir".into(), String::new()]);
    out.extend(["--chaos-kill-rate".into(), args.kill_rate.to_string(), "--chaos-window-ms".into(), args.kill_window_ms.to_string()]);
    out.extend(["--seed".into(), (args.seed * 100 + i).to_string(), "--tick-ms".into(), args.tick_ms.to_string()]);
    out.extend(["--keys-limit".into(), args.keys_limit.to_string()]);
    if let Some(mbps) = args.outbound_mbps {
        out.extend(["--outbound-mbps".into(), mbps.to_string()]);
    }
    let (budget, kv, outbound) = (args.budget_ms.to_string(), args.kv_writes_per_second.to_string(), args.outbound_per_hour.to_string());
    let extra = [("budget_ms", budget.as_str()), ("kv_writes_per_second", kv.as_str()), ("outbound_per_hour", outbound.as_str())];
    for (k, v) in stack::variables(vod, files, TOKEN, &extra) {
        out.extend(["--variable".into(), format!("{k}={v}")]);
    }
    out
}

fn url_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").context("not an http:// URL")?;
    Ok(rest.split('/').next().unwrap_or_default().parse()?)
}

fn url_path(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.find('/').map_or("/", |at| &rest[at..])
}
