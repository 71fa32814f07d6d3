//! The real `.wasm` (built by `make wasm`, as spin.toml's build command builds it)
//! under `host-sim up` (wasmtime with Spin's imports and limits), against the VOD
//! simulator with faults on and a Range file server, all over loopback.
//! (A source the host refuses but the component allows, and the other scenarios that
//! must behave as on the real Spin, are in `host-sim/tests/conformance.rs`.)

use bytes::Bytes;
use host_sim::sample::{generated_sha1, sha1_of_file};
use host_sim::stack::{Stack, StackOptions};
use host_sim::vod::{faults::Faults, DEV_SECRET_KEY};
use host_sim::{http, up};
use http_body_util::BodyExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "e2e-token";

fn manifest() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = root.join("target/wasm32-wasip1/release/vod_uploader.wasm");
    assert!(wasm.exists(), "{} is missing: run `make wasm` (make test does) first", wasm.display());
    root.join("spin.toml")
}

struct Env {
    stack: Stack,
    host: up::Running,
    client: http::HttpClient,
}

struct Options {
    faults: f64,
    budget_ms: u64,
    chaos: f64,
    chaos_window: Duration,
    limits: up::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options { faults: 0.05, budget_ms: 200, chaos: 0.0, chaos_window: Duration::ZERO, limits: up::Limits::default() }
    }
}

async fn env(o: Options) -> Env {
    let faults = Faults::new(o.faults, &[], 5, Duration::from_millis(10));
    let stack = Stack::start(StackOptions { faults, ..StackOptions::default() }).await.unwrap();
    let budget = o.budget_ms.to_string();
    let mut config = stack.up_config(&manifest(), TOKEN, &[("budget_ms", budget.as_str()), ("local_dir", "/media")]);
    config.dirs = vec![(stack.root.clone(), "/media".into())];
    config.limits = o.limits;
    config.chaos_kill_rate = o.chaos;
    config.chaos_window = o.chaos_window;
    config.seed = 11;
    let host = up::server::start(config).await.unwrap();
    Env { stack, host, client: http::client() }
}

