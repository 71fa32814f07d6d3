use super::*;
use crate::source::{Identity, Source};
use crate::upload::{Spec, UploadError, Waiting, MD5S_PER_CHUNK};
use proptest::prelude::*;

/// The largest spec the API accepts, mid-upload, for a file of `size` in `part` parts.
pub(crate) fn upload(size: u64, part: u64) -> Upload {
    let spec = Spec {
        source: Source::Url(format!("https://bucket.s3.amazonaws.com/{}?X-Amz-Signature={}", "v".repeat(200), "s".repeat(64))),
        file_name: "n".repeat(40),
        file_type: "mp4".into(),
        tags: vec!["t".repeat(32); 16],
        class_id: Some(u64::MAX),
        is_transcode: true,
        is_screenshot: true,
        is_watermark: true,
        data_size: part,
    };
    let identity =
        Identity { size, etag: Some(format!("\"{}\"", "e".repeat(64))), last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()) };
    let mut u = Upload::new(spec, identity, 1);
    u.start_hashing();
    u.hashed("f".repeat(40));
    u
}

#[test]
fn worst_case_sizes_for_large_files() {
    for (size, part) in [(10u64 << 30, 1_048_576u64), (10 << 30, 524_288), (50 << 30, 524_288)] {
        let mut u = upload(size, part);
        let parts = size.div_ceil(part);
        // Worst moment: the tail one MD5 short of a full chunk, a worst-case error, and
        // 64 runs of out-of-order done parts (ranges of several invocations, and the
        // parts each has in flight).
        let s = u.uploading_mut().unwrap();
        s.md5s.chunks = (parts - (MD5S_PER_CHUNK - 1)) / MD5S_PER_CHUNK;
        s.md5s.tail = vec![0xab; 16 * (MD5S_PER_CHUNK as usize - 1)];
        for i in 0..64 {
            s.done.mark(parts - 1 - 2 * i);
        }
        let error = UploadError { code: "vod_rejected".into(), message: "m".repeat(500), retryable: true, vod_code: Some(-10003) };
        u.waiting = Some(Waiting { error, retry_after: u64::MAX });
        let record_bytes = u.encode().len();
        // Most keys: every MD5 in complete chunks.
        let mut most = u.clone();
        let s = most.uploading_mut().unwrap();
        (s.md5s.chunks, s.md5s.tail) = (parts / MD5S_PER_CHUNK, vec![]);
        let keys = keys_of(&most);
        let longest_key = keys.iter().map(String::len).max().unwrap();
        println!(
            "checkpoint for {} GiB in {} KiB parts: main record {} bytes (worst case), {} MD5 chunk keys of {} bytes, longest key {} bytes",
            size >> 30,
            part >> 10,
            record_bytes,
            keys.len() - 2,
            16 * MD5S_PER_CHUNK,
            longest_key
        );
        assert!(record_bytes < 128 * 1024, "record {record_bytes} bytes");
        const { assert!(16 * MD5S_PER_CHUNK <= 64 * 1024) };
        assert!(longest_key < 255);
        assert!(keys.len() <= 27, "record, chunks and outcome");
        assert_eq!(Upload::decode(&u.encode()).unwrap(), u);
    }
}

#[test]
fn other_versions_and_garbage_are_refused() {
    let u = upload(10, 4);
    let mut value = serde_json::to_value(serde_json::from_slice::<serde_json::Value>(&u.encode()).unwrap()).unwrap();
    value["format"] = 3.into();
    assert!(Upload::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err().0.contains("format 3"));
    assert!(Upload::decode(b"{").is_err());
    let mut bad = u.clone();
    bad.uploading_mut().unwrap().md5s.tail = vec![1; 15];
    assert!(Upload::decode(&bad.encode()).is_err());
    // A final phase inside another is no phase to resume.
    let mut nested = u.clone();
    nested.phase = Phase::Failed(crate::upload::Failed {
        error: UploadError { code: "x".into(), message: "m".into(), retryable: false, vod_code: None },
        ended_at: 1,
        was: Box::new(Phase::Cancelled(crate::upload::Cancelled { ended_at: 1, error: None, was: Box::new(Phase::Pending) })),
        from_start: false,
    });
    assert!(Upload::decode(&nested.encode()).unwrap_err().0.contains("final phase"));
}

