//! The end of a soak: every upload checked against its source and the simulator's
//! counters, and the figures, each must-be judged.

use super::drive::Entry;
use super::usage::{Kills, QuotaCheck};
use super::world::World;
use crate::vod::SimStats;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a soak reports.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Waves of uploads run.
    pub waves: u32,
    /// Uploads created.
    pub uploads: usize,
    /// Uploads done (must be all).
    pub uploads_done: usize,
    /// Uploads not done, with their last status (must be none).
    pub not_done: Vec<String>,
    /// Uploads whose copy in the simulator has their source's exact bytes (must be all).
    pub files_identical: usize,
    /// Uploads whose copy differs or is missing, and why (must be none).
    pub files_wrong: Vec<String>,
    /// Distinct fileShas of the sources.
    pub distinct_files: usize,
    /// Of those, finished exactly once by the counters (must be all).
    pub finished_once: usize,
    /// Of the ones finished once, those whose finish the counters lost with the killed
    /// simulator (made within a second of the kill, counted by the file's creation time).
    pub finished_at_kill: usize,
    /// fileShas finished other than once, or finished though not a source (must be none).
    pub finish_problems: Vec<String>,
    /// Invocations and kills (host counters).
    pub host_invocations: u64,
    /// Chaos kills (host counters).
    pub host_kills: u64,
    /// Invocations and kills as logged, working ones apart.
    pub kills: Kills,
    /// The kills in working invocations to reach (must be reached).
    pub min_kills: u64,
    /// Bytes of all sources.
    pub source_bytes: u64,
    /// The simulator's counters over all its runs.
    pub sim: SimStats,
    /// Key-value writes per second over all instances (must be 0 windows over).
    pub kv_quota: QuotaCheck,
    /// Outbound requests per hour over all instances (must be 0 windows over).
    pub outbound_quota: QuotaCheck,
    /// Redis restarted mid-run (must be).
    pub redis_restarted: bool,
    /// The simulator killed and restarted mid-run (must be).
    pub vod_restarted: bool,
    /// The harness's advance calls by status (0: no answer).
    pub advances: BTreeMap<u16, u64>,
    /// Whether the overall timeout ended the run (must not).
    pub timed_out: bool,
    /// Whether an interrupt (Ctrl-C) ended the run: the report is what it had so far.
    pub interrupted: bool,
    /// The fileSha of every source checked, with its size.
    pub source_shas: BTreeMap<String, u64>,
    /// The fileId of every fileSha whose copy was found identical.
    pub files_checked: BTreeMap<String, String>,
    /// Copies found identical whose bytes the simulator then released.
    pub files_released: usize,
    /// Wall time, seconds.
    pub wall_secs: f64,
}

