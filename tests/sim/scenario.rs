//! Scenarios: from a seed, a source, a service and a way of running invocations
//! (alone or two or three at once on one upload, with kills, stalls and faults), and
//! the checks that must hold after every step and at the end.

use super::hooks::{HOOKS_HOST, HOOKS_SECRET};
use super::model::{sha1_hex, Quirk, SourceFile, VOD_HOST};
use super::world::{block_on, run, Kills, Latency, Rng, SimIo, Task, World};
use std::rc::Rc;
use std::time::Duration;
use vod_uploader::checkpoint;
use vod_uploader::engine::{self, Metered, Settings};
use vod_uploader::notify::{event_for, NotifyTarget};
use vod_uploader::protocol::{Credentials, Endpoint, Signer};
use vod_uploader::quota::Quotas;
use vod_uploader::sign::Algorithm;
use vod_uploader::source::Source;
use vod_uploader::upload::{Backoff, Outcome, Phase, Spec, State, Upload, MD5S_PER_CHUNK};

/// How an upload may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Done,
    Failed(&'static str),
    /// Done if it got there before the condition struck, else failed with this code.
    DoneOr(&'static str),
}

/// What was generated from a seed, shown when a seed fails.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub size: usize,
    pub part: u64,
    pub local: bool,
    pub twin: bool,
    pub quirk: Quirk,
    pub change_at: Option<Duration>,
    pub flaky: f64,
    pub faults: f64,
    pub odd: f64,
    pub refuse: bool,
    pub preseed: Preseed,
    pub kills: f64,
    pub budget_ms: u64,
    pub checkpoint_ms: u64,
    pub concurrency: usize,
    pub memory_threshold: u64,
    pub first_read: u64,
    pub latency: Latency,
    pub expect: Expect,
    /// Key-value writes of keys containing this fail, that many times.
    pub failing_writes: Option<(String, u32)>,
    /// A completion webhook whose receiver fails this fraction of deliveries.
    pub webhook: Option<f64>,
    /// Parts per lease of the upload pass (several invocations send one upload's ranges).
    pub range_parts: u64,
    /// The platform's quotas, kept over all the invocations.
    pub quotas: Quotas,
}

/// What the service holds before the upload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preseed {
    Nothing,
    /// The file itself (uploaded earlier under another name).
    Held,
    /// A session with another part size, some parts held, some of them wrong.
    Session {
        data_size: u64,
    },
}

impl Scenario {
    pub fn generate(rng: &mut Rng) -> Scenario {
        // Mostly small files in small parts (fast, many parts); a few with more parts
        // than one MD5 chunk holds, so chunk keys are written, read and released.
        let (size, part) = if rng.chance(0.02) {
            let part = rng.pick(&[1u64, 2, 3]);
            (rng.range(MD5S_PER_CHUNK * part + 1, (MD5S_PER_CHUNK + 300) * part) as usize, part)
        } else {
            let part = rng.pick(&[1u64, 7, 64, 100, 512, 1024, 4096]);
            (rng.range(1, (part * 40).min(64 * 1024)) as usize, part)
        };
        let local = rng.chance(0.15);
        let mut quirk = Quirk::None;
        let mut expect = Expect::Done;
        let mut change_at = None;
        let mut refuse = false;
        match rng.range(0, 19) {
            0 if !local => {
                quirk = Quirk::IgnoresRange;
                expect = Expect::DoneOr("source_no_range");
            }
            1 if !local => {
                quirk = Quirk::Gzip;
                expect = Expect::Failed("source_encoded");
            }
            2 if !local => {
                quirk = Quirk::ShiftedRange;
                expect = Expect::DoneOr("source_bad_range");
            }
            3 if !local => {
                // Refused when a read gets to its end; one cut short by the time never
                // sees the extra bytes (and used only the bytes asked for).
                quirk = Quirk::LongBody;
                expect = Expect::DoneOr("source_bad_range");
            }
            4 if !local => {
                let (status, code) = rng.pick(&[(403u16, "source_denied"), (404, "source_not_found"), (410, "source_not_found")]);
                quirk = Quirk::StatusFrom(status, rng.range(1, 6));
                expect = Expect::DoneOr(code);
            }
            5 => {
                change_at = Some(Duration::from_millis(rng.range(1, 3000)));
                expect = Expect::DoneOr("source_changed");
            }
            6 => {
                refuse = true;
                expect = Expect::Failed("vod_rejected");
            }
            _ => {}
        }
        let preseed = match rng.range(0, 9) {
            0 if !refuse => Preseed::Held,
            // Another part size than ours; not so small that the parts number thousands.
            1 => Preseed::Session { data_size: rng.pick(&[1u64, 5, 100, 2048]).max(size as u64 / 1500 + 1) },
            _ => Preseed::Nothing,
        };
        if preseed == Preseed::Held && expect != Expect::Failed("source_encoded") {
            // InitUpload answers code 2 before anything can go wrong with the parts,
            // but the hashing pass still reads the source.
            expect = match expect {
                Expect::Failed(c) | Expect::DoneOr(c) => Expect::DoneOr(c),
                Expect::Done => Expect::Done,
            };
        }
        // Thousands of parts want invocations that get something done.
        let budget_ms = if size as u64 / part > 2000 { rng.pick(&[100u64, 400]) } else { rng.pick(&[0u64, 5, 30, 100, 400]) };
        Scenario {
            size,
            part,
            local,
            twin: rng.chance(0.1),
            quirk,
            change_at,
            flaky: rng.pick(&[0.0, 0.0, 0.05, 0.15]),
            faults: rng.pick(&[0.0, 0.05, 0.1, 0.2]),
            odd: rng.pick(&[0.0, 0.0, 0.03]),
            refuse,
            preseed,
            kills: rng.pick(&[0.0, 0.1, 0.3, 0.5]),
            budget_ms,
            checkpoint_ms: rng.pick(&[0u64, 1, 10, 40]),
            concurrency: rng.range(if size as u64 / part > 2000 { 2 } else { 1 }, 4) as usize,
            memory_threshold: rng.pick(&[0u64, 0, 4096, 1 << 20]),
            // A zero budget reads once per invocation: small reads would take thousands.
            first_read: if budget_ms == 0 { u64::MAX } else { rng.pick(&[u64::MAX, 64, 1000, 16384]) },
            latency: Latency { kv_ms: rng.pick(&[1u64, 3]), net_ms: rng.pick(&[1u64, 3, 10]) },
            expect,
            failing_writes: None,
            webhook: None,
            range_parts: u64::MAX >> 24,
            quotas: Quotas::default(),
        }
    }

