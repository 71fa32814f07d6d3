use super::*;
use crate::protocol::Finished;
use crate::protocol::ListedPart;
use crate::source::{Identity, Source};
use crate::upload::{status, Spec, State};

fn up(size: u64) -> Upload {
    let spec = Spec::for_source(Source::Url("https://b.example/v.mp4?X-Amz-Signature=secret".into()), 4);
    Upload::new(spec, Identity { size, etag: None, last_modified: None }, 100)
}

fn md5(i: u64) -> PartMd5 {
    [i as u8; 16]
}

/// An upload in uploading with the MD5s of `md5s` parts stored and no session.
fn uploading(size: u64, md5s: u64) -> Upload {
    let mut u = up(size);
    u.start_hashing();
    let h = u.hashing_mut().unwrap();
    let append = h.md5s.appended(&(0..md5s).map(md5).collect::<Vec<_>>());
    h.md5s.set(append);
    u.hashed("f".repeat(40));
    u
}

fn error(code: &str, retryable: bool) -> UploadError {
    UploadError { code: code.into(), message: "m".into(), retryable, vod_code: None }
}

const BACKOFF: Backoff = Backoff { base_secs: 5, cap_secs: 60, give_up_secs: 1000 };

proptest::proptest! {
    /// Any code 1 answer (the service's part size within the protocol's bound, any
    /// listed parts) leaves an upload every later step can use.
    #[test]
    fn any_resume_answer_is_safe(
        size in 1u64..100_000,
        data_size in 1u64..=crate::protocol::MAX_PART_SIZE,
        listed in proptest::collection::vec((proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), proptest::option::of("[0-9a-f]{32}")), 0..20),
    ) {
        let mut u = uploading(size, size.div_ceil(4));
        // Offsets mostly inside the file, some anywhere.
        let parts = listed.into_iter().map(|(offset, len, md5)| ListedPart { offset: if offset % 4 == 0 { offset } else { offset % (2 * size) }, size: len % (2 * data_size), md5 }).collect();
        let up_ = u.uploading_mut().unwrap();
        let done = up_.opened(InitAnswer::Resume { data_size, parts }, 4, size, 1, |i| Some(md5(i)));
        proptest::prop_assert!(done.is_none());
        proptest::prop_assert!(u.parts_done() <= u.layout().count());
        let _ = (u.uploading().unwrap().next_part(size), u.uploaded_bytes(), status(&u));
    }
}

#[test]
fn same_spec_same_source_same_id() {
    let (a, b) = (up(10), up(10));
    assert_eq!(a.id, b.id);
    assert_eq!(a.id.len(), 20);
    assert_ne!(up(11).id, a.id);
}

#[test]
fn resume_marks_only_listed_parts_with_our_md5() {
    let mut u = uploading(10, 3); // parts 0..4, 4..8, 8..10
    let listed = |offset, size, m: u64| ListedPart { offset, size, md5: Some(crate::hex::encode(&md5(m))) };
    let answer = InitAnswer::Resume { data_size: 4, parts: vec![listed(0, 4, 0), listed(4, 4, 9), listed(8, 2, 2), listed(3, 4, 0)] };
    assert_eq!(u.uploading().unwrap().md5s_to_check(&answer, 10), vec![0, 1, 2]);
    u.uploading_mut().unwrap().opened(answer, 4, 10, 1, |i| Some(md5(i)));
    let s = u.uploading().unwrap();
    assert!(s.done.contains(0) && !s.done.contains(1) && s.done.contains(2));
    assert_eq!(s.next_part(10), Some(1));
    assert_eq!(u.uploaded_bytes(), 6);
    // A session with another part size: nothing can be trusted without reading.
    let mut u2 = uploading(10, 3);
    let answer = InitAnswer::Resume { data_size: 8, parts: vec![listed(0, 8, 0)] };
    assert!(u2.uploading().unwrap().md5s_to_check(&answer, 10).is_empty());
    u2.uploading_mut().unwrap().opened(answer, 4, 10, 1, |i| Some(md5(i)));
    let s = u2.uploading().unwrap();
    assert_eq!((s.part_size, s.done.count(), s.md5s_fit(10)), (8, 0, false));
}

