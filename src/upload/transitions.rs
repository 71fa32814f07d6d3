//! Every transition of an upload, and every decision about what the service answered:
//! plain functions of the upload's data. The engine calls them after its I/O and never
//! sets a phase itself.

use super::{Cancelled, Done, Failed, Finishing, HashState, Hashing, Md5s, Outcome, Phase, Upload, UploadError, Uploading, Waiting};
use crate::hasher::{Hasher, PartMd5, SavedHasher};
use crate::parts::{DoneParts, Layout};
use crate::protocol::{vod_codes, ApiError, Finished, InitAnswer};

/// FinishUpload or UploadPart refusals that send the upload back to ask the service
/// what it holds, before the refusal counts as final.
pub const MAX_REPAIRS: u32 = 3;

/// How retryable failures are spaced and when they become final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait, in seconds; doubled after each invocation that fails again.
    pub base_secs: u64,
    /// The longest wait.
    pub cap_secs: u64,
    /// How long an upload may go without progress before it fails with its last error.
    pub give_up_secs: u64,
}

/// What a refused part means ([`Uploading::part_refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartVerdict {
    /// The session does not take the part (gone, or the file already finished): ask
    /// the service (InitUpload) before believing the refusal.
    Recheck,
    /// The service says the body differs from the MD5 hashed from the source: the bytes
    /// read now are not the ones hashed, so the source changed.
    SourceChanged,
    /// A refusal like any other.
    Fail,
}

impl Hashing {
    /// Hashing from byte 0 of a file of `size` bytes, in parts of `part_size`.
    pub fn start(size: u64, part_size: u64) -> Hashing {
        let layout = Layout::new(size, part_size).expect("sizes are positive");
        Hashing { hasher: HashState::from(Hasher::new(layout).checkpoint().1), md5s: Md5s::new(part_size) }
    }

    /// The hasher's progress, once the MD5s it completed are stored.
    pub fn saved(&mut self, state: SavedHasher) {
        self.hasher = HashState::from(state);
    }
}

impl Uploading {
    /// Whether the stored MD5s are the MD5s of this session's parts.
    pub fn md5s_fit(&self, size: u64) -> bool {
        self.md5s.fit(size, self.part_size)
    }

    /// The session's layout.
    pub fn layout(&self, size: u64) -> Layout {
        Layout::new(size, self.part_size).expect("sizes are positive")
    }

    /// The parts of InitUpload's code 1 answer whose MD5 (ours) is needed to judge them:
    /// only when our MD5s were computed for the session's parts.
    pub fn md5s_to_check(&self, answer: &InitAnswer, size: u64) -> Vec<u64> {
        let InitAnswer::Resume { data_size, parts } = answer else { return Vec::new() };
        if *data_size != self.md5s.part_size || self.md5s.count() != self.md5s.layout(size).count() {
            return Vec::new();
        }
        let layout = self.md5s.layout(size);
        parts.iter().filter_map(|listed| layout.index_at(listed.offset)).collect()
    }

    /// Applies InitUpload's answer. `our_md5` gives the stored MD5 of a part (see
    /// [`Uploading::md5s_to_check`]): a listed part counts as uploaded only when the
    /// service's MD5 is ours, so a part the service holds wrongly is sent again. Code 2
    /// (the service holds the file) is handed back: the engine stores the outcome before
    /// the upload says done.
    /// `now` (unix seconds) says which answer the done parts count from.
    pub fn opened(
        &mut self,
        answer: InitAnswer,
        asked: u64,
        size: u64,
        now: u64,
        our_md5: impl Fn(u64) -> Option<PartMd5>,
    ) -> Option<Finished> {
        self.opened = now;
        match answer {
            InitAnswer::Exists(done) => return Some(done),
            InitAnswer::New => {
                self.session = true;
                self.part_size = asked;
                self.done = DoneParts::default();
            }
            InitAnswer::Resume { data_size, parts } => {
                self.session = true;
                self.part_size = data_size;
                self.done = DoneParts::default();
                let layout = self.layout(size);
                let fit = self.md5s_fit(size);
                let mut held = Vec::new();
                for listed in parts {
                    let Some(index) = layout.index_at(listed.offset) else { continue };
                    let ours = if fit { our_md5(index).map(|m| crate::hex::encode(&m)) } else { None };
                    if listed.size == layout.len(index) && ours.is_some() && ours == listed.md5 {
                        held.push((index, index + 1));
                    }
                }
                // In order, whatever order the service lists them in (see `from_runs`).
                self.done = DoneParts::from_runs(0, held);
            }
        }
        None
    }

    /// The next part to send, if any.
    pub fn next_part(&self, size: u64) -> Option<u64> {
        self.done.first_missing(self.layout(size).count())
    }

