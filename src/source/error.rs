//! What is wrong with a source, and which HTTP statuses say what.

use std::fmt;

/// What is wrong with a source. Each kind is either permanent (the upload fails at
/// once with its own code) or transient (`Unreachable`, `Stalled`: retried with backoff).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Not a URL or path we can read.
    Invalid(String),
    /// A URL whose origin this deployment may not reach, or a path outside the root.
    NotAllowed(String),
    /// The source could not be read for now (network, 5xx, 429, a body cut short).
    Unreachable(String),
    /// The source sent nothing for too long.
    Stalled(String),
    /// The source is not the file the upload started with.
    Changed(String),
    /// 401 or 403: the source refuses us (an expired presigned URL, say).
    Denied(String),
    /// 404 or 410, or a local file that is gone.
    NotFound(String),
    /// Another 4xx: the source refuses the request itself.
    Refused(String),
    /// The source ignores `Range` and the file is too large to read whole.
    NoRange(String),
    /// The answer is not the range asked for (Content-Range, Content-Length or the
    /// body's length disagree with the request).
    BadRange(String),
    /// The body is encoded (gzip, ...): its bytes are not the file's.
    Encoded(String),
}

impl SourceError {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, SourceError::Unreachable(_) | SourceError::Stalled(_))
    }

    /// The error for an HTTP status that is not a usable answer.
    pub fn from_status(status: u16) -> SourceError {
        let m = format!("source answered HTTP {status}");
        match status {
            401 | 403 => SourceError::Denied(format!("{m}: access denied (an expired or wrong presigned URL?)")),
            404 | 410 => SourceError::NotFound(format!("{m}: no such object")),
            412 => SourceError::Changed(format!("{m}: precondition failed (ETag or Last-Modified differs)")),
            408 | 425 | 429 => SourceError::Unreachable(format!("{m}: try again later")),
            400..=499 => SourceError::Refused(m),
            _ => SourceError::Unreachable(m),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Invalid(m)
            | SourceError::NotAllowed(m)
            | SourceError::Unreachable(m)
            | SourceError::Stalled(m)
            | SourceError::Changed(m)
            | SourceError::Denied(m)
            | SourceError::NotFound(m)
            | SourceError::Refused(m)
            | SourceError::NoRange(m)
            | SourceError::BadRange(m)
            | SourceError::Encoded(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SourceError {}