/// Checks uploads as their wave ends: each done, its fileSha its source's, the
/// simulator's copy its source's bytes. With `release`, the bytes of each copy found
/// identical are then released in the simulator (its record stays): a soak sends
/// gigabytes, and a simulator on tmpfs holding them all would fill the machine's RAM.
pub async fn check_files(world: &World, entries: &[Entry], release: bool, report: &mut SoakReport) -> anyhow::Result<()> {
    let client = crate::http::client();
    for e in entries {
        let (size, seed) = (e.size, e.seed);
        let sha = tokio::task::spawn_blocking(move || crate::sample::generated_sha1(size, seed)).await?;
        report.source_shas.insert(sha.clone(), e.size);
        report.uploads += 1;
        report.source_bytes += e.size;
        if e.last["state"] != "done" {
            report.not_done.push(format!("{} ({} bytes): {}", e.id, e.size, e.last));
            continue;
        }
        report.uploads_done += 1;
        let Some(file_id) = e.last["fileId"].as_str() else {
            report.files_wrong.push(format!("{}: done without a fileId: {}", e.id, e.last));
            continue;
        };
        if e.last["fileSha"].as_str() != Some(sha.as_str()) {
            report.files_wrong.push(format!("{}: fileSha {} but the source's is {sha}", e.id, e.last["fileSha"]));
            continue;
        }
        // Sources can share their bytes (there are 256 files of 1 byte), and the service
        // keeps one file per fileSha: one checked before, maybe released since, is this
        // upload's file too, under the same fileId.
        if let Some(checked) = report.files_checked.get(&sha) {
            if checked == file_id {
                report.files_identical += 1;
            } else {
                report.files_wrong.push(format!("{}: fileId {file_id}, but the same bytes were checked as fileId {checked}", e.id));
            }
            continue;
        }
        match tokio::time::timeout(super::world::CALL_TIMEOUT * 5, crate::stack::stored_sha1(&client, world.vod.addr, file_id)).await {
            Ok(Ok(stored)) if stored == (e.size, sha.clone()) => {
                report.files_identical += 1;
                report.files_checked.insert(sha, file_id.to_owned());
                if release {
                    world.release_file(file_id).await?;
                    report.files_released += 1;
                }
            }
            Ok(Ok(stored)) => {
                report.files_wrong.push(format!("{}: the simulator's {file_id} is {stored:?}, the source ({}, {sha})", e.id, e.size))
            }
            Ok(Err(err)) => report.files_wrong.push(format!("{}: {err:#}", e.id)),
            Err(_) => report.files_wrong.push(format!("{}: reading {file_id} from the simulator took over 5 minutes", e.id)),
        }
    }
    Ok(())
}

/// Checks, at the end, that the simulator finished every source's fileSha exactly once
/// and nothing else, by its counters over all its runs.
pub async fn check_finishes(world: &World, sim: &SimStats, report: &mut SoakReport) {
    report.distinct_files = report.source_shas.len();
    for sha in report.source_shas.keys() {
        match sim.finishes.get(sha).copied().unwrap_or(0) {
            1 => report.finished_once += 1,
            0 if finished_at_kill(world, sha).await => {
                report.finished_once += 1;
                report.finished_at_kill += 1;
            }
            n => report.finish_problems.push(format!("{sha} finished {n} times")),
        }
    }
    for (sha, n) in &sim.finishes {
        if !report.source_shas.contains_key(sha) {
            report.finish_problems.push(format!("{sha} finished {n} times but is no source of the soak"));
        }
    }
}

/// Whether the simulator holds `sha` as a file made within a second of its kill: its
/// finish was counted by the run that the kill ended, after the soak read its counters.
async fn finished_at_kill(world: &World, sha: &str) -> bool {
    let Some(killed) = world.vod_killed_at else { return false };
    let Ok(v) = world.get_json(&format!("http://{}/sim/sessions/{sha}", world.vod.addr)).await else { return false };
    v["state"] == "finished" && v["file"]["createdAt"].as_u64().is_some_and(|at| at + 1 >= killed && at <= killed + 1)
}

