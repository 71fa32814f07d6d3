//! The one error type of the upload engine, and the stable error codes users see in
//! API answers and in an upload's `error.code`. Every lower-layer error is mapped to a
//! code here, once.

use crate::checkpoint::BadRecord;
use crate::hasher::BadHasherState;
use crate::io_error::IoError;
use crate::protocol::{AnswerError, ApiError};
use crate::source::SourceError;
use crate::upload::{Outcome, UploadError};
use std::fmt;

/// Stable error codes.
pub mod codes {
    /// The request is malformed (JSON, fields, types).
    pub const BAD_REQUEST: &str = "bad_request";
    /// A service the request needed (an event sender's confirmation endpoint) refused or
    /// could not be reached.
    pub const UPSTREAM: &str = "upstream_error";
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
    /// A platform quota (`outbound_per_hour`, `kv_writes_per_second`) is used up for now
    /// (retryable: the upload goes on when its window ends).
    pub const QUOTA: &str = "quota_exhausted";
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
    Storage(IoError),
    /// A stored checkpoint.
    Checkpoint(String),
    /// The invocation's time ran out in a wait. Not recorded as an error when the
    /// invocation made progress (it stops and checkpoints); without any progress it is
    /// recorded as a stall.
    OutOfTime,
    /// The upload ended (another invocation finished it, or the user cancelled it)
    /// while this invocation worked: not a failure, a reason to stop.
    Ended(Outcome),
    /// Another invocation failed the upload while this one worked (its record, as
    /// stored): a final state, so this one stops and writes nothing over it.
    Overtaken(Box<crate::upload::Upload>),
    /// A platform quota stopped the invocation before it could record its work (the
    /// upload goes on from its last checkpoint once the window ends).
    Quota(crate::engine::QuotaStop),
}

impl Error {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Source(e) => e.retryable(),
            Error::Vod(e) => e.retryable,
            Error::VodTransport(_) | Error::Storage(_) | Error::OutOfTime | Error::Quota(_) => true,
            Error::Checkpoint(_) | Error::Ended(_) | Error::Overtaken(_) => false,
        }
    }

    /// The HTTP status of an answer about this error and its stable code, side by side:
    /// one row per kind of error, not per code (`OutOfTime` shares `Source(Stalled)`'s
    /// code, with 504 where a stalled source is 502).
    pub fn answer(&self) -> (u16, &'static str) {
        match self {
            // What the user asked for cannot be read, or may not be.
            Error::Source(SourceError::Invalid(_)) => (400, codes::INVALID_SOURCE),
            Error::Source(SourceError::NotAllowed(_)) => (403, codes::SOURCE_NOT_ALLOWED),
            Error::Source(SourceError::Changed(_)) => (409, codes::SOURCE_CHANGED),
            // The source or the service answered, and not usefully.
            Error::Source(SourceError::Unreachable(_)) => (502, codes::SOURCE_UNREACHABLE),
            Error::Source(SourceError::Stalled(_)) => (502, codes::SOURCE_STALLED),
            Error::Source(SourceError::Denied(_)) => (502, codes::SOURCE_DENIED),
            Error::Source(SourceError::NotFound(_)) => (502, codes::SOURCE_NOT_FOUND),
            Error::Source(SourceError::Refused(_)) => (502, codes::SOURCE_REFUSED),
            Error::Source(SourceError::NoRange(_)) => (502, codes::SOURCE_NO_RANGE),
            Error::Source(SourceError::BadRange(_)) => (502, codes::SOURCE_BAD_RANGE),
            Error::Source(SourceError::Encoded(_)) => (502, codes::SOURCE_ENCODED),
            Error::Vod(e) if e.retryable => (502, codes::VOD_UNAVAILABLE),
            Error::Vod(_) => (502, codes::VOD_REJECTED),
            Error::VodTransport(_) => (502, codes::VOD_UNAVAILABLE),
            Error::OutOfTime => (504, codes::SOURCE_STALLED),
            Error::Ended(Outcome::Cancelled { .. }) => (409, codes::CANCELLED),
            Error::Ended(Outcome::Done { .. }) | Error::Overtaken(_) => (409, codes::CONFLICT),
            Error::Storage(_) => (500, codes::STORAGE),
            Error::Quota(_) => (429, codes::QUOTA),
            Error::Checkpoint(_) => (500, codes::CHECKPOINT),
        }
    }

    /// The stable code (of [`Error::answer`]).
    pub fn code(&self) -> &'static str {
        self.answer().1
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

