//! The checkpoint: what is kept in the key-value store between invocations.
//!
//! Per upload there is one small main record (`vu1/{id}`), the commit point of work in
//! progress, plus complete chunks of part MD5s (`vu1/{id}/md5/{k}`, 4096 MD5s = 64 KiB
//! each), plus, once the upload has ended, its outcome (`vu1/{id}/end`).
//!
//! The key-value store has no compare-and-swap, so two invocations on one upload can
//! overwrite each other's record. The outcome key is what makes an end stick: it is
//! written before the record says `done`, read before any record write (an invocation
//! that finds it stops instead of writing), and laid over the record on every load. So
//! a record that steps back under a race never turns a done upload into anything else.
//! The MD5s of the chunk still being filled live in the main record itself, so a
//! record always describes exactly the MD5s it vouches for. A complete chunk's content
//! is determined by the source alone (which must not change), so two invocations that
//! race on one upload write identical chunks: the worst a race can do is make a record
//! step back, which costs repeated work, never a wrong byte.
//!
//! For a 50 GiB file in 512 KiB parts that is 25 chunk keys; keys stay far below 255
//! bytes and values far below 1 MB (see the size test at the bottom).

use crate::hasher::{PartMd5, SavedHasher};
use crate::source::{Identity, Source};
use serde::{Deserialize, Serialize};

/// Version of the stored format; a record of another version is refused, not misread.
/// Version 1 stores sha1/md-5 0.11 serialized digest states.
pub const FORMAT: u32 = 1;

/// MD5s per chunk key.
pub const MD5S_PER_CHUNK: u64 = 4096;

/// Prefix of every key this component writes.
pub const KEY_PREFIX: &str = "vu1/";

/// The main record's key.
pub fn record_key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// The key of MD5 chunk `k`.
pub fn md5_chunk_key(id: &str, k: u64) -> String {
    format!("{KEY_PREFIX}{id}/md5/{k}")
}

/// The key of an upload's outcome.
pub fn end_key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}/end")
}

/// The upload id of a main record's key (not of an auxiliary key).
pub fn id_of_record_key(key: &str) -> Option<&str> {
    key.strip_prefix(KEY_PREFIX).filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The upload id of an outcome key.
pub fn id_of_end_key(key: &str) -> Option<&str> {
    key.strip_prefix(KEY_PREFIX)?.strip_suffix("/end").filter(|id| !id.is_empty() && !id.contains('/'))
}

/// How an upload ended, stored under [`end_key`]. `Done` is a fact the service stated
/// (its fileId for this SHA-1), so invocations racing to write it write the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// The service holds the file.
    #[serde(rename_all = "camelCase")]
    Done {
        /// The service's fileId.
        file_id: String,
        /// Its play URL.
        url: String,
        /// Unix seconds.
        at: u64,
    },
    /// The user cancelled the upload; a tombstone that stops invocations still at work.
    Cancelled {
        /// Unix seconds.
        at: u64,
    },
}

