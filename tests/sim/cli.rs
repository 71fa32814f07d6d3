//! The command-line uploader in the simulation: `vod-upload upload SOURCE`, its real
//! commands ([`vod_uploader::cli::run`]) over the simulated checkpoint store, source
//! and service, run again and again as a user or a cron job runs it after a kill,
//! sometimes two runs at once on one checkpoint directory (which share its lease
//! owner), with service faults, a source changed between runs, a round on a full disk
//! (every write of a checkpoint fails), and kills at any I/O call. What must hold:
//!
//! - the runs end with exit 0 and the service holds the source's bytes, as the last
//!   run's JSON says;
//! - no run hashes again bytes a checkpoint already held when it started;
//! - what the checkpoints say was hashed and uploaded never steps back;
//! - no run prints a secret (the secret key, a presigned URL's signature, a signed VOD
//!   request's `Signature`, which some transport errors quote);
//! - a run on a full disk exits 74 and says what failed; the next resumes;
//! - every check of the world (records, MD5s, the state graph) holds.

use super::model::{sha1_hex, SourceFile, VOD_HOST};
use super::scenario::caught;
use super::world::{block_on, run, Kills, Latency, Rng, SimIo, Task, World};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;
use vod_uploader::checkpoint;
use vod_uploader::cli::run::{run as cli_run, Terminal};
use vod_uploader::cli::{args, Env, Exit};
use vod_uploader::upload::{Outcome, Upload};

const SECRET_KEY: &str = "sim-secret";
const URL_SECRET: &str = "X-Amz-Signature=secret";

/// One case: the source and how the runs go.
#[derive(Debug, Clone)]
pub struct CliCase {
    pub size: usize,
    /// A file in a granted directory, else a presigned `http` URL.
    pub local: bool,
    /// For a URL source: time between its 64 KiB chunks (10 ms: 6.5 MB/s).
    pub gap_ms: u64,
    /// `--budget-ms`.
    pub budget_ms: u64,
    /// The chance that a round runs two commands at once on the directory.
    pub twice: f64,
    /// The service's fault rate.
    pub faults: f64,
    /// The source is rewritten in this round, at a random instant (then the new
    /// content must land).
    pub change_in: Option<u32>,
    /// Each run's chance to be killed, at an instant within its first 50 ms to 3 s.
    pub kill_rate: f64,
    /// `--max-wait`: longer retry waits end the run with 75.
    pub max_wait: u64,
    /// Before this round, `vod-upload cancel ID` of the upload under way (then the
    /// same `upload` must start it afresh and finish it).
    pub cancel_in: Option<u32>,
    /// In this round the checkpoint directory's disk is full: every write fails. The
    /// runs exit 74, and the next round resumes from the last checkpoint written.
    pub full_in: Option<u32>,
}

impl CliCase {
    /// A case from a seed.
    pub fn generate(rng: &mut Rng) -> CliCase {
        // Half of them over the read-once threshold (8 MiB), where hashing checkpoints.
        let size = rng.pick(&[1usize, 1 << 20, (1 << 20) + 1, 3 << 20, (9 << 20) + 7, (9 << 20) + 7, 20 << 20, 20 << 20]);
        CliCase {
            size,
            local: rng.chance(0.4),
            gap_ms: rng.pick(&[0u64, 2, 10, 10]),
            budget_ms: rng.pick(&[300u64, 1000, 5000]),
            twice: rng.pick(&[0.0, 0.0, 0.3]),
            faults: rng.pick(&[0.0, 0.0, 0.05, 0.15, 0.3]),
            change_in: rng.chance(0.2).then(|| rng.range(0, 4) as u32),
            kill_rate: rng.pick(&[0.0, 0.6, 0.9, 0.9]),
            max_wait: rng.pick(&[0u64, 3, 30]),
            cancel_in: rng.chance(0.3).then(|| rng.range(1, 2) as u32),
            full_in: rng.chance(0.3).then(|| rng.range(0, 2) as u32),
        }
    }

