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
    /// Headers (content-type JSON, but for [`ApiResponse::text`]).
    pub headers: Vec<(String, String)>,
    /// JSON body (a string of text for [`ApiResponse::text`]).
    pub body: Value,
}

/// The stable code of an error answer (`None` for any other answer).
pub fn error_code(response: &ApiResponse) -> Option<&str> {
    response.body.get("error")?.get("code")?.as_str()
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

    /// A plain text answer (`/metrics`): the body is the text as it is, not JSON.
    pub(crate) fn text(status: u16, text: String) -> Self {
        ApiResponse { status, headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())], body: Value::String(text) }
    }

    fn is_text(&self) -> bool {
        self.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/plain"))
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
        match &self.body {
            Value::String(text) if self.is_text() => text.clone().into_bytes(),
            body => serde_json::to_vec(body).expect("JSON serializes"),
        }
    }
}