impl Outcome {
    /// Serializes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("outcomes serialize")
    }

    /// Reads a stored outcome.
    pub fn decode(bytes: &[u8]) -> Result<Outcome, BadRecord> {
        serde_json::from_slice(bytes).map_err(|e| BadRecord(format!("outcome: {e}")))
    }

    /// When the upload ended.
    pub fn at(&self) -> u64 {
        match self {
            Outcome::Done { at, .. } | Outcome::Cancelled { at } => *at,
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Where the bytes come from.
    pub source: Source,
    /// fileName (valid for the protocol).
    pub file_name: String,
    /// fileType.
    pub file_type: String,
    /// tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// classId.
    #[serde(default)]
    pub class_id: Option<u64>,
    /// isTranscode.
    #[serde(default)]
    pub is_transcode: bool,
    /// isScreenshot.
    #[serde(default)]
    pub is_screenshot: bool,
    /// isWatermark.
    #[serde(default)]
    pub is_watermark: bool,
    /// Part size asked for.
    pub data_size: u64,
}

impl Spec {
    /// The names the source suggests, no tags or options, parts of `data_size`.
    pub fn for_source(source: Source, data_size: u64) -> Spec {
        let (file_name, file_type) = source.default_names();
        Spec {
            source,
            file_name,
            file_type,
            tags: vec![],
            class_id: None,
            is_transcode: false,
            is_screenshot: false,
            is_watermark: false,
            data_size,
        }
    }
}

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created; no work done yet.
    Pending,
    /// Computing the SHA-1 and part MD5s.
    Hashing,
    /// Sending parts.
    Uploading,
    /// Asking the service to assemble the file.
    Finishing,
    /// The service has the file.
    Done,
    /// Stopped for good; `error` says why.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

impl State {
    /// Done, failed or cancelled: no more work.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

/// Why an upload failed or is waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    /// Stable error code (see `error::codes`).
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Whether a later invocation may get past it.
    pub retryable: bool,
    /// The VOD service's own code, when it said no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vod_code: Option<i64>,
}

/// Counters of what the upload cost, over all its invocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests to the source.
    pub source_requests: u64,
    /// Bytes read from the source.
    pub source_bytes: u64,
    /// Requests to the VOD service.
    pub vod_requests: u64,
    /// Key-value writes.
    pub kv_writes: u64,
}

mod b64 {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The hashing pass's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HashState {
    /// Bytes hashed.
    pub offset: u64,
    /// SHA-1 state.
    #[serde(with = "b64")]
    pub sha1: Vec<u8>,
    /// MD5 state of the part in progress.
    #[serde(with = "b64")]
    pub part_md5: Vec<u8>,
}

impl From<SavedHasher> for HashState {
    fn from(s: SavedHasher) -> Self {
        HashState { offset: s.offset, sha1: s.sha1, part_md5: s.part_md5 }
    }
}

impl From<&HashState> for SavedHasher {
    fn from(s: &HashState) -> Self {
        SavedHasher { offset: s.offset, sha1: s.sha1.clone(), part_md5: s.part_md5.clone() }
    }
}

/// The main record of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The upload's id.
    pub id: String,
    /// What was asked for.
    pub spec: Spec,
    /// The source's identity at creation.
    pub identity: Identity,
    /// Where the upload is.
    pub state: State,
    /// The hashing pass, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing: Option<HashState>,
    /// Part size the stored MD5s were computed for.
    pub md5_part_size: u64,
    /// Complete MD5 chunks stored under their own keys.
    pub md5_chunks: u64,
    /// MD5s after the complete chunks (16 bytes each).
    #[serde(with = "b64")]
    pub md5_tail: Vec<u8>,
    /// The file's SHA-1 once hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha: Option<String>,
    /// The session's part size (the service's, once InitUpload answered).
    pub part_size: u64,
    /// Whether InitUpload has answered for this upload.
    pub session: bool,
    /// Every part below this index is uploaded.
    pub done_below: u64,
    /// Uploaded parts at or above `done_below`.
    #[serde(default)]
    pub done_above: Vec<u64>,
    /// fileId once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Play URL once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Why it failed, or what it is waiting out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Unix seconds before which another attempt is pointless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Invocations that worked on it.
    pub invocations: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
    /// FinishUpload refusals that sent the upload back to re-check its parts.
    #[serde(default)]
    pub repairs: u32,
    /// Source read rate seen (bytes/s), to size the next ranged read.
    #[serde(default)]
    pub read_rate: u64,
    /// What it cost.
    #[serde(default)]
    pub stats: Stats,
    /// Unix seconds when an invocation last began work on it (`/tick` serves the
    /// least recently attempted first).
    #[serde(default)]
    pub attempted_at: u64,
    /// Invocations in a row that ended on a retryable error without progress: the
    /// exponent of the backoff.
    #[serde(default)]
    pub retries: u32,
    /// Unix seconds since when the upload has made no progress through retryable
    /// errors; it fails once that lasts longer than the give-up time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<u64>,
    /// The state a failed upload was in: where a retry resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_in: Option<State>,
    /// Unix seconds when it became done, failed or cancelled (for retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
}

