//! The upload job as a state machine over its [`Record`]:
//! `pending -> hashing -> uploading -> finishing -> done`, or `failed` / `cancelled`.
//! Plain functions that apply what happened (an answer, a hashed file, an error) to
//! the record; the engine decides when, and does the I/O.

use crate::checkpoint::{HashState, Outcome, Record, Spec, State, Stats, FORMAT};
use crate::error::Error;
use crate::hasher::{Hasher, PartMd5};
use crate::parts::Layout;
use crate::protocol::{Finished, InitAnswer};
use crate::source::{Identity, Source};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

/// The id of an upload: the same request for the same unchanged source gets the same
/// id, so creating it twice finds the first.
pub fn upload_id(spec: &Spec, identity: &Identity) -> String {
    let canonical = serde_json::to_vec(&(spec, identity)).expect("specs serialize");
    crate::hex::encode(&Sha1::digest(&canonical)[..10])
}

/// A new record, not yet worked on.
pub fn new_record(spec: Spec, identity: Identity, now: u64) -> Record {
    let part_size = spec.data_size;
    Record {
        format: FORMAT,
        id: upload_id(&spec, &identity),
        spec,
        identity,
        state: State::Pending,
        hashing: None,
        md5_part_size: part_size,
        md5_chunks: 0,
        md5_tail: Vec::new(),
        file_sha: None,
        part_size,
        session: false,
        done_below: 0,
        done_above: Vec::new(),
        file_id: None,
        url: None,
        error: None,
        retry_after: None,
        invocations: 0,
        created_at: now,
        updated_at: now,
        repairs: 0,
        read_rate: 0,
        stats: Stats::default(),
        attempted_at: 0,
        retries: 0,
        failing_since: None,
        failed_in: None,
        ended_at: None,
    }
}

/// The layout the MD5s are computed for.
pub fn md5_layout(rec: &Record) -> Layout {
    // Sizes are positive: checked when a record is read, when the source is probed and
    // when the service's part size is parsed.
    Layout::new(rec.identity.size, rec.md5_part_size).expect("sizes are positive")
}

/// The session's layout.
pub fn layout(rec: &Record) -> Layout {
    Layout::new(rec.identity.size, rec.part_size).expect("sizes are positive")
}

/// Pending → hashing, from byte 0.
pub fn start_hashing(rec: &mut Record) {
    rec.state = State::Hashing;
    rec.hashing = Some(HashState::from(Hasher::new(md5_layout(rec)).checkpoint().1));
}

/// Hashing → uploading, once the SHA-1 is known.
pub fn hashed(rec: &mut Record, file_sha: String) {
    rec.file_sha = Some(file_sha);
    rec.hashing = None;
    rec.state = State::Uploading;
}

/// Whether the stored MD5s fit the session's parts.
pub fn md5s_fit(rec: &Record) -> bool {
    rec.md5_part_size == rec.part_size && rec.md5_count() == md5_layout(rec).count()
}

/// Applies InitUpload's answer. `our_md5` gives the stored MD5 of a part (when the
/// MD5s fit the session's parts): a listed part counts as uploaded only when the
/// service's MD5 is ours, so a part the service holds wrongly is sent again.
/// Code 2 (the service holds the file) is handed back: ending an upload is the
/// engine's, since the outcome must be stored before the record says so.
pub fn apply_init(rec: &mut Record, answer: InitAnswer, our_md5: impl Fn(u64) -> Option<PartMd5>) -> Option<Finished> {
    match answer {
        InitAnswer::Exists(done) => return Some(done),
        InitAnswer::New => {
            rec.session = true;
            rec.part_size = rec.spec.data_size;
            rec.done_below = 0;
            rec.done_above.clear();
        }
        InitAnswer::Resume { data_size, parts } => {
            rec.session = true;
            rec.part_size = data_size;
            rec.done_below = 0;
            rec.done_above.clear();
            let layout = layout(rec);
            let fit = md5s_fit(rec);
            for listed in parts {
                let Some(index) = layout.index_at(listed.offset) else { continue };
                let ours = if fit { our_md5(index).map(|m| crate::hex::encode(&m)) } else { None };
                if listed.size == layout.len(index) && ours.is_some() && ours == listed.md5 {
                    rec.mark_part_done(index);
                }
            }
        }
    }
    None
}

