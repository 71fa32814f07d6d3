//! The simulated world: a virtual clock, a deterministic executor, an in-memory
//! key-value store that can kill the invocation at any call, and [`SimIo`], the
//! engine's [`Io`] over it. Nothing here touches the real clock, network or disk;
//! everything random comes from one seeded generator, so a seed replays exactly.

use super::hooks::{Hooks, HOOKS_HOST};
use super::model::{Service, SourceFile};
use md5::Digest as _;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use vod_uploader::checkpoint;
use vod_uploader::engine::{Body, FileInfo, HttpRequest, HttpResponse, Io, IoError};
use vod_uploader::upload::{Outcome, State, Upload, MD5S_PER_CHUNK};

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

thread_local! {
    /// The I/O trace recorder (the trace digest test in `tests/simulation.rs`): while
    /// set, every I/O call a live task makes on this thread is hashed into it.
    static IO_TRACE: RefCell<Option<sha1::Sha1>> = const { RefCell::new(None) };
}

/// Starts recording this thread's I/O calls (see [`io_trace_take`]).
pub fn io_trace_start() {
    IO_TRACE.with(|t| *t.borrow_mut() = Some(sha1::Sha1::new()));
}

/// Stops recording: the SHA-1 (hex) of the calls made since [`io_trace_start`].
pub fn io_trace_take() -> String {
    let hasher = IO_TRACE.with(|t| t.borrow_mut().take()).expect("io_trace_start was called");
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// When the planned kill falls on a write: before it takes effect, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillWhen {
    Before,
    After,
}

/// Which I/O calls kill their invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kills {
    None,
    /// Each worker invocation with this probability, at an instant drawn uniformly
    /// over its time (the first call at or after it dies), as a platform kills.
    Random(f64),
    /// Exactly the n-th call (counted over every worker invocation), once.
    At(u64, KillWhen),
}

/// How long things take.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Longest key-value call.
    pub kv_ms: u64,
    /// Longest network leg (request or answer).
    pub net_ms: u64,
}

/// What the world watches of one invocation, for the invariants.
#[derive(Debug, Clone)]
pub struct Watch {
    pub started: Duration,
    pub killed: bool,
    pub ended: Option<Duration>,
    /// When it last wrote its upload's record (or started).
    pub last_commit: Duration,
    /// The state of its upload's record as it last loaded or wrote it.
    pub phase: Option<State>,
    /// The last key it read: a record read right after its outcome key is the read
    /// before a write that merges another invocation's parts in (the engine's commit
    /// reads the outcome, then the record, then writes), and what another invocation
    /// wrote there is not where this one stands.
    pub last_read: String,
    /// A checkpoint became due at this progress event and has not been written yet.
    pub owed_since: Option<Duration>,
    /// When it dies (`Kills::Random`).
    pub kill_at: Option<Duration>,
    /// Its first progress event since it last wrote its record (see
    /// [`World::clock_from_progress`]).
    pub first_progress: Option<Duration>,
}

/// Everything the simulation holds.
pub struct World {
    pub rng: RefCell<Rng>,
    now: Cell<Duration>,
    timers: RefCell<Vec<(Duration, Waker)>>,
    pub kv: RefCell<BTreeMap<String, Vec<u8>>>,
    /// Requests the invocations sent, by unix hour (the platform's request quota).
    pub sends_by_hour: RefCell<BTreeMap<u64, u64>>,
    /// The most outbound quota keys (`vuq/out/`) the store held at once.
    pub most_outbound_keys: std::cell::Cell<usize>,
    /// Key-value writes the invocations made, by unix second (the write quota).
    pub writes_by_second: RefCell<BTreeMap<u64, u64>>,
    pub sources: RefCell<HashMap<String, SourceFile>>,
    pub service: RefCell<Service>,
    /// The completion webhook's receiver.
    pub hooks: RefCell<Hooks>,
    /// Every failure a record was ever written with (upload, ended at): a racing
    /// invocation may overwrite it, but one written is one to tell of.
    pub failed_written: RefCell<std::collections::HashSet<(String, u64)>>,
    pub latency: Latency,
    pub kills: Cell<Kills>,
    /// Writes of keys containing this fail (the store refuses them), that many times.
    pub failing_writes: RefCell<Option<(String, u32)>>,
    /// I/O calls of worker invocations so far.
    pub calls: Cell<u64>,
    pub watches: RefCell<Vec<Watch>>,
    pub violations: RefCell<Vec<String>>,
    /// The checkpoint interval the engine runs with (for the redo bound).
    pub checkpoint_every: Cell<Duration>,
    /// Whether the checkpoint interval counts from an invocation's first progress since
    /// its last write, not from the write (or its start). For a process that calls the
    /// engine round after round (the command-line uploader): each round's interval
    /// starts with the round, after waits in which nothing was to be checkpointed.
    pub clock_from_progress: Cell<bool>,
    /// Wall-clock origin: virtual time 0 is this Unix second.
    pub unix_origin: u64,
    /// `SIM_TRACE=1`: every call printed as it completes, for replaying a seed.
    trace: bool,
    /// Each upload's source bytes, to check every MD5 a written record vouches for.
    pub truth: RefCell<HashMap<String, Vec<u8>>>,
    /// Every part's true MD5 by (upload, part size), computed once.
    true_md5s: RefCell<HashMap<(String, u64), Vec<u8>>>,
    /// Where and when each read of a source began (invocation, offset, time), for the reads made
    /// while the invocation's upload was pending or hashing: what a run hashes.
    pub hashing_reads: RefCell<Vec<(usize, u64, Duration)>>,
}

