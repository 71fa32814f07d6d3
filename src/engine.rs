//! The upload engine: one invocation's worth of work on an upload, within a time
//! budget, over any platform that implements [`Io`] (Spin's outbound HTTP and
//! key-value store in the component; tokio, hyper and SQLite in the native tests; a
//! virtual clock and in-memory models in the deterministic simulation).
//!
//! Decisions about the upload itself live in [`crate::job`]; this module sequences
//! the I/O: ranged reads of the source, the hashing pass, concurrent part uploads with
//! retries, and checkpoints at least every `checkpoint_every` and before returning.
//!
//! Three rules make it safe to kill an invocation at any instant and to run several
//! on one upload at once, on a store without compare-and-swap:
//! - the record write is the commit point of work in progress, and what it refers to
//!   (MD5 chunks) is stored before it;
//! - an upload's end is a separate write-once key ([`checkpoint::end_key`]), read before
//!   every record write and laid over the record on every load, so done stays done;
//! - every wait (a request, a body read, a backoff) is bounded by the invocation's
//!   time, so an invocation always returns, with a checkpoint, before the platform
//!   would kill it.

use crate::checkpoint::{self, HashState, Outcome, Record, Spec, State};
use crate::error::Error;
use crate::hasher::{Hasher, PartMd5};
use crate::job::{self, Backoff};
use crate::protocol::{self, vod_codes, AnswerError, Call, FinishUpload, Finished, InitUpload, Method, Signer, UploadPart};
use crate::source::{self, Identity, Source, SourceError};
use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

/// An outgoing HTTP request. The body is shared so a retry does not copy it (and
/// moved in whole, not copied, from the buffer a part was read into).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// GET or POST.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (empty for GET).
    pub body: Rc<Vec<u8>>,
    /// How long the engine will wait for this request; a host that can bound connect,
    /// first-byte and between-bytes times (wasi-http's request options) should use it.
    /// The engine bounds the wait itself either way.
    pub timeout: Option<Duration>,
}

/// An HTTP response whose body is read as a stream.
pub struct HttpResponse<B> {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: B,
}

/// A response body, read chunk by chunk. `chunk` must be cancel-safe: a future of it
/// dropped before completion loses no bytes.
#[allow(async_fn_in_trait)]
pub trait Body {
    /// The next chunk; `None` at the end.
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, String>>;
}

/// A local file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Whether it is a regular file.
    pub is_file: bool,
    /// Its size.
    pub size: u64,
    /// Its modification time, as text compared for equality.
    pub modified: Option<String>,
}

/// What the engine needs from its platform. Everything that touches the world goes
/// through here (clocks and local files included), so a simulation can run the engine
/// on virtual time and kill it at any call.
#[allow(async_fn_in_trait)]
pub trait Io {
    /// Response body type.
    type Body: Body;
    /// Sends a request; `Err` for transport failures (and refused destinations).
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<Self::Body>, String>;
    /// Reads a key.
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Writes a key.
    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Removes a key.
    async fn kv_delete(&self, key: &str) -> Result<(), String>;
    /// Every key of the store.
    async fn kv_keys(&self) -> Result<Vec<String>, String>;
    /// Waits (a retry's backoff, a time limit).
    async fn sleep(&self, duration: Duration);
    /// Monotonic time since an origin of the platform's choosing.
    fn now(&self) -> Duration;
    /// Wall-clock Unix seconds.
    fn unix_now(&self) -> u64;
    /// A random number (nonces, jitter).
    fn random(&self) -> u32;
    /// A local file's metadata.
    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo>;
    /// Up to `len` bytes of a local file from `offset` (fewer only at its end).
    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

/// Local files through `std::fs` (WASI preopens in the component), for the platform
/// adapters that have a real file system.
pub mod local {
    use super::FileInfo;
    use std::io::{Read, Seek};

    /// [`super::Io::file_info`] over `std::fs`.
    pub fn file_info(path: &str) -> std::io::Result<FileInfo> {
        let meta = std::fs::metadata(path)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|t| format!("{}.{:09}", t.as_secs(), t.subsec_nanos()));
        Ok(FileInfo { is_file: meta.is_file(), size: meta.len(), modified })
    }

    /// [`super::Io::read_file`] over `std::fs`.
    pub fn read_file(path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// How the engine works.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Signs VOD calls.
    pub signer: Signer,
    /// Time for one invocation's work: no new work starts after it.
    pub budget: Duration,
    /// The least time any invocation gets, whatever its budget: a budget smaller than
    /// this still advances the upload once (see [`Settings::time_limit`]).
    pub min_budget: Duration,
    /// Longest wait for any one answer or body chunk before the peer counts as stalled.
    pub stall_timeout: Duration,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Longest time between checkpoints.
    pub checkpoint_every: Duration,
    /// Files up to this size are read once: kept in memory from hashing to upload.
    /// A source that ignores `Range` is readable only up to this size.
    pub memory_threshold: u64,
    /// Attempts per VOD call within an invocation.
    pub attempts: u32,
    /// Length of a ranged read while no read rate is known (`u64::MAX`: to the end).
    pub first_read: u64,
    /// Waits between invocations after retryable errors, and when to give up.
    pub backoff: Backoff,
    /// How long done, failed and cancelled uploads are kept before `/tick` removes them.
    pub retention_secs: u64,
}

impl Settings {
    /// Defaults: 20 s budget, 4 parts at once, a checkpoint every 2 s, files up to
    /// 8 MiB read once, a peer silent for 10 s is stalled, retries from 5 s doubling up
    /// to 15 min, give up after 24 h without progress, final uploads kept 168 h.
    pub fn new(signer: Signer) -> Self {
        Settings {
            signer,
            budget: Duration::from_secs(20),
            min_budget: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
            concurrency: 4,
            checkpoint_every: Duration::from_secs(2),
            memory_threshold: 8 << 20,
            attempts: 5,
            // Until a read rate is known, read to the end: one request per pass, and a
            // stop at the deadline throws away only what TCP buffered, as with any length.
            first_read: u64::MAX,
            backoff: Backoff { base_secs: 5, cap_secs: 900, give_up_secs: 24 * 3600 },
            retention_secs: 168 * 3600,
        }
    }
}

impl Settings {
    /// How long an invocation may take in all: no new work starts after `budget`, and
    /// what is under way (parts in flight, a read, the closing checkpoint) gets a tenth
    /// more to finish, so that it is not thrown away and sent again next time. At least
    /// `min_budget`.
    pub fn time_limit(&self) -> Duration {
        (self.budget + self.budget / 10).max(self.min_budget)
    }
}

/// FinishUpload or UploadPart refusals that send the upload back to ask the service
/// what it holds, before the refusal counts as final.
const MAX_REPAIRS: u32 = 3;

/// A lone outcome key (its record gone: a cancel's tombstone, or the rest of a
/// removal cut short) is kept this long, beyond any invocation still at work.
const TOMBSTONE_SECS: u64 = 3600;

fn storage(e: String) -> Error {
    Error::Storage(e)
}

/// Why a bounded wait ended without its result.
enum Late {
    /// The invocation's time is up.
    Deadline,
    /// The peer sent nothing for `stall_timeout`.
    Stall(Duration),
}

/// The invocation's time limits, copied into every wait.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// No wait goes past this (monotonic).
    hard: Duration,
    /// Longest single wait.
    stall: Duration,
}

