//! The one error type of the upload engine, and the stable error codes users see in
//! API answers and in an upload's `error.code`. Every lower-layer error is mapped to a
//! code here, once.

use crate::checkpoint::BadRecord;
use crate::hasher::BadHasherState;
use crate::protocol::{AnswerError, ApiError};
use crate::source::SourceError;
use crate::upload::{Outcome, UploadError};
use std::fmt;

/// Stable error codes.
pub mod codes {
    /// The request is malformed (JSON, fields, types).
    pub const BAD_REQUEST: &str = "bad_request";
    /// Missing or wrong bearer token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// No such upload or route.
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The request body is too large.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// The source is not a usable URL or path.
    pub const INVALID_SOURCE: &str = "invalid_source";
    /// The source is outside what this deployment may read.
    pub const SOURCE_NOT_ALLOWED: &str = "source_not_allowed";
    /// The source could not be read for now (retryable).
    pub const SOURCE_UNREACHABLE: &str = "source_unreachable";
    /// The source sent nothing for too long (retryable).
    pub const SOURCE_STALLED: &str = "source_stalled";
    /// The source refused access (401/403: an expired presigned URL, say).
    pub const SOURCE_DENIED: &str = "source_denied";
    /// The source has no such object (404/410), or the local file is gone.
    pub const SOURCE_NOT_FOUND: &str = "source_not_found";
    /// The source refused the request itself (another 4xx).
    pub const SOURCE_REFUSED: &str = "source_refused";
    /// The source ignores Range requests and the file is too large to read whole.
    pub const SOURCE_NO_RANGE: &str = "source_no_range";
    /// The source answered with other bytes than the range asked for.
    pub const SOURCE_BAD_RANGE: &str = "source_bad_range";
    /// The source sent its bytes compressed or otherwise encoded.
    pub const SOURCE_ENCODED: &str = "source_encoded";
    /// The source changed since the upload started.
    pub const SOURCE_CHANGED: &str = "source_changed";
    /// The VOD service refused a call.
    pub const VOD_REJECTED: &str = "vod_rejected";
    /// The VOD service could not be reached or kept failing (retryable).
    pub const VOD_UNAVAILABLE: &str = "vod_unavailable";
    /// The key-value store failed.
    pub const STORAGE: &str = "storage_error";
    /// A stored checkpoint is unusable.
    pub const CHECKPOINT: &str = "checkpoint_unusable";
    /// The upload was cancelled.
    pub const CANCELLED: &str = "cancelled";
    /// The request conflicts with the upload's state (retrying an upload that is done).
    pub const CONFLICT: &str = "conflict";
    /// The deployment's configuration is incomplete or wrong.
    pub const CONFIG: &str = "config_error";
}

/// Why the engine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The source.
    Source(SourceError),
    /// The VOD service answered with a failure.
    Vod(ApiError),
    /// The VOD service did not answer usefully (transport, HTTP status, bad JSON).
    VodTransport(String),
    /// The key-value store.
    Storage(String),
    /// A stored checkpoint.
    Checkpoint(String),
    /// The invocation's time ran out in a wait. Not recorded as an error when the
    /// invocation made progress (it stops and checkpoints); without any progress it is
    /// recorded as a stall.
    OutOfTime,
    /// The upload ended (another invocation finished it, or the user cancelled it)
    /// while this invocation worked: not a failure, a reason to stop.
    Ended(Outcome),
}

impl Error {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Source(e) => e.retryable(),
            Error::Vod(e) => e.retryable,
            Error::VodTransport(_) | Error::Storage(_) | Error::OutOfTime => true,
            Error::Checkpoint(_) | Error::Ended(_) => false,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Source(SourceError::Invalid(_)) => codes::INVALID_SOURCE,
            Error::Source(SourceError::NotAllowed(_)) => codes::SOURCE_NOT_ALLOWED,
            Error::Source(SourceError::Unreachable(_)) => codes::SOURCE_UNREACHABLE,
            Error::Source(SourceError::Stalled(_)) => codes::SOURCE_STALLED,
            Error::Source(SourceError::Changed(_)) => codes::SOURCE_CHANGED,
            Error::Source(SourceError::Denied(_)) => codes::SOURCE_DENIED,
            Error::Source(SourceError::NotFound(_)) => codes::SOURCE_NOT_FOUND,
            Error::Source(SourceError::Refused(_)) => codes::SOURCE_REFUSED,
            Error::Source(SourceError::NoRange(_)) => codes::SOURCE_NO_RANGE,
            Error::Source(SourceError::BadRange(_)) => codes::SOURCE_BAD_RANGE,
            Error::Source(SourceError::Encoded(_)) => codes::SOURCE_ENCODED,
            Error::Vod(e) if e.retryable => codes::VOD_UNAVAILABLE,
            Error::Vod(_) => codes::VOD_REJECTED,
            Error::VodTransport(_) => codes::VOD_UNAVAILABLE,
            Error::Storage(_) => codes::STORAGE,
            Error::Checkpoint(_) => codes::CHECKPOINT,
            Error::OutOfTime => codes::SOURCE_STALLED,
            Error::Ended(Outcome::Cancelled { .. }) => codes::CANCELLED,
            Error::Ended(Outcome::Done { .. }) => codes::CONFLICT,
        }
    }

    /// Whether the upload's own stored data is the problem: a retry then starts it over.
    pub fn voids_checkpoint(&self) -> bool {
        matches!(self, Error::Checkpoint(_))
    }

    /// As recorded on the upload.
    pub fn to_upload_error(&self) -> UploadError {
        UploadError {
            code: self.code().to_owned(),
            message: self.to_string(),
            retryable: self.retryable(),
            vod_code: match self {
                Error::Vod(e) => Some(e.code),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Source(e) => e.fmt(f),
            Error::Vod(e) => e.fmt(f),
            Error::VodTransport(m) => write!(f, "VOD service unavailable: {m}"),
            Error::Storage(m) => write!(f, "key-value store: {m}"),
            Error::Checkpoint(m) => write!(f, "checkpoint: {m}"),
            Error::OutOfTime => f.write_str("the invocation's time was up before anything arrived"),
            Error::Ended(Outcome::Cancelled { .. }) => f.write_str("the upload was cancelled"),
            Error::Ended(Outcome::Done { .. }) => f.write_str("the upload is done"),
        }
    }
}

impl std::error::Error for Error {}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Error::Source(e)
    }
}

impl From<AnswerError> for Error {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Api(api) => Error::Vod(api),
            AnswerError::Malformed(m) => Error::VodTransport(m),
        }
    }
}

impl From<BadRecord> for Error {
    fn from(e: BadRecord) -> Self {
        Error::Checkpoint(e.0)
    }
}

impl From<BadHasherState> for Error {
    fn from(e: BadHasherState) -> Self {
        Error::Checkpoint(e.to_string())
    }
}