impl Env {
    async fn call(&self, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut builder = hyper::Request::builder().method(method).uri(format!("http://{}{path}", self.host.addr));
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let response = self.client.request(builder.body(http::full(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(DEV_SECRET_KEY) && !text.contains(TOKEN), "a secret leaked: {text}");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn create(&self, source: &str) -> Value {
        let (status, v) = self.call("POST", "/uploads", &serde_json::json!({ "source": source }).to_string(), Some(TOKEN)).await;
        assert!(status == 201 || status == 200 || status == 500, "create answered {status}: {v}");
        v
    }

    /// Advances until final; a killed invocation (500) is simply followed by another,
    /// once the leases it left have expired (the status says until when).
    async fn drive(&self, id: &str, limit: usize) -> Value {
        for _ in 0..limit {
            let (status, v) = self.call("POST", &format!("/uploads/{id}/advance"), "", Some(TOKEN)).await;
            if status == 200 && matches!(v["state"].as_str(), Some("done" | "failed" | "cancelled")) {
                return v;
            }
            assert!(status == 200 || status == 500, "advance answered {status}: {v}");
            host_sim::http::wait_for_leases(&v).await;
        }
        panic!("upload {id} not final after {limit} invocations");
    }

    async fn stored_sha1(&self, file_id: &str) -> (u64, String) {
        self.stack.stored_sha1(file_id).await.unwrap()
    }

    fn file(&self, name: &str, size: u64, seed: u64) -> String {
        sha1_of_file(&self.stack.write_sample(name, size, seed).unwrap()).unwrap().0
    }

    fn url(&self, name: &str) -> String {
        self.stack.url(name)
    }
}

#[tokio::test]
async fn edge_sizes_through_the_wasm_component() {
    let env = env(Options::default()).await;
    for (i, size) in [1u64, 1_048_576, 1_048_577, 3 * 1_048_576 + 5].into_iter().enumerate() {
        let name = format!("s{i}.mp4");
        let sha = env.file(&name, size, i as u64);
        let created = env.create(&env.url(&name)).await;
        let done = env.drive(created["id"].as_str().unwrap(), 200).await;
        assert_eq!(done["state"], "done", "{done}");
        assert_eq!(done["fileSha"].as_str(), Some(sha.as_str()));
        assert_eq!(env.stored_sha1(done["fileId"].as_str().unwrap()).await, (size, sha));
    }
    // A local path through the WASI filesystem (a --dir mount).
    let sha = env.file("local.mov", 2_500_000, 9);
    let created = env.create("/media/local.mov").await;
    let done = env.drive(created["id"].as_str().unwrap(), 200).await;
    assert_eq!((done["state"].as_str(), done["fileType"].as_str()), (Some("done"), Some("mov")));
    assert_eq!(env.stored_sha1(done["fileId"].as_str().unwrap()).await.1, sha);
}

#[tokio::test]
async fn a_few_hundred_megabytes_over_many_invocations() {
    let env = env(Options { budget_ms: 500, ..Options::default() }).await;
    let size = 300 << 20;
    let created = env.create(&env.stack.gen_url(size, 42)).await;
    let done = env.drive(created["id"].as_str().unwrap(), 2000).await;
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["invocations"].as_u64().unwrap() >= 2, "{done}");
    let expected = generated_sha1(size, 42);
    assert_eq!(env.stored_sha1(done["fileId"].as_str().unwrap()).await, (size, expected));
    // Memory stays bounded whatever the file size: 4 parts in flight of 1 MiB.
    let peak = env.host.stats.peak_memory.load(Ordering::Relaxed);
    assert!(peak < 32 << 20, "peak linear memory {peak}");
}

/// A ranged read of 4 GiB or more works on wasm32, where such a length does not fit
/// `usize`: the first read of a hashing pass asks for the rest of the source, here
/// 4 GiB + 100 bytes (once a length cast to usize kept 100 of them, then nothing).
#[tokio::test]
async fn reads_of_4_gib_and_more_move_on() {
    let env = env(Options { faults: 0.0, ..Options::default() }).await;
    let size = (4u64 << 30) + 100;
    let created = env.create(&env.stack.gen_url(size, 7)).await;
    let id = created["id"].as_str().unwrap();
    let (status, v) = env.call("POST", &format!("/uploads/{id}/advance"), "", Some(TOKEN)).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["error"].is_null(), "{v}");
    let hashed = v["hashedBytes"].as_u64().unwrap();
    assert!(hashed > 1 << 20, "two invocations hashed only {hashed} bytes: {v}");
}

#[tokio::test]
async fn hundreds_of_random_kills_lose_nothing() {
    let env = env(Options { budget_ms: 60, chaos: 0.5, chaos_window: Duration::from_millis(80), ..Options::default() }).await;
    let mut uploads = Vec::new();
    let mut n = 0;
    while env.host.stats.chaos_kills.load(Ordering::Relaxed) < 200 {
        let name = format!("k{n}.mp4");
        let sha = env.file(&name, 6 * 1_048_576 + n * 1000 + 1, 100 + n);
        let created = env.create(&env.url(&name)).await;
        // Creation itself may be killed after the record was written or before: the
        // same request then finds or makes the upload.
        let id = match created["id"].as_str() {
            Some(id) => id.to_owned(),
            None => loop {
                let again = env.create(&env.url(&name)).await;
                if let Some(id) = again["id"].as_str() {
                    break id.to_owned();
                }
            },
        };
        let done = env.drive(&id, 5000).await;
        assert_eq!(done["state"], "done", "{done}");
        uploads.push((done["fileId"].as_str().unwrap().to_owned(), sha, 6 * 1_048_576 + n * 1000 + 1));
        n += 1;
    }
    for (file_id, sha, size) in &uploads {
        assert_eq!(env.stored_sha1(file_id).await, (*size, sha.clone()));
    }
    let s = &env.host.stats;
    let total: u64 = uploads.iter().map(|u| u.2).sum();
    let served = env.stack.files.stats.bytes.load(Ordering::Relaxed);
    println!(
        "kills: {}, invocations: {}, uploads: {}, bytes of all files: {total}, bytes served by the source: {served} ({:.2}x)",
        s.chaos_kills.load(Ordering::Relaxed),
        s.invocations.load(Ordering::Relaxed),
        uploads.len(),
        served as f64 / total as f64
    );
}

#[tokio::test]
async fn same_source_twice_and_two_callers_at_once() {
    let env = env(Options { budget_ms: 50, ..Options::default() }).await;
    let sha = env.file("twice.mp4", 5 * 1_048_576 + 3, 77);
    let a = env.create(&env.url("twice.mp4")).await;
    let b = env.create(&env.url("twice.mp4")).await;
    assert_eq!(a["id"], b["id"], "the same request for the same source is one upload");
    let id = a["id"].as_str().unwrap().to_owned();
    loop {
        let path = format!("/uploads/{id}/advance");
        let ((s1, v1), (s2, v2)) = tokio::join!(env.call("POST", &path, "", Some(TOKEN)), env.call("POST", &path, "", Some(TOKEN)));
        assert_eq!((s1, s2), (200, 200), "{v1} {v2}");
        assert!(v1["state"] != "failed" && v2["state"] != "failed", "{v1} {v2}");
        if v1["state"] == "done" || v2["state"] == "done" {
            let done = if v1["state"] == "done" { v1 } else { v2 };
            assert_eq!(env.stored_sha1(done["fileId"].as_str().unwrap()).await.1, sha);
            break;
        }
    }
}

#[tokio::test]
async fn bad_input_over_http() {
    let env = env(Options::default()).await;
    let (s, v) = env.call("GET", "/healthz", "", None).await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)));
    assert_eq!(env.call("GET", "/uploads", "", None).await.0, 401);
    assert_eq!(env.call("GET", "/uploads", "", Some("nope")).await.0, 401);
    for (body, status, code) in [
        ("{", 400, "bad_request"),
        (r#"{"source":"http://x/a","extra":1}"#, 400, "bad_request"),
        (r#"{"source":"gopher://x/a"}"#, 400, "invalid_source"),
        (r#"{"source":"https://elsewhere.example/a.mp4"}"#, 403, "source_not_allowed"),
        (r#"{"source":"/etc/passwd"}"#, 403, "source_not_allowed"),
        // No source_access_key_id in this deployment: s3:// is refused, naming what to set.
        (r#"{"source":"s3://vids/a.mp4"}"#, 403, "source_not_allowed"),
    ] {
        let (s, v) = env.call("POST", "/uploads", body, Some(TOKEN)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{body}: {v}");
    }
    let (s, v) = env.call("POST", "/uploads", &"x".repeat(100_000), Some(TOKEN)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(env.call("GET", "/uploads/ffffffffffffffffffff", "", Some(TOKEN)).await.0, 404);
    assert_eq!(env.call("PATCH", "/uploads", "", Some(TOKEN)).await.0, 405);
    let (s, v) = env.call("GET", "/uploads", "", Some(TOKEN)).await;
    assert_eq!((s, v["uploads"].as_array().map(Vec::len)), (200, Some(0)));
}

#[tokio::test]
async fn tick_drives_uploads_like_a_cron_trigger() {
    // No faults: a retryable fault would make tick wait out `retryAfter` in real time.
    let env = env(Options { budget_ms: 100, faults: 0.0, ..Options::default() }).await;
    let shas: Vec<String> = (0..3).map(|i| env.file(&format!("t{i}.mp4"), 2 * 1_048_576 + i, i)).collect();
    for i in 0..3 {
        env.create(&env.url(&format!("t{i}.mp4"))).await;
    }
    for _ in 0..500 {
        let (status, v) = env.call("POST", "/tick", "", Some(TOKEN)).await;
        assert_eq!(status, 200, "{v}");
        if v["waiting"] == 0 {
            break;
        }
    }
    let (_, list) = env.call("GET", "/uploads", "", Some(TOKEN)).await;
    let uploads = list["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 3);
    for u in uploads {
        assert_eq!(u["state"], "done", "{u}");
        assert!(shas.contains(&u["fileSha"].as_str().unwrap().to_owned()));
    }
}

#[tokio::test]
async fn platform_limits_are_enforced() {
    // Time: a 60 s work budget is far beyond a 40 ms limit; the host kills the invocation.
    let limits = up::Limits { time: Duration::from_millis(40), ..up::Limits::default() };
    let timed = env(Options { budget_ms: 60_000, faults: 0.0, limits, ..Options::default() }).await;
    timed.file("slow.mp4", 64 << 20, 1);
    let (status, v) =
        timed.call("POST", "/uploads", &serde_json::json!({ "source": timed.url("slow.mp4") }).to_string(), Some(TOKEN)).await;
    assert_eq!(status, 500, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("time limit"), "{v}");
    assert!(timed.host.stats.timeouts.load(Ordering::Relaxed) >= 1);

    // Value size: the upload's record does not fit a 200-byte value.
    let limits = up::Limits { value_bytes: 200, ..up::Limits::default() };
    let sized = env(Options { faults: 0.0, limits, ..Options::default() }).await;
    sized.file("big-record.mp4", 1000, 2);
    let (status, v) =
        sized.call("POST", "/uploads", &serde_json::json!({ "source": sized.url("big-record.mp4") }).to_string(), Some(TOKEN)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (500, Some("storage_error")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("the limit is 200"), "{v}");

    // Memory: less linear memory than the component needs to start.
    let limits = up::Limits { memory: 64 << 10, ..up::Limits::default() };
    let small = env(Options { faults: 0.0, limits, ..Options::default() }).await;
    let (status, _) = small.call("GET", "/healthz", "", None).await;
    assert_eq!(status, 500);
    assert!(small.host.stats.failures.load(Ordering::Relaxed) >= 1);
}

/// The component's own hashing code (the MD5 lanes and the hashing pass with
/// checkpoints) equals the sha1 and md-5 crates on random input inside wasm, compiled by
/// wasmtime as the component is: the simd128 code path only exists there.
#[tokio::test]
async fn hashing_code_matches_the_crates_inside_wasm() {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/wasm32-wasip1/release/hashbench.wasm");
    let wasm = std::fs::read(&harness).unwrap_or_else(|e| panic!("{}: {e}: run `make wasm` (make test does) first", harness.display()));
    let stdout = up::wasm::run_command(&wasm, &["check".into(), "300".into()]).await.expect("the check ran");
    assert_eq!(String::from_utf8_lossy(&stdout), "ok\n");
}

/// A private bucket (`host-sim files --sigv4`) read through `s3://` by the real component,
/// configured by the `source_*` variables of spin.toml: byte-identical with the right
/// secret; `source_denied` naming the key id, never the secret, with a wrong one.
#[tokio::test]
async fn private_s3_object_through_the_wasm_component() {
    let (key_id, secret) = ("AKIDWASMBUCKET", "wasm/Secret+0123456789EXAMPLE");
    let mut env = env(Options { faults: 0.0, ..Options::default() }).await;
    let auth = format!("{key_id}:{secret}").parse().unwrap();
    let bucket = host_sim::files::start_with(env.stack.root.clone(), "127.0.0.1:0".parse().unwrap(), Some(auth)).await.unwrap();
    std::fs::create_dir_all(env.stack.root.join("vids/in")).unwrap();
    let sha = env.file("vids/in/my clip+1.mp4", 3 * 1_048_576 + 7, 21);
    let origin = format!("http://{}", bucket.addr);
    for (given, ok) in [(secret, true), ("wrong-secret-value", false)] {
        let vars = [("source_origin", origin.as_str()), ("source_access_key_id", key_id), ("source_secret_access_key", given)];
        env.host = up::server::start(env.stack.up_config(&manifest(), TOKEN, &vars)).await.unwrap();
        let body = serde_json::json!({ "source": "s3://vids/in/my clip+1.mp4" }).to_string();
        let (status, v) = env.call("POST", "/uploads", &body, Some(TOKEN)).await;
        if ok {
            assert!(status == 201, "create answered {status}: {v}");
            let done = env.drive(v["id"].as_str().unwrap(), 200).await;
            assert_eq!((done["state"].as_str(), done["fileSha"].as_str()), (Some("done"), Some(sha.as_str())), "{done}");
            assert_eq!(done["source"], "s3://vids/in/my clip+1.mp4");
            assert_eq!(env.stored_sha1(done["fileId"].as_str().unwrap()).await, (3 * 1_048_576 + 7, sha.clone()));
        } else {
            let text = v.to_string();
            assert_eq!(v["error"]["code"], "source_denied", "{status}: {text}");
            assert!(text.contains(key_id) && !text.contains(given) && !text.contains(secret), "{text}");
        }
    }
}
