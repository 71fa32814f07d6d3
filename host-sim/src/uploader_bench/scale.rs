//! The `scale` case: one large file, uploaded by one `host-sim up` and then by several
//! on one Redis (Spin's runtime config), each instance's outbound bandwidth capped
//! (`--outbound-mbps`) so that the cap, not this machine, is what one instance can do.
//! The upload pass is cut into range leases, so several instances send one file's
//! parts at once: its time should fall nearly as the instances grow, with next to no
//! part sent twice. Each run has fresh servers, a fresh Redis and its own source.

use super::{call, row, servers, verdict, BenchArgs, Report, MIB, TOKEN};
use crate::redis_server::{self, RedisServer};
use crate::{http, up};
use anyhow::{anyhow, bail};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One upload by `instances` instances.
#[derive(Debug, Clone)]
struct ScaleRun {
    instances: usize,
    /// From the create to the end of hashing, seconds.
    hashing_s: f64,
    /// From the end of hashing to done, seconds.
    upload_s: f64,
    /// UploadPart bytes stored at an offset the session already held.
    duplicated: u64,
    /// UploadPart bytes stored.
    stored: u64,
    /// This process's CPU time during the upload pass over its wall time: the cores
    /// the simulator, the file server and the instances used (Redis is apart).
    cores: f64,
    invocations: u64,
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis, from the state on: utime and
    // stime are the 12th and 13th of them, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The `scale` case: the file by one instance, then by `--scale-instances`.
pub(super) async fn scale_case(args: &BenchArgs) -> anyhow::Result<Report> {
    let redis_bin = redis_server::redis_server_path().map_err(|e| anyhow!("the scale case needs redis-server: {e}"))?;
    let size = args.scale_mib * MIB;
    eprintln!(
        "scale: {} MiB, 1 then {} instances on one Redis, each capped at {} Mbps ...",
        args.scale_mib, args.scale_instances, args.scale_mbps
    );
    let mut runs = Vec::new();
    for (i, n) in [1, args.scale_instances].into_iter().enumerate() {
        let run = scale_run(args, &redis_bin, size, n, 500 + i as u64).await?;
        eprintln!(
            "  {n} instance(s): hashing {:.1} s, upload pass {:.1} s, {} invocations, {:.2} cores busy, {} MiB sent twice",
            run.hashing_s,
            run.upload_s,
            run.invocations,
            run.cores,
            run.duplicated / MIB
        );
        runs.push(run);
    }
    let (one, many) = (&runs[0], &runs[1]);
    let speedup = one.upload_s / many.upload_s;
    let share = many.duplicated as f64 / size as f64;
    let run_json = |r: &ScaleRun| {
        json!({
            "instances": r.instances, "hashing_s": r.hashing_s, "upload_pass_s": r.upload_s, "duplicated_part_bytes": r.duplicated,
            "part_bytes_stored": r.stored, "cores_busy": r.cores, "invocations": r.invocations,
        })
    };
    Ok(Report {
        rows: vec![
            row(
                "scale",
                format!(
                    "{} MiB, each instance capped at {} Mbps each way, one Redis: upload pass (end of hashing to done) 1 instance {:.1} s, {} instances {:.1} s; **speedup {speedup:.2}x**; {:.2} and {:.2} cores busy",
                    args.scale_mib, args.scale_mbps, one.upload_s, many.instances, many.upload_s, one.cores, many.cores
                ),
                format!(">= 2.5x: {}", verdict(speedup >= 2.5)),
            ),
            row(
                "scale duplicates",
                format!(
                    "UploadPart bytes stored twice: {} MiB with 1 instance, {} MiB with {} ({:.2}% of the file)",
                    one.duplicated / MIB,
                    many.duplicated / MIB,
                    many.instances,
                    100.0 * share
                ),
                format!("<= 5%: {}", verdict(share <= 0.05)),
            ),
        ],
        json: json!({
            "mib": args.scale_mib, "mbps": args.scale_mbps, "budget_ms": args.budget_ms,
            "one": run_json(one), "many": run_json(many), "speedup": speedup, "duplicated_share": share,
        }),
    })
}

/// Uploads a generated file of `size` bytes through `n` fresh instances on a fresh
/// Redis: created through the first, then every instance ticking back to back (a
/// pause after a tick that found nothing to do, so idle instances leave the CPU to
/// the working ones), the status polled every 100 ms for the end of hashing and done.
async fn scale_run(args: &BenchArgs, redis_bin: &Path, size: u64, n: usize, seed: u64) -> anyhow::Result<ScaleRun> {
    let s = servers().await?;
    let redis = RedisServer::start(redis_bin).await?;
    let dir = tempfile::tempdir()?;
    let rc = dir.path().join("runtime-config.toml");
    redis.write_runtime_config(&rc)?;
    let (budget, concurrency) = (args.budget_ms.to_string(), args.concurrency.to_string());
    let mut hosts = Vec::new();
    for _ in 0..n {
        let mut config = s.up_config(&args.manifest, TOKEN, &[("budget_ms", &budget), ("concurrency", &concurrency)]);
        config.runtime_config = Some(rc.clone());
        config.outbound_mbps = Some(args.scale_mbps);
        config.connection_pooling = !args.no_connection_pooling;
        config.limits = up::Limits { time: Duration::from_millis(args.budget_ms + 20_000), ..up::Limits::default() };
        hosts.push(up::server::start(config).await?);
    }
    let client = http::client();
    let started = Instant::now();
    let (status, created) =
        call(&client, hosts[0].addr, "POST", "/uploads", &json!({ "source": s.gen_url(size, seed) }).to_string()).await?;
    anyhow::ensure!(status == 201, "create answered {status}: {created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let tickers: Vec<_> = hosts
        .iter()
        .map(|h| {
            let (addr, stop) = (h.addr, stop.clone());
            tokio::spawn(async move {
                let client = http::client();
                while !stop.load(Ordering::Relaxed) {
                    let (status, v) = call(&client, addr, "POST", "/tick", "").await?;
                    if status != 200 || v["advanced"].as_array().is_none_or(Vec::is_empty) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let deadline = started + Duration::from_secs(3600);
    let mut hashed: Option<(Instant, f64)> = None;
    let last = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, v) = call(&client, hosts[0].addr, "GET", &format!("/uploads/{id}"), "").await?;
        anyhow::ensure!(status == 200, "status answered {status}: {v}");
        let state = v["state"].as_str().unwrap_or_default();
        if matches!(state, "failed" | "cancelled") {
            bail!("the upload ended {state}: {v}");
        }
        if hashed.is_none() && matches!(state, "uploading" | "finishing" | "done") {
            hashed = Some((Instant::now(), cpu_seconds()));
        }
        if state == "done" {
            break v;
        }
        if Instant::now() > deadline {
            bail!("not done within an hour: {v}");
        }
    };
    let (done_at, cpu_done) = (Instant::now(), cpu_seconds());
    stop.store(true, Ordering::Relaxed);
    for t in tickers {
        t.await??;
    }
    let (hashed_at, cpu_hashed) = hashed.expect("done implies hashed");
    let upload_s = (done_at - hashed_at).as_secs_f64();
    let counters = &s.sim.state.counters;
    Ok(ScaleRun {
        instances: n,
        hashing_s: (hashed_at - started).as_secs_f64(),
        upload_s,
        duplicated: counters.part_bytes_resent.load(Ordering::Relaxed),
        stored: counters.part_bytes_stored.load(Ordering::Relaxed),
        cores: (cpu_done - cpu_hashed) / upload_s,
        invocations: last["invocations"].as_u64().unwrap_or(0),
    })
}
