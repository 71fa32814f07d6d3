//! `host-sim up` as a process: killed (SIGKILL) and restarted mid-upload, the upload
//! completes from its checkpoints; `--tick-ms` drives it like a cron trigger.

mod common;

use bytes::Bytes;
use common::process::{up_command, Served};
use host_sim::http;
use host_sim::stack::{Stack, StackOptions};
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_host-sim");
const TOKEN: &str = "process-token";

/// `host-sim up` of the project's component on the store `kv`, against `stack`.
fn spawn_up(kv: &Path, stack: &Stack, extra: &[&str]) -> Served {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
    assert!(
        manifest.parent().unwrap().join("target/wasm32-wasip1/release/vod_uploader.wasm").exists(),
        "the component is not built: run `make wasm` (make test does) first"
    );
    let mut cmd = up_command(Path::new(BIN), &manifest, &stack.variables(TOKEN, &[("budget_ms", "40")]));
    cmd.arg("--kv").arg(kv).args(extra).env("RUST_LOG", "warn");
    Served::start("host-sim", kv.parent().unwrap(), cmd, "host-sim up listening on ", false)
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http::full(Bytes::from(body.to_owned())))
        .unwrap();
    let response = http::client().request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn killed_and_restarted_host_resumes_from_checkpoints() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let path = stack.write_sample("restart.mp4", 24 << 20, 5).unwrap();
    let (sha, size) = host_sim::sample::sha1_of_file(&path).unwrap();
    let kv = stack.kv_file();

    let first = spawn_up(&kv, &stack, &[]);
    let addr = first.addr;
    let (status, created) = call(addr, "POST", "/uploads", &format!(r#"{{"source":"{}"}}"#, stack.url("restart.mp4"))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut progress = created;
    while progress["state"] == "hashing" || progress["state"] == "pending" {
        progress = call(addr, "POST", &format!("/uploads/{id}/advance"), "").await.1;
    }
    // Mid-upload: kill the whole host with an advance in flight.
    let advance = format!("/uploads/{id}/advance");
    let in_flight = tokio::spawn(async move { call(addr, "POST", &advance, "").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(first);
    in_flight.abort();

    // A new process on the same store, ticking by itself like a cron trigger.
    let second = spawn_up(&kv, &stack, &["--tick-ms", "20"]);
    let addr = second.addr;
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let (status, v) = call(addr, "GET", &format!("/uploads/{id}"), "").await;
        assert_eq!(status, 200, "{v}");
        assert_ne!(v["state"], "failed", "{v}");
        if v["state"] == "done" {
            break v;
        }
        assert!(Instant::now() < deadline, "not done: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(second);
    assert_eq!((done["fileSha"].as_str(), done["size"].as_u64()), (Some(sha.as_str()), Some(size)));
    assert_eq!(
        stack.stored_sha1(done["fileId"].as_str().unwrap()).await.unwrap(),
        (size, sha),
        "the simulator's copy differs from the source"
    );
}
