//! `host-sim soak`: many instances of the real component on one Redis, under every
//! trouble at once, until every upload is done, then proof that nothing went wrong.
//!
//! Three `host-sim up` processes share a real `redis-server` (AOF on) through Spin's
//! runtime config, each killing a share of its invocations at random instants and
//! ticking on its own; the VOD simulator (a process) injects faults into a share of
//! its answers; the soak adds concurrent `POST /uploads/{id}/advance` calls at random
//! instances, restarts Redis once and kills and restarts the simulator once mid-run.
//! The component runs with platform quotas (`kv_writes_per_second`,
//! `outbound_per_hour`), which the soak checks from outside by adding up the
//! instances' usage windows. It ends when every upload is final, or at an overall
//! timeout, which fails the run. When the kills in working invocations fall short of
//! the target, it runs another wave of uploads (idle ticks on finished uploads kill
//! nothing that works).
//!
//! - [`procs`]: child processes; [`world`]: the servers; [`drive`]: creates, advances
//!   and polls; [`usage`]: quota windows and kills; [`report`]: the checks and figures.

pub mod drive;
pub mod procs;
pub mod report;
pub mod usage;
pub mod world;

use anyhow::Context as _;
use drive::{Advancers, Uploads};
use rand::{Rng, SeedableRng};
pub use report::SoakReport;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use usage::{Kills, UsageLog};
use world::World;

const MIB: u64 = 1 << 20;

/// How a soak runs (`host-sim soak --help`; `SoakArgs::default()` is the full soak).
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Uploads per wave; sizes run from 1 byte to --max-mib.
    #[arg(long, default_value_t = 30)]
    pub uploads: usize,
    /// The largest upload, MiB.
    #[arg(long, default_value_t = 300)]
    pub max_mib: u64,
    /// Chaos kills in working invocations to reach; waves of new uploads run until then.
    #[arg(long, default_value_t = 1000)]
    pub min_kills: u64,
    /// The largest upload of the waves after the first, MiB: they are there for the
    /// kills, and the simulator keeps every file.
    #[arg(long, default_value_t = 5)]
    pub top_up_mib: u64,
    /// At most this many waves.
    #[arg(long, default_value_t = 200)]
    pub max_waves: u32,
    /// `host-sim up` instances on the one Redis.
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
    /// The simulator's --fault-rate.
    #[arg(long, default_value_t = 0.1)]
    pub fault_rate: f64,
    /// The simulator's --slow-ms (the delay of its "slow" faults).
    #[arg(long, default_value_t = 300)]
    pub slow_ms: u64,
    /// Keep the simulator's per-SecretId rate limits (off: the soak is about kills,
    /// faults and restarts, and the limits would only make it wait).
    #[arg(long)]
    pub vod_rate_limits: bool,
    /// Every instance's --chaos-kill-rate.
    #[arg(long, default_value_t = 0.2)]
    pub kill_rate: f64,
    /// Every instance's --chaos-window-ms: kill instants fall in the first this many
    /// milliseconds, where working invocations (of --budget-ms) are.
    #[arg(long, default_value_t = 400)]
    pub kill_window_ms: u64,
    /// The component's budget_ms: short, so that an upload takes many invocations.
    #[arg(long, default_value_t = 300)]
    pub budget_ms: u64,
    /// Every instance's --tick-ms.
    #[arg(long, default_value_t = 250)]
    pub tick_ms: u64,
    /// Concurrent advance callers.
    #[arg(long, default_value_t = 6)]
    pub advancers: usize,
    /// The component's kv_writes_per_second. At Akamai's 50, an invocation claims 5
    /// writes a second and at most eight claim at once, so the soak would mostly wait
    /// for the quota (about 1.3 kills a second at best); at 200, sixteen claim 10.
    #[arg(long, default_value_t = 200)]
    pub kv_writes_per_second: u64,
    /// The component's outbound_per_hour: high enough not to stall the run.
    #[arg(long, default_value_t = 200_000)]
    pub outbound_per_hour: u64,
    /// Every instance's --keys-limit. The instances share a Redis, which has no key
    /// limit (Fermyon Cloud's 1024 is `host-sim up`'s default).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys_limit: u64,
    /// Every instance's --outbound-mbps (default: uncapped). A low cap shared by many
    /// concurrent invocations starves most of them (40 Mbps: hashing invocations that
    /// read tens of KB, `source_stalled` and backoff), so the soak runs uncapped and
    /// reaches its kills with waves.
    #[arg(long)]
    pub outbound_mbps: Option<f64>,
    /// Overall timeout, seconds: reaching it fails the soak.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
    /// Seed of sizes, sources, faults, kills and the drivers' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The application manifest.
    #[arg(long, default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// The host-sim binary run as instances and simulator (default: this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// redis-server (default: as the Redis tests find it).
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// Keep the processes' logs (they are kept anyway when the soak fails).
    #[arg(long)]
    pub keep_logs: bool,
    /// Where to write the JSON copy of the report.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Default for SoakArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: SoakArgs,
        }
        <Wrap as clap::Parser>::parse_from(["soak"]).args
    }
}

/// The sizes of a wave: 1 byte, one part, one part and a byte, the largest, and the
/// rest uniform in between.
pub fn sizes(n: usize, max: u64, rng: &mut impl Rng) -> Vec<u64> {
    let max = max.max(2);
    let mut sizes: Vec<u64> = [1, MIB, MIB + 1, max].into_iter().filter(|&s| s <= max).take(n).collect();
    while sizes.len() < n {
        sizes.push(rng.random_range(2..=max));
    }
    sizes
}