#[test]
fn parts_refused_recheck_a_bounded_number_of_times() {
    let mut u = uploading(10, 3);
    let params = ApiError { code: vod_codes::PARAMS, message: "no session".into(), retryable: false };
    let body = ApiError { code: vod_codes::INVALID_BODY, message: "MD5".into(), retryable: false };
    let s = u.uploading_mut().unwrap();
    for _ in 0..MAX_REPAIRS {
        assert_eq!(s.part_refused(&params, true), PartVerdict::Recheck);
        s.recheck();
    }
    assert_eq!(s.part_refused(&params, true), PartVerdict::Fail, "bounded");
    s.part_sent(0);
    assert_eq!(s.part_refused(&params, true), PartVerdict::Recheck, "a part taken resets the count");
    assert_eq!(s.part_refused(&body, true), PartVerdict::SourceChanged);
    assert_eq!(s.part_refused(&body, false), PartVerdict::Fail, "an MD5 we computed now proves nothing");
}

#[test]
fn finishing_refused_goes_back_to_uploading_with_every_part() {
    let mut u = uploading(10, 3);
    for i in 0..3 {
        u.uploading_mut().unwrap().part_sent(i);
    }
    assert!(u.all_sent());
    assert_eq!((u.state(), u.parts_done(), u.uploaded_bytes()), (State::Finishing, 3, 10));
    let params = ApiError { code: vod_codes::PARAMS, message: "parts missing".into(), retryable: false };
    assert!(u.finish_refused(&params));
    let s = u.uploading().unwrap();
    assert_eq!((s.session, s.repairs, s.done.count()), (false, 1, 3));
}

#[test]
fn errors_fail_or_wait_and_status_hides_the_presigned_query() {
    let mut u = up(10);
    let backoff = Backoff { base_secs: 5, cap_secs: 60, give_up_secs: 3600 };
    u.fail_or_wait(error("vod_unavailable", true), false, 1000, false, backoff);
    assert_eq!((u.state(), u.retry_after()), (State::Pending, Some(1005)));
    let s = status(&u);
    assert_eq!(s["error"]["code"], "vod_unavailable");
    assert_eq!(s["source"], "https://b.example/v.mp4?<redacted>");
    assert!(!s.to_string().contains("secret"));
    u.fail_or_wait(UploadError { vod_code: Some(-10003), ..error("vod_rejected", false) }, false, 1000, false, backoff);
    assert_eq!(u.state(), State::Failed);
    assert_eq!(status(&u)["error"]["vodCode"], -10003);
}

#[test]
fn transient_errors_back_off_exponentially_then_give_up() {
    let mut u = up(10);
    let e = error("vod_unavailable", true);
    let mut waits = Vec::new();
    for now in [100, 200, 300, 400, 500] {
        u.fail_or_wait(e.clone(), false, now, false, BACKOFF);
        waits.push(u.retry_after().unwrap() - now);
    }
    assert_eq!(waits, [5, 10, 20, 40, 60], "doubling, capped");
    // Progress resets the streak.
    u.fail_or_wait(e.clone(), false, 600, true, BACKOFF);
    assert_eq!((u.retry_after(), u.failing_since), (Some(605), Some(600)));
    u.fail_or_wait(e.clone(), false, 1599, false, BACKOFF);
    assert_eq!(u.state(), State::Pending);
    u.fail_or_wait(e, false, 1600, false, BACKOFF);
    assert_eq!(u.state(), State::Failed);
    let error = u.error().cloned().unwrap();
    assert!(!error.retryable && error.message.starts_with("gave up after 1000 s"), "{error:?}");
    assert_eq!(u.ended_at(), Some(1600));
    assert!(matches!(&u.phase, Phase::Failed(f) if *f.was == Phase::Pending));
    // A retry resumes where it failed, with a clean slate.
    u.retry();
    assert_eq!((u.state(), u.error().cloned(), u.retries, u.failing_since, u.ended_at()), (State::Pending, None, 0, None, None));
}