impl World {
    pub fn new(seed: u64, latency: Latency) -> Rc<World> {
        Rc::new(World {
            rng: RefCell::new(Rng::new(seed)),
            now: Cell::new(Duration::ZERO),
            timers: RefCell::new(Vec::new()),
            kv: RefCell::new(BTreeMap::new()),
            sends_by_hour: RefCell::default(),
            most_outbound_keys: std::cell::Cell::new(0),
            writes_by_second: RefCell::default(),
            sources: RefCell::new(HashMap::new()),
            service: RefCell::new(Service::default()),
            hooks: RefCell::new(Hooks::default()),
            failed_written: RefCell::new(Default::default()),
            latency,
            kills: Cell::new(Kills::None),
            failing_writes: RefCell::new(None),
            calls: Cell::new(0),
            watches: RefCell::new(Vec::new()),
            violations: RefCell::new(Vec::new()),
            checkpoint_every: Cell::new(Duration::ZERO),
            clock_from_progress: Cell::new(false),
            unix_origin: 1_800_000_000,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            truth: RefCell::new(HashMap::new()),
            true_md5s: RefCell::new(HashMap::new()),
            hashing_reads: RefCell::new(Vec::new()),
        })
    }

    /// A completion event must tell of an end already stored: a done upload's outcome
    /// key (with the same fileId), a failed upload's record.
    fn check_event_is_stored(&self, body: &[u8]) {
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) else { return };
        let id = event["id"].as_str().unwrap_or_default();
        let kv = self.kv.borrow();
        let stored = match event["type"].as_str() {
            Some("upload.done") => kv
                .get(&checkpoint::end_key(id))
                .and_then(|v| Outcome::decode(v).ok())
                .is_some_and(|end| matches!(end, Outcome::Done { file_id, .. } if event["fileId"] == file_id.as_str())),
            Some("upload.failed") => self.failed_written.borrow().contains(&(id.to_owned(), event["endedAt"].as_u64().unwrap_or_default())),
            _ => false,
        };
        if !stored {
            drop(kv);
            self.violation(format!("a completion event before its end was stored: {event}"));
        }
    }

    pub fn now(&self) -> Duration {
        self.now.get()
    }

    pub fn unix(&self) -> u64 {
        self.unix_origin + self.now.get().as_secs()
    }

    pub fn trace(&self, inv: Option<usize>, what: impl FnOnce() -> String) {
        if self.trace {
            println!("{:>10.3?} inv {:<4} {}", self.now(), inv.map(|i| i.to_string()).unwrap_or("obs".into()), what());
        }
    }

    /// Hashes one I/O call into the trace digest, when one is being recorded: which
    /// invocation (`obs` for the harness's own calls) and what it asked for, never a
    /// value or a body. A dead invocation's calls (they never act) are left out.
    fn io(&self, inv: Option<usize>, what: impl FnOnce() -> String) {
        if self.dead(inv) {
            return;
        }
        IO_TRACE.with(|t| {
            if let Some(hasher) = t.borrow_mut().as_mut() {
                let who = inv.map(|i| i.to_string()).unwrap_or("obs".into());
                hasher.update(format!("{who}|{}\n", what()).as_bytes());
            }
        });
    }

    pub fn violation(&self, what: String) {
        self.violations.borrow_mut().push(what);
    }

    /// Moves the clock (between invocations, e.g. past a `retryAfter`).
    pub fn advance_clock(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }

    fn random(&self, lo: u64, hi: u64) -> u64 {
        self.rng.borrow_mut().range(lo, hi)
    }

    /// A new worker invocation.
    pub fn watch(&self) -> usize {
        let now = self.now();
        let mut w = self.watches.borrow_mut();
        w.push(Watch {
            started: now,
            killed: false,
            ended: None,
            last_commit: now,
            phase: None,
            last_read: String::new(),
            owed_since: None,
            kill_at: None,
            first_progress: None,
        });
        w.len() - 1
    }

    /// Notes a read of a source at `offset` by `inv`, if its upload is being hashed;
    /// returns whether it is.
    fn note_read(&self, inv: Option<usize>, offset: u64) -> bool {
        let Some(inv) = inv else { return false };
        let hashing = matches!(self.watches.borrow()[inv].phase, Some(State::Pending | State::Hashing));
        if hashing {
            self.hashing_reads.borrow_mut().push((inv, offset, self.now()));
        }
        hashing
    }

    fn killed(&self, inv: usize) -> bool {
        self.watches.borrow()[inv].killed
    }

    /// An invocation starts now and may work for `time`: under `Kills::Random` it may
    /// be given an instant to die at.
    pub fn start(&self, inv: usize, time: Duration) {
        let now = self.now();
        let kill_at = match self.kills.get() {
            Kills::Random(p) if self.rng.borrow_mut().chance(p) => {
                let within = self.random(0, (time.as_micros() as u64).saturating_mul(6) / 5);
                Some(now + Duration::from_micros(within))
            }
            _ => None,
        };
        let mut watches = self.watches.borrow_mut();
        let w = &mut watches[inv];
        w.started = now;
        w.last_commit = now;
        w.kill_at = kill_at;
    }

    /// Counts a worker's I/O call and decides whether it kills the invocation.
    fn kill_here(&self, inv: usize, is_write: bool, body: bool) -> Option<KillWhen> {
        let n = if body {
            None
        } else {
            let n = self.calls.get();
            self.calls.set(n + 1);
            Some(n)
        };
        match self.kills.get() {
            Kills::None => None,
            Kills::Random(_) => {
                let due = self.watches.borrow()[inv].kill_at.is_some_and(|t| self.now() >= t);
                due.then(|| if is_write && self.rng.borrow_mut().chance(0.5) { KillWhen::After } else { KillWhen::Before })
            }
            Kills::At(k, when) if Some(k) == n => Some(if is_write { when } else { KillWhen::Before }),
            Kills::At(..) => None,
        }
    }

    /// Whether `inv` is dead: its other futures, still polled until the executor drops
    /// the task, must not act (a killed instance does nothing more).
    fn dead(&self, inv: Option<usize>) -> bool {
        inv.is_some_and(|inv| self.killed(inv))
    }

    /// The planned kill takes effect: the executor drops the invocation after this poll.
    fn die(&self, inv: usize) {
        self.watches.borrow_mut()[inv].killed = true;
    }

    /// A progress event of invocation `inv` (a hashed chunk, an acknowledged part): the
    /// engine must checkpoint before its next one once a checkpoint is due.
    fn progress(&self, inv: usize, what: &str) {
        if self.killed(inv) {
            return;
        }
        let now = self.now();
        let every = self.checkpoint_every.get();
        let mut watches = self.watches.borrow_mut();
        let w = &mut watches[inv];
        if let Some(since) = w.owed_since {
            drop(watches);
            self.violation(format!(
                "invocation {inv}: {what} at {now:?} although a checkpoint was due since the progress at {since:?} (last commit {:?})",
                self.watches.borrow()[inv].last_commit
            ));
            return;
        }
        let since = if self.clock_from_progress.get() { *w.first_progress.get_or_insert(now) } else { w.last_commit };
        if now.saturating_sub(since) >= every {
            w.owed_since = Some(now);
        }
    }

    /// Checks that every MD5 a record vouches for (in its tail and its stored chunks)
    /// is the MD5 of that part of the source.
    fn check_md5s(&self, rec: &Upload) {
        // Once the upload is done, a late record (a racing invocation's write) is laid
        // under the outcome and its MD5s no longer matter: they may be released.
        if self.kv.borrow().get(&checkpoint::end_key(&rec.id)).is_some_and(|v| matches!(Outcome::decode(v), Ok(Outcome::Done { .. }))) {
            return;
        }
        let truth = self.truth.borrow();
        let (Some(bytes), Some(md5s)) = (truth.get(&rec.id), rec.md5s()) else { return };
        let mut cache = self.true_md5s.borrow_mut();
        // Every part's true MD5, end to end, as the record's tail and chunks store them.
        let all = cache
            .entry((rec.id.clone(), md5s.part_size))
            .or_insert_with(|| bytes.chunks(md5s.part_size as usize).flat_map(|p| <[u8; 16]>::from(md5::Md5::digest(p))).collect());
        let chunk_bytes = (16 * MD5S_PER_CHUNK) as usize;
        let from = md5s.chunks as usize * chunk_bytes;
        let wrong = if all.len() < from + md5s.tail.len() {
            Some("more MD5s than parts".to_string())
        } else if md5s.tail[..] != all[from..from + md5s.tail.len()] {
            Some("an MD5 of the tail".to_string())
        } else {
            let kv = self.kv.borrow();
            (0..md5s.chunks as usize).find_map(|k| {
                let stored = kv.get(&checkpoint::md5_chunk_key(&rec.id, k as u64));
                (stored.map(Vec::as_slice) != Some(&all[k * chunk_bytes..(k + 1) * chunk_bytes]))
                    .then(|| format!("MD5 chunk {k} (stored: {})", stored.is_some()))
            })
        };
        if let Some(what) = wrong {
            drop(cache);
            self.violation(format!("a record written at {:?} vouches for a wrong or missing MD5: {what}", self.now()));
        }
    }

    /// Checks a record an invocation wrote: in the current format and read back as
    /// written; once hashed, with the source's true SHA-1 (present by construction from
    /// uploading on); and its state reached from the one this invocation last saw along
    /// the state graph (forward, finishing back to uploading, or to done or failed).
    fn check_written(&self, inv: usize, value: &[u8], up: &Upload) {
        let format = serde_json::from_slice::<serde_json::Value>(value).ok().and_then(|v| v["format"].as_u64());
        if format != Some(u64::from(checkpoint::FORMAT)) {
            self.violation(format!("invocation {inv} wrote a record of format {format:?}"));
        }
        if Upload::decode(&up.encode()).as_ref() != Ok(up) {
            self.violation(format!("invocation {inv} wrote a record that does not round-trip: {up:?}"));
        }
        let wrong_sha = match (self.truth.borrow().get(&up.id), up.file_sha()) {
            (Some(bytes), Some(sha)) => (super::model::sha1_hex(bytes) != sha).then(|| sha.to_owned()),
            _ => None,
        };
        if let Some(sha) = wrong_sha {
            self.violation(format!("invocation {inv} wrote {:?} with SHA-1 {sha}, not the source's", up.state()));
        }
        let rank = |s: State| match s {
            State::Pending => 0,
            State::Hashing => 1,
            State::Uploading => 2,
            State::Finishing => 3,
            State::Done | State::Failed | State::Cancelled => 4,
        };
        let before = self.watches.borrow()[inv].phase;
        let next = up.state();
        let allowed = match before {
            None => true,
            Some(prev) if prev == next || matches!(next, State::Done | State::Failed) => true,
            Some(State::Finishing) if next == State::Uploading => true,
            Some(prev) => !prev.is_final() && rank(next) > rank(prev) && next != State::Cancelled,
        };
        if !allowed {
            self.violation(format!("invocation {inv} went from {before:?} to {next:?}, which the state graph has no way for"));
        }
    }

    /// Sees a record value pass by (read or written by `inv`).
    fn saw_record(&self, inv: usize, value: &[u8], written: bool) {
        if written {
            match Upload::decode(value) {
                Ok(up) => {
                    self.check_md5s(&up);
                    self.check_written(inv, value, &up);
                }
                Err(e) => self.violation(format!("invocation {inv} wrote a record that cannot be read back: {e}")),
            }
        }
        let mut watches = self.watches.borrow_mut();
        let w = &mut watches[inv];
        let up = Upload::decode(value).ok();
        let merging = !written && up.as_ref().is_some_and(|u| w.last_read == checkpoint::end_key(&u.id));
        if !merging {
            w.phase = up.map(|r| r.state());
        }
        if written {
            w.last_commit = self.now();
            w.owed_since = None;
            w.first_progress = None;
        }
    }

    /// A future ready at `until` (at once if already past); `yield_once` makes it
    /// pending at least once so other tasks can run between two calls.
    pub fn at(self: &Rc<Self>, until: Duration, yield_once: bool) -> At {
        At { world: self.clone(), until, yielded: !yield_once }
    }

    pub fn after(self: &Rc<Self>, d: Duration) -> At {
        self.at(self.now() + d, true)
    }

    /// A random latency of 1 to `max_ms` milliseconds: every call takes some time, as
    /// real ones do (with none, a whole invocation could happen in one instant, where
    /// no checkpoint interval ever passes).
    fn latency(&self, max_ms: u64) -> Duration {
        Duration::from_millis(self.random(1, max_ms.max(1)))
    }

    /// The earliest timer, if any.
    fn next_timer(&self) -> Option<Duration> {
        self.timers.borrow().iter().map(|(t, _)| *t).min()
    }

    fn fire_timers(&self) {
        let now = self.now();
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let (due, keep): (Vec<_>, Vec<_>) = timers.drain(..).partition(|(t, _)| *t <= now);
            *timers = keep;
            due.into_iter().map(|(_, w)| w).collect()
        };
        for w in due {
            w.wake();
        }
    }
}