    /// A plain scenario: no faults, no quirks, one invocation's worth of settings.
    pub fn plain(size: usize, part: u64, local: bool) -> Scenario {
        Scenario {
            size,
            part,
            local,
            twin: false,
            quirk: Quirk::None,
            change_at: None,
            flaky: 0.0,
            faults: 0.0,
            odd: 0.0,
            refuse: false,
            preseed: Preseed::Nothing,
            kills: 0.0,
            budget_ms: 30,
            checkpoint_ms: 1,
            concurrency: 2,
            memory_threshold: 0,
            first_read: 64,
            latency: Latency { kv_ms: 1, net_ms: 1 },
            expect: Expect::Done,
            failing_writes: None,
            webhook: None,
            range_parts: u64::MAX >> 24,
            quotas: Quotas::default(),
        }
    }

    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(Signer {
            endpoint: Endpoint::parse(&format!("http://{VOD_HOST}/v2/index.php")).expect("endpoint"),
            credentials: Credentials::new("AKIDsim", "sim-secret"),
            region: "gz".into(),
            algorithm: Algorithm::HmacSha1,
        });
        s.budget = Duration::from_millis(self.budget_ms);
        s.min_budget = Duration::from_millis(60);
        s.stall_timeout = Duration::from_millis(150);
        s.concurrency = self.concurrency;
        s.checkpoint_every = Duration::from_millis(self.checkpoint_ms);
        s.memory_threshold = self.memory_threshold;
        s.first_read = self.first_read;
        s.attempts = 3;
        s.backoff = Backoff { base_secs: 1, cap_secs: 30, give_up_secs: 24 * 3600 };
        s.retention_secs = 3600;
        s.range_bytes = self.range_parts.saturating_mul(self.part);
        // A few store round trips, as on the platforms (50 ms against 1 ms).
        s.lease_settle = Duration::from_millis(self.latency.kv_ms * 4);
        s.quotas = self.quotas;
        if self.quotas.outbound_per_hour.is_some() {
            // A run under a request quota takes many hours: retention must not end it.
            s.retention_secs = 30 * 24 * 3600;
        }
        if self.webhook.is_some() {
            s.notify = Some(NotifyTarget::new(format!("http://{HOOKS_HOST}/hook"), HOOKS_SECRET));
            // Long enough for every delivery's backoff before retention removes the upload.
            s.retention_secs = 7 * 24 * 3600;
        }
        s
    }
}

/// What a finished run measured.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub invocations: u64,
    pub kills: u64,
    pub io_calls: u64,
    pub duplicate_parts: u64,
    pub outcome: String,
    /// Requests the invocations sent, by unix hour.
    pub sends_by_hour: std::collections::BTreeMap<u64, u64>,
    /// The most key-value writes in any unix second.
    pub most_writes_in_a_second: u64,
    /// The most outbound quota keys the store held at once.
    pub most_outbound_keys: usize,
}

/// The source as the upload names it.
fn source_name(local: bool, n: usize) -> String {
    if local {
        format!("/data/clip{n}.mp4")
    } else {
        format!("http://src.sim/clip{n}.mp4?X-Amz-Signature=secret")
    }
}

/// Upload `n` of the source: twins differ by their fileName only.
fn spec(sc: &Scenario, name: &str, n: usize) -> Spec {
    let source = if sc.local { Source::Path(name.to_owned()) } else { Source::Url(name.to_owned()) };
    Spec { file_name: format!("clip{n}"), ..Spec::for_source(source, sc.part) }
}

