//! `POST /events` natively: the same `api::handle` the Spin adapter calls, with storage
//! notifications in the senders' documented shapes (the fixtures of `src/events`),
//! over a private bucket (`host-sim files --sigv4`), the VOD simulator and SQLite.

use host_sim::files::{self, Running};
use host_sim::files_auth::Auth;
use host_sim::kv::SqliteKv;
use host_sim::native::monotonic_now as now;
use host_sim::native::NativeIo;
use host_sim::sample::sha1_hex;
use host_sim::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use vod_uploader::api::{self, ApiRequest, ApiResponse, Config, EventsConfig};
use vod_uploader::source::s3::S3Access;
use vod_uploader::source::SourcePolicy;

const API_TOKEN: &str = "api-token-0123456789";
const EVENTS_TOKEN: &str = "events-token-abcdef";
const KEY_ID: &str = "AKIDEVENTS";
const SECRET: &str = "events/Secret+0123456789abcdefEXAMPLE";

struct Env {
    stack: Stack,
    _bucket: Running,
    io: NativeIo,
    config: Config,
}

async fn env() -> Env {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let auth: Auth = format!("{KEY_ID}:{SECRET}").parse().unwrap();
    let bucket = files::start_with(stack.root.clone(), "127.0.0.1:0".parse().unwrap(), Some(auth)).await.unwrap();
    let origin = format!("http://{}", bucket.addr);
    let io = NativeIo::new(Arc::new(SqliteKv::open(&stack.kv_file()).unwrap()));
    let mut settings = stack.settings();
    settings.budget = Duration::from_secs(30);
    settings.s3 = S3Access::from_variables(Some(KEY_ID), Some(SECRET), None, None, None, Some(&origin)).unwrap();
    let config = Config {
        api_token: API_TOKEN.into(),
        settings,
        policy: SourcePolicy { allowed_origins: vec![origin], local_root: None, s3: true },
        events: EventsConfig { token: EVENTS_TOKEN.into(), ..EventsConfig::default() },
    };
    Env { stack, _bucket: bucket, io, config }
}

impl Env {
    async fn call(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)], body: &[u8]) -> ApiResponse {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let req = ApiRequest { method: method.into(), path: path.into(), query: query.into(), headers, body: body.to_vec() };
        let response = api::handle(&self.io, &self.config, req, now()).await;
        let text = String::from_utf8(response.body_bytes()).unwrap();
        for secret in [SECRET, EVENTS_TOKEN, API_TOKEN] {
            assert!(!text.contains(secret), "a secret leaked into {text}");
        }
        response
    }

    async fn event(&self, body: &Value) -> ApiResponse {
        let auth = format!("Bearer {EVENTS_TOKEN}");
        self.call("POST", "/events", "", &[("authorization", &auth)], &serde_json::to_vec(body).unwrap()).await
    }

    async fn status(&self, id: &str) -> Value {
        let auth = format!("Bearer {API_TOKEN}");
        let r = self.call("GET", &format!("/uploads/{id}"), "", &[("authorization", &auth)], b"").await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }

    /// An object in the private bucket, and its SHA-1 and ETag as the bucket serves it.
    fn put(&self, bucket: &str, key: &str, size: u64, seed: u64) -> (Vec<u8>, String) {
        let full = self.stack.root.join(bucket).join(key);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        let path = self.stack.write_sample(&format!("{bucket}/{key}"), size, seed).unwrap();
        let bytes = std::fs::read(path).unwrap();
        // As `host-sim files` makes its ETags (size and modification time), unquoted as
        // events carry them.
        let meta = std::fs::metadata(self.stack.root.join(bucket).join(key)).unwrap();
        let nanos = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        (bytes, format!("{:x}-{:x}", meta.len(), nanos))
    }
}

/// The S3 Event Notification sample (AWS docs, `tests/fixtures/events/s3-put.json`)
/// pointed at `bucket`/`key` (form-encoded as S3 sends it), with `etag` and `size`.
fn s3_event(bucket: &str, key: &str, size: u64, etag: &str) -> Value {
    let mut v: Value = serde_json::from_str(include_str!("fixtures/events/s3-put.json")).unwrap();
    let object = &mut v["Records"][0]["s3"];
    object["bucket"]["name"] = json!(bucket);
    object["object"]["key"] = json!(form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>());
    object["object"]["size"] = json!(size);
    object["object"]["eTag"] = json!(etag);
    if let Some(o) = object["object"].as_object_mut() {
        o.remove("versionId");
    }
    v
}

