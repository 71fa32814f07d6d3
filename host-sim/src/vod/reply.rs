//! The service's answers: the JSON envelope and the one error type of the simulator's
//! protocol layer, each error carrying the stable code a client sees.

use serde_json::{json, Value};
use vod_uploader::protocol::codes::{COMMON, INVALID_BODY, PARAMS, READ_CACHE, SIGNATURE, WRITE_CACHE};

/// A refused call: the negative `code`, a `message` naming the problem, `canRetry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Negative protocol code.
    pub code: i64,
    /// Names the parameter or rule at fault.
    pub message: String,
    /// Whether the same call may succeed later.
    pub can_retry: bool,
}

/// Rate limit exceeded (retryable). Not in the documents, which allow "other negative
/// codes" for transient faults; the six documented ones are `protocol::codes`.
pub const RATE_LIMIT: i64 = -10010;

impl Reject {
    fn new(code: i64, message: impl Into<String>, can_retry: bool) -> Self {
        Reject { code, message: message.into(), can_retry }
    }
    /// -10001.
    pub fn common(message: impl Into<String>) -> Self {
        Self::new(COMMON, message, false)
    }
    /// -10002.
    pub fn signature(message: impl Into<String>) -> Self {
        Self::new(SIGNATURE, message, false)
    }
    /// -10003.
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(PARAMS, message, false)
    }
    /// -10006.
    pub fn body(message: impl Into<String>) -> Self {
        Self::new(INVALID_BODY, message, false)
    }
    /// Rate limit, retryable.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(RATE_LIMIT, message, true)
    }
    /// -10004 or -10005, retryable.
    pub fn cache(code: i64, message: impl Into<String>) -> Self {
        Self::new(code, message, true)
    }

    /// The `codeDesc` a client sees.
    pub fn code_desc(&self) -> &'static str {
        match self.code {
            COMMON => "InvalidCommonParameter",
            SIGNATURE => "AuthFailure",
            PARAMS => "InvalidParameter",
            WRITE_CACHE => "WriteCacheFailed",
            READ_CACHE => "ReadCacheFailed",
            INVALID_BODY => "InvalidBody",
            RATE_LIMIT => "RequestLimitExceeded",
            _ => "InternalError",
        }
    }

    /// The JSON answer.
    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "codeDesc": self.code_desc(),
            "canRetry": self.can_retry as u8,
        })
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl From<super::store::StoreError> for Reject {
    fn from(e: super::store::StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Reject::cache(READ_CACHE, format!("storage failure: {e}"))
    }
}

/// A successful answer with `code` and extra fields merged in.
pub fn success(code: i64, extra: Value) -> Value {
    let mut v = json!({ "code": code, "message": "", "codeDesc": "Success", "canRetry": 0 });
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.extend(more);
    }
    v
}
