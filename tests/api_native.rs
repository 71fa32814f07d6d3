//! The component's HTTP API, natively: the same `api::handle` the Spin adapter calls,
//! over real HTTP to the simulator and file server and a real SQLite store.

use host_sim::kv::SqliteKv;
use host_sim::native::monotonic_now as now;
use host_sim::native::NativeIo;
use host_sim::stack::{Stack, StackOptions};
use host_sim::vod::DEV_SECRET_KEY;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use vod_uploader::api::{self, ApiRequest, ApiResponse, Config};
use vod_uploader::source::SourcePolicy;

const TOKEN: &str = "test-api-token-0123456789";

struct Env {
    stack: Stack,
    io: NativeIo,
    config: Config,
}

async fn env() -> Env {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let io = NativeIo::new(Arc::new(SqliteKv::open(&stack.kv_file()).unwrap()));
    let mut settings = stack.settings();
    settings.budget = Duration::from_secs(30);
    let config = Config {
        api_token: TOKEN.into(),
        settings,
        policy: SourcePolicy {
            allowed_origins: vec![format!("http://{}", stack.files.addr)],
            local_root: Some(stack.root.to_str().unwrap().into()),
            s3: false,
        },
        events: Default::default(),
    };
    Env { stack, io, config }
}

impl Env {
    async fn call(&self, method: &str, path: &str, body: &str) -> ApiResponse {
        self.call_as(method, path, body, Some(TOKEN)).await
    }

    async fn call_as(&self, method: &str, path: &str, body: &str, token: Option<&str>) -> ApiResponse {
        let headers = token.map(|t| vec![("Authorization".to_owned(), format!("Bearer {t}"))]).unwrap_or_default();
        let req = ApiRequest { method: method.into(), path: path.into(), query: String::new(), headers, body: body.as_bytes().to_vec() };
        let response = api::handle(&self.io, &self.config, req, now()).await;
        let text = String::from_utf8(response.body_bytes()).unwrap();
        for secret in [DEV_SECRET_KEY, TOKEN, "X-Amz-Signature=topsecret"] {
            assert!(!text.contains(secret), "a secret leaked into {text}");
        }
        response
    }
}

fn code(r: &ApiResponse) -> &str {
    r.body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {:?}", r))
}

