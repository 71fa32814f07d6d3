//! The component's HTTP API (JSON), over any [`Io`]: the Spin adapter feeds it
//! requests, and tests drive it natively.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <api_token>`. Errors are
//! `{"error": {"code", "message"}}` with a 4xx/5xx status and a stable code
//! ([`answer`]); the body of `POST /uploads` is read by [`create`].

pub mod answer;
pub mod create;
pub mod events;
pub mod metrics;
mod status;

pub use answer::{error_body, ApiResponse};
pub use create::{parse_create, MAX_TAGS, MAX_TAG_CHARS};
pub use events::{After, EventsConfig};

use crate::engine::{self, Body, Io, IoError, Settings};
use crate::error::{Error, Refusal};
use crate::source::SourcePolicy;
use crate::upload::Upload;
use serde_json::json;
use status::{status_answer, status_of};
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
    /// The query, without its `?` (empty when there is none).
    pub query: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: B,
}

/// A body already in memory (tests, and hosts that read it whole).
impl Body for Vec<u8> {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>> {
        (!self.is_empty()).then(|| Ok(std::mem::take(self)))
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
    /// Storage events in (`/events`).
    pub events: EventsConfig,
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
        Some(token) if authorized(headers, token) => ApiResponse::refused(Refusal::Config, problem),
        Some(_) => {
            ApiResponse::refused(Refusal::Config, "the deployment's configuration is incomplete or wrong (its log names the variable)")
        }
        None => ApiResponse::refused(Refusal::Config, "the api_token variable is not set: every route but /healthz is closed"),
    }
}

/// Reads the body, refusing one over [`MAX_BODY`] from its Content-Length or after at
/// most `MAX_BODY + 1` bytes, never holding more.
async fn read_body<B: Body>(headers: &[(String, String)], body: &mut B) -> Result<Vec<u8>, ApiResponse> {
    read_body_within(headers, body, MAX_BODY).await
}

