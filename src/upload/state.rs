//! The upload's states, each with exactly the data valid in it. What an upload knows
//! grows along `pending -> hashing -> uploading -> finishing -> done`; a failed or
//! cancelled upload keeps the phase it stopped in, so a retry resumes there and the
//! status still shows how far it got.

use super::md5s::Md5s;
use super::UploadError;
use crate::hasher::SavedHasher;
use crate::parts::DoneParts;
use serde::{Deserialize, Serialize};

/// Where an upload is: the name users see in its status.
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
    /// Stopped for good; its error says why.
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

/// An upload's phase with the data valid in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Phase {
    /// Created; no work done yet.
    Pending,
    /// Computing the SHA-1 and part MD5s.
    Hashing(Hashing),
    /// Sending parts.
    Uploading(Uploading),
    /// Every part sent; asking the service to assemble the file.
    Finishing(Finishing),
    /// The service has the file.
    Done(Done),
    /// Stopped for good.
    Failed(Failed),
    /// Cancelled by the user.
    Cancelled(Cancelled),
}

/// The hashing pass's saved state: how far it got, and the SHA-1 and part MD5 states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HashState {
    /// Bytes hashed.
    pub offset: u64,
    /// The serialized SHA-1 state (sha1 0.11).
    #[serde(with = "super::b64")]
    pub sha1: Vec<u8>,
    /// The serialized MD5 state of the part in progress (md-5 0.11).
    #[serde(with = "super::b64")]
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

/// Hashing: the hasher's state and the MD5s of the parts hashed so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hashing {
    /// Where the hashing pass resumes.
    pub hasher: HashState,
    /// Part MD5s computed so far.
    pub md5s: Md5s,
}

/// Uploading: the file's SHA-1 is known; parts go to the service's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Uploading {
    /// The whole file's SHA-1 (hex): the session's key at the service.
    pub file_sha: String,
    /// Every part's MD5, for the part size hashed.
    pub md5s: Md5s,
    /// The session's part size (the service's, once InitUpload answered).
    pub part_size: u64,
    /// Parts the session holds.
    pub done: DoneParts,
    /// Whether InitUpload answered for this session in this upload's current run of
    /// work: without it, the service is asked (again) which parts it holds.
    pub session: bool,
    /// Refusals that sent the upload back to ask the service what it holds, since the
    /// last part it took (bounded: [`crate::protocol::vod_codes`] refusals become final).
    pub repairs: u32,
    /// Unix seconds of the InitUpload answer `done` counts from (0: none yet). Records
    /// of several invocations merge their done parts only when they count from the same
    /// answer; a later answer supersedes an earlier one (the service may have lost parts).
    #[serde(default)]
    pub opened: u64,
}

/// Finishing: every part sent; FinishUpload not answered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finishing {
    /// The whole file's SHA-1 (hex).
    pub file_sha: String,
    /// Every part's MD5 (kept: a refusal sends the upload back to uploading).
    pub md5s: Md5s,
    /// The session's part size.
    pub part_size: u64,
    /// Refusals so far (see [`Uploading::repairs`]).
    pub repairs: u32,
}

/// Done: the service holds the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    /// The service's fileId.
    pub file_id: String,
    /// Its play URL.
    pub url: String,
    /// The SHA-1 hashed, when this upload got that far itself (an upload that another
    /// invocation finished while this one's record had stepped back may not have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha: Option<String>,
    /// The part size it was uploaded in.
    pub part_size: u64,
    /// Unix seconds when it became done (for retention).
    pub ended_at: u64,
}

/// Failed: stopped for good (until a retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    /// Why.
    pub error: UploadError,
    /// Unix seconds when it failed (for retention).
    pub ended_at: u64,
    /// The phase it failed in, with its data: where a retry resumes (pending, hashing,
    /// uploading or finishing; never a final phase).
    pub was: Box<Phase>,
    /// The upload's own data was the problem (an unusable checkpoint): a retry starts
    /// it over instead of resuming `was`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_start: bool,
}

/// Cancelled by the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    /// Unix seconds when it was cancelled.
    pub ended_at: u64,
    /// The last error it had, if any (shown in its status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<UploadError>,
    /// The phase it was in (never a final phase), for its status.
    pub was: Box<Phase>,
}

impl Phase {
    /// The state's name.
    pub fn state(&self) -> State {
        match self {
            Phase::Pending => State::Pending,
            Phase::Hashing(_) => State::Hashing,
            Phase::Uploading(_) => State::Uploading,
            Phase::Finishing(_) => State::Finishing,
            Phase::Done(_) => State::Done,
            Phase::Failed(_) => State::Failed,
            Phase::Cancelled(_) => State::Cancelled,
        }
    }

    /// The phase whose data a final phase keeps (itself for the others).
    pub fn active(&self) -> &Phase {
        match self {
            Phase::Failed(f) => f.was.active(),
            Phase::Cancelled(c) => c.was.active(),
            other => other,
        }
    }

    /// The MD5s stored for this phase (their chunk keys exist while it lasts).
    pub fn md5s(&self) -> Option<&Md5s> {
        match self.active() {
            Phase::Hashing(h) => Some(&h.md5s),
            Phase::Uploading(u) => Some(&u.md5s),
            Phase::Finishing(f) => Some(&f.md5s),
            _ => None,
        }
    }

    /// The whole file's SHA-1, once hashed.
    pub fn file_sha(&self) -> Option<&str> {
        match self.active() {
            Phase::Uploading(u) => Some(&u.file_sha),
            Phase::Finishing(f) => Some(&f.file_sha),
            Phase::Done(d) => d.file_sha.as_deref(),
            _ => None,
        }
    }
}
