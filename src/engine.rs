//! The upload engine: one invocation's worth of work on an upload, within a time
//! budget, over any platform that implements [`Io`] (Spin's outbound HTTP and
//! key-value store in the component; tokio, hyper and SQLite in the native tests).
//!
//! Decisions about the upload itself live in [`crate::job`]; this module sequences
//! the I/O: ranged reads of the source, the hashing pass, concurrent part uploads with
//! retries, and checkpoints at least every `checkpoint_every` and before returning.
//! The checkpoint write is the single commit point, so a kill at any instant loses
//! at most the work since the last checkpoint.

use crate::checkpoint::{self, HashState, Record, Spec, State};
use crate::error::Error;
use crate::hasher::{Hasher, PartMd5};
use crate::job;
use crate::protocol::{self, AnswerError, Call, FinishUpload, InitUpload, Method, Signer, UploadPart};
use crate::source::{self, Identity, Source, SourceError};
use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::rc::Rc;
use std::time::{Duration, Instant};

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

/// What the engine needs from its platform.
#[allow(async_fn_in_trait)]
pub trait Io {
    /// Response body type.
    type Body: Body;
    /// Sends a request; `Err` for transport failures (and refused destinations).
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<Self::Body>, String>;
    /// Reads a key.
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Writes a key.
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Removes a key.
    fn kv_delete(&self, key: &str) -> Result<(), String>;
    /// Every key of the store.
    fn kv_keys(&self) -> Result<Vec<String>, String>;
    /// Waits (a retry's backoff).
    async fn sleep(&self, duration: Duration);
    /// Wall-clock Unix seconds.
    fn unix_now(&self) -> u64;
    /// A random number (nonces, jitter).
    fn random(&self) -> u32;
}

/// How the engine works.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Signs VOD calls.
    pub signer: Signer,
    /// Time for one invocation's work.
    pub budget: Duration,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Longest time between checkpoints.
    pub checkpoint_every: Duration,
    /// Files up to this size are read once: kept in memory from hashing to upload.
    pub memory_threshold: u64,
    /// Attempts per VOD call within an invocation.
    pub attempts: u32,
    /// Length of a ranged read while no read rate is known (`u64::MAX`: to the end).
    pub first_read: u64,
    /// Seconds to wait after an invocation ended on a retryable error.
    pub retry_after_secs: u64,
}

impl Settings {
    /// Defaults: 20 s budget, 4 parts at once, a checkpoint every 2 s, files up to
    /// 8 MiB read once.
    pub fn new(signer: Signer) -> Self {
        Settings {
            signer,
            budget: Duration::from_secs(20),
            concurrency: 4,
            checkpoint_every: Duration::from_secs(2),
            memory_threshold: 8 << 20,
            attempts: 5,
            // Until a read rate is known, read to the end: one request per pass, and a
            // stop at the deadline throws away only what TCP buffered, as with any length.
            first_read: u64::MAX,
            retry_after_secs: 5,
        }
    }
}

fn storage(e: String) -> Error {
    Error::Storage(e)
}