#[test]
fn a_retry_resumes_where_the_upload_failed() {
    let mut u = uploading(10, 3);
    u.uploading_mut().unwrap().session = true;
    u.uploading_mut().unwrap().part_sent(0);
    u.fail_or_wait(error("source_denied", false), false, 100, false, BACKOFF);
    assert_eq!((u.state(), u.parts_done()), (State::Failed, 1));
    u.retry();
    let s = u.uploading().unwrap();
    assert_eq!((s.session, s.done.count(), s.md5s.count()), (false, 1, 3));
    // A failure of the checkpoint itself starts over.
    u.fail_or_wait(error("checkpoint_unusable", false), true, 100, false, BACKOFF);
    assert_eq!(u.file_sha(), Some("f".repeat(40).as_str()), "the status still shows how far it got");
    u.retry();
    assert_eq!((u.state(), u.parts_done(), u.md5s(), u.file_sha()), (State::Pending, 0, None, None));
}

#[test]
fn an_outcome_overrides_an_upload_that_stepped_back() {
    let mut u = uploading(10, 1);
    u.fail_or_wait(error("vod_unavailable", true), false, 3, false, BACKOFF);
    let done = Outcome::Done { file_id: "7".into(), url: "u".into(), at: 5 };
    u.lay_outcome(&Outcome::Cancelled { at: 4 });
    assert_eq!((u.state(), u.error().map(|e| e.code.as_str()), u.retry_after()), (State::Cancelled, Some("vod_unavailable"), None));
    u.lay_outcome(&done);
    assert_eq!((u.state(), u.file_id(), u.md5s(), u.ended_at()), (State::Done, Some("7"), None, Some(5)));
    assert_eq!(u.file_sha(), Some("f".repeat(40).as_str()));
    u.lay_outcome(&Outcome::Cancelled { at: 6 });
    assert_eq!(u.state(), State::Done, "done stays done");
}

/// One thing that can happen to an upload, as the engine would report it.
#[derive(Debug, Clone)]
enum Event {
    StartHashing,
    Hashed,
    Opened { code: u8, data_size: u64, listed: Vec<u64> },
    PartSent(u64),
    PartRefused { code: i64, retryable: bool, fit: bool },
    AllSent,
    FinishRefused { code: i64, retryable: bool },
    Finished,
    Outcome { done: bool },
    Error { retryable: bool, voids: bool, progressed: bool },
    InvocationOk,
    Retry,
}

fn event() -> impl proptest::strategy::Strategy<Value = Event> {
    use proptest::prelude::*;
    let code = prop::sample::select(vec![vod_codes::PARAMS, vod_codes::INVALID_BODY, -10001]);
    prop_oneof![
        Just(Event::StartHashing),
        Just(Event::Hashed),
        (0u8..3, 1u64..9, prop::collection::vec(0u64..40, 0..6)).prop_map(|(code, data_size, listed)| Event::Opened {
            code,
            data_size,
            listed
        }),
        (0u64..12).prop_map(Event::PartSent),
        (code.clone(), any::<bool>(), any::<bool>()).prop_map(|(code, retryable, fit)| Event::PartRefused { code, retryable, fit }),
        Just(Event::AllSent),
        (code, any::<bool>()).prop_map(|(code, retryable)| Event::FinishRefused { code, retryable }),
        Just(Event::Finished),
        any::<bool>().prop_map(|done| Event::Outcome { done }),
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(retryable, voids, progressed)| Event::Error {
            retryable,
            voids,
            progressed
        }),
        Just(Event::InvocationOk),
        Just(Event::Retry),
    ]
}