    /// A small case for the sweep of kills at every I/O call.
    pub fn small(size: usize, local: bool) -> CliCase {
        CliCase {
            size,
            local,
            gap_ms: 1,
            budget_ms: 300,
            twice: 0.0,
            faults: 0.0,
            change_in: None,
            kill_rate: 0.0,
            max_wait: 30,
            cancel_in: None,
            full_in: None,
        }
    }
}

/// What the runs of one case did.
#[derive(Debug, Default, Clone)]
pub struct CliReport {
    /// Commands run (one per process).
    pub runs: u64,
    pub kills: u64,
    /// Exit codes of the runs that ended, and how many ended so.
    pub exits: BTreeMap<i32, u64>,
    /// Reads of the source made while hashing, each checked against the checkpoint
    /// its run started from; and of those, the ones that started from a checkpoint
    /// that held some bytes (where hashing again would show).
    pub hashing_reads: u64,
    pub reads_after_a_checkpoint: u64,
    /// `cancel ID` runs between upload runs.
    pub cancels: u64,
    /// I/O calls of the runs (for the kill sweep).
    pub io_calls: u64,
    /// Runs that exited 74 on a full disk.
    pub full_disk_exits: u64,
}

/// Standard output or error of one run, kept as it is written (a killed run's too).
#[derive(Clone, Default)]
struct Pipe(Rc<RefCell<Vec<u8>>>);

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes hashed and uploaded by the live (not final) upload of the source as it is now
/// (`size` bytes: a changed source is a new upload), as the store holds it: the
/// record under its outcome, read without I/O.
fn live_progress(world: &World, size: usize) -> Option<(String, u64, u64)> {
    let kv = world.kv.borrow();
    kv.iter()
        .filter(|(k, _)| checkpoint::id_of_record_key(k).is_some())
        .filter_map(|(k, v)| {
            let id = checkpoint::id_of_record_key(k)?.to_owned();
            if kv.get(&checkpoint::end_key(&id)).is_some_and(|e| Outcome::decode(e).is_ok()) {
                return None;
            }
            let up = Upload::decode(v).ok()?;
            (!up.state().is_final() && up.identity.size == size as u64).then(|| (id, up.hashed_bytes(), up.uploaded_bytes()))
        })
        .max_by_key(|(_, h, u)| (*h, *u))
}

/// Runs one case from `seed` until a run exits 0.
pub fn run_cli(seed: u64, case: &CliCase, kills: Kills) -> Result<CliReport, String> {
    caught(&format!("case: {case:?}"), || drive(seed, case, kills))
}