/// A point in virtual time to wait for.
pub struct At {
    world: Rc<World>,
    until: Duration,
    yielded: bool,
}

impl Future for At {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.world.now() >= self.until {
            return Poll::Ready(());
        }
        self.world.timers.borrow_mut().push((self.until, cx.waker().clone()));
        Poll::Pending
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A task of the executor: one invocation (or an observer's call).
pub struct Task {
    pub inv: Option<usize>,
    future: Pin<Box<dyn Future<Output = ()>>>,
    woken: Arc<Flag>,
}

impl Task {
    pub fn new(inv: Option<usize>, future: impl Future<Output = ()> + 'static) -> Task {
        Task { inv, future: Box::pin(future), woken: Arc::new(Flag(AtomicBool::new(true))) }
    }
}

/// Runs tasks to completion (or death) on virtual time: polls woken tasks in a
/// seeded random order until none is woken, then moves the clock to the next timer.
/// `limit` bounds virtual time (a task still running then is reported).
pub fn run(world: &Rc<World>, mut tasks: Vec<Task>, limit: Duration) {
    let deadline = world.now() + limit;
    while !tasks.is_empty() {
        let mut order: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].woken.0.load(Ordering::SeqCst)).collect();
        if order.is_empty() {
            match world.next_timer() {
                Some(t) if t <= deadline => {
                    world.now.set(t.max(world.now()));
                    world.fire_timers();
                    continue;
                }
                _ => {
                    world.violation(format!(
                        "{} invocation(s) still waiting at {:?}, the simulation's time limit",
                        tasks.len(),
                        world.now()
                    ));
                    world.timers.borrow_mut().clear();
                    return;
                }
            }
        }
        // A seeded shuffle: which of the woken tasks runs first is the interleaving.
        for i in (1..order.len()).rev() {
            let j = world.random(0, i as u64) as usize;
            order.swap(i, j);
        }
        let mut finished = Vec::new();
        for i in order {
            let task = &mut tasks[i];
            task.woken.0.store(false, Ordering::SeqCst);
            let waker = Waker::from(task.woken.clone());
            let mut cx = Context::from_waker(&waker);
            let done = task.future.as_mut().poll(&mut cx).is_ready();
            let dead = task.inv.is_some_and(|inv| world.killed(inv));
            if done || dead {
                if let Some(inv) = task.inv {
                    let mut w = world.watches.borrow_mut();
                    w[inv].ended = Some(world.now());
                }
                finished.push(i);
            }
        }
        finished.sort_unstable();
        for i in finished.into_iter().rev() {
            // Dropping a killed task drops its futures mid-call, as a platform kill does.
            tasks.swap_remove(i);
        }
    }
    world.timers.borrow_mut().clear();
}

