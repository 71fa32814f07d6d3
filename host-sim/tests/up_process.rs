//! `host-sim up` as a process: killed (SIGKILL) and restarted mid-upload, the upload
//! completes from its checkpoints; `--tick-ms` drives it like a cron trigger.

use bytes::Bytes;
use host_sim::vod::{self, DEV_SECRET_ID, DEV_SECRET_KEY};
use host_sim::{files, http};
use http_body_util::BodyExt;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_host-sim");
const TOKEN: &str = "process-token";

fn spawn_up(kv: &Path, sim: &vod::Running, files: &files::Running, extra: &[&str]) -> (Child, SocketAddr) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
    assert!(
        manifest.parent().unwrap().join("target/wasm32-wasip1/release/vod_uploader.wasm").exists(),
        "the component is not built: run `make wasm` (make test does) first"
    );
    let vars = [
        format!("vod_secret_id={DEV_SECRET_ID}"),
        format!("vod_secret_key={DEV_SECRET_KEY}"),
        format!("vod_endpoint={}", sim.endpoint()),
        format!("vod_origin=http://{}", sim.addr),
        format!("source_origin=http://{}", files.addr),
        format!("api_token={TOKEN}"),
        "budget_ms=40".to_string(),
    ];
    let mut cmd = Command::new(BIN);
    cmd.args(["up", "--listen", "127.0.0.1:0", "--manifest"]).arg(&manifest).arg("--kv").arg(kv);
    for v in &vars {
        cmd.args(["--variable", v]);
    }
    let mut child = cmd.args(extra).env("RUST_LOG", "warn").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("host-sim up listening on ").unwrap_or_else(|| panic!("{line:?}"));
    (child, addr.parse().unwrap())
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
    let (sim_dir, root, kv_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sim = vod::start(vod::Config::new(sim_dir.path().to_owned())).await.unwrap();
    let files = files::start(root.path().to_owned(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let path = root.path().join("restart.mp4");
    host_sim::sample::write_sample(&path, 24 << 20, 5).unwrap();
    let (sha, size) = host_sim::sample::sha1_of_file(&path).unwrap();
    let kv = kv_dir.path().join("kv.sqlite");

    let (mut first, addr) = spawn_up(&kv, &sim, &files, &[]);
    let (status, created) = call(addr, "POST", "/uploads", &format!(r#"{{"source":"http://{}/restart.mp4"}}"#, files.addr)).await;
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
    first.kill().unwrap();
    first.wait().unwrap();
    in_flight.abort();

    // A new process on the same store, ticking by itself like a cron trigger.
    let (mut second, addr) = spawn_up(&kv, &sim, &files, &["--tick-ms", "20"]);
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
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!((done["fileSha"].as_str(), done["size"].as_u64()), (Some(sha.as_str()), Some(size)));
    let response =
        http::client().get(format!("http://{}/sim/files/{}", sim.addr, done["fileId"].as_str().unwrap()).parse().unwrap()).await.unwrap();
    let stored = response.into_body().collect().await.unwrap().to_bytes();
    assert!(stored == std::fs::read(&path).unwrap(), "the simulator's copy differs from the source");
}
