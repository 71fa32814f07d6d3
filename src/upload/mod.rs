//! The upload: what was asked for, the source it reads, and where it is, as a state
//! machine whose every state carries exactly the data valid in it ([`Phase`]).
//!
//! `pending -> hashing -> uploading <-> finishing -> done`, or `failed` / `cancelled`.
//! Every transition and every decision about the service's answers is a function here
//! (`transitions.rs`); the engine does the I/O and calls them. This module is plain
//! data and functions: it knows nothing of the store's format ([`crate::checkpoint`])
//! or of the engine's errors.

mod md5s;
mod origin;
mod state;
mod status;
mod transitions;

pub use md5s::{md5_in_chunk, Md5Append, Md5s, MD5S_PER_CHUNK};
pub use origin::EventOrigin;
pub use state::{Cancelled, Done, Failed, Finishing, HashState, Hashing, Phase, State, Uploading};
pub use status::{display_source, status};
pub use transitions::{Backoff, PartVerdict, MAX_REPAIRS};

use crate::parts::Layout;
use crate::source::{Identity, Source};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Where the bytes come from.
    pub source: Source,
    /// The name the service gives the file (valid for the protocol).
    pub file_name: String,
    /// The file's type, as the service's `fileType` (an extension such as `mp4`).
    pub file_type: String,
    /// Tags the service attaches to the file.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The service's category for the file.
    #[serde(default)]
    pub class_id: Option<u64>,
    /// Whether the service transcodes the file once it has it.
    #[serde(default)]
    pub is_transcode: bool,
    /// Whether the service takes screenshots of it.
    #[serde(default)]
    pub is_screenshot: bool,
    /// Whether the service watermarks it.
    #[serde(default)]
    pub is_watermark: bool,
    /// The part size asked for (the service may answer with its own).
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

/// Why an upload failed or is waiting, as stored and as its status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadError {
    /// Stable error code (see [`crate::error::codes`]).
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Whether a later invocation may get past it.
    pub retryable: bool,
    /// The VOD service's own code, when it said no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vod_code: Option<i64>,
}

/// A retryable error an active upload is waiting out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    /// The error.
    pub error: UploadError,
    /// Unix seconds before which another attempt is pointless.
    pub retry_after: u64,
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
    /// Requests to the VOD service that repeated a failed one.
    #[serde(default)]
    pub vod_retries: u64,
    /// Key-value writes.
    pub kv_writes: u64,
}

/// How an upload ended, stored under its own write-once key. `Done` is a fact the
/// service stated (its fileId for this SHA-1), so invocations racing to write it write
/// the same thing.
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
    /// When the upload ended.
    pub fn at(&self) -> u64 {
        match self {
            Outcome::Done { at, .. } | Outcome::Cancelled { at } => *at,
        }
    }
}

/// One upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    /// Its id ([`upload_id`]).
    pub id: String,
    /// What was asked for.
    pub spec: Spec,
    /// The source's identity when the upload was created: a source that changes since
    /// is refused, never mixed.
    pub identity: Identity,
    /// Where it is, with the data valid there.
    pub phase: Phase,
    /// The retryable error an active upload waits out (never set on a final one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Invocations in a row that ended on a retryable error without progress: the
    /// exponent of the backoff.
    #[serde(default)]
    pub retries: u32,
    /// Unix seconds since when it has made no progress through retryable errors; it
    /// fails once that lasts longer than the give-up time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<u64>,
    /// Invocations that worked on it.
    pub invocations: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of its last save.
    pub updated_at: u64,
    /// Unix seconds when an invocation last began work on it (`/tick` serves the least
    /// recently attempted first).
    #[serde(default)]
    pub attempted_at: u64,
    /// Source read rate seen (bytes/s), to size the next ranged read.
    #[serde(default)]
    pub read_rate: u64,
    /// What it cost.
    #[serde(default)]
    pub stats: Stats,
    /// The object version a storage event announced, for uploads created from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<EventOrigin>,
}

/// The id of an upload: the same request for the same unchanged source gets the same
/// id, so creating it twice finds the first. The hashed text is frozen (it is what
/// the first release hashed, whatever later serde changes to [`Spec`] do): ids stored
/// before an upgrade must still be found after it.
pub fn upload_id(spec: &Spec, identity: &Identity) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SpecV1<'a> {
        source: &'a Source,
        file_name: &'a str,
        file_type: &'a str,
        tags: &'a [String],
        class_id: Option<u64>,
        is_transcode: bool,
        is_screenshot: bool,
        is_watermark: bool,
        data_size: u64,
    }
    let s = SpecV1 {
        source: &spec.source,
        file_name: &spec.file_name,
        file_type: &spec.file_type,
        tags: &spec.tags,
        class_id: spec.class_id,
        is_transcode: spec.is_transcode,
        is_screenshot: spec.is_screenshot,
        is_watermark: spec.is_watermark,
        data_size: spec.data_size,
    };
    let canonical = serde_json::to_vec(&(s, identity)).expect("specs serialize");
    crate::hex::encode(&Sha1::digest(&canonical)[..10])
}