impl SoakReport {
    /// Every must-be that failed, as sentences; empty when the soak passed.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        let mut must = |ok: bool, what: String| {
            if !ok {
                f.push(what);
            }
        };
        must(!self.timed_out, "the overall timeout ended the run".into());
        must(!self.interrupted, "interrupted: these are the figures so far".into());
        must(self.uploads_done == self.uploads, format!("{} of {} uploads done: {:?}", self.uploads_done, self.uploads, self.not_done));
        must(
            self.files_identical == self.uploads,
            format!("{} of {} files byte-identical: {:?}", self.files_identical, self.uploads, self.files_wrong),
        );
        must(self.finish_problems.is_empty() && self.finished_once == self.distinct_files, format!("finishes: {:?}", self.finish_problems));
        must(
            self.kills.working_kills >= self.min_kills,
            format!("{} kills in working invocations, under {}", self.kills.working_kills, self.min_kills),
        );
        must(
            self.kv_quota.over == 0,
            format!("kv_writes_per_second exceeded in {} seconds (max {})", self.kv_quota.over, self.kv_quota.max),
        );
        must(
            self.outbound_quota.over == 0,
            format!("outbound_per_hour exceeded in {} hours (max {})", self.outbound_quota.over, self.outbound_quota.max),
        );
        must(self.redis_restarted, "Redis was not restarted mid-run".into());
        must(self.vod_restarted, "the simulator was not restarted mid-run".into());
        f
    }

    /// Duplicated part bytes over the sources' bytes.
    pub fn duplicated_share(&self) -> f64 {
        self.sim.part_bytes_resent as f64 / self.source_bytes.max(1) as f64
    }

    /// The figures, one per line, for people.
    pub fn text(&self) -> String {
        let k = &self.kills;
        let q =
            |c: &QuotaCheck| format!("{} windows over {} (of {}, max {}; first over: {:?})", c.over, c.limit, c.windows, c.max, c.worst);
        [
            format!("waves: {}, uploads: {} ({} MiB in all)", self.waves, self.uploads, self.source_bytes >> 20),
            format!(
                "kills: {} in working invocations (target {}), {} in all; host counters: {} kills",
                k.working_kills, self.min_kills, k.kills, self.host_kills
            ),
            format!("invocations: {} ({} working; host counters: {})", k.invocations, k.working_invocations, self.host_invocations),
            format!("uploads done: {} of {}", self.uploads_done, self.uploads),
            format!(
                "files byte-identical to their sources: {} of {} (then released in the simulator: {})",
                self.files_identical, self.uploads, self.files_released
            ),
            format!(
                "fileShas finished exactly once: {} of {} ({} of them at the simulator's kill)",
                self.finished_once, self.distinct_files, self.finished_at_kill
            ),
            format!(
                "part bytes stored: {} MiB; duplicated part bytes: {} MiB ({:.1}% of the sources; {} parts of {})",
                self.sim.part_bytes_stored >> 20,
                self.sim.part_bytes_resent >> 20,
                100.0 * self.duplicated_share(),
                self.sim.parts_resent,
                self.sim.parts_stored
            ),
            format!("simulator: {} requests, {} faults injected, {} repeats", self.sim.requests, self.sim.faults, self.sim.repeats),
            format!("quota kv_writes_per_second: {}", q(&self.kv_quota)),
            format!("quota outbound_per_hour: {}", q(&self.outbound_quota)),
            format!("restarts mid-run: Redis {}, simulator {}", self.redis_restarted, self.vod_restarted),
            format!("harness advance calls by status: {:?}", self.advances),
            format!("wall time: {:.1} s", self.wall_secs),
        ]
        .join("\n")
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        let q = |c: &QuotaCheck| json!({ "limit": c.limit, "windows": c.windows, "over": c.over, "max": c.max, "firstOver": c.worst });
        json!({
            "waves": self.waves, "uploads": self.uploads, "uploadsDone": self.uploads_done, "sourceBytes": self.source_bytes,
            "filesIdentical": self.files_identical, "distinctFiles": self.distinct_files, "finishedOnce": self.finished_once,
            "finishedAtKill": self.finished_at_kill, "finishProblems": self.finish_problems,
            "kills": self.kills.kills, "workingKills": self.kills.working_kills, "minKills": self.min_kills,
            "invocations": self.kills.invocations, "workingInvocations": self.kills.working_invocations,
            "hostKills": self.host_kills, "hostInvocations": self.host_invocations,
            "partBytesStored": self.sim.part_bytes_stored, "duplicatedPartBytes": self.sim.part_bytes_resent,
            "duplicatedShare": self.duplicated_share(), "vodRequests": self.sim.requests, "vodFaults": self.sim.faults,
            "kvWritesPerSecond": q(&self.kv_quota), "outboundPerHour": q(&self.outbound_quota),
            "redisRestarted": self.redis_restarted, "vodRestarted": self.vod_restarted,
            "advances": self.advances.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "timedOut": self.timed_out, "interrupted": self.interrupted, "filesReleased": self.files_released, "wallSecs": self.wall_secs, "failures": self.failures(),
        })
    }
}