/// Runs one future to completion with no other task (an observer: no latency, no kills).
pub fn block_on<T: 'static>(world: &Rc<World>, future: impl Future<Output = T> + 'static) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    run(world, vec![Task::new(None, async move { *slot.borrow_mut() = Some(future.await) })], Duration::from_secs(3600));
    let value = out.borrow_mut().take();
    value.expect("the observer's call finished")
}

/// The engine's [`Io`] in the simulated world, for one invocation (`inv`) or for an
/// observer (`None`: instant, never killed, not counted).
#[derive(Clone)]
pub struct SimIo {
    pub world: Rc<World>,
    pub inv: Option<usize>,
}

/// A response body that arrives in timed chunks, or stalls.
pub struct SimBody {
    world: Rc<World>,
    inv: Option<usize>,
    chunks: std::collections::VecDeque<(Duration, Vec<u8>)>,
    /// After the chunks: `true` stalls forever instead of ending.
    stall: bool,
    /// A chunk of this body is progress for the engine (a part's acknowledgement, or
    /// bytes of the source when the invocation is hashing).
    kind: BodyKind,
    /// Leading bytes that are not progress, still to come.
    skip: usize,
}

/// What a body carries, for the progress rule.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Source,
    PartAck,
    Other,
}

/// A response from a model, before the world times it.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Vec<u8>>,
    /// Leading body bytes the engine only skips (a whole file sent for a range): not
    /// progress.
    pub skip: usize,
    /// Virtual time between chunks.
    pub gap: Duration,
    pub stall: bool,
    pub kind: BodyKind,
}