/// Loads an upload's record.
pub fn load<I: Io>(io: &I, id: &str) -> Result<Option<Record>, Error> {
    match io.kv_get(&checkpoint::record_key(id)).map_err(storage)? {
        Some(bytes) => Ok(Some(Record::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Every upload's record, oldest first. Unreadable records are skipped (and named in
/// the second list) rather than hiding every other upload.
pub fn list<I: Io>(io: &I) -> Result<(Vec<Record>, Vec<String>), Error> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for key in io.kv_keys().map_err(storage)? {
        let Some(id) = checkpoint::id_of_record_key(&key) else { continue };
        match load(io, id) {
            Ok(Some(r)) => records.push(r),
            Ok(None) => {}
            Err(_) => unreadable.push(id.to_owned()),
        }
    }
    records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok((records, unreadable))
}

/// Removes an upload and every key it has; returns its last record.
pub fn cancel<I: Io>(io: &I, id: &str) -> Result<Option<Record>, Error> {
    let Some(mut rec) = load(io, id)? else { return Ok(None) };
    // The record goes first: an invocation still working on it notices at its next
    // checkpoint and stops; chunk keys left by a crash here are unreachable garbage
    // under the same prefix, removed by the next cancel of this id.
    for key in rec.keys() {
        io.kv_delete(&key).map_err(storage)?;
    }
    rec.state = State::Cancelled;
    Ok(Some(rec))
}

/// Learns a source's identity: a one-byte ranged GET for URLs, metadata for paths.
pub async fn probe<I: Io>(io: &I, source: &Source) -> Result<Identity, Error> {
    match source {
        Source::Url(url) => {
            let response = io
                .send(HttpRequest {
                    method: "GET",
                    url: url.clone(),
                    headers: vec![("range".into(), source::PROBE_RANGE.into())],
                    body: Rc::default(),
                })
                .await
                .map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?;
            let identity = source::identity_from_probe(response.status, &response.headers)?;
            Ok(identity)
        }
        Source::Path(path) => {
            let meta = std::fs::metadata(path).map_err(|e| SourceError::Unreachable(format!("cannot read {path}: {e}")))?;
            if !meta.is_file() {
                return Err(SourceError::Invalid(format!("{path} is not a file")).into());
            }
            if meta.len() == 0 {
                return Err(SourceError::Invalid(format!("{path} is empty: the service needs at least one byte")).into());
            }
            Ok(Identity { size: meta.len(), etag: None, last_modified: modified(&meta) })
        }
    }
}

fn modified(meta: &std::fs::Metadata) -> Option<String> {
    let t = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!("{}.{:09}", t.as_secs(), t.subsec_nanos()))
}

/// Creates the upload for `spec` unless the same request for the same unchanged source
/// exists; returns the record and whether it is new.
pub async fn create<I: Io>(io: &I, spec: Spec) -> Result<(Record, bool), Error> {
    let identity = probe(io, &spec.source).await?;
    let mut rec = job::new_record(spec, identity, io.unix_now());
    rec.stats.source_requests = matches!(rec.spec.source, Source::Url(_)) as u64;
    if let Some(existing) = load(io, &rec.id)? {
        return Ok((existing, false));
    }
    io.kv_set(&checkpoint::record_key(&rec.id), &rec.encode()).map_err(storage)?;
    rec.stats.kv_writes += 1;
    Ok((rec, true))
}

/// Works on upload `id` until it is done or `deadline`; returns its record as saved.
/// `Ok(None)` when there is no such upload.
pub async fn advance<I: Io>(io: &I, settings: &Settings, id: &str, deadline: Instant) -> Result<Option<Record>, Error> {
    let Some(mut rec) = load(io, id)? else { return Ok(None) };
    if rec.state.is_final() {
        return Ok(Some(rec));
    }
    rec.invocations += 1;
    let mut run = Run { io, s: settings, deadline, last_save: Instant::now(), saved: None, memory: None, chunks: HashMap::new(), progressed: false };
    let outcome = run.work(&mut rec).await;
    let now = io.unix_now();
    rec.updated_at = now;
    match outcome {
        Ok(()) => {
            rec.error = None;
            rec.retry_after = None;
        }
        Err(Error::Cancelled) => {
            rec.state = State::Cancelled;
            return Ok(Some(rec));
        }
        Err(e) => job::apply_error(&mut rec, &e, now, settings.retry_after_secs),
    }
    // The closing checkpoint, unless the work's own last one already holds all of it:
    // KV writes are a platform quota.
    if !run.saved.as_ref().is_some_and(|saved| Record { updated_at: saved.updated_at, ..rec.clone() } == *saved) {
        match run.save(&mut rec) {
            Err(Error::Cancelled) => rec.state = State::Cancelled,
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
    /// Unfinished uploads left for a later tick.
    pub waiting: usize,
}

/// Advances unfinished uploads (least recently worked on first, skipping those
/// waiting out a `retryAfter`) until `deadline`.
pub async fn tick<I: Io>(io: &I, settings: &Settings, deadline: Instant) -> Result<TickReport, Error> {
    let (mut records, _) = list(io)?;
    let now = io.unix_now();
    records.retain(|r| !r.state.is_final() && r.retry_after.is_none_or(|t| t <= now));
    records.sort_by_key(|r| r.updated_at);
    let mut report = TickReport::default();
    for rec in &records {
        if Instant::now() >= deadline {
            break;
        }
        advance(io, settings, &rec.id, deadline).await?;
        report.advanced.push(rec.id.clone());
    }
    let (after, _) = list(io)?;
    report.waiting = after.iter().filter(|r| !r.state.is_final()).count();
    Ok(report)
}

/// One invocation's work on one upload.
struct Run<'a, I: Io> {
    io: &'a I,
    s: &'a Settings,
    deadline: Instant,
    last_save: Instant,
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
    Http { body: B, left: u64 },
    File { file: std::fs::File, left: u64 },
    Memory { bytes: Rc<Vec<u8>>, pos: usize, end: usize },
}

impl<B: Body> Reader<B> {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Reader::Http { body, left } => {
                if *left == 0 {
                    return Ok(None);
                }
                match body.chunk().await {
                    None => Err(SourceError::Unreachable(format!("source body ended {left} bytes early")).into()),
                    Some(Err(e)) => Err(SourceError::Unreachable(format!("source read failed: {e}")).into()),
                    Some(Ok(mut chunk)) => {
                        // Compared as u64: on wasm32 a read of 4 GiB or more has a
                        // `left` that does not fit usize (a cast would truncate it).
                        chunk.truncate((chunk.len() as u64).min(*left) as usize);
                        *left -= chunk.len() as u64;
                        Ok(Some(chunk))
                    }
                }
            }
            Reader::File { file, left } => {
                if *left == 0 {
                    return Ok(None);
                }
                let mut buf = vec![0u8; (*left).min(1 << 20) as usize];
                let n = file.read(&mut buf).map_err(|e| SourceError::Unreachable(format!("source read failed: {e}")))?;
                if n == 0 {
                    return Err(SourceError::Changed("the source file became shorter".into()).into());
                }
                buf.truncate(n);
                *left -= n as u64;
                Ok(Some(buf))
            }
            Reader::Memory { bytes, pos, end } => {
                if pos >= end {
                    return Ok(None);
                }
                let to = (*pos + (1 << 20)).min(*end);
                let chunk = bytes[*pos..to].to_vec();
                *pos = to;
                Ok(Some(chunk))
            }
        }
    }
}

impl<'a, I: Io> Run<'a, I> {
    fn out_of_time(&self) -> bool {
        self.progressed && Instant::now() >= self.deadline
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Writes the record (the commit point), unless the upload was cancelled meanwhile.
    fn save(&mut self, rec: &mut Record) -> Result<(), Error> {
        let key = checkpoint::record_key(&rec.id);
        if self.io.kv_get(&key).map_err(storage)?.is_none() {
            return Err(Error::Cancelled);
        }
        rec.updated_at = self.io.unix_now();
        rec.stats.kv_writes += 1;
        self.io.kv_set(&key, &rec.encode()).map_err(storage)?;
        self.last_save = Instant::now();
        self.saved = Some(rec.clone());
        Ok(())
    }

    fn save_due(&self) -> bool {
        self.last_save.elapsed() >= self.s.checkpoint_every
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
                let response = self
                    .io
                    .send(HttpRequest {
                        method: "GET",
                        url: url.clone(),
                        headers: source::range_request_headers(&rec.identity, start, end),
                        body: Rc::default(),
                    })
                    .await
                    .map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?;
                source::check_range_response(&rec.identity, start, end, response.status, &response.headers)?;
                Ok(Reader::Http { body: response.body, left: end - start })
            }
            Source::Path(path) => {
                let unreadable = |e: std::io::Error| SourceError::Unreachable(format!("cannot read {path}: {e}"));
                let mut file = std::fs::File::open(path).map_err(unreadable)?;
                let meta = file.metadata().map_err(unreadable)?;
                if meta.len() != rec.identity.size || modified(&meta) != rec.identity.last_modified {
                    return Err(SourceError::Changed(format!(
                        "the source changed since the upload started: {path} is now {} bytes, modified {}",
                        meta.len(),
                        modified(&meta).unwrap_or_default()
                    ))
                    .into());
                }
                file.seek(std::io::SeekFrom::Start(start)).map_err(unreadable)?;
                Ok(Reader::File { file, left: end - start })
            }
        }
    }

    /// Stores the hasher's progress: new MD5 chunks first, then the record.
    fn save_hashing(&mut self, rec: &mut Record, hasher: &mut Hasher) -> Result<(), Error> {
        let (md5s, saved) = hasher.checkpoint();
        for (key, value) in rec.push_md5s(&md5s) {
            self.io.kv_set(&key, &value).map_err(storage)?;
            rec.stats.kv_writes += 1;
        }
        rec.hashing = Some(HashState::from(saved));
        self.save(rec)
    }

    async fn hash(&mut self, rec: &mut Record) -> Result<(), Error> {
        let layout = job::md5_layout(rec);
        let saved = rec.hashing.as_ref().ok_or_else(|| Error::Checkpoint("hashing without a hash state".into()))?;
        let mut hasher = Hasher::restore(layout, &saved.into())?;
        let size = rec.identity.size;
        // A small file is read once: kept from this pass for the upload pass.
        let keep = size <= self.s.memory_threshold && hasher.offset() == 0;
        let mut kept = Vec::with_capacity(if keep { size as usize } else { 0 });
        while !hasher.is_complete() && !self.out_of_time() {
            let start = hasher.offset();
            let end = if keep { size } else { start.saturating_add(self.read_len(rec)).min(size) };
            let mut reader = self.open(rec, start, end).await?;
            let began = Instant::now();
            let mut got = 0u64;
            while let Some(chunk) = reader.next().await? {
                hasher.update(&chunk);
                self.progressed = true;
                got += chunk.len() as u64;
                if keep {
                    kept.extend_from_slice(&chunk);
                }
                if self.save_due() {
                    self.save_hashing(rec, &mut hasher)?;
                }
                if self.out_of_time() {
                    break;
                }
            }
            rec.stats.source_bytes += got;
            self.learn_rate(rec, got, began.elapsed());
        }
        if let Some(sha) = hasher.file_sha() {
            if keep {
                self.memory = Some(Rc::new(kept));
            }
            for (key, value) in rec.push_md5s(&hasher.take_completed()) {
                self.io.kv_set(&key, &value).map_err(storage)?;
                rec.stats.kv_writes += 1;
            }
            job::hashed(rec, sha);
            self.save(rec)
        } else {
            self.save_hashing(rec, &mut hasher)
        }
    }

    /// The stored MD5 of part `index`, loading its chunk when needed.
    fn stored_md5(&mut self, rec: &Record, index: u64) -> Result<Option<PartMd5>, Error> {
        match rec.md5_in_tail(index) {
            Ok(found) => Ok(found),
            Err(k) => {
                if !self.chunks.contains_key(&k) {
                    let key = checkpoint::md5_chunk_key(&rec.id, k);
                    let value = self
                        .io
                        .kv_get(&key)
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
            let result = vod_call(self.io, &self.s.signer, &call, None, parse).await;
            match result {
                Err(e) if e.retryable() && attempt < self.s.attempts && delay < self.remaining() => {
                    self.io.sleep(jitter(self.io, delay)).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
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
                        if let Some(md5) = self.stored_md5(rec, index)? {
                            ours.insert(index, md5);
                        }
                    }
                }
            }
        }
        job::apply_init(rec, answer, |i| ours.get(&i).copied());
        self.progressed = true;
        self.save(rec)
    }

    async fn upload(&mut self, rec: &mut Record) -> Result<(), Error> {
        if !rec.session {
            self.init(rec).await?;
            if rec.state != State::Uploading {
                return Ok(());
            }
        }
        let layout = job::layout(rec);
        let fit = job::md5s_fit(rec);
        let file_sha = rec.file_sha.clone().ok_or_else(|| Error::Checkpoint("uploading without a SHA-1".into()))?;
        loop {
            if self.out_of_time() {
                return Ok(());
            }
            let Some(first) = job::next_part(rec) else {
                rec.state = State::Finishing;
                return self.save(rec);
            };
            // A run of parts not yet uploaded, as much as the budget can read.
            let budget_bytes = if self.memory.is_some() { u64::MAX } else { self.read_len(rec) };
            let mut last = first + 1;
            while last < layout.count() && !rec.is_part_done(last) && layout.range(last).end - layout.offset(first) <= budget_bytes {
                last += 1;
            }
            let (start, end) = (layout.offset(first), layout.range(last - 1).end);
            let mut reader = self.open(rec, start, end).await?;
            let began = Instant::now();
            let mut inflight = FuturesUnordered::new();
            let mut next = first;
            let mut part: Vec<u8> = Vec::with_capacity(layout.len(first) as usize);
            let mut spill: Vec<u8> = Vec::new();
            let mut spill_at = 0usize;
            let mut read_bytes = 0u64;
            let mut failure: Option<Error> = None;
            let mut stop = false;
            loop {
                // Move spilled bytes into the part being filled.
                if next < last && spill_at < spill.len() {
                    let need = layout.len(next) as usize - part.len();
                    let take = need.min(spill.len() - spill_at);
                    part.extend_from_slice(&spill[spill_at..spill_at + take]);
                    spill_at += take;
                }
                let part_full = next < last && part.len() as u64 == layout.len(next);
                if part_full && !stop && inflight.len() < self.s.concurrency {
                    let md5 = match if fit { self.stored_md5(rec, next)? } else { None } {
                        Some(m) => crate::hex::encode(&m),
                        None => crate::hex::encode(&<md5::Md5 as md5::Digest>::digest(&part)),
                    };
                    let body = Rc::new(std::mem::take(&mut part));
                    inflight.push(send_part(self.io, self.s, &file_sha, next, layout.offset(next), body, md5, self.deadline));
                    next += 1;
                    if next < last {
                        part.reserve(layout.len(next) as usize);
                    }
                    continue;
                }
                if self.out_of_time() {
                    stop = true;
                }
                let need_bytes = !stop && next < last && !part_full;
                if !need_bytes {
                    // Nothing more to read: wait for the parts in flight.
                    match inflight.next().await {
                        Some(done) => self.part_finished(rec, done, &mut failure, &mut stop)?,
                        None => break,
                    }
                    continue;
                }
                if inflight.is_empty() {
                    match reader.next().await? {
                        Some(chunk) => {
                            read_bytes += chunk.len() as u64;
                            spill = chunk;
                            spill_at = 0;
                        }
                        None => break,
                    }
                    continue;
                }
                // Read the source while the parts in flight progress; uploads are polled
                // first so they start as soon as they are queued.
                let read = std::pin::pin!(reader.next());
                match select(inflight.next(), read).await {
                    Either::Left((Some(done), _)) => self.part_finished(rec, done, &mut failure, &mut stop)?,
                    Either::Left((None, _)) => {}
                    Either::Right((chunk, _)) => match chunk? {
                        Some(chunk) => {
                            read_bytes += chunk.len() as u64;
                            spill = chunk;
                            spill_at = 0;
                        }
                        None => stop = true,
                    },
                }
            }
            if self.memory.is_none() {
                rec.stats.source_bytes += read_bytes;
                self.learn_rate(rec, read_bytes, began.elapsed());
            }
            self.save(rec)?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    fn part_finished(&mut self, rec: &mut Record, done: PartResult, failure: &mut Option<Error>, stop: &mut bool) -> Result<(), Error> {
        rec.stats.vod_requests += done.attempts as u64;
        match done.result {
            Ok(()) => {
                self.progressed = true;
                rec.mark_part_done(done.index);
                if self.save_due() {
                    self.save(rec)?;
                }
            }
            Err(e) => {
                *stop = true;
                // A body the service says differs from its MD5 means our bytes are not
                // the ones hashed: the source changed under us.
                let e = match e {
                    Error::Vod(api) if api.code == -10006 && api.message.contains("MD5") => {
                        Error::Source(SourceError::Changed(format!("the source changed since it was hashed ({api})")))
                    }
                    other => other,
                };
                if failure.is_none() {
                    *failure = Some(e);
                }
            }
        }
        Ok(())
    }

    async fn finish(&mut self, rec: &mut Record) -> Result<(), Error> {
        let file_sha = rec.file_sha.clone().ok_or_else(|| Error::Checkpoint("finishing without a SHA-1".into()))?;
        match self.call(rec, Call::FinishUpload(FinishUpload { file_sha }), protocol::parse_finish).await {
            Ok(done) => {
                self.progressed = true;
                job::apply_finished(rec, done);
                self.save(rec)
            }
            // The service lacks parts or holds wrong ones: ask it what it has (InitUpload
            // lists parts with their MD5s) and send what is missing, a bounded number of times.
            Err(Error::Vod(api)) if !api.retryable && api.code == -10003 && rec.repairs < 2 => {
                rec.repairs += 1;
                rec.session = false;
                rec.state = State::Uploading;
                self.save(rec)
            }
            Err(e) => Err(e),
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
/// failure is retryable and the budget allows.
#[allow(clippy::too_many_arguments)]
async fn send_part<I: Io>(io: &I, s: &Settings, file_sha: &str, index: u64, offset: u64, body: Rc<Vec<u8>>, md5: String, deadline: Instant) -> PartResult {
    let call = Call::UploadPart(UploadPart { file_sha: file_sha.to_owned(), offset, data_size: body.len() as u64, data_md5: md5 });
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = vod_call(io, &s.signer, &call, Some(body.clone()), protocol::parse_part).await;
        match result {
            Err(e) if e.retryable() && attempts < s.attempts && Instant::now() + delay < deadline => {
                io.sleep(jitter(io, delay)).await;
                delay *= 2;
            }
            result => return PartResult { index, attempts, result },
        }
    }
}

/// Signs and sends one VOD call, reads and parses its answer.
async fn vod_call<I: Io, T>(
    io: &I,
    signer: &Signer,
    call: &Call,
    body: Option<Rc<Vec<u8>>>,
    parse: fn(&[u8]) -> Result<T, AnswerError>,
) -> Result<T, Error> {
    let method = if body.is_some() { Method::Post } else { call.documented_method() };
    let signed = signer.sign(call, method, io.unix_now(), io.random());
    let mut headers = Vec::new();
    if let Some(body) = &body {
        headers.push(("content-type".to_owned(), "application/octet-stream".to_owned()));
        // Stated, not chunked, as the vendor's SDKs sent parts; the host also checks
        // that exactly this many bytes were written.
        headers.push(("content-length".to_owned(), body.len().to_string()));
    }
    let request = HttpRequest { method: method.as_str(), url: signed.url, headers, body: body.unwrap_or_default() };
    let mut response = io.send(request).await.map_err(|e| Error::VodTransport(format!("{} failed: {e}", call.action())))?;
    let mut answer = Vec::new();
    while let Some(chunk) = response.body.chunk().await {
        let chunk = chunk.map_err(|e| Error::VodTransport(format!("{} answer unreadable: {e}", call.action())))?;
        if answer.len() + chunk.len() > 1 << 20 {
            return Err(Error::VodTransport(format!("{} answer is larger than 1 MiB", call.action())));
        }
        answer.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&response.status) {
        return Err(Error::VodTransport(format!("{} answered HTTP {}", call.action(), response.status)));
    }
    parse(&answer).map_err(Error::from)
}