/// The next part to upload, if any.
pub fn next_part(rec: &Record) -> Option<u64> {
    let count = layout(rec).count();
    (rec.done_below..count).find(|&i| !rec.is_part_done(i))
}

/// → done. The MD5s are no longer needed (their chunk keys are removed).
pub fn apply_finished(rec: &mut Record, done: Finished, now: u64) {
    rec.state = State::Done;
    rec.file_id = Some(done.file_id);
    rec.url = Some(done.url);
    rec.hashing = None;
    rec.error = None;
    rec.retry_after = None;
    rec.failed_in = None;
    rec.clear_md5s();
    rec.ended_at = Some(now);
}

/// Lays a stored outcome over a record that may have stepped back under a race: the
/// outcome is the truth. A record that says done stays done (a cancel that raced the
/// finish does not unmake the file the service holds).
pub fn apply_outcome(rec: &mut Record, outcome: &Outcome) {
    match outcome {
        Outcome::Done { file_id, url, at } => {
            if rec.state != State::Done {
                apply_finished(rec, Finished { file_id: file_id.clone(), url: url.clone() }, *at);
            }
        }
        Outcome::Cancelled { at } => {
            if rec.state != State::Done {
                rec.state = State::Cancelled;
                rec.retry_after = None;
                rec.ended_at = Some(*at);
            }
        }
    }
}

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

/// Records an error. A retryable one leaves the upload resumable after an exponential
/// `retryAfter` (counted from the last invocation that made progress), until the
/// give-up time has passed without progress; anything else fails it.
pub fn apply_error(rec: &mut Record, error: &Error, now: u64, progressed: bool, backoff: Backoff) {
    if progressed {
        rec.retries = 0;
        rec.failing_since = None;
    }
    let since = *rec.failing_since.get_or_insert(now);
    rec.error = Some(error.to_job_error());
    if error.retryable() && now.saturating_sub(since) < backoff.give_up_secs {
        let wait = backoff.base_secs.saturating_mul(1u64 << rec.retries.min(32)).min(backoff.cap_secs);
        rec.retries = rec.retries.saturating_add(1);
        rec.retry_after = Some(now.saturating_add(wait));
    } else {
        if error.retryable() {
            if let Some(e) = &mut rec.error {
                e.retryable = false;
                e.message = format!("gave up after {} s without progress: {}", now.saturating_sub(since), e.message);
            }
        }
        rec.failed_in = Some(rec.state);
        rec.state = State::Failed;
        rec.retry_after = None;
        rec.ended_at = Some(now);
    }
}

/// An invocation ended without error: no error is pending.
pub fn clear_error(rec: &mut Record) {
    rec.error = None;
    rec.retry_after = None;
    rec.retries = 0;
    rec.failing_since = None;
}

/// Restarts a failed upload from its last good checkpoint: the state it failed in
/// (from the start when the checkpoint itself was the problem), with the service's
/// session asked again for the parts it holds.
pub fn retry(rec: &mut Record) {
    if rec.state != State::Failed {
        return;
    }
    let checkpoint_bad = rec.error.as_ref().is_some_and(|e| e.code == crate::error::codes::CHECKPOINT);
    rec.state = match rec.failed_in.take() {
        Some(state) if !checkpoint_bad && !state.is_final() => state,
        _ => State::Pending,
    };
    if rec.state == State::Pending {
        rec.hashing = None;
        rec.file_sha = None;
        rec.clear_md5s();
        rec.md5_part_size = rec.spec.data_size;
        rec.part_size = rec.spec.data_size;
        rec.done_below = 0;
        rec.done_above.clear();
    }
    if rec.state == State::Finishing {
        rec.state = State::Uploading;
    }
    rec.session = false;
    rec.repairs = 0;
    rec.ended_at = None;
    clear_error(rec);
}

/// A source location fit to show: a URL's query (which for a presigned URL is a
/// credential) is never shown.
pub fn display_source(source: &Source) -> String {
    match source {
        Source::Url(url) => match url.split_once('?') {
            Some((base, _)) => format!("{base}?<redacted>"),
            None => url.clone(),
        },
        Source::Path(p) => p.clone(),
    }
}

/// Bytes in uploaded parts.
pub fn uploaded_bytes(rec: &Record) -> u64 {
    if rec.state == State::Done {
        return rec.identity.size;
    }
    let l = layout(rec);
    let below = if rec.done_below == 0 { 0 } else { l.range(rec.done_below - 1).end };
    below + rec.done_above.iter().map(|&i| l.len(i)).sum::<u64>()
}