impl Answer {
    pub fn json(value: serde_json::Value, kind: BodyKind) -> Answer {
        Answer {
            status: 200,
            headers: vec![],
            chunks: vec![value.to_string().into_bytes()],
            skip: 0,
            gap: Duration::ZERO,
            stall: false,
            kind,
        }
    }
}

/// What a model makes of a request: an answer, or a transport failure, and whether
/// the peer acted on it.
pub enum Delivery {
    Answer(Answer),
    /// The connection failed (the model decided whether the request took effect first).
    Dropped,
    /// No answer ever (a stalled peer).
    Silence,
}

impl Body for SimBody {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>> {
        if self.world.dead(self.inv) {
            return std::future::pending().await;
        }
        if let Some(inv) = self.inv {
            if self.world.kill_here(inv, false, true).is_some() {
                self.world.die(inv);
                return std::future::pending().await;
            }
        }
        // Taken off the queue only once delivered: `chunk` must be cancel-safe (the
        // engine drops a pending read when a part finishes first).
        match self.chunks.front().map(|(at, _)| *at) {
            Some(at) => {
                self.world.at(at.max(self.world.now()), false).await;
                if self.world.dead(self.inv) {
                    return std::future::pending().await;
                }
                let (_, chunk) = self.chunks.pop_front().expect("the chunk waited for");
                self.world.trace(self.inv, || format!("chunk of {} bytes", chunk.len()));
                if let Some(inv) = self.inv {
                    let hashing = matches!(self.world.watches.borrow()[inv].phase, Some(State::Pending | State::Hashing));
                    let skipped = chunk.len().min(self.skip);
                    self.skip -= skipped;
                    match self.kind {
                        BodyKind::Source if hashing && skipped < chunk.len() => self.world.progress(inv, "a source chunk hashed"),
                        BodyKind::PartAck => self.world.progress(inv, "a part acknowledged"),
                        _ => {}
                    }
                }
                Some(Ok(chunk))
            }
            None if self.stall => std::future::pending().await,
            None => None,
        }
    }
}