/// Checks after a step: keys within bounds, and what was done stays done.
struct Invariants {
    ids: Vec<String>,
    /// The fileId each upload was first seen done with.
    done: Vec<Option<String>>,
    key_bound: usize,
}

impl Invariants {
    fn check(&mut self, world: &Rc<World>, step: &str) {
        let kv = world.kv.borrow();
        for (i, id) in self.ids.iter().enumerate() {
            let prefix = checkpoint::record_key(id);
            let keys = kv.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).count();
            if keys > self.key_bound {
                world.violation(format!("{step}: upload {id} holds {keys} keys, over the bound {}", self.key_bound));
            }
            // The upload as any load sees it: the outcome over the record.
            let record = kv.get(&prefix).and_then(|v| Upload::decode(v).ok());
            let end = kv.get(&checkpoint::end_key(id)).and_then(|v| Outcome::decode(v).ok());
            let seen_done = match (&end, &record) {
                (Some(Outcome::Done { file_id, .. }), _) => Some(file_id.clone()),
                (_, Some(r)) if r.state() == State::Done => r.file_id().map(str::to_owned),
                _ => None,
            };
            match (&self.done[i], seen_done) {
                (Some(before), Some(now)) if *before != now => {
                    world.violation(format!("{step}: upload {id} done as {before}, now done as {now}"))
                }
                (Some(before), None) => {
                    world.violation(format!("{step}: upload {id} was done as {before} and is now {:?}", record.map(|r| r.state())))
                }
                (None, Some(now)) => self.done[i] = Some(now),
                _ => {}
            }
        }
    }
}

/// Runs the scenario of `seed`; `kills` overrides its kill plan (the exhaustive sweep).
/// `Err` lists what went wrong, with the scenario.
pub fn run_seed(seed: u64, kills: Option<Kills>) -> Result<Report, String> {
    run_seed_with(seed, kills, true)
}

/// [`run_seed`], with or without the completion webhook some seeds have. It comes from
/// a generator of its own, so a seed's scenario is otherwise the same either way (the
/// trace digest pins the I/O of the seeds without it).
pub fn run_seed_with(seed: u64, kills: Option<Kills>, webhook: bool) -> Result<Report, String> {
    let mut gen = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let mut sc = Scenario::generate(&mut gen);
    let mut hooks = Rng::new(seed ^ 0x4f0c_4f0c);
    if webhook && hooks.chance(0.3) {
        sc.webhook = Some(hooks.pick(&[0.0, 0.1, 0.3]));
    }
    // Part ranges from a generator of their own too: one range (the whole file, as with
    // the platform's default for small files) or a few parts each.
    let mut more = Rng::new(seed ^ 0x7a9e_5b1d);
    // At most 32 ranges, as a 2 GiB file has of 64 MiB ranges.
    let parts = (sc.size as u64).div_ceil(sc.part);
    sc.range_parts = more.pick(&[u64::MAX >> 24, 1, 3, 16]).max(parts.div_ceil(32));
    // Some deployments with quotas, in the platforms' proportions: invocations whose
    // budget holds a claim's few store round trips many times over (a claim lists and
    // reads the others' claims), write limits of 30 and up (the margin then covers three
    // invocations losing a race in one second); kills no worse than 0.3 (a killed
    // invocation's rate claim holds until its time limit would have ended).
    // (Thousands of one-byte parts under an hourly quota take days of rounds: the
    // quota test below runs a real-sized upload under the real quota instead.)
    if sc.budget_ms >= 100 && (sc.size as u64).div_ceil(sc.part) <= 1000 && sc.kills <= 0.3 {
        if more.chance(0.2) {
            sc.quotas.kv_writes_per_second = Some(more.pick(&[30u64, 50]));
        }
        // (An hourly quota under a storm of faults and kills, where most requests
        // are repeats, takes hundreds of virtual hours: kept to calmer weather.)
        if more.chance(0.15) && sc.faults <= 0.1 {
            sc.quotas.outbound_per_hour = Some(more.pick(&[60u64, 200]));
        }
    }
    run_scenario(seed, &sc, kills)
}

/// Runs a given scenario (the world's randomness still from `seed`).
pub fn run_scenario(seed: u64, sc: &Scenario, kills: Option<Kills>) -> Result<Report, String> {
    caught(&format!("scenario: {sc:#?}"), || drive(seed, sc, kills))
}

/// Runs `drive`, a panic in it made a failure like the others; `what` (the case) is
/// appended to either.
pub fn caught<T>(what: &str, drive: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(drive)) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(problems)) => Err(format!("{problems}\n{what}")),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("panic: {}\n{what}", message.unwrap_or_default()))
        }
    }
}