/// The upload's status, as the API shows it.
pub fn status(rec: &Record) -> Value {
    let l = layout(rec);
    let hashed = match (&rec.hashing, rec.state) {
        (_, State::Pending) => 0,
        (Some(h), _) => h.offset,
        (None, _) if rec.file_sha.is_some() => rec.identity.size,
        _ => 0,
    };
    let mut v = json!({
        "id": rec.id,
        "state": rec.state,
        "source": display_source(&rec.spec.source),
        "fileName": rec.spec.file_name,
        "fileType": rec.spec.file_type,
        "size": rec.identity.size,
        "dataSize": rec.part_size,
        "hashedBytes": hashed,
        "uploadedBytes": uploaded_bytes(rec),
        "partsTotal": l.count(),
        "partsDone": if rec.state == State::Done { l.count() } else { rec.parts_done() },
        "invocations": rec.invocations,
        "createdAt": rec.created_at,
        "updatedAt": rec.updated_at,
        "stats": rec.stats,
    });
    let map = v.as_object_mut().expect("object");
    if !rec.spec.tags.is_empty() {
        map.insert("tags".into(), json!(rec.spec.tags));
    }
    for (key, value) in [("fileSha", &rec.file_sha), ("fileId", &rec.file_id), ("url", &rec.url)] {
        if let Some(value) = value {
            map.insert(key.into(), json!(value));
        }
    }
    if let Some(error) = &rec.error {
        map.insert("error".into(), json!(error));
    }
    if let Some(at) = rec.retry_after {
        map.insert("retryAfter".into(), json!(at));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ListedPart;

    fn rec(size: u64) -> Record {
        let spec = Spec::for_source(Source::Url("https://b.example/v.mp4?X-Amz-Signature=secret".into()), 4);
        new_record(spec, Identity { size, etag: None, last_modified: None }, 100)
    }

    fn md5(i: u64) -> PartMd5 {
        [i as u8; 16]
    }

    proptest::proptest! {
        /// Any code 1 answer (the service's part size within the protocol's bound, any
        /// listed parts) leaves a record every later step can use.
        #[test]
        fn any_resume_answer_is_safe(
            size in 1u64..100_000,
            data_size in 1u64..=crate::protocol::MAX_PART_SIZE,
            listed in proptest::collection::vec((proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), proptest::option::of("[0-9a-f]{32}")), 0..20),
        ) {
            let mut r = rec(size);
            r.push_md5s(&vec![md5(1); (size.div_ceil(4)) as usize]);
            // Offsets mostly inside the file, some anywhere.
            let parts = listed.into_iter().map(|(offset, len, md5)| ListedPart { offset: if offset % 4 == 0 { offset } else { offset % (2 * size) }, size: len % (2 * data_size), md5 }).collect();
            let done = apply_init(&mut r, InitAnswer::Resume { data_size, parts }, |i| Some(md5(i)));
            proptest::prop_assert!(done.is_none());
            proptest::prop_assert!(r.parts_done() <= layout(&r).count());
            let _ = (next_part(&r), uploaded_bytes(&r), status(&r));
            proptest::prop_assert!(Record::decode(&r.encode()).is_ok());
        }
    }

    #[test]
    fn same_spec_same_source_same_id() {
        let (a, b) = (rec(10), rec(10));
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 20);
        assert_ne!(rec(11).id, a.id);
    }

    #[test]
    fn resume_marks_only_listed_parts_with_our_md5() {
        let mut r = rec(10); // parts 0..4, 4..8, 8..10
        r.push_md5s(&[md5(0), md5(1), md5(2)]);
        let listed = |offset, size, m: u64| ListedPart { offset, size, md5: Some(crate::hex::encode(&md5(m))) };
        apply_init(
            &mut r,
            InitAnswer::Resume { data_size: 4, parts: vec![listed(0, 4, 0), listed(4, 4, 9), listed(8, 2, 2), listed(3, 4, 0)] },
            |i| Some(md5(i)),
        );
        assert!(r.is_part_done(0) && !r.is_part_done(1) && r.is_part_done(2));
        assert_eq!(next_part(&r), Some(1));
        assert_eq!(uploaded_bytes(&r), 6);
        // A session with another part size: nothing can be trusted without reading.
        let mut r2 = rec(10);
        r2.push_md5s(&[md5(0), md5(1), md5(2)]);
        apply_init(&mut r2, InitAnswer::Resume { data_size: 8, parts: vec![listed(0, 8, 0)] }, |i| Some(md5(i)));
        assert_eq!((r2.part_size, r2.parts_done(), md5s_fit(&r2)), (8, 0, false));
    }

    #[test]
    fn errors_fail_or_wait_and_status_hides_the_presigned_query() {
        let mut r = rec(10);
        let backoff = Backoff { base_secs: 5, cap_secs: 60, give_up_secs: 3600 };
        apply_error(&mut r, &Error::VodTransport("down".into()), 1000, false, backoff);
        assert_eq!((r.state, r.retry_after), (State::Pending, Some(1005)));
        let s = status(&r);
        assert_eq!(s["error"]["code"], "vod_unavailable");
        assert_eq!(s["source"], "https://b.example/v.mp4?<redacted>");
        assert!(!s.to_string().contains("secret"));
        apply_error(
            &mut r,
            &Error::Vod(crate::protocol::ApiError { code: -10003, message: "fileName".into(), retryable: false }),
            1000,
            false,
            backoff,
        );
        assert_eq!(r.state, State::Failed);
        assert_eq!(status(&r)["error"]["vodCode"], -10003);
    }

    #[test]
    fn transient_errors_back_off_exponentially_then_give_up() {
        let backoff = Backoff { base_secs: 5, cap_secs: 60, give_up_secs: 1000 };
        let mut r = rec(10);
        let e = Error::VodTransport("down".into());
        let mut waits = Vec::new();
        for now in [100, 200, 300, 400, 500] {
            apply_error(&mut r, &e, now, false, backoff);
            waits.push(r.retry_after.unwrap() - now);
        }
        assert_eq!(waits, [5, 10, 20, 40, 60], "doubling, capped");
        // Progress resets the streak.
        apply_error(&mut r, &e, 600, true, backoff);
        assert_eq!((r.retry_after, r.failing_since), (Some(605), Some(600)));
        apply_error(&mut r, &e, 1599, false, backoff);
        assert_eq!(r.state, State::Pending);
        apply_error(&mut r, &e, 1600, false, backoff);
        assert_eq!(r.state, State::Failed);
        let error = r.error.clone().unwrap();
        assert!(!error.retryable && error.message.starts_with("gave up after 1000 s"), "{error:?}");
        assert_eq!((r.failed_in, r.ended_at), (Some(State::Pending), Some(1600)));
        // A retry resumes where it failed, with a clean slate.
        retry(&mut r);
        assert_eq!((r.state, r.error.clone(), r.retries, r.failing_since, r.ended_at), (State::Pending, None, 0, None, None));
    }

    #[test]
    fn a_retry_resumes_where_the_upload_failed() {
        let backoff = Backoff { base_secs: 5, cap_secs: 60, give_up_secs: 1000 };
        let mut r = rec(10);
        r.push_md5s(&[md5(0), md5(1), md5(2)]);
        hashed(&mut r, "f".repeat(40));
        r.session = true;
        r.mark_part_done(0);
        apply_error(&mut r, &Error::Source(crate::source::SourceError::Denied("403".into())), 100, false, backoff);
        assert_eq!(r.state, State::Failed);
        retry(&mut r);
        assert_eq!((r.state, r.session, r.parts_done(), r.md5_count()), (State::Uploading, false, 1, 3));
        // A failure of the checkpoint itself starts over.
        apply_error(&mut r, &Error::Checkpoint("bad".into()), 100, false, backoff);
        retry(&mut r);
        assert_eq!((r.state, r.parts_done(), r.md5_count(), r.file_sha.clone()), (State::Pending, 0, 0, None));
    }

    #[test]
    fn an_outcome_overrides_a_record_that_stepped_back() {
        let mut r = rec(10);
        r.push_md5s(&[md5(0)]);
        let done = Outcome::Done { file_id: "7".into(), url: "u".into(), at: 5 };
        apply_outcome(&mut r, &Outcome::Cancelled { at: 4 });
        assert_eq!(r.state, State::Cancelled);
        apply_outcome(&mut r, &done);
        assert_eq!((r.state, r.file_id.as_deref(), r.md5_count(), r.ended_at), (State::Done, Some("7"), 0, Some(5)));
        apply_outcome(&mut r, &Outcome::Cancelled { at: 6 });
        assert_eq!(r.state, State::Done, "done stays done");
    }
}