#[tokio::test]
async fn an_s3_event_uploads_the_private_object_once() {
    let env = env().await;
    let key = "in/my clip+1.mp4";
    let (bytes, etag) = env.put("vids", key, 3_000_123, 7);
    let event = s3_event("vids", key, bytes.len() as u64, &etag);
    let first = env.event(&event).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["format"], "s3");
    let upload = &first.body["uploads"][0];
    assert_eq!((upload["key"].as_str(), upload["new"].as_bool()), (Some(key), Some(true)), "{upload}");
    let id = upload["id"].as_str().unwrap().to_owned();
    // The work after the answer (a generous budget) finished it.
    let status = env.status(&id).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["event"]["key"], key);
    assert_eq!(status["source"], format!("s3://vids/{key}"));
    // The first invocation's probe, then the read: both are source requests.
    assert_eq!(status["stats"]["sourceRequests"], 2, "{status}");
    let held = env.stack.stored_sha1(status["fileId"].as_str().unwrap()).await.unwrap();
    assert_eq!(held, (bytes.len() as u64, sha1_hex(&bytes)));

    // Delivered again (senders deliver at least once): the same upload, nothing new.
    let again = env.event(&event).await;
    assert_eq!(again.status, 200, "nothing left to do: {:?}", again.body);
    assert_eq!((again.body["uploads"][0]["id"].as_str(), again.body["uploads"][0]["new"].as_bool()), (Some(id.as_str()), Some(false)));

    // A new version of the same key is a new upload.
    let (bytes2, etag2) = env.put("vids", key, 1_000_000, 8);
    let second = env.event(&s3_event("vids", key, bytes2.len() as u64, &etag2)).await;
    let id2 = second.body["uploads"][0]["id"].as_str().unwrap().to_owned();
    assert_ne!(id2, id);
    let status = env.status(&id2).await;
    assert_eq!(status["state"], "done", "{status}");
    let held = env.stack.stored_sha1(status["fileId"].as_str().unwrap()).await.unwrap();
    assert_eq!(held, (bytes2.len() as u64, sha1_hex(&bytes2)));
}

/// An event for an object too large to upload (5 TiB: more parts than an upload may
/// have, at the 1 MiB parts events ask for) is refused with the object's size and
/// the most it may be; no record is left that a later read would refuse.
#[tokio::test]
async fn an_event_for_an_object_too_large_says_so() {
    let env = env().await;
    let size = 5u64 << 40;
    let r = env.event(&s3_event("vids", "huge.mp4", size, "abc")).await;
    // Answered 200: a permanent refusal, which delivering again would not change.
    assert_eq!(r.status, 200, "{}", r.body);
    let refused = &r.body["refused"][0];
    assert_eq!((refused["key"].as_str(), refused["error"]["code"].as_str()), (Some("huge.mp4"), Some("invalid_source")), "{}", r.body);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("too large") && message.contains(&format!("{size} bytes")), "{message}");
    let keys = SqliteKv::open(&env.stack.kv_file()).unwrap().keys().unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    // In a batch, the refusal leaves the other objects' uploads to go on.
    let (bytes, etag) = env.put("vids", "small.mp4", 200_000, 4);
    let mut batch = s3_event("vids", "huge.mp4", size, "abc");
    let small = s3_event("vids", "small.mp4", bytes.len() as u64, &etag)["Records"][0].clone();
    batch["Records"].as_array_mut().unwrap().push(small);
    let r = env.event(&batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["refused"][0]["key"], "huge.mp4");
    let id = r.body["uploads"][0]["id"].as_str().unwrap().to_owned();
    let status = env.status(&id).await;
    assert_eq!(status["state"], "done", "{status}");
}