fn drive(seed: u64, sc: &Scenario, kills: Option<Kills>) -> Result<Report, String> {
    let world = World::new(seed, sc.latency);
    let mut rng = Rng::new(seed ^ 0xd1ce);
    let settings = Rc::new(sc.settings());
    world.hooks.borrow_mut().fail = sc.webhook.unwrap_or(0.0);
    world.checkpoint_every.set(settings.checkpoint_every);
    let original = rng.bytes(sc.size);
    let name = source_name(sc.local, 0);
    {
        let mut file = SourceFile::new(original.clone());
        file.quirk = sc.quirk;
        file.flaky = sc.flaky;
        // Chunks as fine as one byte, but the whole file readable within a few
        // invocations' time (a zero budget hashes one chunk per invocation).
        file.chunk = match (sc.budget_ms, sc.size) {
            (0..=99, _) => rng.pick(&[4096usize, 65536]),
            (_, 0..=2048) => rng.pick(&[1usize, 100, 4096]),
            _ => rng.pick(&[100usize, 4096, 65536]),
        };
        file.gap = Duration::from_millis(if file.chunk >= 4096 { rng.pick(&[0u64, 0, 1]) } else { 0 });
        file.states_length = rng.chance(0.7);
        if let Some(at) = sc.change_at {
            let mut changed = original.clone();
            if changed.is_empty() || rng.chance(0.3) {
                changed.push(1);
            } else {
                let i = rng.range(0, changed.len() as u64 - 1) as usize;
                changed[i] ^= 0xff;
            }
            file.change = Some((at, changed));
        }
        world.sources.borrow_mut().insert(name.clone(), file);
    }
    {
        let mut service = world.service.borrow_mut();
        service.faults = sc.faults;
        service.odd = sc.odd;
        service.refuse = sc.refuse;
        match sc.preseed {
            Preseed::Nothing => {}
            Preseed::Held => {
                service.hold(&original);
            }
            Preseed::Session { data_size } => {
                let mut parts = std::collections::BTreeMap::new();
                for (i, chunk) in original.chunks(data_size as usize).enumerate() {
                    match rng.range(0, 2) {
                        0 => {}
                        1 => {
                            parts.insert(i as u64 * data_size, chunk.to_vec());
                        }
                        _ => {
                            parts.insert(i as u64 * data_size, chunk.iter().map(|b| b ^ 1).collect());
                        }
                    }
                }
                service.sessions.insert(sha1_hex(&original), super::model::Session { file_size: original.len() as u64, data_size, parts });
            }
        }
    }
    let observer = SimIo { world: world.clone(), inv: None };

    // Create the upload(s) as a user would: again after a transient failure.
    let uploads = if sc.twin { 2 } else { 1 };
    let mut ids = Vec::new();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for n in 0..uploads {
        let spec = spec(sc, &name, n);
        let mut created = None;
        for _ in 0..50 {
            let (io, s, spec) = (observer.clone(), settings.clone(), spec.clone());
            match block_on(&world, async move { engine::create(&io, &s, spec).await }) {
                Ok((rec, _)) => {
                    created = Some(rec);
                    break;
                }
                Err(e) if e.retryable() => world.advance_clock(Duration::from_secs(1)),
                Err(e) => return check_refused(sc, e.code()),
            }
        }
        let rec = created.ok_or_else(|| "the upload could not be created in 50 attempts".to_string())?;
        ids.push(rec.id);
        // The bytes the upload is of: the source as its probe saw it.
        let now = world.now();
        expected.push(world.sources.borrow()[&name].read(now, 0, usize::MAX));
        world.truth.borrow_mut().insert(ids[n].clone(), expected[n].clone());
    }
    let parts_most = (sc.size as u64).div_ceil(sc.part.min(match sc.preseed {
        Preseed::Session { data_size } => data_size,
        _ => sc.part,
    }));
    // With a webhook, up to three keys more: a delivery under way, the failure told of,
    // and done told of.
    // Leases: the hashing pass's and one per part range at most (a killed invocation's
    // lease stays until its range is leased and given back again, or the upload ends).
    let ranges = parts_most.div_ceil(sc.range_parts.min(parts_most).max(1)) as usize;
    let key_bound = 2 + parts_most.div_ceil(MD5S_PER_CHUNK) as usize + if sc.webhook.is_some() { 3 } else { 0 } + 1 + ranges;
    let mut inv = Invariants { ids: ids.clone(), done: vec![None; ids.len()], key_bound };
    world.kills.set(kills.unwrap_or(if sc.kills > 0.0 { Kills::Random(sc.kills) } else { Kills::None }));
    if let Some((pattern, times)) = &sc.failing_writes {
        *world.failing_writes.borrow_mut() = Some((pattern.clone(), *times));
    }
    // (Five more: the read of the record merged before a checkpoint, and two leases
    // given back, a read and a delete each.)
    // (And with a write quota, a rate claimed at the first write: a listing, the claims
    // of up to two others read, a write, and all that again.)
    let claim = if sc.quotas.kv_writes_per_second.is_some() { 8 } else { 0 };
    // An upload pass that shared the upload also reads its last record back, after a
    // settling wait, up to twice, writing it again (an end read, a read, a write) each time.
    let shared = if sc.range_parts < u64::MAX >> 24 { 2 * (4 + 4) } else { 0 };
    let slack = Duration::from_millis(sc.latency.kv_ms * (17 + claim + shared + 2 * (parts_most / MD5S_PER_CHUNK + 1)));
    let hard = settings.time_limit();
    let mut report = Report::default();

    // Liveness: the uploads must keep moving (their records change: a repair may send
    // one back from finishing to uploading), and end within a bound.
    let mut furthest = Vec::new();
    let mut still = 0;
    for round in 0.. {
        let states: Vec<Option<Upload>> = ids.iter().map(|id| load(&world, &observer, id)).collect();
        if states.iter().all(|r| r.as_ref().is_none_or(|r| r.state().is_final())) {
            break;
        }
        let reached: Vec<_> = states.iter().map(|r| r.as_ref().map(progress_of)).collect();
        if reached != furthest {
            furthest = reached;
            still = 0;
        } else {
            still += 1;
        }
        if still == 300 || round == 20_000 {
            let shown: Vec<_> = states
                .iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{:?} part size {} parts done {} md5s {} uploading {:?} error {:?}",
                        r.state(),
                        r.part_size(),
                        r.parts_done(),
                        r.md5s().map_or(0, |m| m.count()),
                        r.uploading().map(|u| (u.session, u.done.below, u.repairs)),
                        r.error()
                    )
                })
                .collect();
            return Err(failure(&world, format!("no progress in {still} rounds (round {round}): {shown:?}")));
        }
        // A scheduler honours retryAfter: wait it out.
        let wait = states.iter().flatten().filter(|r| !r.state().is_final()).filter_map(|r| r.retry_after()).min();
        if let Some(at) = wait {
            let unix = world.unix();
            if at > unix {
                world.advance_clock(Duration::from_secs(at - unix));
            }
        }
        // Between rounds no invocation runs: a lease that still holds is a killed
        // invocation's. Mostly the scheduler comes back once it has expired; sometimes
        // sooner, and the invocations find the work taken.
        let now_ms = |w: &World| w.unix_origin * 1000 + w.now().as_millis() as u64;
        let expiry = {
            let now = now_ms(&world);
            let kv = world.kv.borrow();
            kv.iter()
                .filter(|(k, _)| checkpoint::lease_of_key(k).is_some())
                .filter_map(|(_, v)| vod_uploader::lease::Lease::decode(v))
                .filter(|l| l.live(now))
                .map(|l| l.until_ms)
                .min()
        };
        if let Some(until) = expiry.filter(|_| rng.chance(0.7)) {
            world.advance_clock(Duration::from_millis(until - now_ms(&world)));
        }
        // One, two or three invocations at once, on the same upload or on the twins,
        // each an advance or a tick, starting a little apart.
        let n = rng.pick(&[1usize, 1, 1, 2, 2, 3]);
        let mut tasks = Vec::new();
        let mut watched = Vec::new();
        for _ in 0..n {
            let id = ids[rng.range(0, ids.len() as u64 - 1) as usize].clone();
            let tick = rng.chance(0.15);
            let delay = Duration::from_millis(rng.range(0, 20));
            let w = world.watch();
            watched.push(w);
            let (world2, s) = (world.clone(), settings.clone());
            let refusing = sc.failing_writes.is_some();
            tasks.push(Task::new(Some(w), async move {
                world2.after(delay).await;
                let started = world2.now();
                world2.start(w, hard);
                let sim = SimIo { world: world2.clone(), inv: Some(w) };
                let io = Metered::new(&sim, s.quotas, s.signer.endpoint.url(), hard);
                let result = if tick {
                    engine::tick(&io, &s, started).await.map(|_| ())
                } else {
                    engine::advance(&io, &s, &id, started).await.map(|_| ())
                };
                io.finish().await;
                if let Err(e) = result {
                    // Only the store can fail an invocation here, when it refuses writes,
                    // or the write quota, when the invocation's time ran out waiting.
                    if !refusing && e.code() != "quota_exhausted" && !e.to_string().contains("platform quota") {
                        world2.violation(format!("invocation {w}: {e}"));
                    }
                }
            }));
        }
        let calls_before = world.calls.get();
        run(&world, tasks, Duration::from_secs(600));
        report.io_calls += world.calls.get() - calls_before;
        report.invocations += n as u64;
        for w in watched {
            let watch = world.watches.borrow()[w].clone();
            if watch.killed {
                report.kills += 1;
                continue;
            }
            if let Some(ended) = watch.ended {
                if ended.saturating_sub(watch.started) > hard + slack {
                    world.violation(format!(
                        "invocation {w} ran {:?}, over its time {hard:?} (+{slack:?} to checkpoint)",
                        ended - watch.started
                    ));
                }
            }
        }
        inv.check(&world, &format!("round {round}"));
        if !world.violations.borrow().is_empty() {
            return Err(failure(&world, format!("after round {round}")));
        }
        world.advance_clock(Duration::from_millis(rng.range(0, 50)));
    }

    // The end: every upload settles (one more invocation after the last, which must
    // change nothing but a leftover), then is checked against the source and service.
    world.kills.set(Kills::None);
    let mut outcomes = Vec::new();
    for (id, expected) in ids.iter().zip(&expected) {
        let original_sha = sha1_hex(expected);
        let (io, s, id2) = (observer.clone(), settings.clone(), id.clone());
        let started = world.now();
        let rec = block_on(&world, async move { engine::advance(&io, &s, &id2, started).await })
            .map_err(|e| failure(&world, format!("settling {id}: {e}")))?
            .ok_or_else(|| failure(&world, format!("upload {id} vanished")))?;
        match rec.state() {
            State::Done => {
                if sc.expect == Expect::Done || matches!(sc.expect, Expect::DoneOr(_)) {
                } else {
                    return Err(failure(&world, format!("upload {id} is done, expected {:?}", sc.expect)));
                }
                let held = world.service.borrow().files.get(&original_sha).map(|f| (f.file_id.clone(), f.bytes == *expected));
                match held {
                    Some((file_id, true)) if rec.file_id() == Some(file_id.as_str()) => {}
                    other => {
                        return Err(failure(
                            &world,
                            format!("upload {id} done as {:?}, the service holds {other:?} for the source's SHA-1", rec.file_id()),
                        ))
                    }
                }
                if rec.file_sha().is_some_and(|s| s != original_sha) {
                    return Err(failure(&world, format!("upload {id} hashed {:?}, the source is {original_sha}", rec.file_sha())));
                }
            }
            State::Failed => {
                let code = rec.error().as_ref().map(|e| e.code.as_str()).unwrap_or("");
                match sc.expect {
                    Expect::Failed(want) | Expect::DoneOr(want) if want == code => {}
                    _ => return Err(failure(&world, format!("upload {id} failed with {:?}, expected {:?}", rec.error(), sc.expect))),
                }
            }
            other => return Err(failure(&world, format!("upload {id} ended {other:?}"))),
        }
        outcomes.push(format!("{:?}", rec.state()));
    }
    inv.check(&world, "settled");
    // Never over a quota, over all the invocations.
    if let Some(limit) = sc.quotas.outbound_per_hour {
        if let Some((hour, n)) = world.sends_by_hour.borrow().iter().find(|(_, n)| **n > limit) {
            return Err(failure(&world, format!("{n} requests in hour {hour}, over outbound_per_hour {limit}")));
        }
    }
    if let Some(limit) = sc.quotas.kv_writes_per_second {
        if let Some((sec, n)) = world.writes_by_second.borrow().iter().find(|(_, n)| **n > limit) {
            return Err(failure(&world, format!("{n} key-value writes in second {sec}, over kv_writes_per_second {limit}")));
        }
    }
    // A tick's housekeeping removes what racing invocations left after the end.
    let (io, s) = (observer.clone(), settings.clone());
    let started = world.now();
    block_on(&world, async move { engine::tick(&io, &s, started).await }).map_err(|e| failure(&world, format!("tick: {e}")))?;
    if sc.webhook.is_some() {
        deliveries_arrive(&world, &observer, &settings, &ids)?;
    }
    for (id, outcome) in ids.iter().zip(&outcomes) {
        let keys: Vec<String> = world.kv.borrow().keys().filter(|k| k.starts_with(&checkpoint::record_key(id))).cloned().collect();
        let mut want = vec![checkpoint::record_key(id), checkpoint::end_key(id)];
        if sc.webhook.is_some() {
            want.push(checkpoint::notified_key(id, "done"));
        }
        if outcome == "Done" && keys != want {
            return Err(failure(&world, format!("done upload {id} holds {keys:?} after a tick, expected {want:?}")));
        }
    }
    // Retention: a tick past it removes every key of every final upload.
    world.advance_clock(Duration::from_secs(settings.retention_secs + 1));
    let (io, s) = (observer.clone(), settings.clone());
    let started = world.now();
    block_on(&world, async move { engine::tick(&io, &s, started).await }).map_err(|e| failure(&world, format!("retention tick: {e}")))?;
    let left: Vec<String> = world.kv.borrow().keys().cloned().collect();
    if !left.is_empty() {
        return Err(failure(&world, format!("keys left after retention: {left:?}")));
    }
    if !world.violations.borrow().is_empty() {
        return Err(failure(&world, "at the end".into()));
    }
    report.duplicate_parts = world.service.borrow().duplicate_parts;
    report.sends_by_hour = world.sends_by_hour.borrow().clone();
    report.most_writes_in_a_second = world.writes_by_second.borrow().values().copied().max().unwrap_or(0);
    report.most_outbound_keys = world.most_outbound_keys.get();
    report.outcome = outcomes.join(",");
    Ok(report)
}