impl Limits {
    /// Waits for `fut` until the deadline or the stall limit, whichever is first. At or
    /// past the deadline `fut` is still polled once: an answer already there is kept.
    async fn wait<I: Io, T>(self, io: &I, fut: impl Future<Output = T>) -> Result<T, Late> {
        let now = io.now();
        let (wait, late) = if now + self.stall < self.hard {
            (self.stall, Late::Stall(self.stall))
        } else {
            (self.hard.saturating_sub(now), Late::Deadline)
        };
        let timer = async move {
            if !wait.is_zero() {
                io.sleep(wait).await
            }
        };
        match select(pin!(fut), pin!(timer)).await {
            Either::Left((v, _)) => Ok(v),
            Either::Right(_) => Err(late),
        }
    }
}

async fn read_end<I: Io>(io: &I, id: &str) -> Result<Option<Outcome>, Error> {
    match io.kv_get(&checkpoint::end_key(id)).await.map_err(storage)? {
        Some(bytes) => Ok(Some(Outcome::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// An upload's stored record and outcome, as they are (not laid over each other).
async fn load_raw<I: Io>(io: &I, id: &str) -> Result<(Option<Record>, Option<Outcome>), Error> {
    let record = match io.kv_get(&checkpoint::record_key(id)).await.map_err(storage)? {
        Some(bytes) => Some(Record::decode(&bytes)?),
        None => None,
    };
    let end = if record.is_some() { read_end(io, id).await? } else { None };
    Ok((record, end))
}

/// Loads an upload's record, with its outcome laid over it. `None` when there is no
/// such upload (a lone outcome key is a tombstone, not an upload).
pub async fn load<I: Io>(io: &I, id: &str) -> Result<Option<Record>, Error> {
    let (record, end) = load_raw(io, id).await?;
    Ok(record.map(|mut rec| {
        if let Some(end) = &end {
            job::apply_outcome(&mut rec, end);
        }
        rec
    }))
}

/// Every upload in the store, as one listing of its keys.
pub struct Listing {
    /// Every upload's record with its outcome laid over it, oldest first.
    pub records: Vec<Record>,
    /// Uploads whose record cannot be read (named rather than hiding every other upload).
    pub unreadable: Vec<String>,
    /// Outcome keys whose record is gone, with their outcome.
    lone_ends: Vec<(String, Option<Outcome>)>,
    /// Every key, to remove an upload's keys whatever its record says.
    keys: Vec<String>,
}

/// Lists every upload.
pub async fn list<I: Io>(io: &I) -> Result<Listing, Error> {
    let keys = io.kv_keys().await.map_err(storage)?;
    let ended: std::collections::BTreeSet<&str> = keys.iter().filter_map(|k| checkpoint::id_of_end_key(k)).collect();
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    let mut lone_ends = Vec::new();
    for key in &keys {
        if let Some(id) = checkpoint::id_of_record_key(key) {
            let Some(bytes) = io.kv_get(key).await.map_err(storage)? else { continue };
            let Ok(mut rec) = Record::decode(&bytes) else {
                unreadable.push(id.to_owned());
                continue;
            };
            if ended.contains(id) {
                match read_end(io, id).await {
                    Ok(Some(end)) => job::apply_outcome(&mut rec, &end),
                    Ok(None) => {}
                    Err(_) => {
                        unreadable.push(id.to_owned());
                        continue;
                    }
                }
            }
            records.push(rec);
        }
    }
    for id in &ended {
        if !keys.contains(&checkpoint::record_key(id)) {
            lone_ends.push(((*id).to_owned(), read_end(io, id).await.ok().flatten()));
        }
    }
    records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(Listing { records, unreadable, lone_ends, keys })
}

/// Every key of upload `id` in a listing of keys, in the order of removal: the record
/// first (an upload without its record is gone), then its chunks, the outcome last.
fn keys_of(keys: &[String], id: &str) -> Vec<String> {
    let (record, end) = (checkpoint::record_key(id), checkpoint::end_key(id));
    let prefix = format!("{record}/");
    let mut own: Vec<String> = keys.iter().filter(|k| **k == record).cloned().collect();
    own.extend(keys.iter().filter(|k| k.starts_with(&prefix) && **k != end).cloned());
    own.extend(keys.iter().filter(|k| **k == end).cloned());
    own
}

async fn remove_keys<I: Io>(io: &I, keys: &[String]) -> Result<(), Error> {
    for key in keys {
        io.kv_delete(key).await.map_err(storage)?;
    }
    Ok(())
}

/// Removes an upload, or stops it: a done upload is forgotten (every key removed; the
/// service keeps the file); any other is cancelled (a tombstone outcome first, so an
/// invocation still at work stops at its next checkpoint, then its keys). Returns its
/// last status.
pub async fn cancel<I: Io>(io: &I, id: &str) -> Result<Option<Record>, Error> {
    let Some(mut rec) = load(io, id).await? else { return Ok(None) };
    let keys = io.kv_keys().await.map_err(storage)?;
    let mut own = keys_of(&keys, id);
    if rec.state != State::Done {
        let at = io.unix_now();
        io.kv_set(&checkpoint::end_key(id), &Outcome::Cancelled { at }.encode()).await.map_err(storage)?;
        job::apply_outcome(&mut rec, &Outcome::Cancelled { at });
        own.retain(|k| *k != checkpoint::end_key(id));
    }
    remove_keys(io, &own).await?;
    Ok(Some(rec))
}

/// Learns a source's identity: a one-byte ranged GET for URLs, metadata for paths.
pub async fn probe<I: Io>(io: &I, settings: &Settings, source: &Source) -> Result<Identity, Error> {
    let limits = Limits { hard: io.now() + settings.time_limit(), stall: settings.stall_timeout };
    match source {
        Source::Url(url) => {
            let request = HttpRequest {
                method: "GET",
                url: url.clone(),
                headers: source::probe_headers(),
                body: Rc::default(),
                timeout: Some(limits.stall),
            };
            let response = match limits.wait(io, io.send(request)).await {
                Ok(sent) => sent.map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?,
                Err(Late::Stall(d)) => return Err(SourceError::Stalled(format!("source did not answer within {} s", d.as_secs())).into()),
                Err(Late::Deadline) => return Err(SourceError::Stalled("source did not answer within the invocation's time".into()).into()),
            };
            Ok(source::identity_from_probe(response.status, &response.headers)?)
        }
        Source::Path(path) => {
            let info = io.file_info(path).await.map_err(|e| file_error(path, e))?;
            if !info.is_file {
                return Err(SourceError::Invalid(format!("{path} is not a file")).into());
            }
            if info.size == 0 {
                return Err(SourceError::Invalid(format!("{path} is empty: the service needs at least one byte")).into());
            }
            Ok(Identity { size: info.size, etag: None, last_modified: info.modified })
        }
    }
}

fn file_error(path: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::NotFound(format!("{path} does not exist")),
        std::io::ErrorKind::PermissionDenied => SourceError::Denied(format!("cannot read {path}: {e}")),
        _ => SourceError::Unreachable(format!("cannot read {path}: {e}")),
    }
    .into()
}

/// Creates the upload for `spec` unless the same request for the same unchanged source
/// exists; returns the record and whether it is new. A failed upload found this way
/// is restarted from its last good checkpoint (the request is its retry).
pub async fn create<I: Io>(io: &I, settings: &Settings, spec: Spec) -> Result<(Record, bool), Error> {
    let identity = probe(io, settings, &spec.source).await?;
    let mut rec = job::new_record(spec, identity, io.unix_now());
    rec.stats.source_requests = matches!(rec.spec.source, Source::Url(_)) as u64;
    let (existing, end) = load_raw(io, &rec.id).await?;
    match (existing, &end) {
        (Some(mut existing), Some(end @ Outcome::Done { .. })) => {
            job::apply_outcome(&mut existing, end);
            return Ok((existing, false));
        }
        (Some(mut existing), None) => {
            if existing.state == State::Failed {
                job::retry(&mut existing);
                commit(io, &mut existing).await?;
            }
            return Ok((existing, false));
        }
        _ => {}
    }
    // Nothing, or a cancelled or removed upload of the same request: start afresh, the
    // tombstone removed first so it does not fall on the new record.
    let keys = io.kv_keys().await.map_err(storage)?;
    let mut own = keys_of(&keys, &rec.id);
    own.reverse();
    remove_keys(io, &own).await?;
    io.kv_set(&checkpoint::record_key(&rec.id), &rec.encode()).await.map_err(storage)?;
    rec.stats.kv_writes += 1;
    Ok((rec, true))
}

/// Restarts a failed upload from its last good checkpoint (nothing to do for any
/// other). Returns the record as saved.
pub async fn retry<I: Io>(io: &I, id: &str) -> Result<Option<Record>, Error> {
    let Some(mut rec) = load(io, id).await? else { return Ok(None) };
    if rec.state == State::Failed {
        job::retry(&mut rec);
        commit(io, &mut rec).await?;
    }
    Ok(Some(rec))
}

/// Writes a record unless the upload has ended meanwhile (then `Err(Ended)`).
async fn commit<I: Io>(io: &I, rec: &mut Record) -> Result<(), Error> {
    if let Some(end) = read_end(io, &rec.id).await? {
        return Err(Error::Ended(end));
    }
    rec.updated_at = io.unix_now();
    rec.stats.kv_writes += 1;
    io.kv_set(&checkpoint::record_key(&rec.id), &rec.encode()).await.map_err(storage)
}

/// Brings a record whose upload has ended in line with its outcome: a done upload's
/// MD5 chunks removed and its record saying done; a cancelled one's keys removed.
/// (A finishing or cancelling invocation does this itself; this completes it after
/// a kill, or undoes a racing invocation's late write.)
async fn settle<I: Io>(io: &I, mut rec: Record, end: &Outcome) -> Result<Record, Error> {
    let chunks: Vec<String> = (0..rec.md5_chunks).map(|k| checkpoint::md5_chunk_key(&rec.id, k)).collect();
    match end {
        Outcome::Done { .. } if rec.state == State::Done && chunks.is_empty() => {}
        Outcome::Done { .. } => {
            job::apply_outcome(&mut rec, end);
            remove_keys(io, &chunks).await?;
            io.kv_set(&checkpoint::record_key(&rec.id), &rec.encode()).await.map_err(storage)?;
        }
        Outcome::Cancelled { .. } => {
            job::apply_outcome(&mut rec, end);
            if rec.state == State::Cancelled {
                remove_keys(io, &[checkpoint::record_key(&rec.id)]).await?;
                remove_keys(io, &chunks).await?;
            }
        }
    }
    Ok(rec)
}

/// Works on upload `id` until it is done or the invocation's time (from `started`, on
/// [`Io::now`]) is up; returns its record as saved. `Ok(None)` when there is no such upload.
pub async fn advance<I: Io>(io: &I, settings: &Settings, id: &str, started: Duration) -> Result<Option<Record>, Error> {
    let (Some(mut rec), end) = load_raw(io, id).await? else { return Ok(None) };
    if let Some(end) = end {
        return settle(io, rec, &end).await.map(Some);
    }
    if rec.state.is_final() {
        return Ok(Some(rec));
    }
    rec.invocations += 1;
    rec.attempted_at = io.unix_now();
    let limits = Limits { hard: started + settings.time_limit(), stall: settings.stall_timeout };
    let mut run = Run {
        io,
        s: settings,
        soft: started + settings.budget,
        limits,
        last_save: started,
        saved: None,
        memory: None,
        chunks: HashMap::new(),
        progressed: false,
    };
    let outcome = run.work(&mut rec).await;
    let now = io.unix_now();
    match outcome {
        Ok(()) => job::clear_error(&mut rec),
        Err(Error::OutOfTime) if run.progressed => job::clear_error(&mut rec),
        Err(Error::OutOfTime) => job::apply_error(
            &mut rec,
            &Error::Source(SourceError::Stalled("no progress before the invocation's time was up".into())),
            now,
            false,
            settings.backoff,
        ),
        Err(Error::Ended(end)) => {
            job::apply_outcome(&mut rec, &end);
            return Ok(Some(rec));
        }
        Err(e) => job::apply_error(&mut rec, &e, now, run.progressed, settings.backoff),
    }
    // The closing checkpoint, unless the work's own last one already holds all of it:
    // KV writes are a platform quota.
    if !run.saved.as_ref().is_some_and(|saved| Record { updated_at: saved.updated_at, ..rec.clone() } == *saved) {
        match run.save(&mut rec).await {
            Err(Error::Ended(end)) => job::apply_outcome(&mut rec, &end),
            other => other?,
        }
    }
    Ok(Some(rec))
}

/// Summary of a tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Uploads worked on.
    pub advanced: Vec<String>,
    /// Uploads whose invocation ended in an error of the store (id, code, message);
    /// the others were still advanced.
    pub errors: Vec<(String, String, String)>,
    /// Final uploads removed after the retention time.
    pub removed: Vec<String>,
    /// Unfinished uploads left for a later tick.
    pub waiting: usize,
}

/// Removes final uploads past retention, then advances unfinished ones, least recently
/// attempted first and skipping those waiting out a `retryAfter`, until the
/// invocation's time is up. One upload's error never stops the others.
pub async fn tick<I: Io>(io: &I, settings: &Settings, started: Duration) -> Result<TickReport, Error> {
    let listing = list(io).await?;
    let now = io.unix_now();
    let mut report = TickReport::default();
    for rec in &listing.records {
        let own = keys_of(&listing.keys, &rec.id);
        let ended = rec.ended_at.unwrap_or(rec.updated_at);
        if rec.state.is_final() && ended.saturating_add(settings.retention_secs) <= now {
            remove_keys(io, &own).await?;
            report.removed.push(rec.id.clone());
        } else if rec.state == State::Done {
            // MD5 chunks a racing invocation wrote after the upload finished.
            let chunks: Vec<String> = own.into_iter().filter(|k| k.contains("/md5/")).collect();
            remove_keys(io, &chunks).await?;
        } else if rec.state == State::Cancelled {
            // A record a racing invocation wrote after the cancel: only the tombstone stays.
            let end = checkpoint::end_key(&rec.id);
            remove_keys(io, &own.into_iter().filter(|k| *k != end).collect::<Vec<_>>()).await?;
        }
    }
    for (id, end) in &listing.lone_ends {
        if end.as_ref().is_none_or(|e| e.at().saturating_add(TOMBSTONE_SECS.min(settings.retention_secs)) <= now) {
            remove_keys(io, &keys_of(&listing.keys, id)).await?;
        }
    }
    let mut due: Vec<&Record> = listing.records.iter().filter(|r| !r.state.is_final() && r.retry_after.is_none_or(|t| t <= now)).collect();
    due.sort_by(|a, b| (a.attempted_at, a.created_at, &a.id).cmp(&(b.attempted_at, b.created_at, &b.id)));
    for rec in due {
        if io.now() >= started + settings.budget && !report.advanced.is_empty() {
            break;
        }
        match advance(io, settings, &rec.id, started).await {
            Ok(_) => report.advanced.push(rec.id.clone()),
            Err(e) => report.errors.push((rec.id.clone(), e.code().to_owned(), e.to_string())),
        }
    }
    report.waiting = match list(io).await {
        Ok(after) => after.records.iter().filter(|r| !r.state.is_final()).count(),
        Err(_) => listing.records.iter().filter(|r| !r.state.is_final()).count(),
    };
    Ok(report)
}

/// One invocation's work on one upload.
struct Run<'a, I: Io> {
    io: &'a I,
    s: &'a Settings,
    /// No new work starts after this (once some progress was made).
    soft: Duration,
    limits: Limits,
    last_save: Duration,
    /// The record as this invocation last wrote it.
    saved: Option<Record>,
    /// The whole file, when it fits the memory threshold and was read this invocation.
    memory: Option<Rc<Vec<u8>>>,
    /// MD5 chunks loaded this invocation.
    chunks: HashMap<u64, Vec<u8>>,
    /// Whether this invocation moved the upload forward yet: the budget is only
    /// enforced after some progress, so even a tiny budget always advances.
    progressed: bool,
}

/// A source opened at a range.
enum Reader<B> {
    Http {
        body: B,
        /// Bytes of the range still to come.
        left: u64,
        /// Bytes to drop first (a source without ranges sends the whole file).
        skip: u64,
        /// The body is the whole file: bytes past the range are not read.
        whole: bool,
        /// Whether to check, once the range is in, that the body ends there.
        check_end: bool,
    },
    File {
        path: String,
        pos: u64,
        left: u64,
    },
    Memory {
        bytes: Rc<Vec<u8>>,
        pos: usize,
        end: usize,
    },
}

/// Largest chunk handed on at once from a local file or the kept file.
const CHUNK: u64 = 1 << 20;

/// The next chunk of a source, each wait bounded by `limits`.
async fn read_chunk<I: Io>(io: &I, limits: Limits, reader: &mut Reader<I::Body>) -> Result<Option<Vec<u8>>, Error> {
    let late = |late: Late| match late {
        Late::Deadline => Error::OutOfTime,
        Late::Stall(d) => SourceError::Stalled(format!("source sent nothing for {} s", d.as_secs())).into(),
    };
    match reader {
        Reader::Http { body, left, skip, whole, check_end } => loop {
            if *left == 0 {
                if !*check_end {
                    return Ok(None);
                }
                // The body's length was not stated: it must end here, not run on.
                return match limits.wait(io, body.chunk()).await.map_err(late)? {
                    None => {
                        *check_end = false;
                        Ok(None)
                    }
                    Some(Ok(chunk)) if chunk.is_empty() => continue,
                    Some(Ok(_)) => Err(SourceError::BadRange("source sent more bytes than the range asked for".into()).into()),
                    Some(Err(e)) => Err(SourceError::Unreachable(format!("source read failed: {e}")).into()),
                };
            }
            match limits.wait(io, body.chunk()).await.map_err(late)? {
                None => return Err(SourceError::Unreachable(format!("source body ended {left} bytes early")).into()),
                Some(Err(e)) => return Err(SourceError::Unreachable(format!("source read failed: {e}")).into()),
                Some(Ok(mut chunk)) => {
                    if *skip > 0 {
                        // Compared as u64: on wasm32 a count of 4 GiB or more does not fit usize.
                        let drop = (chunk.len() as u64).min(*skip) as usize;
                        chunk.drain(..drop);
                        *skip -= drop as u64;
                    }
                    if chunk.len() as u64 > *left {
                        if !*whole {
                            return Err(SourceError::BadRange("source sent more bytes than the range asked for".into()).into());
                        }
                        chunk.truncate(*left as usize);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    *left -= chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            }
        },
        Reader::File { path, pos, left } => {
            if *left == 0 {
                return Ok(None);
            }
            let want = (*left).min(CHUNK) as usize;
            let chunk = limits.wait(io, io.read_file(path, *pos, want)).await.map_err(late)?.map_err(|e| file_error(path, e))?;
            if chunk.is_empty() {
                return Err(SourceError::Changed("the source file became shorter".into()).into());
            }
            let n = chunk.len().min(want);
            *pos += n as u64;
            *left -= n as u64;
            Ok(Some(if n == chunk.len() { chunk } else { chunk[..n].to_vec() }))
        }
        Reader::Memory { bytes, pos, end } => {
            if pos >= end {
                return Ok(None);
            }
            let to = (*pos + CHUNK as usize).min(*end);
            let chunk = bytes[*pos..to].to_vec();
            *pos = to;
            Ok(Some(chunk))
        }
    }
}

impl<'a, I: Io> Run<'a, I> {
    fn out_of_time(&self) -> bool {
        self.progressed && self.io.now() >= self.soft
    }

    fn remaining(&self) -> Duration {
        self.soft.saturating_sub(self.io.now())
    }

    /// Writes the record (the commit point), unless the upload ended meanwhile.
    async fn save(&mut self, rec: &mut Record) -> Result<(), Error> {
        commit(self.io, rec).await?;
        self.last_save = self.io.now();
        self.saved = Some(rec.clone());
        Ok(())
    }

    fn save_due(&self) -> bool {
        self.io.now().saturating_sub(self.last_save) >= self.s.checkpoint_every
    }

    async fn work(&mut self, rec: &mut Record) -> Result<(), Error> {
        loop {
            if self.out_of_time() {
                return Ok(());
            }
            match rec.state {
                State::Pending => job::start_hashing(rec),
                State::Hashing => self.hash(rec).await?,
                State::Uploading => self.upload(rec).await?,
                State::Finishing => self.finish(rec).await?,
                State::Done | State::Failed | State::Cancelled => return Ok(()),
            }
        }
    }

    /// How many bytes to ask the source for next: what the remaining budget can read at
    /// the rate seen so far, so that reads are few and large but little is fetched and
    /// thrown away when the budget runs out.
    fn read_len(&self, rec: &Record) -> u64 {
        if rec.read_rate == 0 {
            return self.s.first_read;
        }
        let secs = self.remaining().as_secs_f64();
        ((rec.read_rate as f64 * secs * 1.1) as u64).max(8 << 20)
    }

    fn learn_rate(&self, rec: &mut Record, bytes: u64, took: Duration) {
        if bytes >= (4 << 20) && took > Duration::from_millis(50) {
            let rate = (bytes as f64 / took.as_secs_f64()) as u64;
            rec.read_rate = if rec.read_rate == 0 { rate } else { (rec.read_rate + rate) / 2 };
        }
    }

    async fn open(&mut self, rec: &mut Record, start: u64, end: u64) -> Result<Reader<I::Body>, Error> {
        if let Some(bytes) = &self.memory {
            return Ok(Reader::Memory { bytes: bytes.clone(), pos: start as usize, end: end as usize });
        }
        match &rec.spec.source {
            Source::Url(url) => {
                rec.stats.source_requests += 1;
                let request = HttpRequest {
                    method: "GET",
                    url: url.clone(),
                    headers: source::range_request_headers(&rec.identity, start, end),
                    body: Rc::default(),
                    timeout: Some(self.limits.stall),
                };
                let response = match self.limits.wait(self.io, self.io.send(request)).await {
                    Ok(sent) => sent.map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?,
                    Err(Late::Deadline) => return Err(Error::OutOfTime),
                    Err(Late::Stall(d)) => {
                        return Err(SourceError::Stalled(format!("source did not answer within {} s", d.as_secs())).into())
                    }
                };
                let answer =
                    source::check_range_response(&rec.identity, start, end, response.status, &response.headers, self.s.memory_threshold)?;
                Ok(Reader::Http {
                    body: response.body,
                    left: end - start,
                    skip: start - answer.body_start,
                    whole: answer.whole,
                    check_end: !answer.length_known && !answer.whole,
                })
            }
            Source::Path(path) => {
                let info = self.io.file_info(path).await.map_err(|e| file_error(path, e))?;
                if info.size != rec.identity.size || info.modified != rec.identity.last_modified {
                    return Err(SourceError::Changed(format!(
                        "the source changed since the upload started: {path} is now {} bytes, modified {}",
                        info.size,
                        info.modified.unwrap_or_default()
                    ))
                    .into());
                }
                Ok(Reader::File { path: path.clone(), pos: start, left: end - start })
            }
        }
    }

    /// Stores the hasher's progress: new MD5 chunks first, then the record. The record
    /// is changed only once the chunks it will count are stored, and the hasher forgets
    /// its MD5s only then: a write that fails leaves both able to checkpoint again.
    async fn save_hashing(&mut self, rec: &mut Record, hasher: &mut Hasher) -> Result<(), Error> {
        let saved = hasher.state();
        self.store_md5s(rec, hasher).await?;
        rec.hashing = Some(HashState::from(saved));
        self.save(rec).await
    }

    /// Stores the hasher's completed MD5s: full chunks under their keys, the rest in the
    /// record (in memory, written by the next save).
    async fn store_md5s(&mut self, rec: &mut Record, hasher: &mut Hasher) -> Result<(), Error> {
        let append = rec.md5s_appended(hasher.completed());
        for (key, value) in &append.writes {
            self.io.kv_set(key, value).await.map_err(storage)?;
            rec.stats.kv_writes += 1;
        }
        rec.set_md5s(append);
        hasher.forget_completed();
        Ok(())
    }

    async fn hash(&mut self, rec: &mut Record) -> Result<(), Error> {
        let layout = job::md5_layout(rec);
        let saved = rec.hashing.as_ref().ok_or_else(|| Error::Checkpoint("hashing without a hash state".into()))?;
        let from = saved.offset;
        let mut hasher = Hasher::restore(layout, &saved.into())?;
        let size = rec.identity.size;
        // A small file is read once: kept from this pass for the upload pass.
        let keep = size <= self.s.memory_threshold && hasher.offset() == 0;
        let mut kept = Vec::with_capacity(if keep { size as usize } else { 0 });
        match self.hash_reads(rec, &mut hasher, keep.then_some(&mut kept)).await {
            Ok(()) => {}
            Err(e @ Error::Ended(_)) => return Err(e),
            Err(e) => {
                // What was hashed before the error is kept.
                if hasher.offset() > from {
                    self.save_hashing(rec, &mut hasher).await?;
                }
                return Err(e);
            }
        }
        if let Some(sha) = hasher.file_sha() {
            if keep {
                self.memory = Some(Rc::new(kept));
            }
            self.store_md5s(rec, &mut hasher).await?;
            job::hashed(rec, sha);
            self.save(rec).await
        } else if rec.hashing.as_ref().is_some_and(|h| h.offset == hasher.offset()) {
            // The last checkpoint of the reads already holds it all.
            Ok(())
        } else {
            self.save_hashing(rec, &mut hasher).await
        }
    }

    async fn hash_reads(&mut self, rec: &mut Record, hasher: &mut Hasher, mut kept: Option<&mut Vec<u8>>) -> Result<(), Error> {
        let size = rec.identity.size;
        while !hasher.is_complete() && !self.out_of_time() {
            let start = hasher.offset();
            let end = if kept.is_some() { size } else { start.saturating_add(self.read_len(rec)).min(size) };
            let mut reader = self.open(rec, start, end).await?;
            let began = self.io.now();
            let mut got = 0u64;
            let result = loop {
                match read_chunk(self.io, self.limits, &mut reader).await {
                    Ok(Some(chunk)) => {
                        hasher.update(&chunk);
                        self.progressed = true;
                        got += chunk.len() as u64;
                        if let Some(kept) = kept.as_deref_mut() {
                            kept.extend_from_slice(&chunk);
                        }
                        if self.save_due() {
                            if let Err(e) = self.save_hashing(rec, hasher).await {
                                break Err(e);
                            }
                        }
                        if self.out_of_time() {
                            break Ok(());
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            rec.stats.source_bytes += got;
            self.learn_rate(rec, got, self.io.now().saturating_sub(began));
            result?;
        }
        Ok(())
    }

    /// The stored MD5 of part `index`, loading its chunk when needed.
    async fn stored_md5(&mut self, rec: &Record, index: u64) -> Result<Option<PartMd5>, Error> {
        match rec.md5_in_tail(index) {
            Ok(found) => Ok(found),
            Err(k) => {
                if !self.chunks.contains_key(&k) {
                    let key = checkpoint::md5_chunk_key(&rec.id, k);
                    let value = self
                        .io
                        .kv_get(&key)
                        .await
                        .map_err(storage)?
                        .ok_or_else(|| Error::Checkpoint(format!("MD5 chunk {key} is missing")))?;
                    self.chunks.insert(k, value);
                }
                Ok(checkpoint::md5_in_chunk(&self.chunks[&k], index))
            }
        }
    }

    /// A VOD call (InitUpload or FinishUpload) with retries inside the budget.
    async fn call<T>(&mut self, rec: &mut Record, call: Call, parse: fn(&[u8]) -> Result<T, AnswerError>) -> Result<T, Error> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            rec.stats.vod_requests += 1;
            let result = vod_call(self.io, &self.s.signer, &call, None, parse, self.limits).await;
            match result {
                Err(e) if e.retryable() && attempt < self.s.attempts => {
                    let wait = jitter(self.io, delay);
                    if self.io.now() + wait >= self.limits.hard {
                        return Err(e);
                    }
                    self.io.sleep(wait).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The service holds the file: its outcome is stored first (the write-once fact
    /// every later load and record write defers to), then the MD5 chunks are released,
    /// then the record says done.
    async fn finalize(&mut self, rec: &mut Record, done: Finished) -> Result<(), Error> {
        let at = self.io.unix_now();
        let outcome = Outcome::Done { file_id: done.file_id.clone(), url: done.url.clone(), at };
        self.io.kv_set(&checkpoint::end_key(&rec.id), &outcome.encode()).await.map_err(storage)?;
        let chunks: Vec<String> = (0..rec.md5_chunks).map(|k| checkpoint::md5_chunk_key(&rec.id, k)).collect();
        remove_keys(self.io, &chunks).await?;
        job::apply_finished(rec, done, at);
        self.progressed = true;
        rec.updated_at = at;
        rec.stats.kv_writes += 2;
        self.io.kv_set(&checkpoint::record_key(&rec.id), &rec.encode()).await.map_err(storage)?;
        self.last_save = self.io.now();
        self.saved = Some(rec.clone());
        Ok(())
    }

    async fn init(&mut self, rec: &mut Record) -> Result<(), Error> {
        let spec = &rec.spec;
        let call = Call::InitUpload(InitUpload {
            file_name: spec.file_name.clone(),
            file_sha: rec.file_sha.clone().ok_or_else(|| Error::Checkpoint("uploading without a SHA-1".into()))?,
            file_size: rec.identity.size,
            data_size: spec.data_size,
            file_type: spec.file_type.clone(),
            tags: spec.tags.clone(),
            class_id: spec.class_id,
            is_transcode: spec.is_transcode,
            is_screenshot: spec.is_screenshot,
            is_watermark: spec.is_watermark,
        });
        let answer = self.call(rec, call, protocol::parse_init).await?;
        // Our MD5s of the listed parts, when they were computed for the session's parts.
        let mut ours = HashMap::new();
        if let protocol::InitAnswer::Resume { data_size, parts } = &answer {
            if *data_size == rec.md5_part_size && rec.md5_count() == job::md5_layout(rec).count() {
                let layout = job::md5_layout(rec);
                for listed in parts {
                    if let Some(index) = layout.index_at(listed.offset) {
                        if let Some(md5) = self.stored_md5(rec, index).await? {
                            ours.insert(index, md5);
                        }
                    }
                }
            }
        }
        if let Some(done) = job::apply_init(rec, answer, |i| ours.get(&i).copied()) {
            return self.finalize(rec, done).await;
        }
        self.progressed = true;
        self.save(rec).await
    }

    async fn upload(&mut self, rec: &mut Record) -> Result<(), Error> {
        let file_sha = rec.file_sha.clone().ok_or_else(|| Error::Checkpoint("uploading without a SHA-1".into()))?;
        loop {
            if self.out_of_time() {
                return Ok(());
            }
            if !rec.session {
                self.init(rec).await?;
                if rec.state != State::Uploading {
                    return Ok(());
                }
            }
            let layout = job::layout(rec);
            let fit = job::md5s_fit(rec);
            let Some(first) = job::next_part(rec) else {
                rec.state = State::Finishing;
                return self.save(rec).await;
            };
            // A run of parts not yet uploaded, as much as the budget can read.
            let budget_bytes = if self.memory.is_some() { u64::MAX } else { self.read_len(rec) };
            let mut last = first + 1;
            while last < layout.count() && !rec.is_part_done(last) && layout.range(last).end - layout.offset(first) <= budget_bytes {
                last += 1;
            }
            let (start, end) = (layout.offset(first), layout.range(last - 1).end);
            let mut reader = self.open(rec, start, end).await?;
            let began = self.io.now();
            let mut inflight = FuturesUnordered::new();
            let mut next = first;
            let mut part: Vec<u8> = Vec::with_capacity(layout.len(first) as usize);
            let mut spill: Vec<u8> = Vec::new();
            let mut spill_at = 0usize;
            let mut read_bytes = 0u64;
            let mut pass = Pass::default();
            let mut read_all = false;
            let (io, limits) = (self.io, self.limits);
            loop {
                // Move spilled bytes into the part being filled.
                if next < last && spill_at < spill.len() {
                    let need = layout.len(next) as usize - part.len();
                    let take = need.min(spill.len() - spill_at);
                    part.extend_from_slice(&spill[spill_at..spill_at + take]);
                    spill_at += take;
                }
                let part_full = next < last && part.len() as u64 == layout.len(next);
                if part_full && !pass.stop && inflight.len() < self.s.concurrency {
                    let md5 = match if fit { self.stored_md5(rec, next).await? } else { None } {
                        Some(m) => crate::hex::encode(&m),
                        None => crate::hex::encode(&<md5::Md5 as md5::Digest>::digest(&part)),
                    };
                    let body = Rc::new(std::mem::take(&mut part));
                    inflight.push(send_part(io, self.s, &file_sha, next, layout.offset(next), body, md5, limits));
                    next += 1;
                    if next < last {
                        part.reserve(layout.len(next) as usize);
                    }
                    continue;
                }
                if self.out_of_time() {
                    pass.stop = true;
                }
                // Read on to fill the next part, and once every part is in, once more to
                // see the body end there (a longer one is refused, never silently cut).
                let need_bytes = !pass.stop && !read_all && !part_full;
                if !need_bytes {
                    // Nothing more to read: wait for the parts in flight.
                    match inflight.next().await {
                        Some(done) => self.part_finished(rec, done, fit, &mut pass).await?,
                        None => break,
                    }
                    continue;
                }
                let chunk = if inflight.is_empty() {
                    read_chunk(io, limits, &mut reader).await
                } else {
                    // Read the source while the parts in flight progress; uploads are
                    // polled first so they start as soon as they are queued.
                    match select(inflight.next(), pin!(read_chunk(io, limits, &mut reader))).await {
                        Either::Left((Some(done), _)) => {
                            self.part_finished(rec, done, fit, &mut pass).await?;
                            continue;
                        }
                        Either::Left((None, _)) => continue,
                        Either::Right((chunk, _)) => chunk,
                    }
                };
                match chunk {
                    Ok(Some(chunk)) => {
                        read_bytes += chunk.len() as u64;
                        spill = chunk;
                        spill_at = 0;
                    }
                    Ok(None) => read_all = true,
                    Err(e) => pass.fail(e),
                }
            }
            if self.memory.is_none() {
                rec.stats.source_bytes += read_bytes;
                self.learn_rate(rec, read_bytes, self.io.now().saturating_sub(began));
            }
            if pass.recheck {
                // The service refused a part as if its session were gone or finished:
                // ask it (InitUpload) before believing the refusal.
                rec.repairs += 1;
                rec.session = false;
            }
            self.save(rec).await?;
            if let Some(e) = pass.failure {
                return Err(e);
            }
        }
    }

    async fn part_finished(&mut self, rec: &mut Record, done: PartResult, fit: bool, pass: &mut Pass) -> Result<(), Error> {
        rec.stats.vod_requests += done.attempts as u64;
        match done.result {
            Ok(()) => {
                self.progressed = true;
                rec.mark_part_done(done.index);
                rec.repairs = 0;
                if self.save_due() {
                    self.save(rec).await?;
                }
            }
            // UploadPart says the session does not take this part (no session, or the
            // file already finished: another invocation, or an upload of the same bytes
            // under another name, got there first). InitUpload will tell which.
            Err(Error::Vod(api)) if !api.retryable && api.code == vod_codes::PARAMS && rec.repairs < MAX_REPAIRS => {
                pass.stop = true;
                pass.recheck = true;
            }
            // The service says the body differs from the MD5 hashed from the source:
            // the bytes read now are not the ones hashed, so the source changed.
            Err(Error::Vod(api)) if !api.retryable && api.code == vod_codes::INVALID_BODY && fit => {
                pass.fail(SourceError::Changed(format!("the source changed since it was hashed ({api})")).into());
            }
            Err(e) => pass.fail(e),
        }
        Ok(())
    }

    async fn finish(&mut self, rec: &mut Record) -> Result<(), Error> {
        let file_sha = rec.file_sha.clone().ok_or_else(|| Error::Checkpoint("finishing without a SHA-1".into()))?;
        match self.call(rec, Call::FinishUpload(FinishUpload { file_sha }), protocol::parse_finish).await {
            Ok(done) => self.finalize(rec, done).await,
            // The service lacks parts or holds wrong ones: ask it what it has (InitUpload
            // lists parts with their MD5s) and send what is missing, a bounded number of times.
            Err(Error::Vod(api)) if !api.retryable && api.code == vod_codes::PARAMS && rec.repairs < MAX_REPAIRS => {
                rec.repairs += 1;
                rec.session = false;
                rec.state = State::Uploading;
                self.save(rec).await
            }
            Err(e) => Err(e),
        }
    }
}

/// How one stretch of the upload pass ends.
#[derive(Default)]
struct Pass {
    /// No more parts are started.
    stop: bool,
    /// The first real failure (running out of time counts only if nothing else failed).
    failure: Option<Error>,
    /// A part was refused in a way that needs the session asked again.
    recheck: bool,
}

impl Pass {
    fn fail(&mut self, e: Error) {
        self.stop = true;
        if self.failure.as_ref().is_none_or(|f| matches!(f, Error::OutOfTime)) {
            self.failure = Some(e);
        }
    }
}

fn jitter<I: Io>(io: &I, delay: Duration) -> Duration {
    delay + delay.mul_f64((io.random() % 1000) as f64 / 2000.0)
}

/// A finished part upload.
struct PartResult {
    index: u64,
    attempts: u32,
    result: Result<(), Error>,
}

/// One part, retried (with backoff and jitter, each attempt signed anew) while the
/// failure is retryable and the time allows.
#[allow(clippy::too_many_arguments)]
async fn send_part<I: Io>(
    io: &I,
    s: &Settings,
    file_sha: &str,
    index: u64,
    offset: u64,
    body: Rc<Vec<u8>>,
    md5: String,
    limits: Limits,
) -> PartResult {
    let call = Call::UploadPart(UploadPart { file_sha: file_sha.to_owned(), offset, data_size: body.len() as u64, data_md5: md5 });
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = vod_call(io, &s.signer, &call, Some(body.clone()), protocol::parse_part, limits).await;
        match result {
            Err(e) if e.retryable() && attempts < s.attempts => {
                let wait = jitter(io, delay);
                if io.now() + wait >= limits.hard {
                    return PartResult { index, attempts, result: Err(e) };
                }
                io.sleep(wait).await;
                delay *= 2;
            }
            result => return PartResult { index, attempts, result },
        }
    }
}

/// Signs and sends one VOD call, reads and parses its answer, every wait bounded.
/// Largest answer read from the service. InitUpload's lists every part held, about 100
/// bytes each (10 MiB for the 100,000 parts of a 50 GiB file in 512 KiB parts), and
/// the session's part size, which decides their number, is the service's: so up to
/// 128 bytes a byte of a small file, and at most 32 MiB.
fn max_answer(call: &Call) -> usize {
    match call {
        Call::InitUpload(p) => (64 << 10) + 128 * p.file_size.min(1 << 18) as usize,
        _ => 64 << 10,
    }
}

async fn vod_call<I: Io, T>(
    io: &I,
    signer: &Signer,
    call: &Call,
    body: Option<Rc<Vec<u8>>>,
    parse: fn(&[u8]) -> Result<T, AnswerError>,
    limits: Limits,
) -> Result<T, Error> {
    let max_answer = max_answer(call);
    let late = |late: Late| match late {
        Late::Deadline => Error::OutOfTime,
        Late::Stall(d) => Error::VodTransport(format!("{} got no answer for {} s", call.action(), d.as_secs())),
    };
    let method = if body.is_some() { Method::Post } else { call.documented_method() };
    let signed = signer.sign(call, method, io.unix_now(), io.random());
    let mut headers = Vec::new();
    if let Some(body) = &body {
        headers.push(("content-type".to_owned(), "application/octet-stream".to_owned()));
        // Stated, not chunked, as the vendor's SDKs sent parts; the host also checks
        // that exactly this many bytes were written.
        headers.push(("content-length".to_owned(), body.len().to_string()));
    }
    let request =
        HttpRequest { method: method.as_str(), url: signed.url, headers, body: body.unwrap_or_default(), timeout: Some(limits.stall) };
    let mut response = limits
        .wait(io, io.send(request))
        .await
        .map_err(late)?
        .map_err(|e| Error::VodTransport(format!("{} failed: {e}", call.action())))?;
    let mut answer = Vec::new();
    while let Some(chunk) = limits.wait(io, response.body.chunk()).await.map_err(late)? {
        let chunk = chunk.map_err(|e| Error::VodTransport(format!("{} answer unreadable: {e}", call.action())))?;
        if answer.len() + chunk.len() > max_answer {
            return Err(Error::VodTransport(format!("{} answer is larger than {max_answer} bytes", call.action())));
        }
        answer.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&response.status) {
        return Err(Error::VodTransport(format!("{} answered HTTP {}", call.action(), response.status)));
    }
    parse(&answer).map_err(Error::from)
}
