//! `POST /events`: storage notifications in ([`crate::events`] reads every format),
//! one upload recorded per created object version, answered `202` with the uploads'
//! ids as soon as they are all recorded; the work on them comes after the answer
//! ([`After`]). Also the senders' handshakes: the SNS subscription confirmation, Event
//! Grid's validation and the CloudEvents webhook `OPTIONS`.
//!
//! Senders authenticate with the `events_token`, given whichever way a sender can send
//! it: `Authorization: Bearer TOKEN`, a bare `Authorization: TOKEN` (MinIO sends the
//! header as configured), or `?token=TOKEN` in the URL (SNS, Event Grid, Pub/Sub push
//! are configured with a URL only).

use super::{constant_time_eq, read_body_within, ApiResponse, Config};
use crate::engine::{self, Body, HttpRequest, Io};
use crate::error::Refusal;
use crate::events::{self, Filters, ObjectEvent, Parsed};
use crate::protocol::PART_SIZES;
use crate::source::{self, Source};
use crate::upload::{EventOrigin, Spec};
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

/// Largest accepted event body: SNS and Event Grid batches run past the API's 64 KiB.
pub const MAX_EVENT_BODY: usize = 256 * 1024;

/// How `/events` is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// The senders' token (`events_token`); empty refuses every event.
    pub token: String,
    /// Which objects become uploads.
    pub filters: Filters,
    /// The part size of event uploads.
    pub data_size: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { token: String::new(), filters: Filters::default(), data_size: PART_SIZES[1] }
    }
}

/// Work to do once the answer is sent: the uploads an event recorded, advanced in
/// turn within the invocation's budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct After {
    /// Uploads to advance.
    pub ids: Vec<String>,
}

impl After {
    /// Advances the uploads in turn until the budget (from `started`) is spent; `/tick`
    /// does the rest. Errors are the uploads' own (each status shows it).
    pub async fn run<I: Io>(self, io: &I, config: &Config, started: Duration) {
        for id in self.ids {
            if io.now() >= started + config.settings.budget {
                break;
            }
            let _ = engine::advance(io, &config.settings, &id, started).await;
        }
    }
}

/// Whether the request carries the events token in one of its three forms.
pub fn sender_authorized(headers: &[(String, String)], query: &str, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let matches = |given: &str| constant_time_eq(given.trim().as_bytes(), token.as_bytes());
    let header = source::header(headers, "authorization").map(str::trim).unwrap_or("");
    let bearer = header.split_once(char::is_whitespace).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t);
    let in_query = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
    (!header.is_empty() && (matches(header) || bearer.is_some_and(matches))) || in_query.is_some_and(|t| matches(&t))
}

/// Handles `/events`: the answer, and the work to do after it.
pub async fn handle<I: Io, B: Body>(
    io: &I,
    config: &Config,
    method: &str,
    headers: &[(String, String)],
    query: &str,
    body: &mut B,
) -> (ApiResponse, After) {
    let nothing = |r| (r, After::default());
    if config.events.token.is_empty() {
        return nothing(ApiResponse::refused(Refusal::Unauthorized, "the events_token variable is not set: /events refuses every event"));
    }
    if !sender_authorized(headers, query, &config.events.token) {
        return nothing(ApiResponse::refused(
            Refusal::Unauthorized,
            "missing or wrong events token (Authorization: Bearer TOKEN, Authorization: TOKEN, or ?token=TOKEN)",
        ));
    }
    match method {
        "OPTIONS" => return nothing(options(headers)),
        "POST" => {}
        _ => return nothing(ApiResponse::refused(Refusal::MethodNotAllowed, format!("{method} is not allowed on /events"))),
    }
    let bytes = match read_body_within(headers, body, MAX_EVENT_BODY).await {
        Ok(bytes) => bytes,
        Err(response) => return nothing(response),
    };
    let parsed = match events::parse(headers, &bytes) {
        Ok(parsed) => parsed,
        Err(problem) => return nothing(ApiResponse::refused(Refusal::BadRequest, problem)),
    };
    match parsed {
        Parsed::Test => nothing(ApiResponse::json(200, json!({ "test": true, "uploads": [] }))),
        Parsed::SnsConfirm { subscribe_url, topic_arn } => nothing(confirm_sns(io, &subscribe_url, &topic_arn).await),
        Parsed::EventGridValidation { code, created } => {
            let (_, after) = record(io, config, "eventgrid", created, 0).await;
            (ApiResponse::json(200, json!({ "validationResponse": code })), after)
        }
        Parsed::Objects { format, created, ignored } => record(io, config, format, created, ignored).await,
    }
}

