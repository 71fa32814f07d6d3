//! The upload pass: open (or re-open) the service's session, send every part not yet
//! held, several at once while the source is read on, then ask the service to
//! assemble the file. Which parts count, and what a refusal means, is decided by the
//! upload ([`crate::upload`]); this sequences the reads, sends and saves.

use super::io::Io;
use super::read::read_chunk;
use super::records::remove_keys;
use super::records::storage;
use super::run::Run;
use super::vod::{send_part, PartResult};
use crate::checkpoint;
use crate::error::Error;
use crate::lease::{self, Ranges};
use crate::parts::PartCutter;
use crate::protocol::{self, Call, FinishUpload, Finished, InitUpload};
use crate::source::SourceError;
use crate::upload::{Outcome, PartVerdict, Phase, Upload};
use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::pin::pin;
use std::rc::Rc;

/// How one stretch of the upload pass ends.
#[derive(Default)]
struct Pass {
    /// No more parts are started.
    stop: bool,
    /// The first real failure (running out of time counts only if nothing else failed).
    failure: Option<Error>,
    /// A part was refused in a way that needs the session asked again.
    recheck: bool,
    /// The range's lease was read again since the pass began.
    confirmed: bool,
}

impl Pass {
    fn fail(&mut self, e: Error) {
        self.stop = true;
        if self.failure.as_ref().is_none_or(|f| matches!(f, Error::OutOfTime)) {
            self.failure = Some(e);
        }
    }
}