/// Ticks (the clock moved on to each next attempt) until every ended upload's
/// completion event has been taken by the receiver: with its one delivery id, the
/// fileId or error it ended with, and a valid signature on every attempt.
fn deliveries_arrive(world: &Rc<World>, observer: &SimIo, settings: &Rc<Settings>, ids: &[String]) -> Result<(), String> {
    let mut last = Vec::new();
    for round in 0..60 {
        let mut owed = Vec::new();
        for id in ids {
            let up = load(world, observer, id).ok_or_else(|| failure(world, format!("upload {id} vanished")))?;
            let Some(event) = event_for(&up) else { continue };
            let hooks = world.hooks.borrow();
            let taken = hooks.taken.get(id).map(Vec::as_slice).unwrap_or_default();
            let matching: Vec<_> = taken.iter().filter(|t| t.delivery_id == event.delivery_id).cloned().collect();
            if let Some(t) = matching.iter().find(|t| t.body["fileId"].as_str() != up.file_id() || t.kind != event.kind) {
                return Err(failure(world, format!("upload {id} ended {:?} as {:?}, its event says {}", up.state(), up.file_id(), t.body)));
            }
            drop(hooks);
            // Taken by the receiver, and known to be by the sender (a receiver may act
            // and then fail to answer: the sender delivers again).
            let (io, s, up2) = (observer.clone(), settings.clone(), up.clone());
            let told = block_on(world, async move { engine::delivery(&io, &s, &up2).await }).ok().flatten();
            if matching.is_empty() || told.as_ref().is_none_or(|d| d.delivered_at.is_none()) {
                owed.push(format!("{id} (taken {}, sender: {told:?})", matching.len()));
            }
        }
        if !world.hooks.borrow().bad.is_empty() {
            return Err(failure(world, format!("the receiver refused deliveries: {:?}", world.hooks.borrow().bad)));
        }
        if owed.is_empty() {
            return Ok(());
        }
        last = owed.clone();
        // The next attempt is due after its backoff.
        let next = owed
            .iter()
            .filter_map(|id| {
                let id = id.split(' ').next().unwrap_or_default();
                world.kv.borrow().get(&checkpoint::notify_key(id)).and_then(|v| vod_uploader::notify::Delivery::decode(v))
            })
            .map(|d| d.next_at)
            .max()
            .unwrap_or(0);
        let unix = world.unix();
        world.advance_clock(Duration::from_secs(next.saturating_sub(unix) + 1));
        let (io, s) = (observer.clone(), settings.clone());
        let started = world.now();
        block_on(world, async move { engine::tick(&io, &s, started).await })
            .map_err(|e| failure(world, format!("delivery tick {round}: {e}")))?;
    }
    Err(failure(world, format!("completion events still owed after 60 ticks: {:?}", last)))
}