proptest::proptest! {
    /// Any sequence of events keeps the machine's promises: done stays done with its
    /// fileId; a retry resumes the phase the upload failed in (finishing as uploading,
    /// pending when its data was the problem); a final phase never holds another; parts
    /// and bytes stay within the file; every state survives the store round-trip.
    #[test]
    fn any_events_keep_the_invariants(size in 1u64..40, events in proptest::collection::vec(event(), 1..60)) {
        let mut u = up(size);
        for (at, e) in events.into_iter().enumerate() {
            let before = u.clone();
            let now = 100 + at as u64;
            match &e {
                Event::StartHashing => u.start_hashing(),
                Event::Hashed => {
                    if let Some(h) = u.hashing_mut() {
                        let count = h.md5s.layout(size).count();
                        let append = h.md5s.appended(&(0..count).map(md5).collect::<Vec<_>>());
                        h.md5s.set(append);
                    }
                    u.hashed("f".repeat(40));
                }
                Event::Opened { code, data_size, listed } => {
                    let answer = match code {
                        0 => InitAnswer::New,
                        1 => InitAnswer::Resume { data_size: *data_size, parts: listed.iter().map(|&i| ListedPart { offset: i * data_size, size: *data_size, md5: Some(crate::hex::encode(&md5(i))) }).collect() },
                        _ => InitAnswer::Exists(Finished { file_id: "9".into(), url: "u".into() }),
                    };
                    if let Some(s) = u.uploading_mut() {
                        if let Some(done) = s.opened(answer, 4, size, 1, |i| Some(md5(i))) {
                            u.finished(done, now);
                        }
                    }
                }
                Event::PartSent(i) => {
                    if let Some(s) = u.uploading_mut() {
                        if *i < s.layout(size).count() {
                            s.part_sent(*i);
                        }
                    }
                }
                Event::PartRefused { code, retryable, fit } => {
                    let api = ApiError { code: *code, message: "no".into(), retryable: *retryable };
                    if let Some(s) = u.uploading_mut() {
                        if s.part_refused(&api, *fit) == PartVerdict::Recheck {
                            s.recheck();
                        }
                    }
                }
                Event::AllSent => {
                    u.all_sent();
                }
                Event::FinishRefused { code, retryable } => {
                    u.finish_refused(&ApiError { code: *code, message: "no".into(), retryable: *retryable });
                }
                Event::Finished => {
                    if u.state() == State::Finishing {
                        u.finished(Finished { file_id: "7".into(), url: "u".into() }, now);
                    }
                }
                Event::Outcome { done } => {
                    let outcome = if *done { Outcome::Done { file_id: "7".into(), url: "u".into(), at: now } } else { Outcome::Cancelled { at: now } };
                    u.lay_outcome(&outcome);
                }
                Event::Error { retryable, voids, progressed } => {
                    u.fail_or_wait(error("e", *retryable), *voids, now, *progressed, BACKOFF);
                }
                Event::InvocationOk => u.invocation_ok(),
                Event::Retry => u.retry(),
            }
            // Done stays done, with its fileId.
            if let Phase::Done(d) = &before.phase {
                proptest::prop_assert_eq!(u.file_id(), Some(d.file_id.as_str()), "{:?} undid done", e);
            }
            // A retry resumes where the upload failed.
            if let (Event::Retry, Phase::Failed(f)) = (&e, &before.phase) {
                let want = if f.from_start { State::Pending } else { match f.was.state() { State::Finishing => State::Uploading, s => s } };
                proptest::prop_assert_eq!(u.state(), want);
                proptest::prop_assert!(u.error().is_none() && u.retry_after().is_none());
            }
            // A final phase keeps an active one, never another final one; waiting only
            // on an active upload.
            match &u.phase {
                Phase::Failed(f) => proptest::prop_assert!(!f.was.state().is_final()),
                Phase::Cancelled(c) => proptest::prop_assert!(!c.was.state().is_final()),
                _ => {}
            }
            proptest::prop_assert!(u.waiting.is_none() || !u.state().is_final());
            proptest::prop_assert!(u.parts_done() <= u.layout().count());
            proptest::prop_assert!(u.uploaded_bytes() <= size && u.hashed_bytes() <= size);
            let _ = status(&u);
            proptest::prop_assert_eq!(&crate::upload::Upload::decode(&u.encode()).expect("decodes"), &u);
        }
    }
}