    /// The service took part `index`.
    pub fn part_sent(&mut self, index: u64) {
        self.done.mark(index);
        self.repairs = 0;
    }

    /// What a refusal of a part means. `fit`: whether the part's MD5 was the one hashed.
    pub fn part_refused(&self, api: &ApiError, fit: bool) -> PartVerdict {
        match api.code {
            // No session, or the file already finished (another invocation, or an upload
            // of the same bytes under another name, got there first): InitUpload tells.
            vod_codes::PARAMS if !api.retryable && self.repairs < MAX_REPAIRS => PartVerdict::Recheck,
            vod_codes::INVALID_BODY if !api.retryable && fit => PartVerdict::SourceChanged,
            _ => PartVerdict::Fail,
        }
    }

    /// A pass ended on [`PartVerdict::Recheck`]: the service is asked again.
    pub fn recheck(&mut self) {
        self.repairs += 1;
        self.session = false;
    }
}

impl Upload {
    /// Pending -> hashing, from byte 0.
    pub fn start_hashing(&mut self) {
        if let Phase::Pending = self.phase {
            self.phase = Phase::Hashing(Hashing::start(self.identity.size, self.spec.data_size));
        }
    }

    /// Hashing -> uploading, once the SHA-1 is known (and the last MD5s stored).
    pub fn hashed(&mut self, file_sha: String) {
        if let Phase::Hashing(h) = &self.phase {
            let md5s = h.md5s.clone();
            let part_size = md5s.part_size;
            self.phase = Phase::Uploading(Uploading {
                file_sha,
                md5s,
                part_size,
                done: DoneParts::default(),
                session: false,
                repairs: 0,
                opened: 0,
            });
        }
    }

    /// Uploading -> finishing when every part is sent; whether it was.
    pub fn all_sent(&mut self) -> bool {
        let size = self.identity.size;
        self.phase = match std::mem::replace(&mut self.phase, Phase::Pending) {
            Phase::Uploading(u) if u.next_part(size).is_none() => {
                Phase::Finishing(Finishing { file_sha: u.file_sha, md5s: u.md5s, part_size: u.part_size, repairs: u.repairs })
            }
            other => {
                self.phase = other;
                return false;
            }
        };
        true
    }

    /// FinishUpload refused: when the service lacks parts or holds wrong ones, back to
    /// uploading to ask it what it has (InitUpload lists parts with their MD5s) and send
    /// what is missing, a bounded number of times. Whether it went back.
    pub fn finish_refused(&mut self, api: &ApiError) -> bool {
        let count = self.layout().count();
        self.phase = match std::mem::replace(&mut self.phase, Phase::Pending) {
            Phase::Finishing(f) if !api.retryable && api.code == vod_codes::PARAMS && f.repairs < MAX_REPAIRS => {
                let done = DoneParts::all(count);
                Phase::Uploading(Uploading {
                    file_sha: f.file_sha,
                    md5s: f.md5s,
                    part_size: f.part_size,
                    done,
                    session: false,
                    repairs: f.repairs + 1,
                    opened: 0,
                })
            }
            other => {
                self.phase = other;
                return false;
            }
        };
        true
    }

    /// Takes in what another invocation recorded of the same upload, read just before
    /// this one writes its own record (several invocations send one upload's parts at
    /// once, and the store has no compare-and-swap): the parts it saw the service take
    /// count here too, when both count from the same InitUpload answer; when its answer
    /// is later, its view replaces this one (the service may have lost parts since).
    /// Anything else in its record is this invocation's to overwrite.
    pub fn merge_stored(&mut self, stored: &Upload) {
        let count = self.layout().count();
        let Phase::Uploading(u) = &mut self.phase else { return };
        match &stored.phase {
            Phase::Uploading(s) if s.file_sha == u.file_sha && s.part_size == u.part_size && s.done.fits(count) => {
                if s.opened == u.opened {
                    u.done.merge(&s.done);
                } else if s.opened > u.opened {
                    u.done = s.done.clone();
                    u.opened = s.opened;
                    u.session = s.session;
                }
            }
            // Another invocation sent the rest and went on to finish.
            Phase::Finishing(f) if f.file_sha == u.file_sha && f.part_size == u.part_size && u.session => {
                u.done = DoneParts::all(count);
            }
            _ => {}
        }
    }

    /// Whether a stored record already holds every part this one saw the service take,
    /// as far as it counts them alike (another InitUpload answer or phase has nothing
    /// of this one's to keep).
    pub fn holds_parts_of(&self, mine: &Upload) -> bool {
        match (&self.phase, &mine.phase) {
            (Phase::Uploading(s), Phase::Uploading(u))
                if s.file_sha == u.file_sha && s.part_size == u.part_size && s.opened == u.opened =>
            {
                s.done.covers(&u.done)
            }
            _ => true,
        }
    }