/// How far an upload got: its state, bytes hashed, parts uploaded.
fn progress_of(rec: &Upload) -> (u8, u64, u64) {
    let rank = match rec.state() {
        State::Pending => 0,
        State::Hashing => 1,
        State::Uploading => 2,
        State::Finishing => 3,
        _ => 4,
    };
    let hashed = match &rec.phase {
        Phase::Hashing(h) => h.hasher.offset,
        _ => 0,
    };
    (rank, hashed, rec.parts_done())
}

fn load(world: &Rc<World>, observer: &SimIo, id: &str) -> Option<Upload> {
    let (io, id) = (observer.clone(), id.to_owned());
    block_on(world, async move { engine::load(&io, &id).await }).ok().flatten()
}

/// The create call itself was refused: right only when that refusal was expected.
fn check_refused(sc: &Scenario, code: &str) -> Result<Report, String> {
    match sc.expect {
        Expect::Failed(want) | Expect::DoneOr(want) if want == code => {
            Ok(Report { outcome: format!("refused {code}"), ..Report::default() })
        }
        _ => Err(format!("creating the upload failed with {code}, expected {:?}", sc.expect)),
    }
}

fn failure(world: &World, what: String) -> String {
    let violations = world.violations.borrow();
    let mut out = what;
    for v in violations.iter().take(10) {
        out.push_str("\n  - ");
        out.push_str(v);
    }
    out
}