impl SimIo {
    async fn kv_call<T>(&self, is_write: bool, op: impl FnOnce(&World) -> T) -> T {
        let Some(inv) = self.inv else { return op(&self.world) };
        if self.world.dead(self.inv) {
            return std::future::pending().await;
        }
        let kill = self.world.kill_here(inv, is_write, false);
        self.world.after(self.world.latency(self.world.latency.kv_ms)).await;
        if self.world.dead(self.inv) {
            return std::future::pending().await;
        }
        match kill {
            None => op(&self.world),
            Some(KillWhen::Before) => {
                self.world.die(inv);
                std::future::pending().await
            }
            Some(KillWhen::After) => {
                op(&self.world);
                self.world.die(inv);
                std::future::pending().await
            }
        }
    }
}

impl Io for SimIo {
    type Body = SimBody;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<SimBody>, IoError> {
        self.world.io(self.inv, || request_summary(&request));
        if self.world.dead(self.inv) {
            return std::future::pending().await;
        }
        let kill = self.inv.and_then(|inv| self.world.kill_here(inv, true, false).map(|k| (inv, k)));
        if let Some((inv, KillWhen::Before)) = kill {
            self.world.die(inv);
            return std::future::pending().await;
        }
        // Sent: the platform counts it against the request quota.
        if self.inv.is_some() {
            *self.world.sends_by_hour.borrow_mut().entry(self.world.unix() / 3600).or_default() += 1;
        }
        self.world.after(self.world.latency(self.world.latency.net_ms)).await;
        if self.world.dead(self.inv) {
            return std::future::pending().await;
        }
        let host = request.url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_owned();
        let now = self.world.now();
        let unix = self.world.unix();
        let delivery = if host == HOOKS_HOST {
            self.world.check_event_is_stored(&request.body);
            let mut rng = self.world.rng.borrow_mut();
            self.world.hooks.borrow_mut().handle(&request, unix, &mut rng)
        } else if host == super::model::VOD_HOST {
            let mut rng = self.world.rng.borrow_mut();
            self.world.service.borrow_mut().handle(&request, unix, &mut rng)
        } else {
            if !self.world.dead(self.inv) {
                let from = super::model::requested_range(&request).map_or(0, |(a, _)| a);
                self.world.note_read(self.inv, from);
            }
            let mut rng = self.world.rng.borrow_mut();
            match self.world.sources.borrow_mut().get_mut(&request.url) {
                Some(source) => source.handle(&request, now, &mut rng),
                None => Delivery::Answer(Answer {
                    status: 404,
                    headers: vec![],
                    chunks: vec![],
                    skip: 0,
                    gap: Duration::ZERO,
                    stall: false,
                    kind: BodyKind::Other,
                }),
            }
        };
        if let Some((inv, KillWhen::After)) = kill {
            // The peer acted; the invocation dies before hearing back.
            self.world.die(inv);
            return std::future::pending().await;
        }
        self.world.trace(self.inv, || {
            let what = match &delivery {
                Delivery::Answer(a) => format!("{} {:?} {} chunks", a.status, a.headers, a.chunks.len()),
                Delivery::Dropped => "dropped".into(),
                Delivery::Silence => "silence".into(),
            };
            format!("send {} {} -> {what}", request.method, &request.url[..request.url.len().min(100)])
        });
        let answer = match delivery {
            Delivery::Answer(a) => a,
            // As some HTTP clients say it, quoting the URL (a presigned one's query with
            // it): what the engine and the command show of it must not.
            Delivery::Dropped => return Err(format!("error sending request for url ({}): connection reset by peer", request.url).into()),
            Delivery::Silence => return std::future::pending().await,
        };
        self.world.after(self.world.latency(self.world.latency.net_ms)).await;
        if self.world.dead(self.inv) {
            return std::future::pending().await;
        }
        let mut t = self.world.now();
        let chunks = answer
            .chunks
            .into_iter()
            .map(|c| {
                let at = t;
                t += answer.gap;
                (at, c)
            })
            .collect();
        Ok(HttpResponse {
            status: answer.status,
            headers: answer.headers,
            body: SimBody { world: self.world.clone(), inv: self.inv, chunks, stall: answer.stall, kind: answer.kind, skip: answer.skip },
        })
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.world.io(self.inv, || format!("kv get {key}"));
        let value = self.kv_call(false, |w| w.kv.borrow().get(key).cloned()).await;
        self.world.trace(self.inv, || {
            format!(
                "kv get {key}: {}",
                value.as_ref().map(|v| String::from_utf8_lossy(&v[..v.len().min(160)]).into_owned()).unwrap_or("-".into())
            )
        });
        if let (Some(inv), Some(v)) = (self.inv, &value) {
            if checkpoint::id_of_record_key(key).is_some() {
                self.world.saw_record(inv, v, false);
            }
        }
        if let Some(inv) = self.inv {
            self.world.watches.borrow_mut()[inv].last_read = key.to_owned();
        }
        Ok(value)
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        let inv = self.inv;
        self.world.io(inv, || format!("kv set {key}"));
        if inv.is_some() && !self.world.dead(inv) {
            *self.world.writes_by_second.borrow_mut().entry(self.world.unix()).or_default() += 1;
        }
        self.world.trace(inv, || match Upload::decode(value) {
            Ok(r) => format!(
                "kv set {key}: {:?} session {:?} parts done {} (below {:?}) hashed {} error {:?}",
                r.state(),
                r.uploading().map(|u| u.session),
                r.parts_done(),
                r.uploading().map(|u| u.done.below),
                r.hashed_bytes(),
                r.error().map(|e| &e.code)
            ),
            Err(_) => format!("kv set {key}: {}", String::from_utf8_lossy(&value[..value.len().min(160)])),
        });
        let refused = self
            .kv_call(true, |w| {
                if let Some((pattern, left)) = w.failing_writes.borrow_mut().as_mut() {
                    if *left > 0 && key.contains(pattern.as_str()) {
                        *left -= 1;
                        return true;
                    }
                }
                w.kv.borrow_mut().insert(key.to_owned(), value.to_vec());
                if key.starts_with("vuq/out/") {
                    let held = w.kv.borrow().range("vuq/out/".to_owned()..).take_while(|(k, _)| k.starts_with("vuq/out/")).count();
                    w.most_outbound_keys.set(w.most_outbound_keys.get().max(held));
                }
                if let Some(up) = checkpoint::id_of_record_key(key).and_then(|_| Upload::decode(value).ok()) {
                    if let (State::Failed, Some(at)) = (up.state(), up.ended_at()) {
                        w.failed_written.borrow_mut().insert((up.id.clone(), at));
                    }
                }
                if let Some(inv) = inv {
                    if checkpoint::id_of_record_key(key).is_some() {
                        w.saw_record(inv, value, true);
                    }
                }
                false
            })
            .await;
        if refused {
            return Err(format!("the store refused to write {key}").into());
        }
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), IoError> {
        self.world.io(self.inv, || format!("kv delete {key}"));
        if self.inv.is_some() && !self.world.dead(self.inv) {
            *self.world.writes_by_second.borrow_mut().entry(self.world.unix()).or_default() += 1;
        }
        self.kv_call(true, |w| {
            w.kv.borrow_mut().remove(key);
        })
        .await;
        Ok(())
    }

