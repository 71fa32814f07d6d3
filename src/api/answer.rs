//! The API's answers. Every error answer, of the API and of the Spin adapter, has one
//! shape, `{"error": {"code", "message"}}`, built by [`error_body`]; its status and code
//! come from [`Error::answer`] or [`Refusal::answer`].

use crate::error::{Error, Refusal};
use serde_json::{json, Value};

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// Status code.
    pub status: u16,
    /// Headers (content-type is always JSON).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Value,
}

/// The body of every error answer: `{"error": {"code": code, "message": message}}`.
pub fn error_body(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

impl ApiResponse {
    /// A JSON answer with `status`.
    pub(crate) fn json(status: u16, body: Value) -> Self {
        ApiResponse { status, headers: vec![("content-type".into(), "application/json".into())], body }
    }

    /// A request refused: the refusal's status and code, and `message` saying why.
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        let (status, code) = refusal.answer();
        Self::json(status, error_body(code, &message.into()))
    }

    /// The answer for an error of the engine: its status and code, its text as the message.
    pub fn from_error(e: &Error) -> Self {
        let (status, code) = e.answer();
        Self::json(status, error_body(code, &e.to_string()))
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("JSON serializes")
    }
}