    /// -> done: the service holds the file. Its MD5s are no longer needed.
    pub fn finished(&mut self, done: Finished, at: u64) {
        self.phase = Phase::Done(Done {
            file_id: done.file_id,
            url: done.url,
            file_sha: self.file_sha().map(str::to_owned),
            part_size: self.part_size(),
            ended_at: at,
        });
        self.waiting = None;
    }

    /// Lays a stored outcome over an upload whose record may have stepped back under a
    /// race: the outcome is the truth. Done stays done (a cancel that raced the finish
    /// does not unmake the file the service holds).
    pub fn lay_outcome(&mut self, outcome: &Outcome) {
        match (outcome, &mut self.phase) {
            (_, Phase::Done(_)) => {}
            (Outcome::Done { file_id, url, at }, _) => self.finished(Finished { file_id: file_id.clone(), url: url.clone() }, *at),
            (Outcome::Cancelled { at }, Phase::Cancelled(c)) => c.ended_at = *at,
            (Outcome::Cancelled { at }, _) => {
                let error = self.error().cloned();
                let was = match std::mem::replace(&mut self.phase, Phase::Pending) {
                    Phase::Failed(f) => f.was,
                    other => Box::new(other),
                };
                self.phase = Phase::Cancelled(Cancelled { ended_at: *at, error, was });
                self.waiting = None;
            }
        }
    }

    /// Records an error an invocation ended on. A retryable one leaves the upload
    /// resumable after an exponential `retryAfter` (counted from the last invocation
    /// that made progress), until the give-up time has passed without progress;
    /// anything else fails it, in the phase it was in. `voids_checkpoint`: the upload's
    /// own data is the problem, so a retry starts it over.
    pub fn fail_or_wait(&mut self, mut error: UploadError, voids_checkpoint: bool, now: u64, progressed: bool, backoff: Backoff) {
        if self.state().is_final() {
            return;
        }
        if progressed {
            self.retries = 0;
            self.failing_since = None;
        }
        let since = *self.failing_since.get_or_insert(now);
        if error.retryable && now.saturating_sub(since) < backoff.give_up_secs {
            let wait = backoff.base_secs.saturating_mul(1u64 << self.retries.min(32)).min(backoff.cap_secs);
            self.retries = self.retries.saturating_add(1);
            self.waiting = Some(Waiting { error, retry_after: now.saturating_add(wait) });
            return;
        }
        if error.retryable {
            error.retryable = false;
            error.message = format!("gave up after {} s without progress: {}", now.saturating_sub(since), error.message);
        }
        let was = Box::new(std::mem::replace(&mut self.phase, Phase::Pending));
        self.phase = Phase::Failed(Failed { error, ended_at: now, was, from_start: voids_checkpoint });
        self.waiting = None;
    }

    /// A platform quota stopped the invocation: the upload waits for the quota's window
    /// to end. Not a failure (no backoff, no give-up time): the upload did nothing wrong.
    pub fn wait_for_quota(&mut self, quota: &str, limit: u64, retry_at: u64, progressed: bool) {
        if self.state().is_final() {
            return;
        }
        if progressed {
            self.retries = 0;
            self.failing_since = None;
        }
        let error = UploadError {
            code: crate::error::codes::QUOTA.to_owned(),
            message: format!("the platform quota {quota} = {limit} is used up; work goes on when its window ends"),
            retryable: true,
            vod_code: None,
        };
        self.waiting = Some(Waiting { error, retry_after: retry_at });
    }

    /// An invocation ended without error: nothing is pending.
    pub fn invocation_ok(&mut self) {
        self.waiting = None;
        self.retries = 0;
        self.failing_since = None;
    }

    /// Restarts a failed upload from its last good checkpoint: the phase it failed in
    /// (from the start when its data was the problem), with the service's session asked
    /// again for the parts it holds. Nothing for an upload that did not fail.
    pub fn retry(&mut self) {
        let count = self.layout().count();
        let Phase::Failed(failed) = &mut self.phase else { return };
        let was = std::mem::replace(&mut *failed.was, Phase::Pending);
        self.phase = match was {
            _ if failed.from_start => Phase::Pending,
            Phase::Hashing(h) => Phase::Hashing(h),
            Phase::Uploading(u) => Phase::Uploading(Uploading { session: false, repairs: 0, ..u }),
            Phase::Finishing(f) => Phase::Uploading(Uploading {
                file_sha: f.file_sha,
                md5s: f.md5s,
                part_size: f.part_size,
                done: DoneParts::all(count),
                session: false,
                repairs: 0,
                opened: 0,
            }),
            _ => Phase::Pending,
        };
        self.invocation_ok();
    }
}

#[cfg(test)]
mod tests;
