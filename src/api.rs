//! The component's HTTP API (JSON), over any [`Io`]: the Spin adapter feeds it
//! requests, and tests drive it natively.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <api_token>`. Errors are
//! `{"error": {"code", "message"}}` with a 4xx/5xx status and a stable code.

use crate::checkpoint::Spec;
use crate::engine::{self, Body, Io, Settings};
use crate::error::{codes, Error};
use crate::job;
use crate::protocol::params::{self as rules, FileNameProblem, MAX_FILE_NAME_BYTES, PART_SIZES};
use crate::source::{is_plain_file_type, Source, SourceError, SourcePolicy, MAX_FILE_TYPE_LEN};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// A request, as the platform received it. The body is a stream, read only once the
/// caller is authenticated and only as far as [`MAX_BODY`].
#[derive(Debug, Clone)]
pub struct ApiRequest<B = Vec<u8>> {
    /// Upper-case method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: B,
}

/// A body already in memory (tests, and hosts that read it whole).
impl Body for Vec<u8> {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        (!self.is_empty()).then(|| Ok(std::mem::take(self)))
    }
}

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

impl ApiResponse {
    fn json(status: u16, body: Value) -> Self {
        ApiResponse { status, headers: vec![("content-type".into(), "application/json".into())], body }
    }

    fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({ "error": { "code": code, "message": message.into() } }))
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("JSON serializes")
    }
}

/// The deployment's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token every route but `/healthz` needs.
    pub api_token: String,
    /// Engine settings (signer, budget, concurrency, ...).
    pub settings: Settings,
    /// Allowed sources.
    pub policy: SourcePolicy,
}

fn error_status(e: &Error) -> u16 {
    match e {
        Error::Source(SourceError::Invalid(_)) => 400,
        Error::Source(SourceError::NotAllowed(_)) => 403,
        Error::Source(SourceError::Changed(_)) => 409,
        // The source or the service answered, and not usefully.
        Error::Source(_) | Error::Vod(_) | Error::VodTransport(_) => 502,
        Error::OutOfTime => 504,
        Error::Ended(_) => 409,
        Error::Storage(_) | Error::Checkpoint(_) => 500,
    }
}

fn from_engine(e: Error) -> ApiResponse {
    ApiResponse::error(error_status(&e), e.code(), e.to_string())
}

/// A 0/1 or boolean flag, as users of the protocol and of JSON write it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(u8),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    source: String,
    file_name: Option<String>,
    file_type: Option<String>,
    tags: Option<Vec<String>>,
    class_id: Option<u64>,
    is_transcode: Option<Flag>,
    is_screenshot: Option<Flag>,
    is_watermark: Option<Flag>,
    data_size: Option<u64>,
}

/// A flag as JSON gives it: a boolean, or a number that the document's `0 or 1` rule
/// reads.
fn flag(name: &str, value: Option<Flag>) -> Result<bool, ApiResponse> {
    match value {
        None => Ok(false),
        Some(Flag::Bool(on)) => Ok(on),
        Some(Flag::Int(n)) => rules::flag(&n.to_string())
            .map_err(|_| ApiResponse::error(400, codes::BAD_REQUEST, format!("{name} must be true, false, 0 or 1, got {n}"))),
    }
}

/// Our own limits on `POST /uploads`, stricter than the document's (which allows any
/// number of tags of any content, any fileType, and control characters in fileName):
/// at most this many tags.
pub const MAX_TAGS: usize = 16;

/// Ours: a tag's length in characters (at least 1; no control characters either).
pub const MAX_TAG_CHARS: usize = 32;