/// Two uploads driven by ticks alone, one from a source that stops answering after its
/// probe: the healthy one must finish, the stalled one wait out growing `retryAfter`s
/// as retryable, and no tick overrun its time.
pub fn stalled_next_to_healthy(seed: u64) -> Result<String, String> {
    let world = World::new(seed, Latency { kv_ms: 1, net_ms: 2 });
    let mut sc = Scenario::plain(20_000, 1000, false);
    sc.budget_ms = 300;
    let settings = Rc::new(sc.settings());
    world.checkpoint_every.set(settings.checkpoint_every);
    let mut rng = Rng::new(seed);
    let names = [source_name(false, 0), source_name(false, 1)];
    let mut stalled = SourceFile::new(rng.bytes(30_000));
    stalled.quirk = Quirk::SilentFrom(2);
    world.sources.borrow_mut().insert(names[0].clone(), stalled);
    world.sources.borrow_mut().insert(names[1].clone(), SourceFile::new(rng.bytes(sc.size)));
    let observer = SimIo { world: world.clone(), inv: None };
    let mut ids = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let (io, s, spec) = (observer.clone(), settings.clone(), spec(&sc, name, n));
        let (rec, _) = block_on(&world, async move { engine::create(&io, &s, spec).await }).map_err(|e| format!("create: {e}"))?;
        ids.push(rec.id);
    }
    let hard = settings.time_limit();
    let slack = Duration::from_millis(20);
    for tick in 0..200 {
        let w = world.watch();
        let (world2, s) = (world.clone(), settings.clone());
        run(
            &world,
            vec![Task::new(Some(w), async move {
                let started = world2.now();
                world2.start(w, hard);
                let io = SimIo { world: world2.clone(), inv: Some(w) };
                if let Err(e) = engine::tick(&io, &s, started).await {
                    world2.violation(format!("tick {w}: {e}"));
                }
            })],
            Duration::from_secs(60),
        );
        let watch = world.watches.borrow()[w].clone();
        let took = watch.ended.unwrap_or_default().saturating_sub(watch.started);
        if took > hard + slack {
            return Err(format!("tick {tick} ran {took:?}, over its time {hard:?}"));
        }
        if !world.violations.borrow().is_empty() {
            return Err(failure(&world, format!("tick {tick}")));
        }
        let healthy = load(&world, &observer, &ids[1]).ok_or("the healthy upload vanished")?;
        if healthy.state() == State::Done {
            let stuck = load(&world, &observer, &ids[0]).ok_or("the stalled upload vanished")?;
            let error = stuck.error().cloned().ok_or("the stalled upload shows no error")?;
            let waits = stuck.retry_after().map(|t| t.saturating_sub(world.unix()));
            if stuck.state().is_final() || error.code != "source_stalled" || !error.retryable || waits.is_none() {
                return Err(format!("the stalled upload: {:?} {error:?} retryAfter {waits:?}", stuck.state()));
            }
            return Ok(format!("healthy done after {} ticks; stalled waits {waits:?} s more, {} retries", tick + 1, stuck.retries));
        }
        world.advance_clock(Duration::from_secs(1));
    }
    Err("the healthy upload did not finish in 200 ticks".into())
}