#[tokio::test]
async fn create_status_list_tick_and_cancel() {
    let env = env().await;
    env.stack.write_sample("movie.mp4", 3_000_000, 1).unwrap();
    let body =
        format!(r#"{{"source":"http://{}/movie.mp4?X-Amz-Signature=topsecret","tags":["a","b"],"isTranscode":1}}"#, env.stack.files.addr);
    let created = env.call("POST", "/uploads", &body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(created.headers.contains(&("location".into(), format!("/uploads/{id}"))));
    assert_eq!(created.body["state"], "done", "a generous budget finishes in the creating invocation");
    for key in [
        "fileSha",
        "fileId",
        "url",
        "size",
        "dataSize",
        "hashedBytes",
        "uploadedBytes",
        "partsTotal",
        "partsDone",
        "invocations",
        "createdAt",
        "updatedAt",
        "fileName",
        "fileType",
        "source",
    ] {
        assert!(created.body.get(key).is_some(), "{key} missing in {}", created.body);
    }
    assert_eq!(created.body["source"].as_str().unwrap(), format!("http://{}/movie.mp4?<redacted>", env.stack.files.addr));
    assert_eq!((created.body["size"].as_u64(), created.body["uploadedBytes"].as_u64()), (Some(3_000_000), Some(3_000_000)));

    let again = env.call("POST", "/uploads", &body).await;
    assert_eq!((again.status, again.body["id"].as_str()), (200, Some(id.as_str())));

    let one = env.call("GET", &format!("/uploads/{id}"), "").await;
    assert_eq!((one.status, &one.body["fileId"]), (200, &created.body["fileId"]));
    let list = env.call("GET", "/uploads", "").await;
    assert_eq!(list.body["uploads"].as_array().unwrap().len(), 1);
    let tick = env.call("POST", "/tick", "").await;
    assert_eq!((tick.status, tick.body["waiting"].as_u64()), (200, Some(0)));
    let advanced = env.call("POST", &format!("/uploads/{id}/advance"), "").await;
    assert_eq!(advanced.body["state"], "done");
    // Deleting a done upload forgets it (the service keeps the file): every key goes.
    let deleted = env.call("DELETE", &format!("/uploads/{id}"), "").await;
    assert_eq!((deleted.status, deleted.body["state"].as_str()), (200, Some("done")));
    assert_eq!(env.call("GET", &format!("/uploads/{id}"), "").await.status, 404);
    assert!(env.io.kv.keys().unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_gets_a_named_4xx() {
    let env = env().await;
    let origin = format!("http://{}", env.stack.files.addr);
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        ("POST", "/uploads", "{not json".into(), 400, "bad_request", "invalid JSON"),
        ("POST", "/uploads", format!(r#"{{"source":"{origin}/a.mp4","priority":9}}"#), 400, "bad_request", "priority"),
        ("POST", "/uploads", r#"{"source":["x"]}"#.into(), 400, "bad_request", "invalid type"),
        ("POST", "/uploads", format!(r#"{{"source":"{origin}/a.mp4","fileName":"a*b"}}"#), 400, "bad_request", "fileName"),
        ("POST", "/uploads", r#"{"source":"file:///etc/passwd"}"#.into(), 400, "invalid_source", "scheme"),
        ("POST", "/uploads", r#"{"source":"https://example.com/a.mp4"}"#.into(), 403, "source_not_allowed", "example.com"),
        ("POST", "/uploads", r#"{"source":"/etc/passwd"}"#.into(), 403, "source_not_allowed", "under"),
        ("POST", "/uploads", format!(r#"{{"source":"{origin}/missing.mp4"}}"#), 502, "source_not_found", "404"),
        ("POST", "/uploads", format!(r#"{{"source":"{}"}}"#, "x".repeat(70_000)), 413, "payload_too_large", "65536"),
        ("GET", "/uploads/nothex", "".into(), 404, "not_found", "20 hex"),
        ("GET", "/uploads/0123456789abcdef0123", "".into(), 404, "not_found", "no upload"),
        ("POST", "/uploads/0123456789abcdef0123/advance", "".into(), 404, "not_found", "no upload"),
        ("DELETE", "/uploads/0123456789abcdef0123", "".into(), 404, "not_found", "no upload"),
        ("PUT", "/uploads", "".into(), 405, "method_not_allowed", "PUT"),
        ("GET", "/tick", "".into(), 405, "method_not_allowed", "GET"),
        ("GET", "/elsewhere", "".into(), 404, "not_found", "no route"),
    ];
    for (method, path, body, status, want, needle) in cases {
        let r = env.call(method, path, &body).await;
        assert_eq!((r.status, code(&r)), (status, want), "{method} {path} {}: {:?}", &body[..body.len().min(80)], r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{method} {path}: {message}");
    }
    // An empty source file is refused by name.
    std::fs::write(env.stack.root.join("empty.mp4"), b"").unwrap();
    let r = env.call("POST", "/uploads", &format!(r#"{{"source":"{origin}/empty.mp4"}}"#)).await;
    assert_eq!((r.status, code(&r)), (400, "invalid_source"));
    // Nothing was created by any of them.
    assert!(env.io.kv.keys().unwrap().is_empty());
}

#[tokio::test]
async fn every_route_but_healthz_needs_the_token() {
    let env = env().await;
    assert_eq!(env.call_as("GET", "/healthz", "", None).await.status, 200);
    for (method, path) in [("GET", "/uploads"), ("POST", "/uploads"), ("POST", "/tick"), ("GET", "/uploads/0123456789abcdef0123")] {
        for token in [None, Some("wrong"), Some("")] {
            let r = env.call_as(method, path, "{}", token).await;
            assert_eq!((r.status, code(&r)), (401, "unauthorized"), "{method} {path} {token:?}");
        }
    }
    let mut open = env.config.clone();
    open.api_token = String::new();
    let req = ApiRequest { method: "GET".into(), path: "/uploads".into(), query: String::new(), headers: vec![], body: vec![] };
    let r = api::handle(&env.io, &open, req, now()).await;
    assert_eq!((r.status, r.body["error"]["code"].clone()), (503, Value::from("config_error")));
}

/// A body that would be 200 MiB, counting what is read of it.
struct Endless {
    read: std::rc::Rc<std::cell::Cell<usize>>,
    left: usize,
}

impl vod_uploader::engine::Body for Endless {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, vod_uploader::engine::IoError>> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(1 << 20);
        self.left -= n;
        self.read.set(self.read.get() + n);
        Some(Ok(vec![b' '; n]))
    }
}

/// Finding 6 of the hardening issue: the token is checked before a byte of the body is
/// read, and a body over the limit is refused from its Content-Length or after reading
/// at most the limit (an unauthenticated 200 MiB POST used to be read whole).
#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let env = env().await;
    let huge = 200 << 20;
    for (token, length, status, most) in [
        (None, Some(huge), 401, 0),
        (Some("wrong"), None, 401, 0),
        (Some(TOKEN), Some(huge), 413, 0),
        (Some(TOKEN), None, 413, api::MAX_BODY + (1 << 20)),
    ] {
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut headers = token.map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))]).unwrap_or_default();
        if let Some(n) = length {
            headers.push(("content-length".to_owned(), n.to_string()));
        }
        let req = ApiRequest {
            method: "POST".into(),
            path: "/uploads".into(),
            query: String::new(),
            headers,
            body: Endless { read: read.clone(), left: huge },
        };
        let r = api::handle(&env.io, &env.config, req, now()).await;
        assert_eq!(r.status, status, "{token:?} {length:?}: {:?}", r.body);
        assert!(read.get() <= most, "{token:?} {length:?}: {} bytes read", read.get());
    }
}

/// Finding 8: the Bearer scheme in any case; a configuration problem named only to the
/// holder of the token, and never with a value.
#[tokio::test]
async fn bearer_in_any_case_and_configuration_problems_named_only_to_the_token_holder() {
    let env = env().await;
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let headers = vec![("Authorization".to_owned(), format!("{scheme} {TOKEN}"))];
        let req = ApiRequest { method: "GET".into(), path: "/uploads".into(), query: String::new(), headers, body: vec![] };
        assert_eq!(api::handle(&env.io, &env.config, req, now()).await.status, 200, "{scheme}");
    }
    let problem = "the vod_endpoint variable: invalid VOD endpoint: scheme must be http or https";
    let holder = api::config_problem(&[("authorization".into(), format!("Bearer {TOKEN}"))], Some(TOKEN), problem);
    assert_eq!((holder.status, holder.body["error"]["message"].as_str()), (503, Some(problem)));
    let stranger = api::config_problem(&[], Some(TOKEN), problem);
    assert_eq!((stranger.status, stranger.body["error"]["code"].as_str()), (503, Some("config_error")));
    assert!(!stranger.body.to_string().contains("vod_endpoint"), "{}", stranger.body);
    // The endpoint's own error never repeats the value it was given.
    let e = vod_uploader::protocol::Endpoint::parse("ftp://user:secret@example.com/x").unwrap_err();
    assert!(!e.to_string().contains("secret"), "{e}");
}

/// The retry route and the tick's answer.
#[tokio::test]
async fn retry_and_tick_answers() {
    let env = env().await;
    env.stack.write_sample("r.mp4", 100_000, 3).unwrap();
    let body = format!(r#"{{"source":"http://{}/r.mp4"}}"#, env.stack.files.addr);
    let id = env.call("POST", "/uploads", &body).await.body["id"].as_str().unwrap().to_owned();
    let retried = env.call("POST", &format!("/uploads/{id}/retry"), "").await;
    assert_eq!((retried.status, retried.body["state"].as_str()), (200, Some("done")), "nothing to retry on a done upload");
    assert_eq!(env.call("POST", "/uploads/0123456789abcdef0123/retry", "").await.status, 404);
    let tick = env.call("POST", "/tick", "").await;
    for key in ["advanced", "errors", "removed", "waiting"] {
        assert!(tick.body.get(key).is_some(), "{key} missing in {}", tick.body);
    }
}