/// Records an upload per admitted object and answers with them all once recorded.
async fn record<I: Io>(io: &I, config: &Config, format: &str, created: Vec<ObjectEvent>, ignored: usize) -> (ApiResponse, After) {
    let mut uploads = Vec::new();
    let mut refused = Vec::new();
    let mut filtered = 0;
    let mut after = After::default();
    for e in created {
        if !config.events.filters.admits(&e) {
            filtered += 1;
            continue;
        }
        let source = match source_of(config, &e) {
            Ok(source) => source,
            Err(problem) => {
                refused.push(refusal(&e, &crate::error::Error::from(problem)));
                continue;
            }
        };
        let spec = Spec::for_source(source, config.events.data_size);
        let origin = EventOrigin {
            store: e.store.as_str().into(),
            bucket: e.bucket.clone(),
            key: e.key.clone(),
            version: e.version.clone(),
            etag: e.etag.clone(),
            confirmed: false,
        };
        let id = events::upload_id(&e);
        match engine::record_event(io, &id, spec, origin, e.size).await {
            Ok(recorded) => {
                if !recorded.state.is_final() {
                    after.ids.push(recorded.id.clone());
                }
                uploads.push(json!({
                    "id": recorded.id,
                    "bucket": e.bucket,
                    "key": e.key,
                    "new": recorded.new,
                    "state": recorded.state,
                    "location": format!("/uploads/{}", recorded.id),
                }));
            }
            // An object refused for good (too large) is listed with why, like a source
            // refused above: delivering the event again would not change that, and the
            // other objects of the batch are still recorded. Any other error (our own
            // store: a record unreadable now may be readable after a fix) fails the
            // batch, so that the sender delivers it again.
            Err(problem @ crate::error::Error::Source(_)) if !problem.retryable() => refused.push(refusal(&e, &problem)),
            // The sender delivers again: what was recorded is found again by its id.
            Err(e) => return (ApiResponse::from_error(&e), After::default()),
        }
    }
    // 202 while there is work to do on them; 200 when there is none (all ignored, or a
    // repeat of an event whose uploads have ended): a sender must not retry either.
    let status = if after.ids.is_empty() { 200 } else { 202 };
    let mut body = json!({ "format": format, "uploads": uploads, "ignored": ignored, "filtered": filtered });
    if !refused.is_empty() {
        body["refused"] = Value::Array(refused);
    }
    let mut response = ApiResponse::json(status, body);
    if let [only] = after.ids.as_slice() {
        response.headers.push(("location".into(), format!("/uploads/{only}")));
    }
    (response, after)
}

/// An object refused for good, as the answer lists it under `refused`.
fn refusal(e: &ObjectEvent, problem: &crate::error::Error) -> Value {
    json!({ "bucket": e.bucket, "key": e.key, "error": { "code": problem.code(), "message": problem.to_string() } })
}

/// Where an announced object is read from: a blob URL the event gives (Azure); else,
/// with S3 credentials, `s3://BUCKET/KEY`; else the object under the deployment's
/// source origin, path style (a public bucket).
fn source_of(config: &Config, e: &ObjectEvent) -> Result<Source, source::SourceError> {
    if let Some(url) = &e.url {
        return Source::parse(url, &config.policy);
    }
    if config.policy.s3 {
        return Source::s3(&e.bucket, &e.key);
    }
    let Some(origin) = config.policy.allowed_origins.iter().find(|o| !o.contains('*')) else {
        return Err(source::SourceError::NotAllowed(
            "events name objects by bucket and key: set the source_origin variable to the store's origin, \
             and source_access_key_id and source_secret_access_key for a private bucket"
                .into(),
        ));
    };
    Source::parse(&format!("{origin}/{}/{}", e.bucket, source::sigv4::uri_encode(&e.key, false)), &config.policy)
}

/// Confirms an SNS subscription by GETting its `SubscribeURL` (the parser checked it is
/// an SNS endpoint). The outbound host must be allowed: the answer says so when not.
async fn confirm_sns<I: Io>(io: &I, url: &str, topic: &str) -> ApiResponse {
    let request =
        HttpRequest { method: "GET", url: url.to_owned(), headers: vec![], body: Rc::default(), timeout: Some(Duration::from_secs(10)) };
    let origin = source::origin_of(url).unwrap_or_default();
    match io.send(request).await {
        Ok(response) if (200..300).contains(&response.status) => ApiResponse::json(200, json!({ "confirmed": topic })),
        Ok(response) => ApiResponse::refused(
            Refusal::Upstream,
            format!("SNS answered {} to the confirmation of {topic}: confirm it in the SNS console", response.status),
        ),
        Err(e) => ApiResponse::refused(
            Refusal::Upstream,
            format!(
                "cannot confirm the SNS subscription to {topic}: {e}. The component may reach only its allowed outbound hosts: \
                 add \"{origin}\" to allowed_outbound_hosts in spin.toml, or confirm the subscription in the SNS console"
            ),
        ),
    }
}

/// The CloudEvents webhook handshake (abuse protection): the sender's origin allowed.
fn options(headers: &[(String, String)]) -> ApiResponse {
    match events::webhook_options(headers, None) {
        Ok(o) => {
            let mut response = ApiResponse::json(200, json!({ "allowedOrigin": o.allowed_origin }));
            response.headers.push(("webhook-allowed-origin".into(), o.allowed_origin));
            response.headers.push(("webhook-allowed-rate".into(), o.allowed_rate));
            response.headers.push(("allow".into(), "POST, OPTIONS".into()));
            response
        }
        Err(problem) => ApiResponse::refused(Refusal::BadRequest, problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_in_each_form_senders_use() {
        let h = |v: &str| vec![("authorization".to_owned(), v.to_owned())];
        assert!(sender_authorized(&h("Bearer s3cret"), "", "s3cret"));
        assert!(sender_authorized(&h("bearer  s3cret "), "", "s3cret"));
        assert!(sender_authorized(&h("s3cret"), "", "s3cret"), "MinIO sends the header as configured");
        assert!(sender_authorized(&[], "a=1&token=s3cret", "s3cret"));
        assert!(sender_authorized(&[], "token=s3%63ret", "s3cret"), "percent-decoded");
        for (headers, query) in
            [(h("Bearer wrong"), ""), (h("Basic s3cret"), ""), (vec![], "token=s3cre"), (vec![], ""), (h(""), "tok=s3cret")]
        {
            assert!(!sender_authorized(&headers, query, "s3cret"), "{headers:?} {query}");
        }
        assert!(!sender_authorized(&h(""), "token=", ""), "no token configured: nothing passes");
    }
}