/// A request refused by the API (or the Spin adapter) before any work on an upload, or
/// instead of it. Each has its HTTP status and stable code side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request is malformed (JSON, fields, types, an unreadable body).
    BadRequest,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// No such upload or route.
    NotFound,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// The request body is over the API's limit.
    PayloadTooLarge,
    /// The deployment's configuration is incomplete or wrong.
    Config,
    /// The key-value store cannot be opened.
    Storage,
    /// A service the request needed refused or could not be reached.
    Upstream,
}

impl Refusal {
    /// The HTTP status and the stable code.
    pub fn answer(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, codes::BAD_REQUEST),
            Refusal::Unauthorized => (401, codes::UNAUTHORIZED),
            Refusal::NotFound => (404, codes::NOT_FOUND),
            Refusal::MethodNotAllowed => (405, codes::METHOD_NOT_ALLOWED),
            Refusal::PayloadTooLarge => (413, codes::PAYLOAD_TOO_LARGE),
            Refusal::Config => (503, codes::CONFIG),
            Refusal::Storage => (500, codes::STORAGE),
            Refusal::Upstream => (502, codes::UPSTREAM),
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
            Error::Quota(q) => q.fmt(f),
            Error::Checkpoint(m) => write!(f, "checkpoint: {m}"),
            Error::OutOfTime => f.write_str("the invocation's time was up before anything arrived"),
            Error::Ended(Outcome::Cancelled { .. }) => f.write_str("the upload was cancelled"),
            Error::Ended(Outcome::Done { .. }) => f.write_str("the upload is done"),
            Error::Overtaken(_) => f.write_str("another invocation failed the upload"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error and refusal with its status and code as users have seen them: a
    /// change here changes the API.
    #[test]
    fn statuses_and_codes_are_pinned() {
        let m = || "m".to_owned();
        let api = |retryable| ApiError { code: -10003, message: m(), retryable };
        let errors = [
            (Error::Source(SourceError::Invalid(m())), 400, "invalid_source"),
            (Error::Source(SourceError::NotAllowed(m())), 403, "source_not_allowed"),
            (Error::Source(SourceError::Unreachable(m())), 502, "source_unreachable"),
            (Error::Source(SourceError::Stalled(m())), 502, "source_stalled"),
            (Error::Source(SourceError::Changed(m())), 409, "source_changed"),
            (Error::Source(SourceError::Denied(m())), 502, "source_denied"),
            (Error::Source(SourceError::NotFound(m())), 502, "source_not_found"),
            (Error::Source(SourceError::Refused(m())), 502, "source_refused"),
            (Error::Source(SourceError::NoRange(m())), 502, "source_no_range"),
            (Error::Source(SourceError::BadRange(m())), 502, "source_bad_range"),
            (Error::Source(SourceError::Encoded(m())), 502, "source_encoded"),
            (Error::Vod(api(true)), 502, "vod_unavailable"),
            (Error::Vod(api(false)), 502, "vod_rejected"),
            (Error::VodTransport(m()), 502, "vod_unavailable"),
            (Error::Storage(m().into()), 500, "storage_error"),
            (Error::Checkpoint(m()), 500, "checkpoint_unusable"),
            (Error::OutOfTime, 504, "source_stalled"),
            (Error::Ended(Outcome::Cancelled { at: 1 }), 409, "cancelled"),
            (Error::Ended(Outcome::Done { file_id: "1".into(), url: String::new(), at: 1 }), 409, "conflict"),
        ];
        for (error, status, code) in errors {
            assert_eq!(error.answer(), (status, code), "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
        }
        let refusals = [
            (Refusal::BadRequest, 400, "bad_request"),
            (Refusal::Unauthorized, 401, "unauthorized"),
            (Refusal::NotFound, 404, "not_found"),
            (Refusal::MethodNotAllowed, 405, "method_not_allowed"),
            (Refusal::PayloadTooLarge, 413, "payload_too_large"),
            (Refusal::Config, 503, "config_error"),
            (Refusal::Storage, 500, "storage_error"),
            (Refusal::Upstream, 502, "upstream_error"),
        ];
        for (refusal, status, code) in refusals {
            assert_eq!(refusal.answer(), (status, code), "{refusal:?}");
        }
    }
}