/// What appending MD5s to a record stores ([`Record::md5s_appended`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Md5Append {
    /// Complete chunks: (key, value) writes to store before the record.
    pub writes: Vec<(String, Vec<u8>)>,
    chunks: u64,
    tail: Vec<u8>,
}

/// A stored record that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord(pub String);

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored checkpoint is unusable: {}", self.0)
    }
}

impl std::error::Error for BadRecord {}

impl Record {
    /// Serializes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }

    /// Reads a stored record, refusing other format versions.
    pub fn decode(bytes: &[u8]) -> Result<Record, BadRecord> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(|e| BadRecord(e.to_string()))?;
        if version.format != FORMAT {
            return Err(BadRecord(format!("format {} is not the supported format {FORMAT}", version.format)));
        }
        let record: Record = serde_json::from_slice(bytes).map_err(|e| BadRecord(e.to_string()))?;
        record.check().map_err(BadRecord)?;
        Ok(record)
    }

    /// The invariants every later use of a record relies on (a stored record is input
    /// like any other: it is checked, never trusted to be well-formed).
    fn check(&self) -> Result<(), String> {
        if self.md5_tail.len() % 16 != 0 || self.md5_tail.len() as u64 > 16 * MD5S_PER_CHUNK {
            return Err("MD5 tail has a bad length".into());
        }
        if self.identity.size == 0 {
            return Err("the source size is 0".into());
        }
        for (name, size) in [("part size", self.part_size), ("MD5 part size", self.md5_part_size), ("spec dataSize", self.spec.data_size)] {
            if size == 0 || size > crate::protocol::MAX_PART_SIZE {
                return Err(format!("{name} {size} is outside 1..={}", crate::protocol::MAX_PART_SIZE));
            }
        }
        let parts = self.identity.size.div_ceil(self.part_size);
        if self.done_below > parts || self.done_above.iter().any(|&i| i >= parts) {
            return Err("done parts past the last part".into());
        }
        let md5_parts = self.identity.size.div_ceil(self.md5_part_size);
        if self.md5_chunks > md5_parts / MD5S_PER_CHUNK || self.md5_count() > md5_parts {
            return Err("more MD5s than parts".into());
        }
        if self.hashing.as_ref().is_some_and(|h| h.offset > self.identity.size) {
            return Err("hashed past the end of the source".into());
        }
        Ok(())
    }

    /// How many part MD5s are stored.
    pub fn md5_count(&self) -> u64 {
        self.md5_chunks.saturating_mul(MD5S_PER_CHUNK).saturating_add(self.md5_tail.len() as u64 / 16)
    }

    /// Appends MD5s; returns the chunk writes (key, value) that must be stored
    /// **before** this record is.
    pub fn push_md5s(&mut self, md5s: &[PartMd5]) -> Vec<(String, Vec<u8>)> {
        let mut append = self.md5s_appended(md5s);
        let writes = std::mem::take(&mut append.writes);
        self.set_md5s(append);
        writes
    }

    /// What appending MD5s would store, leaving the record as it is: the chunk writes,
    /// then (with [`Record::set_md5s`]) the record's new MD5 fields. So a failed chunk
    /// write leaves a record that still describes exactly what is stored.
    pub fn md5s_appended(&self, md5s: &[PartMd5]) -> Md5Append {
        let (mut chunks, mut tail) = (self.md5_chunks, self.md5_tail.clone());
        let mut writes = Vec::new();
        for md5 in md5s {
            tail.extend_from_slice(md5);
            if tail.len() as u64 == 16 * MD5S_PER_CHUNK {
                writes.push((md5_chunk_key(&self.id, chunks), std::mem::take(&mut tail)));
                chunks += 1;
            }
        }
        Md5Append { writes, chunks, tail }
    }

    /// Takes the MD5 fields computed by [`Record::md5s_appended`], once its writes are stored.
    pub fn set_md5s(&mut self, append: Md5Append) {
        self.md5_chunks = append.chunks;
        self.md5_tail = append.tail;
    }

    /// Drops every stored MD5 (they were for another part size).
    pub fn clear_md5s(&mut self) {
        self.md5_chunks = 0;
        self.md5_tail.clear();
    }

    /// The MD5 of part `index` if it is in the tail; `Err(k)` names the chunk key
    /// index to load when it is in a complete chunk; `Ok(None)` when not stored.
    pub fn md5_in_tail(&self, index: u64) -> Result<Option<PartMd5>, u64> {
        if index < self.md5_chunks * MD5S_PER_CHUNK {
            return Err(index / MD5S_PER_CHUNK);
        }
        let at = ((index - self.md5_chunks * MD5S_PER_CHUNK) * 16) as usize;
        Ok(self.md5_tail.get(at..at + 16).map(|s| s.try_into().expect("16 bytes")))
    }

    /// Every key of this upload, in the order they are removed: the record first (an
    /// upload without its record is gone), then its chunks, then its outcome.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![record_key(&self.id)];
        keys.extend((0..self.md5_chunks).map(|k| md5_chunk_key(&self.id, k)));
        keys.push(end_key(&self.id));
        keys
    }

    /// Whether part `index` is uploaded.
    pub fn is_part_done(&self, index: u64) -> bool {
        index < self.done_below || self.done_above.contains(&index)
    }

    /// Marks part `index` uploaded, keeping `done_above` small by moving the
    /// watermark over every contiguous done part.
    pub fn mark_part_done(&mut self, index: u64) {
        if self.is_part_done(index) {
            return;
        }
        self.done_above.push(index);
        self.done_above.sort_unstable();
        while let Some(pos) = self.done_above.iter().position(|&i| i == self.done_below) {
            self.done_above.remove(pos);
            self.done_below += 1;
        }
    }

    /// How many parts are uploaded.
    pub fn parts_done(&self) -> u64 {
        self.done_below + self.done_above.len() as u64
    }
}