#[tokio::test]
async fn an_event_for_an_overwritten_version_fails_source_changed() {
    let env = env().await;
    let (_, old_etag) = env.put("vids", "a.mp4", 100_000, 1);
    env.put("vids", "a.mp4", 100_001, 2);
    let r = env.event(&s3_event("vids", "a.mp4", 100_000, &old_etag)).await;
    let id = r.body["uploads"][0]["id"].as_str().unwrap().to_owned();
    let status = env.status(&id).await;
    assert_eq!((status["state"].as_str(), status["error"]["code"].as_str()), (Some("failed"), Some("source_changed")), "{status}");
    assert!(status["error"]["message"].as_str().unwrap().contains("overwritten"), "{status}");
}

#[tokio::test]
async fn senders_authenticate_with_the_events_token_in_three_forms() {
    let env = env().await;
    let test_event = include_bytes!("fixtures/events/s3-test-event.json");
    let bearer = format!("Bearer {EVENTS_TOKEN}");
    for (query, headers) in [
        (String::new(), vec![("authorization", bearer.as_str())]),
        (String::new(), vec![("authorization", EVENTS_TOKEN)]),
        (format!("token={EVENTS_TOKEN}"), vec![]),
    ] {
        let r = env.call("POST", "/events", &query, &headers, test_event).await;
        assert_eq!((r.status, &r.body["test"]), (200, &json!(true)), "{query} {headers:?}");
    }
    let api = format!("Bearer {API_TOKEN}");
    for (query, headers) in
        [("", vec![]), ("token=wrong", vec![]), ("", vec![("authorization", "Bearer wrong")]), ("", vec![("authorization", api.as_str())])]
    {
        let r = env.call("POST", "/events", query, &headers, test_event).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (401, Some("unauthorized")), "{query} {headers:?}");
    }
    // Without an events token configured, everything is refused, saying why.
    let mut closed = env;
    closed.config.events.token.clear();
    let r = closed.call("POST", "/events", "", &[("authorization", &bearer)], test_event).await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("events_token"), "{:?}", r.body);
}

#[tokio::test]
async fn other_kinds_are_ignored_and_unknown_bodies_refused() {
    let env = env().await;
    let auth = format!("Bearer {EVENTS_TOKEN}");
    let h = [("authorization", auth.as_str())];
    let deleted = env.call("POST", "/events", "", &h, include_bytes!("fixtures/events/eventbridge-object-deleted.json")).await;
    assert_eq!((deleted.status, &deleted.body["ignored"]), (200, &json!(1)), "{:?}", deleted.body);
    let mut thumb = s3_event("vids", "thumbs/a.jpg", 10, "abc");
    let filtered = env.event(&thumb).await;
    assert_eq!((filtered.status, &filtered.body["filtered"]), (200, &json!(1)), "{:?}", filtered.body);
    thumb["Records"][0]["s3"]["object"]["key"] = json!("movie.MP4");
    let unknown = env.call("POST", "/events", "", &h, br#"{"hello":"world"}"#).await;
    assert_eq!(unknown.status, 400);
    let message = unknown.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("S3 event notification") && message.contains("CloudEvents"), "{message}");
    let grid = env.call("POST", "/events", "", &h, include_bytes!("fixtures/events/eventgrid-subscription-validation.json")).await;
    assert_eq!(grid.status, 200);
    assert!(grid.body["validationResponse"].is_string(), "{:?}", grid.body);
    let options = env.call("OPTIONS", "/events", "", &[h[0], ("webhook-request-origin", "eventemitter.example.com")], b"").await;
    assert_eq!(options.status, 200, "{:?}", options.body);
    assert!(options.headers.iter().any(|(k, v)| k == "webhook-allowed-origin" && v == "eventemitter.example.com"), "{:?}", options.headers);
}

/// An SNS subscription is confirmed by GETting its SubscribeURL; one the component
/// cannot reach (no allowed outbound host for it here) is answered with what to allow.
#[tokio::test]
async fn an_unreachable_sns_confirmation_says_what_to_allow() {
    let env = env().await;
    let auth = format!("Bearer {EVENTS_TOKEN}");
    let body = include_bytes!("fixtures/events/sns-subscription-confirmation.json");
    let r =
        env.call("POST", "/events", "", &[("authorization", &auth), ("x-amz-sns-message-type", "SubscriptionConfirmation")], body).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (502, Some("upstream_error")), "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("allowed_outbound_hosts") && message.contains("https://sns."), "{message}");
}