/// The stored shape of format 2, field for field: a change to any type's serde shows
/// here (and then needs a new format, or a reader that takes both).
#[test]
fn format_2_golden() {
    let mut u = upload(10, 4);
    u.id = "0123456789abcdef0123".into();
    u.spec.tags = vec!["a".into()];
    u.spec.source = Source::Url("https://b.example/v.mp4".into());
    u.identity.etag = None;
    let s = u.uploading_mut().unwrap();
    s.session = true;
    s.done.mark(1);
    s.md5s.tail = vec![7; 16];
    let golden = r#"{"format":2,"id":"0123456789abcdef0123","spec":{"source":{"kind":"url","location":"https://b.example/v.mp4"},"fileName":"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn","fileType":"mp4","tags":["a"],"classId":18446744073709551615,"isTranscode":true,"isScreenshot":true,"isWatermark":true,"dataSize":4},"identity":{"size":10,"lastModified":"Wed, 21 Oct 2015 07:28:00 GMT"},"phase":{"state":"uploading","fileSha":"ffffffffffffffffffffffffffffffffffffffff","md5s":{"partSize":4,"chunks":0,"tail":"BwcHBwcHBwcHBwcHBwcHBw=="},"partSize":4,"done":{"below":0,"runs":[[1,2]]},"session":true,"repairs":0,"opened":0},"retries":0,"invocations":0,"createdAt":1,"updatedAt":1,"attemptedAt":0,"readRate":0,"stats":{"sourceRequests":0,"sourceBytes":0,"vodRequests":0,"vodRetries":0,"kvWrites":0}}"#;
    // The same record as written before `opened` and `vodRetries` were added and done
    // parts were stored as runs (format 2 either way: the new fields have defaults,
    // and an older reader that misses the runs only sends those parts again).
    let before = r#"{"format":2,"id":"0123456789abcdef0123","spec":{"source":{"kind":"url","location":"https://b.example/v.mp4"},"fileName":"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn","fileType":"mp4","tags":["a"],"classId":18446744073709551615,"isTranscode":true,"isScreenshot":true,"isWatermark":true,"dataSize":4},"identity":{"size":10,"lastModified":"Wed, 21 Oct 2015 07:28:00 GMT"},"phase":{"state":"uploading","fileSha":"ffffffffffffffffffffffffffffffffffffffff","md5s":{"partSize":4,"chunks":0,"tail":"BwcHBwcHBwcHBwcHBwcHBw=="},"partSize":4,"done":{"below":0,"above":[1]},"session":true,"repairs":0},"retries":0,"invocations":0,"createdAt":1,"updatedAt":1,"attemptedAt":0,"readRate":0,"stats":{"sourceRequests":0,"sourceBytes":0,"vodRequests":0,"kvWrites":0}}"#;
    assert_eq!(String::from_utf8(u.encode()).unwrap(), golden);
    assert_eq!(Upload::decode(golden.as_bytes()).unwrap(), u);
    assert_eq!(Upload::decode(before.as_bytes()).unwrap(), u);
}

proptest! {
    /// A stored record is input like any other: with any numbers in it, it is either
    /// refused when read or safe to use (nothing downstream panics).
    #[test]
    fn any_stored_numbers_are_refused_or_safe(
        fields in prop::collection::vec((prop::sample::select(vec![
            "/identity/size", "/phase/partSize", "/phase/md5s/partSize", "/phase/done/below", "/phase/md5s/chunks", "/spec/dataSize", "/phase/done/runs/0/1", "/waiting/retryAfter", "/createdAt",
        ]), prop_oneof![any::<u64>(), 0u64..4, Just(u64::MAX)]), 1..5),
    ) {
        let mut u = upload(1 << 20, 4096);
        u.uploading_mut().unwrap().done.mark(7);
        let mut value: serde_json::Value = serde_json::from_slice(&u.encode()).unwrap();
        for (path, n) in fields {
            if let Some(slot) = value.pointer_mut(path) {
                *slot = serde_json::json!(n);
            }
        }
        if let Ok(u) = Upload::decode(&serde_json::to_vec(&value).unwrap()) {
            let _ = crate::upload::status(&u);
            let _ = u.uploading().map(|s| s.next_part(u.identity.size));
            let _ = u.requests_left(64 << 20);
            // What an invocation picks its work from: bounded by the part count.
            let _ = u.uploading().map(|s| crate::lease::Ranges::new(s.layout(u.identity.size), 64 << 20).missing_from(&s.done, 7));
            let _ = u.md5s().map(|m| (m.layout(u.identity.size).count(), m.in_tail(m.count())));
            let mut u = u;
            u.retry();
        }
    }
}

/// An unfinished upload with more parts than an upload may have is refused when read,
/// naming the count; an ended one (of an earlier release, say) is still read, so that it
/// can be shown and removed.
#[test]
fn more_parts_than_an_upload_may_have() {
    let part = 524_288;
    let size = crate::parts::MAX_PARTS * part + 1;
    let u = upload(size, part);
    let e = Upload::decode(&u.encode()).unwrap_err().0;
    assert!(e.contains("262145 parts"), "{e}");
    let mut done = u.clone();
    done.phase = Phase::Done(crate::upload::Done { file_id: "f".into(), url: "u".into(), file_sha: None, part_size: part, ended_at: 1 });
    assert_eq!(Upload::decode(&done.encode()).unwrap(), done);
    assert!(Upload::decode(&upload(size - 1, part).encode()).is_ok());
}

/// The case proptest once found (format 1's `md5Chunks` at `u64::MAX`: more MD5 chunks
/// than parts, an overflow downstream), kept as a plain test of both formats.
#[test]
fn md5_chunks_past_the_parts_are_refused() {
    let mut value: serde_json::Value = serde_json::from_slice(&upload(1 << 20, 4096).encode()).unwrap();
    value["phase"]["md5s"]["chunks"] = u64::MAX.into();
    assert!(Upload::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err().0.contains("more MD5s than parts"));
    let v1 = include_str!("../../tests/fixtures/format1/hashing-md5-chunk.json");
    let fixture: serde_json::Value = serde_json::from_str(v1).unwrap();
    let (key, record) = fixture["kv"].as_object().unwrap().iter().find(|(k, _)| id_of_record_key(k).is_some()).unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(record.as_str().unwrap()).unwrap();
    assert!(Upload::decode(&bytes).is_ok(), "{key}");
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["md5Chunks"] = u64::MAX.into();
    assert!(Upload::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err().0.contains("more MD5s than parts"));
}
