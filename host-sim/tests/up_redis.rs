//! One Redis shared by several `host-sim up` instances through Spin's runtime config,
//! as production shares one store among many Spin instances: a real `redis-server`
//! (host_sim::redis_server, AOF on), the real component `.wasm`, real HTTP over
//! loopback. Skipped with `SKIPPED (redis)` when no redis-server is installed, except
//! in CI.
//!
//! - the backend itself: Spin's semantics (plain keys, `KEYS *` over the database,
//!   bytes, exists/delete), errors in bounded time while Redis is down, reconnection;
//! - an upload created through instance A, seen, advanced and finished through
//!   instance B, its keys in Redis itself; the windowed usage counters;
//! - Redis restarted mid-upload: calls meanwhile fail quickly, the upload finishes
//!   byte-identical afterwards.

use host_sim::http::{self, HttpClient};
use host_sim::kv::{redis::OP_TIMEOUT, RedisKv, Store};
use host_sim::redis_server::{self, RedisServer};
use host_sim::stack::{Stack, StackOptions};
use host_sim::up::{self, UpConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "redis-token";
const MIB: u64 = 1 << 20;

fn manifest() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/wasm32-wasip1/release/vod_uploader.wasm");
    assert!(wasm.exists(), "{} is missing: build the component with `make wasm` (make test does) first", wasm.display());
    root.join("spin.toml")
}

async fn call(client: &HttpClient, addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    http::api_call(client, addr, method, path, body, Some(TOKEN)).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A stack, a Redis and a runtime config file naming it.
struct World {
    stack: Stack,
    redis: RedisServer,
    rc: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(bin: &Path) -> World {
        let stack = Stack::start(StackOptions::default()).await.unwrap();
        let redis = RedisServer::start(bin).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("runtime-config.toml");
        redis.write_runtime_config(&rc).unwrap();
        World { stack, redis, rc, _dir: dir }
    }

    /// `host-sim up` of the real component on the runtime config's Redis, in-process.
    /// Its own `--kv` file is given too: the runtime config must win over it.
    fn config(&self, budget_ms: &str) -> UpConfig {
        let mut config = self.stack.up_config(&manifest(), TOKEN, &[("budget_ms", budget_ms)]);
        config.runtime_config = Some(self.rc.clone());
        config
    }
}

/// Spin's Redis backend, call by call, on a real server; then Redis down (errors in
/// bounded time, no hang) and back (the next calls work, the data is there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_behaves_as_spins() {
    let Some(bin) = redis_server::require() else { return };
    let mut redis = RedisServer::start(&bin).await.unwrap();
    let store = Store::Redis(RedisKv::new(&redis.url()).unwrap());
    assert_eq!(store.summary(), format!("Redis at {}", redis.addr()));
    store.open().await.unwrap();
    assert_eq!(store.get("vu1/absent").await.unwrap(), None);
    assert!(!store.exists("vu1/absent").await.unwrap());
    store.delete("vu1/absent").await.unwrap();
    let bytes: Vec<u8> = (0..=255).collect();
    store.set("vu1/rec/a", &bytes).await.unwrap();
    store.set("vu1/empty", b"").await.unwrap();
    // The component's keys are Redis's keys as they are; values are the bytes.
    assert_eq!(redis.get("vu1/rec/a").await.unwrap(), Some(bytes.clone()));
    assert_eq!(store.get("vu1/empty").await.unwrap(), Some(vec![]));
    assert!(store.exists("vu1/empty").await.unwrap());
    // get-keys is KEYS * over the whole database, whoever wrote the keys.
    redis.set("someone-else", b"x").await.unwrap();
    let mut keys = store.keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["someone-else", "vu1/empty", "vu1/rec/a"]);
    store.delete("vu1/empty").await.unwrap();
    assert_eq!(redis.keys().await.unwrap(), vec!["someone-else", "vu1/rec/a"]);

    redis.stop();
    let started = Instant::now();
    let error = store.get("vu1/rec/a").await.expect_err("Redis is down");
    assert!(started.elapsed() <= OP_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(!error.0.is_empty());
    let started = Instant::now();
    assert!(store.set("vu1/rec/b", b"1").await.is_err() && started.elapsed() <= OP_TIMEOUT + Duration::from_secs(1));

    redis.restart().await.unwrap();
    // As with Spin, a call may still find the broken connection and fail once while the
    // manager reconnects; within a few calls they work (bounded, not timed).
    let mut value = None;
    for _ in 0..5 {
        if let Ok(v) = store.get("vu1/rec/a").await {
            value = Some(v);
            break;
        }
    }
    assert_eq!(value, Some(Some(bytes)), "Redis back, the data kept through its append-only file");
    store.set("vu1/rec/b", b"2").await.unwrap();
    assert_eq!(redis.get("vu1/rec/b").await.unwrap(), Some(b"2".to_vec()));
}