/// [`read_body`] with another limit.
pub(crate) async fn read_body_within<B: Body>(headers: &[(String, String)], body: &mut B, limit: usize) -> Result<Vec<u8>, ApiResponse> {
    let too_large = || ApiResponse::refused(Refusal::PayloadTooLarge, format!("request body is over {limit} bytes"));
    if crate::source::header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk.map_err(|e| ApiResponse::refused(Refusal::BadRequest, format!("request body unreadable: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn valid_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Handles one request, then does the work it leaves for after its answer (see
/// [`handle_then`]); `started` is when the invocation began, on [`Io::now`] (the work
/// budget counts from there). The caller is authenticated before the body is read.
pub async fn handle<I: Io, B: Body>(io: &I, config: &Config, req: ApiRequest<B>, started: Duration) -> ApiResponse {
    let (response, after) = handle_then(io, config, req, started).await;
    after.run(io, config, started).await;
    response
}

/// Handles one request and says what work is left for after the answer is sent (a
/// host that can answer early, as Spin can, sends it first: event senders time out).
pub async fn handle_then<I: Io, B: Body>(io: &I, config: &Config, req: ApiRequest<B>, started: Duration) -> (ApiResponse, After) {
    let (response, after) = route(io, config, req, started).await;
    // A write the quota refused surfaces as the store's error: it is the quota's.
    match (io.quota_stop(), response.status) {
        (Some(stop), 500) if answer::error_code(&response) == Some(crate::error::codes::STORAGE) => {
            let mut quota = ApiResponse::from_error(&Error::Quota(stop.clone()));
            quota.headers.push(("retry-after".into(), stop.retry_at.saturating_sub(io.unix_now()).max(1).to_string()));
            (quota, after)
        }
        _ => (response, after),
    }
}

async fn route<I: Io, B: Body>(io: &I, config: &Config, req: ApiRequest<B>, started: Duration) -> (ApiResponse, After) {
    let ApiRequest { method, path, query, headers, mut body } = req;
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments == ["healthz"] {
        return (ApiResponse::json(200, json!({ "ok": true })), After::default());
    }
    // Event senders have their own token (a storage service is not an API client).
    if segments == ["events"] {
        return events::handle(io, config, &method, &headers, &query, &mut body).await;
    }
    (answer(io, config, method, path, headers, body, started).await, After::default())
}

/// The API's own routes, behind its token.
async fn answer<I: Io, B: Body>(
    io: &I,
    config: &Config,
    method: String,
    path: &str,
    headers: Vec<(String, String)>,
    mut body: B,
    started: Duration,
) -> ApiResponse {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if config.api_token.is_empty() {
        return config_problem(&headers, None, "");
    }
    if !authorized(&headers, &config.api_token) {
        return ApiResponse::refused(Refusal::Unauthorized, "missing or wrong Authorization: Bearer token");
    }
    let method = method.as_str();
    let not_allowed = || ApiResponse::refused(Refusal::MethodNotAllowed, format!("{method} is not allowed on {path}"));
    let answer_for = |found: Result<Option<Upload>, Error>, id: &'_ str| {
        let id = id.to_owned();
        async move { status_answer(io, &config.settings, found, &id).await }
    };
    match segments.as_slice() {
        ["uploads"] => match method {
            "POST" => match read_body(&headers, &mut body).await {
                Ok(bytes) => create(io, config, &bytes, started).await,
                Err(response) => response,
            },
            "GET" => match engine::list(io).await {
                Ok(listing) => {
                    let mut uploads = Vec::with_capacity(listing.uploads.len());
                    for up in &listing.uploads {
                        uploads.push(status_of(io, &config.settings, Some(listing.keys()), up).await);
                    }
                    ApiResponse::json(200, json!({ "uploads": uploads, "unreadable": listing.unreadable }))
                }
                Err(e) => ApiResponse::from_error(&e),
            },
            _ => not_allowed(),
        },
        ["uploads", id] | ["uploads", id, "advance" | "retry"] if !valid_id(id) => {
            ApiResponse::refused(Refusal::NotFound, format!("no upload {id:?}: ids are 20 hex digits"))
        }
        ["uploads", id] => match method {
            "GET" => answer_for(engine::load(io, id).await, id).await,
            "DELETE" => answer_for(engine::cancel(io, id).await, id).await,
            _ => not_allowed(),
        },
        ["uploads", id, "advance"] => match method {
            "POST" => answer_for(engine::advance(io, &config.settings, id, started).await, id).await,
            _ => not_allowed(),
        },
        ["uploads", id, "retry"] => match method {
            "POST" => match engine::retry(io, id).await {
                Ok(Some(_)) => answer_for(engine::advance(io, &config.settings, id, started).await, id).await,
                other => answer_for(other, id).await,
            },
            _ => not_allowed(),
        },
        ["metrics"] => match method {
            "GET" => metrics::answer(io, &config.settings).await,
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
                        "notified": report.notified,
                    }),
                ),
                Err(e) => ApiResponse::from_error(&e),
            },
            _ => not_allowed(),
        },
        _ => ApiResponse::refused(Refusal::NotFound, format!("no route {path}")),
    }
}

async fn create<I: Io>(io: &I, config: &Config, body: &[u8], started: Duration) -> ApiResponse {
    let spec = match parse_create(body, &config.policy) {
        Ok(spec) => spec,
        Err(response) => return response,
    };
    let (up, created) = match engine::create(io, &config.settings, spec).await {
        Ok(found) => found,
        Err(e) => return ApiResponse::from_error(&e),
    };
    // Work on it within this invocation, as far as the budget allows.
    let up = match engine::advance(io, &config.settings, &up.id, started).await {
        Ok(Some(up)) => up,
        Ok(None) => up,
        Err(e) => return ApiResponse::from_error(&e),
    };
    let mut response = ApiResponse::json(if created { 201 } else { 200 }, status_of(io, &config.settings, None, &up).await);
    response.headers.push(("location".into(), format!("/uploads/{}", up.id)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