impl Upload {
    /// A new upload, not yet worked on.
    pub fn new(spec: Spec, identity: Identity, now: u64) -> Upload {
        Upload {
            id: upload_id(&spec, &identity),
            spec,
            identity,
            phase: Phase::Pending,
            waiting: None,
            retries: 0,
            failing_since: None,
            invocations: 0,
            created_at: now,
            updated_at: now,
            attempted_at: 0,
            read_rate: 0,
            stats: Stats::default(),
            origin: None,
        }
    }

    /// Where it is.
    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// The error it failed with, waits out, or (cancelled) last had.
    pub fn error(&self) -> Option<&UploadError> {
        match &self.phase {
            Phase::Failed(f) => Some(&f.error),
            Phase::Cancelled(c) => c.error.as_ref(),
            _ => self.waiting.as_ref().map(|w| &w.error),
        }
    }

    /// Unix seconds before which another attempt is pointless.
    pub fn retry_after(&self) -> Option<u64> {
        self.waiting.as_ref().map(|w| w.retry_after)
    }

    /// Unix seconds when it became done, failed or cancelled.
    pub fn ended_at(&self) -> Option<u64> {
        match &self.phase {
            Phase::Done(d) => Some(d.ended_at),
            Phase::Failed(f) => Some(f.ended_at),
            Phase::Cancelled(c) => Some(c.ended_at),
            _ => None,
        }
    }

    /// The file's SHA-1, once hashed.
    pub fn file_sha(&self) -> Option<&str> {
        self.phase.file_sha()
    }

    /// The service's fileId, once done.
    pub fn file_id(&self) -> Option<&str> {
        self.done().map(|d| d.file_id.as_str())
    }

    /// The file's play URL, once done.
    pub fn url(&self) -> Option<&str> {
        self.done().map(|d| d.url.as_str())
    }

    fn done(&self) -> Option<&Done> {
        match &self.phase {
            Phase::Done(d) => Some(d),
            _ => None,
        }
    }

    /// The stored part MD5s (their chunk keys exist while the upload is not done).
    pub fn md5s(&self) -> Option<&Md5s> {
        self.phase.md5s()
    }

    /// The part size of its session (or the one asked for, before there is one).
    pub fn part_size(&self) -> u64 {
        match self.phase.active() {
            Phase::Hashing(h) => h.md5s.part_size,
            Phase::Uploading(u) => u.part_size,
            Phase::Finishing(f) => f.part_size,
            Phase::Done(d) => d.part_size,
            _ => self.spec.data_size,
        }
    }

    /// The session's layout.
    pub fn layout(&self) -> Layout {
        Layout::new(self.identity.size, self.part_size()).expect("sizes are positive")
    }

    /// Parts uploaded.
    pub fn parts_done(&self) -> u64 {
        match self.phase.active() {
            Phase::Uploading(u) => u.done.count(),
            Phase::Finishing(_) | Phase::Done(_) => self.layout().count(),
            _ => 0,
        }
    }

    /// Bytes hashed.
    pub fn hashed_bytes(&self) -> u64 {
        match self.phase.active() {
            Phase::Hashing(h) => h.hasher.offset,
            other if other.file_sha().is_some() => self.identity.size,
            _ => 0,
        }
    }

    /// The phase while uploading.
    pub fn uploading(&self) -> Option<&Uploading> {
        match &self.phase {
            Phase::Uploading(u) => Some(u),
            _ => None,
        }
    }

    /// The phase while uploading, to change.
    pub fn uploading_mut(&mut self) -> Option<&mut Uploading> {
        match &mut self.phase {
            Phase::Uploading(u) => Some(u),
            _ => None,
        }
    }

    /// The phase while hashing, to change.
    pub fn hashing_mut(&mut self) -> Option<&mut Hashing> {
        match &mut self.phase {
            Phase::Hashing(h) => Some(h),
            _ => None,
        }
    }
}

/// Base64 (standard, padded) for bytes in stored JSON.
pub(crate) mod b64 {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}