/// Two instances of the app on one Redis from one runtime config: an upload created
/// through A is seen, advanced and finished through B; its keys are in Redis and in
/// neither instance's own SQLite file; each instance counts its usage by window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_redis() {
    let Some(bin) = redis_server::require() else { return };
    let world = World::new(&bin).await;
    let (config_a, config_b) = (world.config("50"), world.config("50"));
    let own_files: Vec<PathBuf> = [&config_a, &config_b]
        .iter()
        .map(|c| match &c.state_dir {
            up::StateDir::KvFile(f) => f.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let a = up::server::start(config_a).await.unwrap();
    let b = up::server::start(config_b).await.unwrap();
    let client = http::client();
    let (size, seed) = (24 * MIB, 3);
    let (status, created) =
        call(&client, a.addr, "POST", "/uploads", &json!({ "source": world.stack.gen_url(size, seed) }).to_string()).await;
    assert!(status == 201 || status == 200, "{created}");
    assert_ne!(created["state"], "done", "too small to share: {created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let record = vod_uploader::checkpoint::record_key(&id);
    let keys = world.redis.keys().await.unwrap();
    assert!(keys.contains(&record), "the upload's record is a plain Redis key {record:?}: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(vod_uploader::checkpoint::KEY_PREFIX)), "{keys:?}");

    let (status, seen) = call(&client, b.addr, "GET", &format!("/uploads/{id}"), "").await;
    assert_eq!(status, 200, "B does not see what A created: {seen}");
    assert_eq!(seen["hashedBytes"], created["hashedBytes"]);
    let (_, listing) = call(&client, b.addr, "GET", "/uploads", "").await;
    assert_eq!(listing["uploads"].as_array().map(Vec::len), Some(1), "{listing}");
    let mut v = seen;
    for _ in 0..2000 {
        if v["state"] == "done" {
            break;
        }
        let (status, next) = call(&client, b.addr, "POST", &format!("/uploads/{id}/advance"), "").await;
        assert_eq!(status, 200, "{next}");
        assert_ne!(next["state"], "failed", "{next}");
        http::wait_for_leases(&next).await;
        v = next;
    }
    assert_eq!(v["state"], "done", "{v}");
    let (stored, sha1) = world.stack.stored_sha1(v["fileId"].as_str().unwrap()).await.unwrap();
    assert_eq!((stored, sha1), (size, host_sim::sample::generated_sha1(size, seed)));
    let (_, from_a) = call(&client, a.addr, "GET", &format!("/uploads/{id}"), "").await;
    assert_eq!(from_a["state"], "done", "A sees B's finish: {from_a}");
    assert!(world.redis.keys().await.unwrap().contains(&vod_uploader::checkpoint::end_key(&id)));
    for file in own_files {
        assert!(!file.exists(), "{} was made: the runtime config's Redis must hold the default store", file.display());
    }

    // Usage by window: the hours add up to the outbound total, writes were counted.
    for host in [&a, &b] {
        let (_, stats) = http::api_call(&client, host.addr, "GET", "/.well-known/host-sim/stats", "", None).await.unwrap();
        let hours: u64 = stats["usage"]["outboundPerHour"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(hours, stats["outbound"].as_u64().unwrap(), "{stats}");
        let writes: u64 = stats["usage"]["kvWritesPerSecond"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        assert!(writes > 0, "{stats}");
        let now_hour = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600;
        assert!(stats["usage"]["outboundPerHour"].as_object().unwrap().keys().all(|h| h.parse::<u64>().unwrap() + 1 >= now_hour));
    }
}

/// Redis restarted in the middle of an upload: while it is down, calls answer within
/// a bound (an error, no hang); once it is back the upload finishes byte-identical
/// from where it was (nothing acknowledged was lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_upload() {
    let Some(bin) = redis_server::require() else { return };
    let mut world = World::new(&bin).await;
    let a = up::server::start(world.config("50")).await.unwrap();
    let b = up::server::start(world.config("50")).await.unwrap();
    let client = http::client();
    let (size, seed) = (64 * MIB, 9);
    let (_, created) = call(&client, a.addr, "POST", "/uploads", &json!({ "source": world.stack.gen_url(size, seed) }).to_string()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut v = created;
    while v["uploadedBytes"].as_u64().unwrap_or(0) == 0 {
        v = call(&client, b.addr, "POST", &format!("/uploads/{id}/advance"), "").await.1;
        assert_ne!(v["state"], "done", "finished before the restart: make the file larger: {v}");
        http::wait_for_leases(&v).await;
    }
    let before = v.clone();

    world.redis.stop();
    let started = Instant::now();
    let (status, answer) = call(&client, a.addr, "POST", &format!("/uploads/{id}/advance"), "").await;
    let took = started.elapsed();
    assert_ne!(status, 200, "Redis is down, yet: {answer}");
    assert!(took < Duration::from_secs(15), "an invocation waited {took:?} on a Redis that is down");

    world.redis.restart().await.unwrap();
    let (mut failures, mut invocations) = (0, 0);
    let mut v = before.clone();
    while v["state"] != "done" {
        invocations += 1;
        assert!(invocations < 2000, "not done: {v}");
        let host = if invocations % 2 == 0 { a.addr } else { b.addr };
        let (status, next) = call(&client, host, "POST", &format!("/uploads/{id}/advance"), "").await;
        if status != 200 {
            // The call that finds the old connection broken fails, as on Spin.
            failures += 1;
            assert!(failures <= 4, "still failing after Redis came back: {status} {next}");
            continue;
        }
        assert_ne!(next["state"], "failed", "{next}");
        assert!(next["hashedBytes"].as_u64() >= before["hashedBytes"].as_u64(), "progress lost: {next} after {before}");
        // An invocation that met the store down could not give its leases back.
        http::wait_for_leases(&next).await;
        v = next;
    }
    let (stored, sha1) = world.stack.stored_sha1(v["fileId"].as_str().unwrap()).await.unwrap();
    assert_eq!((stored, sha1), (size, host_sim::sample::generated_sha1(size, seed)));
    eprintln!("Redis down: advance answered {status} in {took:?}; back: {failures} failed calls, then done in {invocations} calls");
}

/// `--outbound-mbps`: the instance's downloads are paced by its bucket: at 32 Mbps
/// (4 MB/s) reading the source cannot take less than its bytes over the rate, whatever
/// the machine (a floor, not a measured speed; nothing waits on the clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mbps_paces_the_instance() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let mut config = stack.up_config(&manifest(), TOKEN, &[]);
    config.outbound_mbps = Some(32.0);
    let host = up::server::start(config).await.unwrap();
    let client = http::client();
    let size = 6 * MIB;
    let started = Instant::now();
    let (_, created) = call(&client, host.addr, "POST", "/uploads", &json!({ "source": stack.gen_url(size, 1) }).to_string()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut v = created;
    for _ in 0..100 {
        if v["state"] == "done" {
            break;
        }
        v = call(&client, host.addr, "POST", &format!("/uploads/{id}/advance"), "").await.1;
    }
    assert_eq!(v["state"], "done", "{v}");
    let took = started.elapsed().as_secs_f64();
    let read = stack.files.stats.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let (rate, burst) = (32e6 / 8.0, 0.05 * 32e6 / 8.0);
    assert!(read >= size as f64, "{read} bytes read");
    let floor = (read - burst - 65_536.0) / rate;
    assert!(took >= floor, "{read} bytes in {took:.2} s: faster than 32 Mbps allows ({floor:.2} s)");
    eprintln!("32 Mbps: {read} source bytes in {took:.2} s (at least {floor:.2} s)");
}