/// Runs a soak and reports; `Err` only when it could not run at all (a process that
/// does not start). A soak that runs and fails says so in [`SoakReport::failures`].
pub async fn run(args: SoakArgs) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    // Ctrl-C (SIGINT) ends the run with the figures so far, and the children stopped
    // and the temporary directories (the simulator's, on tmpfs) removed as on any other
    // end. Listened to from here on, before any child starts: the children run in
    // process groups of their own, so the terminal's SIGINT reaches only this process.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("cannot find this host-sim binary")?,
    };
    let redis_bin = match &args.redis_server {
        Some(bin) => bin.clone(),
        None => crate::redis_server::redis_server_path().map_err(anyhow::Error::msg)?,
    };
    let mut world = World::start(&args, &bin, &redis_bin).await?;
    eprintln!(
        "soak: {} instances, Redis, simulator up in {:.1} s; logs in {}",
        args.instances,
        started.elapsed().as_secs_f64(),
        world.dir.path().display()
    );
    let uploads = Arc::new(Uploads::default());
    let advancers = Advancers::start(world.addrs(), uploads.clone(), args.advancers, args.seed);
    let (mut usage, client) = (UsageLog::default(), crate::http::client());
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let (mut report, mut wave, mut polls) = (SoakReport { min_kills: args.min_kills, ..SoakReport::default() }, 0u32, 0usize);
    let mut last_usage = Instant::now();
    let mut checked_waves = 0u32;
    while !report.timed_out && !report.interrupted {
        wave += 1;
        let sources: Vec<(u64, u64)> =
            sizes(args.uploads, if wave == 1 { args.max_mib } else { args.top_up_mib.min(args.max_mib) } * MIB, &mut rng)
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, args.seed * 1_000_000 + wave as u64 * 1000 + i as u64))
                .collect();
        drive::create_wave(&world, &uploads, wave, &sources, args.seed).await?;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = interrupt.recv() => {
                    eprintln!("soak: interrupted in wave {wave}; reporting what it has so far");
                    report.interrupted = true;
                    break;
                }
            }
            polls += 1;
            drive::refresh(&world, &uploads, &client, polls).await;
            if last_usage.elapsed() > Duration::from_secs(5) {
                usage.read(&world).await;
                last_usage = Instant::now();
            }
            // Restarts while the wave's uploads are in flight: Redis a third of the way,
            // the simulator two thirds.
            let progress = uploads.progress(wave);
            if !world.redis_restarted && progress >= 0.3 {
                eprintln!("soak: restarting Redis at {:.0}% of wave {wave}", 100.0 * progress);
                world.restart_redis().await?;
            }
            if world.vod_killed_at.is_none() && progress >= 0.6 {
                eprintln!("soak: killing and restarting the simulator at {:.0}% of wave {wave}", 100.0 * progress);
                world.restart_vod().await?;
            }
            if uploads.wave_final(wave) {
                break;
            }
            if Instant::now() > deadline {
                report.timed_out = true;
                break;
            }
        }
        if report.interrupted || report.timed_out {
            break;
        }
        // The wave's files are checked now, and their bytes released in the simulator.
        report::check_files(&world, &uploads.wave(wave), true, &mut report).await?;
        checked_waves = wave;
        let kills = Kills::from_logs(&world);
        eprintln!(
            "soak: wave {wave} final after {:.0} s: {} kills in working invocations so far (target {}); {} of {} files identical so far",
            started.elapsed().as_secs_f64(),
            kills.working_kills,
            args.min_kills,
            report.files_identical,
            report.uploads
        );
        let restarted = world.redis_restarted && world.vod_killed_at.is_some();
        if kills.working_kills >= args.min_kills && restarted || wave >= args.max_waves {
            break;
        }
        drive::forget_wave(&world, &uploads, wave).await?;
    }
    report.advances = advancers.stop().await;
    // The instances' last invocations end within their time limit: then the logs and
    // counters are complete.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drive::refresh(&world, &uploads, &client, 0).await;
    usage.read(&world).await;
    report.wall_secs = started.elapsed().as_secs_f64();
    report.waves = wave;
    report.kills = Kills::from_logs(&world);
    for i in 0..world.ups.len() {
        let stats = world.host_stats(i).await?;
        report.host_invocations += stats["invocations"].as_u64().unwrap_or(0);
        report.host_kills += stats["chaosKills"].as_u64().unwrap_or(0);
    }
    report.kv_quota = usage.kv_writes(args.kv_writes_per_second);
    report.outbound_quota = usage.outbound(args.outbound_per_hour);
    report.redis_restarted = world.redis_restarted;
    report.vod_restarted = world.vod_killed_at.is_some();
    report.sim = world.sim_total().await?;
    // A wave the run ended in (a timeout, an interrupt) is checked as it stands.
    let unchecked: Vec<_> = uploads.snapshot().into_iter().filter(|e| e.wave > checked_waves).collect();
    report::check_files(&world, &unchecked, false, &mut report).await?;
    report::check_finishes(&world, &report.sim.clone(), &mut report).await;
    if !report.failures().is_empty() {
        eprintln!("soak: FAILED; the end of each process's log:\n{}", world.log_tails(10));
    }
    if args.keep_logs || !report.failures().is_empty() {
        world.dir.disable_cleanup(true);
        eprintln!("soak: logs kept in {}", world.dir.path().display());
    }
    Ok(report)
}
