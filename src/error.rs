//! The one error type of the upload engine, and the stable error codes users see in
//! API answers and in an upload's `error.code`. Every lower-layer error is mapped to a
//! code here, once.

use crate::checkpoint::{BadRecord, JobError};
use crate::hasher::BadHasherState;
use crate::protocol::{AnswerError, ApiError};
use crate::source::SourceError;
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
    /// The source could not be read (retryable).
    pub const SOURCE_UNREACHABLE: &str = "source_unreachable";
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
    /// The upload was cancelled (its record removed) while this invocation worked.
    Cancelled,
}

impl Error {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Source(SourceError::Unreachable(_)) => true,
            Error::Source(_) => false,
            Error::Vod(e) => e.retryable,
            Error::VodTransport(_) | Error::Storage(_) => true,
            Error::Checkpoint(_) | Error::Cancelled => false,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Source(SourceError::Invalid(_)) => codes::INVALID_SOURCE,
            Error::Source(SourceError::NotAllowed(_)) => codes::SOURCE_NOT_ALLOWED,
            Error::Source(SourceError::Unreachable(_)) => codes::SOURCE_UNREACHABLE,
            Error::Source(SourceError::Changed(_)) => codes::SOURCE_CHANGED,
            Error::Vod(e) if e.retryable => codes::VOD_UNAVAILABLE,
            Error::Vod(_) => codes::VOD_REJECTED,
            Error::VodTransport(_) => codes::VOD_UNAVAILABLE,
            Error::Storage(_) => codes::STORAGE,
            Error::Checkpoint(_) => codes::CHECKPOINT,
            Error::Cancelled => codes::CANCELLED,
        }
    }

    /// As recorded on the upload.
    pub fn to_job_error(&self) -> JobError {
        JobError {
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
            Error::Cancelled => f.write_str("the upload was cancelled"),
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