impl<I: Io> Run<'_, I> {
    /// The service holds the file: its outcome is stored first (the write-once fact
    /// every later load and record write defers to), then the MD5 chunks are released,
    /// then the record says done.
    pub(crate) async fn finalize(&mut self, up: &mut Upload, done: Finished) -> Result<(), Error> {
        let at = self.io.unix_now();
        let outcome = Outcome::Done { file_id: done.file_id.clone(), url: done.url.clone(), at };
        self.io.kv_set(&checkpoint::end_key(&up.id), &outcome.encode()).await.map_err(storage)?;
        remove_keys(self.io, &checkpoint::md5_chunk_keys(up)).await?;
        up.finished(done, at);
        self.progressed = true;
        up.updated_at = at;
        up.stats.kv_writes += 2;
        self.io.kv_set(&checkpoint::record_key(&up.id), &up.encode()).await.map_err(storage)?;
        self.last_save = self.io.now();
        self.saved = Some(up.clone());
        Ok(())
    }

    /// Asks the service for the session (InitUpload) and applies its answer.
    async fn init(&mut self, up: &mut Upload) -> Result<(), Error> {
        let Some(u) = up.uploading() else { return Ok(()) };
        let (spec, size) = (&up.spec, up.identity.size);
        let call = Call::InitUpload(InitUpload {
            file_name: spec.file_name.clone(),
            file_sha: u.file_sha.clone(),
            file_size: size,
            data_size: spec.data_size,
            file_type: spec.file_type.clone(),
            tags: spec.tags.clone(),
            class_id: spec.class_id,
            is_transcode: spec.is_transcode,
            is_screenshot: spec.is_screenshot,
            is_watermark: spec.is_watermark,
        });
        let answer = self.call(up, call, protocol::parse_init).await?;
        if let protocol::InitAnswer::Resume { data_size, .. } = &answer {
            // The service picks the part size of a session it resumes: one that cuts the
            // file into too many parts is not an answer this upload can follow.
            // The service would answer the same again: the upload fails, saying why.
            crate::parts::check_part_count(size, *data_size).map_err(|e| {
                SourceError::Invalid(format!("the source is too large to upload in the service's parts of {data_size} bytes: {e}"))
            })?;
        }
        // Our MD5s of the listed parts, when they were computed for the session's parts.
        let mut ours = HashMap::new();
        if let Some(u) = up.uploading() {
            for index in u.md5s_to_check(&answer, size) {
                if let Some(md5) = self.stored_md5(&up.id, &u.md5s, index).await? {
                    ours.insert(index, md5);
                }
            }
        }
        let (asked, now) = (up.spec.data_size, self.io.unix_now());
        if let Some(done) = up.uploading_mut().and_then(|u| u.opened(answer, asked, size, now, |i| ours.get(&i).copied())) {
            return self.finalize(up, done).await;
        }
        self.progressed = true;
        self.save(up).await
    }

    /// Sends parts until every one is held, the time is up or something fails.
    pub(crate) async fn upload(&mut self, up: &mut Upload) -> Result<(), Error> {
        let size = up.identity.size;
        loop {
            if self.out_of_time() {
                return Ok(());
            }
            if !up.uploading().is_some_and(|u| u.session) {
                self.init(up).await?;
            }
            let Some(u) = up.uploading() else { return Ok(()) };
            let (file_sha, layout, fit) = (u.file_sha.clone(), u.layout(size), u.md5s_fit(size));
            if u.next_part(size).is_none() {
                up.all_sent();
                return self.save(up).await;
            }
            // The parts of one leased range at a time: invocations on other instances
            // send other ranges of the same file.
            let ranges = Ranges::new(layout, self.s.range_bytes);
            let Some((range, first)) = self.leased_range(up, &ranges).await? else {
                // Every range with parts left is another invocation's.
                return Ok(());
            };
            let Some(u) = up.uploading() else { return Ok(()) };
            // A run of parts not yet uploaded, as much as the budget can read.
            let budget_bytes = if self.memory.is_some() { u64::MAX } else { self.read_len(up) };
            let end = ranges.parts(range).end;
            let mut last = first + 1;
            while last < end && !u.done.contains(last) && layout.range(last).end - layout.offset(first) <= budget_bytes {
                last += 1;
            }
            let (start, end) = (layout.offset(first), layout.range(last - 1).end);
            let mut reader = self.open(up, start, end).await?;
            let began = self.io.now();
            let mut inflight = FuturesUnordered::new();
            let mut cutter = PartCutter::new(layout, first, last);
            let mut read_bytes = 0u64;
            let mut pass = Pass::default();
            let mut read_all = false;
            let (io, limits) = (self.io, self.limits);
            loop {
                let ready = cutter.ready();
                if let Some(index) = ready.filter(|_| !pass.stop && inflight.len() < self.s.concurrency) {
                    let stored = match up.uploading().filter(|_| fit) {
                        Some(u) => self.stored_md5(&up.id, &u.md5s, index).await?,
                        None => None,
                    };
                    let (index, part) = cutter.take();
                    let md5 = match stored {
                        Some(m) => crate::hex::encode(&m),
                        None => crate::hex::encode(&<md5::Md5 as md5::Digest>::digest(&part)),
                    };
                    inflight.push(send_part(io, self.s, &file_sha, index, layout.offset(index), Rc::new(part), md5, limits));
                    continue;
                }
                if self.out_of_time() {
                    pass.stop = true;
                }
                // Read on to fill the next part, and once every part is in, once more to
                // see the body end there (a longer one is refused, never silently cut).
                if pass.stop || read_all || ready.is_some() {
                    // Nothing more to read: wait for the parts in flight.
                    match inflight.next().await {
                        Some(done) => self.part_finished(up, done, fit, &mut pass).await?,
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
                            self.part_finished(up, done, fit, &mut pass).await?;
                            continue;
                        }
                        Either::Left((None, _)) => continue,
                        Either::Right((chunk, _)) => chunk,
                    }
                };
                match chunk {
                    Ok(Some(chunk)) => {
                        read_bytes += chunk.len() as u64;
                        cutter.push(chunk);
                    }
                    Ok(None) => read_all = true,
                    Err(e) => pass.fail(e),
                }
            }
            if self.memory.is_none() {
                up.stats.source_bytes += read_bytes;
                self.learn_rate(up, read_bytes, self.io.now().saturating_sub(began));
            }
            if pass.recheck {
                if let Some(u) = up.uploading_mut() {
                    u.recheck();
                }
            }
            self.save_shared(up).await?;
            if let Some(e) = pass.failure {
                return Err(e);
            }
        }
    }

    /// The range this invocation sends from, and its first part not yet sent: the one
    /// it holds while that has parts left, else the next free one it can lease
    /// (starting where its seed points, so invocations start apart). `None` when every
    /// range with parts left is held by others.
    async fn leased_range(&mut self, up: &Upload, ranges: &Ranges) -> Result<Option<(u64, u64)>, Error> {
        let Some(u) = up.uploading() else { return Ok(None) };
        if let Some(k) = self.range {
            if let Some(first) = ranges.first_missing(&u.done, k) {
                return Ok(Some((k, first)));
            }
            self.range = None;
            self.let_go(&up.id, &lease::range_name(k)).await;
        }
        for k in ranges.missing_from(&u.done, self.seed) {
            if self.hold(&up.id, &lease::range_name(k)).await? {
                self.range = Some(k);
                self.shared |= ranges.count() > 1;
                return Ok(ranges.first_missing(&u.done, k).map(|first| (k, first)));
            }
        }
        Ok(None)
    }

    async fn part_finished(&mut self, up: &mut Upload, done: PartResult, fit: bool, pass: &mut Pass) -> Result<(), Error> {
        up.stats.vod_requests += done.attempts as u64;
        up.stats.vod_retries += done.attempts.saturating_sub(1) as u64;
        match done.result {
            Ok(()) => {
                self.progressed = true;
                if let Some(u) = up.uploading_mut() {
                    u.part_sent(done.index);
                }
                let due = self.save_due();
                if due {
                    self.save(up).await?;
                }
                // Once the first part is in (the writes of invocations that took the
                // range at the same time have landed by then) and at every checkpoint:
                // is the range still this invocation's? If not, its new owner sends it.
                if (due || !pass.confirmed) && !self.out_of_time() {
                    pass.confirmed = true;
                    if let Some(k) = self.range {
                        if !self.still_holds(&up.id, &lease::range_name(k)).await? {
                            self.range = None;
                            pass.stop = true;
                        }
                    }
                }
            }
            Err(Error::Vod(api)) => match up.uploading().map(|u| u.part_refused(&api, fit)) {
                Some(PartVerdict::Recheck) => {
                    pass.stop = true;
                    pass.recheck = true;
                }
                Some(PartVerdict::SourceChanged) => {
                    pass.fail(SourceError::Changed(format!("the source changed since it was hashed ({api})")).into())
                }
                _ => pass.fail(Error::Vod(api)),
            },
            Err(e) => pass.fail(e),
        }
        Ok(())
    }

    /// Asks the service to assemble the file (FinishUpload).
    pub(crate) async fn finish(&mut self, up: &mut Upload) -> Result<(), Error> {
        let Phase::Finishing(f) = &up.phase else { return Ok(()) };
        let file_sha = f.file_sha.clone();
        match self.call(up, Call::FinishUpload(FinishUpload { file_sha }), protocol::parse_finish).await {
            Ok(done) => self.finalize(up, done).await,
            Err(Error::Vod(api)) => {
                if up.finish_refused(&api) {
                    self.save(up).await
                } else {
                    Err(Error::Vod(api))
                }
            }
            Err(e) => Err(e),
        }
    }
}