/// MD5 `i` of a stored chunk value.
pub fn md5_in_chunk(chunk: &[u8], index: u64) -> Option<PartMd5> {
    let at = ((index % MD5S_PER_CHUNK) * 16) as usize;
    chunk.get(at..at + 16).map(|s| s.try_into().expect("16 bytes"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn record(size: u64, part: u64) -> Record {
        // The largest spec the API accepts, mid-hash.
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
        let mut r = crate::job::new_record(spec, identity, 1);
        crate::job::start_hashing(&mut r);
        r.id = "0123456789abcdef0123".into();
        r.file_sha = Some("f".repeat(40));
        r
    }

    #[test]
    fn worst_case_sizes_for_large_files() {
        for (size, part) in [(10u64 << 30, 1_048_576u64), (10 << 30, 524_288), (50 << 30, 524_288)] {
            let mut r = record(size, part);
            let parts = size.div_ceil(part);
            // Worst moment: the tail one MD5 short of a full chunk, a worst-case
            // error, and a full concurrency's worth of out-of-order done parts.
            r.md5_chunks = (parts - (MD5S_PER_CHUNK - 1)) / MD5S_PER_CHUNK;
            r.md5_tail = vec![0xab; 16 * (MD5S_PER_CHUNK as usize - 1)];
            r.done_above = (0..64).map(|i| parts - 1 - i).collect();
            r.error = Some(JobError { code: "vod_rejected".into(), message: "m".repeat(500), retryable: true, vod_code: Some(-10003) });
            let record_bytes = r.encode().len();
            // Most keys: every MD5 in complete chunks.
            let keys = Record { md5_chunks: parts / MD5S_PER_CHUNK, md5_tail: vec![], ..r.clone() }.keys();
            let longest_key = keys.iter().map(String::len).max().unwrap();
            println!(
                "checkpoint for {} GiB in {} KiB parts: main record {} bytes (worst case), {} MD5 chunk keys of {} bytes, longest key {} bytes",
                size >> 30, part >> 10, record_bytes, keys.len() - 2, 16 * MD5S_PER_CHUNK, longest_key
            );
            assert!(record_bytes < 128 * 1024, "record {record_bytes} bytes");
            const { assert!(16 * MD5S_PER_CHUNK <= 64 * 1024) };
            assert!(longest_key < 255);
            assert!(keys.len() <= 27, "record, chunks and outcome");
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut r = record(10, 4);
        r.format = 2;
        assert!(Record::decode(&r.encode()).unwrap_err().0.contains("format 2"));
        assert!(Record::decode(b"{").is_err());
        let mut r = record(10, 4);
        r.md5_tail = vec![1; 15];
        assert!(Record::decode(&r.encode()).is_err());
    }

    proptest! {
        /// A stored record is input like any other: with any numbers in it, it is either
        /// refused when read or safe to use (nothing downstream panics).
        #[test]
        fn any_stored_numbers_are_refused_or_safe(
            fields in prop::collection::vec((prop::sample::select(vec![
                "/identity/size", "/partSize", "/md5PartSize", "/doneBelow", "/md5Chunks", "/hashing/offset", "/spec/dataSize", "/doneAbove/0", "/retryAfter", "/createdAt",
            ]), prop_oneof![any::<u64>(), 0u64..4, Just(u64::MAX)]), 1..5),
        ) {
            let mut r = record(1 << 20, 4096);
            r.done_above = vec![7];
            let mut value = serde_json::to_value(&r).unwrap();
            for (path, n) in fields {
                if let Some(slot) = value.pointer_mut(path) {
                    *slot = serde_json::json!(n);
                }
            }
            if let Ok(r) = Record::decode(&serde_json::to_vec(&value).unwrap()) {
                let _ = crate::job::status(&r);
                let _ = crate::job::next_part(&r);
                let _ = crate::job::md5_layout(&r).count();
                let _ = r.md5_in_tail(r.md5_count());
                let mut r = r;
                crate::job::retry(&mut r);
            }
        }

        /// MD5s pushed in any batches land in chunks and tail so that every index reads
        /// back the MD5 pushed for it, and the record survives the store round-trip.
        #[test]
        fn md5_storage_round_trips(batches in proptest::collection::vec(0usize..3000, 1..8)) {
            let mut r = record(1 << 40, 1);
            let mut chunks = std::collections::HashMap::new();
            let mut n = 0u64;
            for b in batches {
                let md5s: Vec<PartMd5> = (n..n + b as u64).map(|i| { let mut m = [0u8; 16]; m[..8].copy_from_slice(&i.to_le_bytes()); m }).collect();
                n += b as u64;
                for (key, value) in r.push_md5s(&md5s) { chunks.insert(key, value); }
                r = Record::decode(&r.encode()).unwrap();
            }
            prop_assert_eq!(r.md5_count(), n);
            for i in (0..n).step_by(97).chain(n.checked_sub(1)) {
                let md5 = match r.md5_in_tail(i) {
                    Ok(m) => m.unwrap(),
                    Err(k) => md5_in_chunk(&chunks[&md5_chunk_key(&r.id, k)], i).unwrap(),
                };
                prop_assert_eq!(&md5[..8], &i.to_le_bytes()[..]);
            }
            prop_assert_eq!(r.md5_in_tail(n), Ok(None));
        }

        /// Marking parts done in any order keeps `done_above` free of parts below the
        /// watermark and counts each part once.
        #[test]
        fn done_parts_watermark(order in Just((0u64..200).collect::<Vec<_>>()).prop_shuffle(), upto in 0usize..200) {
            let mut r = record(200, 1);
            for &i in &order[..upto] { r.mark_part_done(i); r.mark_part_done(i); }
            prop_assert_eq!(r.parts_done(), upto as u64);
            for &i in &order[..upto] { prop_assert!(r.is_part_done(i)); }
            for &i in &order[upto..] { prop_assert!(!r.is_part_done(i)); }
            prop_assert!(r.done_above.iter().all(|&i| i > r.done_below));
        }
    }
}