/// Reads and validates the body of `POST /uploads` into a [`Spec`].
pub fn parse_create(body: &[u8], policy: &SourcePolicy) -> Result<Spec, ApiResponse> {
    let bad = |message: String| ApiResponse::error(400, codes::BAD_REQUEST, message);
    let parsed: CreateBody = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let source = Source::parse(&parsed.source, policy).map_err(|e| {
        let code = if matches!(e, SourceError::NotAllowed(_)) { codes::SOURCE_NOT_ALLOWED } else { codes::INVALID_SOURCE };
        ApiResponse::error(if code == codes::SOURCE_NOT_ALLOWED { 403 } else { 400 }, code, e.to_string())
    })?;
    let (default_name, default_type) = source.default_names();
    let file_name = match parsed.file_name {
        None => default_name,
        Some(name) => {
            let wrong_length = || bad(format!("fileName must be 1 to {MAX_FILE_NAME_BYTES} bytes, got {}", name.len()));
            // Ours: not blank, and no control characters; the rest is the document's rule.
            if name.trim().is_empty() {
                return Err(wrong_length());
            }
            match rules::file_name_refusing(&name, char::is_control) {
                Ok(()) => {}
                Err(FileNameProblem::TooLong { .. }) => return Err(wrong_length()),
                Err(FileNameProblem::Forbidden(c)) => {
                    return Err(bad(format!("fileName must not contain {c:?} (nor any of {})", rules::forbidden_name_chars_listed())))
                }
            }
            name
        }
    };
    let file_type = match parsed.file_type {
        None => default_type,
        Some(t) if is_plain_file_type(&t) => t,
        Some(t) => return Err(bad(format!("fileType must be 1 to {MAX_FILE_TYPE_LEN} ASCII letters or digits (such as mp4), got {t:?}"))),
    };
    let tags = parsed.tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(bad(format!("at most {MAX_TAGS} tags are allowed, got {}", tags.len())));
    }
    if let Some(t) = tags.iter().find(|t| t.is_empty() || t.chars().count() > MAX_TAG_CHARS || t.chars().any(char::is_control)) {
        return Err(bad(format!("each tag must be 1 to {MAX_TAG_CHARS} characters without control characters, got {t:?}")));
    }
    let data_size = parsed.data_size.unwrap_or(PART_SIZES[1]);
    rules::data_size(data_size).map_err(|problem| bad(problem.to_string()))?;
    Ok(Spec {
        source,
        file_name,
        file_type,
        tags,
        class_id: parsed.class_id,
        is_transcode: flag("isTranscode", parsed.is_transcode)?,
        is_screenshot: flag("isScreenshot", parsed.is_screenshot)?,
        is_watermark: flag("isWatermark", parsed.is_watermark)?,
        data_size,
    })
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the headers carry `Authorization: Bearer <token>` (the scheme in any case,
/// as RFC 6750 allows).
pub fn authorized(headers: &[(String, String)], token: &str) -> bool {
    let given = crate::source::header(headers, "authorization")
        .and_then(|v| v.trim().split_once(char::is_whitespace))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The answer when the deployment's configuration is unusable. Only an authenticated
/// caller learns which variable is wrong (never a value); anyone else learns only
/// that the configuration is.
pub fn config_problem(headers: &[(String, String)], api_token: Option<&str>, problem: &str) -> ApiResponse {
    match api_token {
        Some(token) if authorized(headers, token) => ApiResponse::error(503, codes::CONFIG, problem),
        Some(_) => {
            ApiResponse::error(503, codes::CONFIG, "the deployment's configuration is incomplete or wrong (its log names the variable)")
        }
        None => ApiResponse::error(503, codes::CONFIG, "the api_token variable is not set: every route but /healthz is closed"),
    }
}

/// Reads the body, refusing one over [`MAX_BODY`] from its Content-Length or after at
/// most `MAX_BODY + 1` bytes, never holding more.
async fn read_body<B: Body>(headers: &[(String, String)], body: &mut B) -> Result<Vec<u8>, ApiResponse> {
    let too_large = || ApiResponse::error(413, codes::PAYLOAD_TOO_LARGE, format!("request body is over {MAX_BODY} bytes"));
    if crate::source::header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk.map_err(|e| ApiResponse::error(400, codes::BAD_REQUEST, format!("request body unreadable: {e}")))?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn valid_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Handles one request; `started` is when the invocation began, on [`Io::now`] (the
/// work budget counts from there). The caller is authenticated before the body is read.
pub async fn handle<I: Io, B: Body>(io: &I, config: &Config, req: ApiRequest<B>, started: Duration) -> ApiResponse {
    let ApiRequest { method, path, headers, mut body } = req;
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments == ["healthz"] {
        return ApiResponse::json(200, json!({ "ok": true }));
    }
    if config.api_token.is_empty() {
        return config_problem(&headers, None, "");
    }
    if !authorized(&headers, &config.api_token) {
        return ApiResponse::error(401, codes::UNAUTHORIZED, "missing or wrong Authorization: Bearer token");
    }
    let method = method.as_str();
    let not_allowed = || ApiResponse::error(405, codes::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {path}"));
    let status_of = |found: Result<Option<crate::checkpoint::Record>, Error>, id: &str| match found {
        Ok(Some(rec)) => ApiResponse::json(200, job::status(&rec)),
        Ok(None) => ApiResponse::error(404, codes::NOT_FOUND, format!("no upload {id}")),
        Err(e) => from_engine(e),
    };
    match segments.as_slice() {
        ["uploads"] => match method {
            "POST" => match read_body(&headers, &mut body).await {
                Ok(bytes) => create(io, config, &bytes, started).await,
                Err(response) => response,
            },
            "GET" => match engine::list(io).await {
                Ok(listing) => ApiResponse::json(
                    200,
                    json!({ "uploads": listing.records.iter().map(job::status).collect::<Vec<_>>(), "unreadable": listing.unreadable }),
                ),
                Err(e) => from_engine(e),
            },
            _ => not_allowed(),
        },
        ["uploads", id] | ["uploads", id, "advance" | "retry"] if !valid_id(id) => {
            ApiResponse::error(404, codes::NOT_FOUND, format!("no upload {id:?}: ids are 20 hex digits"))
        }
        ["uploads", id] => match method {
            "GET" => status_of(engine::load(io, id).await, id),
            "DELETE" => status_of(engine::cancel(io, id).await, id),
            _ => not_allowed(),
        },
        ["uploads", id, "advance"] => match method {
            "POST" => status_of(engine::advance(io, &config.settings, id, started).await, id),
            _ => not_allowed(),
        },
        ["uploads", id, "retry"] => match method {
            "POST" => match engine::retry(io, id).await {
                Ok(Some(_)) => status_of(engine::advance(io, &config.settings, id, started).await, id),
                other => status_of(other, id),
            },
            _ => not_allowed(),
        },
        ["tick"] => match method {
            "POST" => match engine::tick(io, &config.settings, started).await {
                Ok(report) => ApiResponse::json(
                    200,
                    json!({
                        "advanced": report.advanced,
                        "errors": report.errors.iter().map(|(id, code, message)| json!({"id": id, "code": code, "message": message})).collect::<Vec<_>>(),
                        "removed": report.removed,
                        "waiting": report.waiting,
                    }),
                ),
                Err(e) => from_engine(e),
            },
            _ => not_allowed(),
        },
        _ => ApiResponse::error(404, codes::NOT_FOUND, format!("no route {path}")),
    }
}

async fn create<I: Io>(io: &I, config: &Config, body: &[u8], started: Duration) -> ApiResponse {
    let spec = match parse_create(body, &config.policy) {
        Ok(spec) => spec,
        Err(response) => return response,
    };
    let (rec, created) = match engine::create(io, &config.settings, spec).await {
        Ok(found) => found,
        Err(e) => return from_engine(e),
    };
    // Work on it within this invocation, as far as the budget allows.
    let rec = match engine::advance(io, &config.settings, &rec.id, started).await {
        Ok(Some(rec)) => rec,
        Ok(None) => rec,
        Err(e) => return from_engine(e),
    };
    let mut response = ApiResponse::json(if created { 201 } else { 200 }, job::status(&rec));
    response.headers.push(("location".into(), format!("/uploads/{}", rec.id)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SourcePolicy {
        SourcePolicy { allowed_origins: vec!["https://bucket.example".into()], local_root: Some("/data".into()) }
    }

    fn err(body: &str) -> (u16, String, String) {
        let r = parse_create(body.as_bytes(), &policy()).unwrap_err();
        (r.status, r.body["error"]["code"].as_str().unwrap().into(), r.body["error"]["message"].as_str().unwrap().into())
    }

    #[test]
    fn a_minimal_request_gets_derived_valid_names() {
        let spec = parse_create(br#"{"source":"https://bucket.example/in/My:Clip.MKV?sig=x"}"#, &policy()).unwrap();
        assert_eq!((spec.file_name.as_str(), spec.file_type.as_str(), spec.data_size), ("My_Clip", "mkv", 1_048_576));
        let spec = parse_create(
            br#"{"source":"/data/a.mp4","isTranscode":1,"isWatermark":true,"tags":["a"],"classId":3,"dataSize":524288}"#,
            &policy(),
        )
        .unwrap();
        assert!(spec.is_transcode && spec.is_watermark && !spec.is_screenshot);
    }

    #[test]
    fn bad_input_is_named() {
        for (body, status, code, needle) in [
            ("{", 400, "bad_request", "invalid JSON"),
            ("[]", 400, "bad_request", "invalid JSON"),
            (r#"{"source":"https://bucket.example/a","colour":"red"}"#, 400, "bad_request", "colour"),
            (r#"{"source":42}"#, 400, "bad_request", "invalid type"),
            (r#"{}"#, 400, "bad_request", "source"),
            (r#"{"source":"ftp://bucket.example/a"}"#, 400, "invalid_source", "scheme"),
            (r#"{"source":"https://other.example/a"}"#, 403, "source_not_allowed", "other.example"),
            (r#"{"source":"/etc/passwd"}"#, 403, "source_not_allowed", "/data"),
            (r#"{"source":"/data/a","fileName":"a/b"}"#, 400, "bad_request", "fileName"),
            (r#"{"source":"/data/a","fileName":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#, 400, "bad_request", "fileName"),
            (r#"{"source":"/data/a","fileType":"m p4"}"#, 400, "bad_request", "fileType"),
            (r#"{"source":"/data/a","dataSize":1000}"#, 400, "bad_request", "dataSize"),
            (r#"{"source":"/data/a","tags":[""]}"#, 400, "bad_request", "tag"),
            (r#"{"source":"/data/a","isTranscode":2}"#, 400, "bad_request", "isTranscode"),
            (r#"{"source":"/data/a","classId":-1}"#, 400, "bad_request", "invalid value"),
        ] {
            let (s, c, m) = err(body);
            assert_eq!((s, c.as_str()), (status, code), "{body}: {m}");
            assert!(m.contains(needle), "{body}: {m}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
        let h = |v: &str| vec![("Authorization".to_owned(), v.to_owned())];
        assert!(authorized(&h("Bearer t0k"), "t0k"));
        assert!(authorized(&h("bearer t0k"), "t0k") && authorized(&h("BEARER  t0k "), "t0k"), "the scheme in any case (RFC 6750)");
        assert!(!authorized(&h("Bearer t0"), "t0k") && !authorized(&h("t0k"), "t0k") && !authorized(&h("Bearer "), ""));
        assert!(!authorized(&h("Basic t0k"), "t0k") && !authorized(&h("Bearert0k"), "t0k"));
    }
}