    async fn kv_keys(&self) -> Result<Vec<String>, IoError> {
        self.world.io(self.inv, || "kv keys".into());
        Ok(self.kv_call(false, |w| w.kv.borrow().keys().cloned().collect()).await)
    }

    async fn sleep(&self, duration: Duration) {
        self.world.io(self.inv, || format!("sleep {}us", duration.as_micros()));
        self.world.at(self.world.now() + duration, false).await
    }

    fn now(&self) -> Duration {
        self.world.now()
    }

    fn unix_now(&self) -> u64 {
        self.world.unix()
    }

    fn unix_millis(&self) -> u64 {
        self.world.unix_origin * 1000 + self.world.now().as_millis() as u64
    }

    fn random(&self) -> u32 {
        (self.world.rng.borrow_mut().next() as u32).max(1)
    }

    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo> {
        self.world.io(self.inv, || format!("file info {path}"));
        let info = self.kv_call(false, |w| w.sources.borrow().get(path).map(|s| s.file_info(w.now()))).await;
        info.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.world.io(self.inv, || format!("read file {path} at {offset} len {len}"));
        let bytes = self.kv_call(false, |w| w.sources.borrow().get(path).map(|s| s.read(w.now(), offset, len))).await;
        let bytes = bytes.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))?;
        if let (true, Some(inv)) = (self.world.note_read(self.inv, offset), self.inv) {
            if !bytes.is_empty() {
                self.world.progress(inv, "a local chunk hashed");
            }
        }
        Ok(bytes)
    }
}

/// A request as the trace digest sees it: to the VOD service, its `Action` and (for a
/// part) `offset`; to a source, the method, URL and `Range`. Nothing else (no
/// signature, timestamp, nonce or body), so only a change of what is asked changes it.
fn request_summary(request: &HttpRequest) -> String {
    let host = request.url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default();
    if host == super::model::VOD_HOST {
        let query = request.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let action = param("Action").unwrap_or_default();
        match param("offset") {
            Some(offset) => format!("vod {action} offset {offset}"),
            None => format!("vod {action}"),
        }
    } else {
        let range = vod_uploader::source::header(&request.headers, "range").unwrap_or("-");
        format!("source {} {} range {range}", request.method, request.url)
    }
}