fn drive(seed: u64, case: &CliCase, kills: Kills) -> Result<CliReport, String> {
    let world = World::new(seed, Latency { kv_ms: 2, net_ms: 5 });
    let mut rng = Rng::new(seed ^ 0xc11);
    let name = if case.local { "/data/clip.mp4".to_owned() } else { format!("http://src.sim/clip.mp4?{URL_SECRET}") };
    let original = rng.bytes(case.size);
    let mut file = SourceFile::new(original.clone());
    file.chunk = 64 << 10;
    file.gap = Duration::from_millis(case.gap_ms);
    world.sources.borrow_mut().insert(name.clone(), file);
    world.service.borrow_mut().faults = case.faults;

    let argv: Vec<String> = ["upload", name.as_str(), "--budget-ms", &case.budget_ms.to_string(), "--max-wait", &case.max_wait.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let inv = Rc::new(args::parse(&argv).map_err(|u| format!("the command line: {u}"))?);
    let env = Rc::new(Env::new([
        ("VOD_SECRET_ID".to_owned(), "AKIDsim".to_owned()),
        ("VOD_SECRET_KEY".to_owned(), SECRET_KEY.to_owned()),
        ("VOD_ENDPOINT".to_owned(), format!("http://{VOD_HOST}/v2/index.php")),
    ]));
    let settings = vod_uploader::cli::run::settings(&env, &inv)?;
    world.checkpoint_every.set(settings.checkpoint_every);
    world.clock_from_progress.set(true);
    world.kills.set(kills);

    let mut report = CliReport::default();
    // The source's contents so far, the last one current.
    let mut contents = vec![original];
    let mut furthest: Option<(String, u64, u64)> = None;
    for round in 0u32..400 {
        let mut expected = contents.last().expect("one").clone();
        let mut changed_at = None;
        if case.change_in == Some(round) {
            // Rewritten while a run may be at work: that run fails it (3), or it lands
            // before the change and the next run uploads the new bytes.
            let mut changed = expected.clone();
            changed.push(7);
            changed[0] ^= 0xff;
            let at = world.now() + Duration::from_millis(rng.range(0, 2000));
            changed_at = Some(at);
            world.sources.borrow_mut().get_mut(&name).expect("the source").change = Some((at, changed.clone()));
            contents.push(changed);
        }
        if case.cancel_in == Some(round) {
            if let Some((id, _, _)) = live_progress(&world, expected.len()) {
                cancel(&world, &inv, &env, &id)?;
                report.cancels += 1;
                // The same command then starts the same id afresh, from nothing.
                furthest = None;
            }
        }
        // What the checkpoints held as the round began: no run may hash below it.
        let start = live_progress(&world, expected.len());
        let from = start.as_ref().map_or(0, |(_, h, _)| *h);
        let n = if rng.chance(case.twice) { 2 } else { 1 };
        let full = case.full_in == Some(round);
        if full {
            *world.failing_writes.borrow_mut() = Some((String::new(), u32::MAX));
        }
        let ended = Rc::new(RefCell::new(Vec::new()));
        let mut runs = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let w = world.watch();
            let (out, err) = (Pipe::default(), Pipe::default());
            runs.push((w, out.clone(), err.clone()));
            let (world2, inv, env, ended) = (world.clone(), inv.clone(), env.clone(), ended.clone());
            let delay = Duration::from_millis(rng.range(0, 30));
            let err_is_terminal = rng.chance(0.3);
            let horizon = Duration::from_millis(rng.pick(&[50u64, 300, 1000, 3000]));
            tasks.push(Task::new(Some(w), async move {
                world2.after(delay).await;
                world2.start(w, horizon);
                let io = SimIo { world: world2.clone(), inv: Some(w) };
                let (mut out, mut err) = (out, err);
                let mut term = Terminal { out: &mut out, err: &mut err, err_is_terminal };
                let exit = cli_run(&io, &inv, &env, &mut term).await;
                ended.borrow_mut().push((w, exit));
            }));
        }
        let calls_before = world.calls.get();
        run(&world, tasks, Duration::from_secs(24 * 3600));
        *world.failing_writes.borrow_mut() = None;
        report.io_calls += world.calls.get() - calls_before;
        report.runs += n as u64;
        if !world.violations.borrow().is_empty() {
            return Err(format!("round {round}: {}", world.violations.borrow().join("\n")));
        }
        let mut finished = None;
        for (w, out, err) in &runs {
            let (out, err) = (String::from_utf8_lossy(&out.0.borrow()).into_owned(), String::from_utf8_lossy(&err.0.borrow()).into_owned());
            for secret in [SECRET_KEY, URL_SECRET, "Signature="] {
                if out.contains(secret) || err.contains(secret) {
                    return Err(format!("round {round}: run {w} printed {secret:?}:\n{err}\n{out}"));
                }
            }
            // (After a change, a run hashes the new content's upload from its start.)
            let before_change = |t: &Duration| changed_at.is_none_or(|at| *t < at);
            for (reader, offset, _) in world.hashing_reads.borrow().iter().filter(|(r, _, t)| r == w && before_change(t)) {
                report.reads_after_a_checkpoint += u64::from(from > 0);
                if *offset < from {
                    return Err(format!(
                        "round {round}: run {reader} hashed again from {offset}, below the checkpoint's {from} bytes it started from:\n{err}"
                    ));
                }
            }
            let exit = ended.borrow().iter().find(|(e, _)| e == w).map(|(_, x)| *x);
            match exit {
                None => {
                    if !world.watches.borrow()[*w].killed {
                        return Err(format!("round {round}: run {w} neither ended nor was killed:\n{err}"));
                    }
                    report.kills += 1;
                }
                Some(exit) => {
                    *report.exits.entry(exit.code()).or_default() += 1;
                    match exit {
                        // Nothing can end done without writing its outcome.
                        Exit::Ok if full => return Err(format!("round {round}: run {w} exited 0 on a full disk:\n{err}\n{out}")),
                        Exit::Ok => finished = Some(out.clone()),
                        // What the command says to do about these: run it again.
                        Exit::TryAgain | Exit::SourceChanged => {}
                        // A full disk: the run says the directory cannot be written.
                        Exit::Storage if full && err.contains("refused to write") => report.full_disk_exits += 1,
                        // After a change, a run at once with this one (or just
                        // before it) cancels the old upload this one was on.
                        Exit::Failed if case.change_in.is_some_and(|c| (c..=c + 3).contains(&round)) && err.contains("cancelled") => {}
                        other => return Err(format!("round {round}: run {w} exited {other:?} ({}):\n{err}\n{out}", other.code())),
                    }
                }
            }
        }
        // A change that took effect this round is what the checks from here on see.
        expected = contents.last().expect("one").clone();
        // Checkpoints never step back (for the same upload).
        let now = live_progress(&world, expected.len());
        if let (Some((id0, h0, u0)), Some((id1, h1, u1))) = (&furthest, &now) {
            if id0 == id1 && (h1 < h0 || u1 < u0) {
                return Err(format!("round {round}: upload {id1}'s checkpoint stepped back: hashed {h0} -> {h1}, uploaded {u0} -> {u1}"));
            }
        }
        if now.is_some() {
            furthest = now;
        }
        report.hashing_reads += world.hashing_reads.borrow().len() as u64;
        world.hashing_reads.borrow_mut().clear();
        if let Some(out) = finished {
            if check_done(&world, &contents, &out)? == expected {
                return Ok(report);
            }
            // Done with bytes the source has since lost: a run again uploads the new.
        }
        // A user runs the command again a little later.
        world.advance_clock(Duration::from_millis(rng.range(1, 2000)));
    }
    Err(format!("no run exited 0 in 400 rounds: {report:?}"))
}