/// What [`upload_pass_with`] measured.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Virtual time from the end of hashing to done.
    pub upload_pass: Duration,
    /// Bytes of parts the service was sent more than once.
    pub duplicate_bytes: u64,
    /// Rounds of invocations it took, hashing included.
    pub rounds: u64,
}

/// One upload of `size` bytes in `part`-byte parts, hashed by one invocation, then sent
/// by `instances` invocations at once (ticks on as many instances sharing the store),
/// round after round until done: how long the upload pass took on virtual time, and
/// what was sent twice. Each invocation's bandwidth is the limit (every request costs
/// the network's latency, `concurrency` at a time), as it is for instances on
/// machines of their own.
pub fn upload_pass_with(seed: u64, instances: usize, size: usize, part: u64) -> Result<Shared, String> {
    let world = World::new(seed, Latency { kv_ms: 1, net_ms: 10 });
    let mut sc = Scenario::plain(size, part, false);
    sc.budget_ms = 2_000;
    sc.checkpoint_ms = 200;
    sc.concurrency = 4;
    sc.first_read = u64::MAX;
    sc.range_parts = 16;
    let settings = Rc::new(sc.settings());
    world.checkpoint_every.set(settings.checkpoint_every);
    let mut rng = Rng::new(seed);
    let name = source_name(false, 0);
    let original = rng.bytes(size);
    world.sources.borrow_mut().insert(name.clone(), SourceFile::new(original.clone()));
    let observer = SimIo { world: world.clone(), inv: None };
    let (io, s, spec) = (observer.clone(), settings.clone(), spec(&sc, &name, 0));
    let (rec, _) = block_on(&world, async move { engine::create(&io, &s, spec).await }).map_err(|e| format!("create: {e}"))?;
    let id = rec.id;
    let hard = settings.time_limit();
    let mut began = None;
    for round in 0..10_000u64 {
        let up = load(&world, &observer, &id).ok_or("the upload vanished")?;
        match up.state() {
            State::Done => {
                let held = world.service.borrow().files.get(&sha1_hex(&original)).map(|f| f.bytes == original);
                if held != Some(true) {
                    return Err(format!("done, but the service holds {held:?}"));
                }
                let upload_pass = world.now().saturating_sub(began.ok_or("never uploading")?);
                let duplicate_bytes = world.service.borrow().duplicate_parts * part;
                return Ok(Shared { upload_pass, duplicate_bytes, rounds: round });
            }
            State::Uploading if began.is_none() => began = Some(world.now()),
            s if s.is_final() => return Err(format!("ended {s:?}: {:?}", up.error())),
            _ => {}
        }
        let n = if began.is_some() { instances } else { 1 };
        let mut tasks = Vec::new();
        for _ in 0..n {
            let w = world.watch();
            let (world2, s) = (world.clone(), settings.clone());
            tasks.push(Task::new(Some(w), async move {
                let started = world2.now();
                world2.start(w, hard);
                let sim = SimIo { world: world2.clone(), inv: Some(w) };
                if let Err(e) = engine::tick(&sim, &s, started).await {
                    world2.violation(format!("tick {w}: {e}"));
                }
            }));
        }
        run(&world, tasks, Duration::from_secs(60));
        if !world.violations.borrow().is_empty() {
            return Err(failure(&world, format!("round {round}")));
        }
    }
    Err("not done in 10,000 rounds".into())
}