/// `vod-upload cancel ID`, as the user runs it between two uploads (not killed):
/// exit 0, and the upload is gone but for its tombstone.
fn cancel(world: &Rc<World>, upload: &args::Invocation, env: &Rc<Env>, id: &str) -> Result<(), String> {
    let mut argv = vec!["cancel".to_owned(), id.to_owned()];
    argv.extend(upload.state.iter().flat_map(|dir| ["--state".to_owned(), dir.clone()]));
    let inv = args::parse(&argv).map_err(|u| format!("the cancel command line: {u}"))?;
    let (world2, env) = (world.clone(), env.clone());
    let (exit, err) = block_on(world, async move {
        let io = SimIo { world: world2, inv: None };
        let (mut out, mut err) = (Pipe::default(), Pipe::default());
        let mut term = Terminal { out: &mut out, err: &mut err, err_is_terminal: false };
        let exit = cli_run(&io, &inv, &env, &mut term).await;
        let said = String::from_utf8_lossy(&err.0.borrow()).into_owned();
        (exit, said)
    });
    if exit != Exit::Ok || !err.contains("cancelled") {
        return Err(format!("cancel {id} exited {exit:?}: {err}"));
    }
    if world.kv.borrow().contains_key(&checkpoint::record_key(id)) {
        return Err(format!("cancel {id} left its record"));
    }
    Ok(())
}

/// A run said done: its JSON names the file the service holds for one of the
/// source's contents, byte for byte. Returns those contents.
fn check_done(world: &World, contents: &[Vec<u8>], out: &str) -> Result<Vec<u8>, String> {
    let status: serde_json::Value =
        out.lines().last().and_then(|l| serde_json::from_str(l).ok()).ok_or_else(|| format!("the run printed no JSON status: {out:?}"))?;
    if status["state"] != "done" {
        return Err(format!("a run exited 0 with {status}"));
    }
    let service = world.service.borrow();
    for bytes in contents.iter().rev() {
        if let Some(held) = service.files.get(&sha1_hex(bytes)) {
            if status["fileId"] == held.file_id.as_str() {
                if held.bytes != *bytes {
                    return Err(format!("the service's file {} differs from the source", held.file_id));
                }
                return Ok(bytes.clone());
            }
        }
    }
    Err(format!("the status says fileId {}, which the service holds for none of the source's contents", status["fileId"]))
}
