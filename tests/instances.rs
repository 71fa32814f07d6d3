//! Several instances of the component on one store, as production runs them: three
//! `host-sim up` of the real `.wasm` on one real Redis (Spin's runtime config), each
//! with its own outbound bandwidth, against the VOD simulator and a file server, over
//! real HTTP on loopback. Skipped with `SKIPPED (redis)` when no redis-server is
//! installed, except in CI.
//!
//! - ticks on three instances at once spread over three uploads (the hashing lease);
//! - three instances send one file's part ranges side by side (range leases), and the
//!   file lands byte-identical with few parts sent twice;
//! - the platform quotas hold over the three: no hour over `outbound_per_hour`, no
//!   second over `kv_writes_per_second`, the upload waits with `quota_exhausted` and an
//!   ETA, and `/metrics` says what is left.

use host_sim::http::{self, HttpClient};
use host_sim::redis_server::{self, RedisServer};
use host_sim::stack::{Stack, StackOptions};
use host_sim::up::{self, Running, UpConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const TOKEN: &str = "instances-token";
const MIB: u64 = 1 << 20;

fn manifest() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = root.join("target/wasm32-wasip1/release/vod_uploader.wasm");
    assert!(wasm.exists(), "{} is missing: build the component with `make wasm` (make test does) first", wasm.display());
    root.join("spin.toml")
}

async fn call(client: &HttpClient, addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    http::api_call(client, addr, method, path, body, Some(TOKEN)).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The stack, a Redis, and three instances on it.
struct Cluster {
    stack: Stack,
    _redis: RedisServer,
    instances: Vec<Running>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(bin: &Path, vars: &[(&str, &str)], mbps: f64) -> Cluster {
        let stack = Stack::start(StackOptions::default()).await.unwrap();
        let redis = RedisServer::start(bin).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("runtime-config.toml");
        redis.write_runtime_config(&rc).unwrap();
        let mut instances = Vec::new();
        for _ in 0..3 {
            let mut config: UpConfig = stack.up_config(&manifest(), TOKEN, vars);
            config.runtime_config = Some(rc.clone());
            config.outbound_mbps = Some(mbps);
            instances.push(up::server::start(config).await.unwrap());
        }
        Cluster { stack, _redis: redis, instances, _dir: dir }
    }

    /// `POST /tick` on every instance at once.
    async fn tick_all(&self, client: &HttpClient) -> Vec<Value> {
        let ticks = self.instances.iter().map(|i| {
            let (client, addr) = (client.clone(), i.addr);
            tokio::spawn(async move { call(&client, addr, "POST", "/tick", "").await })
        });
        let mut answers = Vec::new();
        for t in ticks.collect::<Vec<_>>() {
            let (status, v) = t.await.unwrap();
            assert_eq!(status, 200, "{v}");
            answers.push(v);
        }
        answers
    }

    async fn status(&self, client: &HttpClient, id: &str) -> Value {
        call(client, self.instances[0].addr, "GET", &format!("/uploads/{id}"), "").await.1
    }

    /// Every hour's outbound requests and every second's key-value writes, summed over
    /// the instances (host-sim counts them as the platform would).
    async fn usage(&self, client: &HttpClient) -> (Vec<u64>, Vec<u64>) {
        let mut hours = std::collections::BTreeMap::<String, u64>::new();
        let mut seconds = std::collections::BTreeMap::<String, u64>::new();
        for i in &self.instances {
            let (_, stats) = http::api_call(client, i.addr, "GET", "/.well-known/host-sim/stats", "", None).await.unwrap();
            for (window, into) in [("outboundPerHour", &mut hours), ("kvWritesPerSecond", &mut seconds)] {
                for (k, n) in stats["usage"][window].as_object().unwrap() {
                    *into.entry(k.clone()).or_default() += n.as_u64().unwrap();
                }
            }
        }
        (hours.into_values().collect(), seconds.into_values().collect())
    }
}

/// A GET with the token whose answer is text (`/metrics`).
async fn get_text(client: &HttpClient, addr: SocketAddr, path: &str) -> String {
    use http_body_util::BodyExt as _;
    let request = hyper::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http::full(bytes::Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn create(c: &Cluster, client: &HttpClient, size: u64, seed: u64) -> String {
    let body = json!({ "source": c.stack.gen_url(size, seed) }).to_string();
    let (status, v) = call(client, c.instances[0].addr, "POST", "/uploads", &body).await;
    assert!(status == 201 || status == 200, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Three uploads being hashed, three instances ticking at once: each instance works on
/// an upload of its own (without leases all three would hash the first one together
/// and leave the others untouched for the whole budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_on_three_instances_spread_over_three_uploads() {
    let Some(bin) = redis_server::require() else { return };
    // 24 MiB at 40 Mbit/s: a budget of 1.5 s hashes about a third of one.
    let c = Cluster::start(&bin, &[("budget_ms", "1500")], 40.0).await;
    let client = http::client();
    let mut ids = Vec::new();
    for seed in 0..3 {
        ids.push(create(&c, &client, 24 * MIB, 40 + seed).await);
    }
    let before: Vec<u64> = hashed(&c, &client, &ids).await;
    assert!(before.iter().all(|&h| h < 24 * MIB), "hashed already: {before:?}");
    let answers = c.tick_all(&client).await;
    let after = hashed(&c, &client, &ids).await;
    let grew = before.iter().zip(&after).filter(|(b, a)| a > b).count();
    assert_eq!(grew, 3, "one round of three ticks moved {grew} of the three uploads: {before:?} -> {after:?}; ticks: {answers:?}");
}

async fn hashed(c: &Cluster, client: &HttpClient, ids: &[String]) -> Vec<u64> {
    let mut out = Vec::new();
    for id in ids {
        out.push(c.status(client, id).await["hashedBytes"].as_u64().unwrap());
    }
    out
}

/// One 192 MiB file (three 64 MiB part ranges), hashed, then sent by three instances
/// ticking together: while it is sent, its status shows range leases of different
/// owners at once; it lands byte-identical, and few parts were sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_send_one_file_side_by_side() {
    let Some(bin) = redis_server::require() else { return };
    let c = Cluster::start(&bin, &[("budget_ms", "2000")], 160.0).await;
    let client = http::client();
    let (size, seed) = (192 * MIB, 77);
    let id = create(&c, &client, size, seed).await;
    let mut v = c.status(&client, &id).await;
    while v["state"] == "pending" || v["state"] == "hashing" {
        v = call(&client, c.instances[0].addr, "POST", &format!("/uploads/{id}/advance"), "").await.1;
    }
    let mut most_owners = 0;
    for _ in 0..500 {
        if v["state"] == "done" {
            break;
        }
        assert_ne!(v["state"], "failed", "{v}");
        let round = c.tick_all(&client);
        let watch = async {
            // Look at the leases while the ticks run.
            let mut most = 0;
            for _ in 0..8 {
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                let s = c.status(&client, &id).await;
                let owners: std::collections::BTreeSet<String> = s["leases"]
                    .as_array()
                    .map(|l| l.iter().filter(|l| l["lease"] != "hash").map(|l| l["owner"].to_string()).collect())
                    .unwrap_or_default();
                most = most.max(owners.len());
            }
            most
        };
        let (_, seen) = tokio::join!(round, watch);
        most_owners = most_owners.max(seen);
        v = c.status(&client, &id).await;
    }
    assert_eq!(v["state"], "done", "{v}");
    assert!(most_owners >= 2, "never saw two instances holding ranges at once");
    let (stored, sha1) = c.stack.stored_sha1(v["fileId"].as_str().unwrap()).await.unwrap();
    assert_eq!((stored, sha1), (size, host_sim::sample::generated_sha1(size, seed)));
    let (_, sim) = http::api_call(&client, c.stack.sim.addr, "GET", "/sim/stats", "", None).await.unwrap();
    let (stored_parts, resent) = (sim["partsStored"].as_u64().unwrap(), sim["partsResent"].as_u64().unwrap());
    println!("range owners at once: {most_owners}; parts stored {stored_parts}, sent again {resent}");
    assert!(resent * 20 <= stored_parts, "{resent} of {stored_parts} parts sent twice: over 5%");
}

/// `outbound_per_hour = 40` and `kv_writes_per_second = 50` over three instances: ticks
/// on all three until the hour's requests are used up. No hour has more than 40
/// requests and no second more than 50 writes, over the three; the upload waits with
/// `quota_exhausted` until the next hour, with an ETA; `/metrics` shows none left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_over_three_instances() {
    let Some(bin) = redis_server::require() else { return };
    let vars = [("budget_ms", "3000"), ("outbound_per_hour", "40"), ("kv_writes_per_second", "50")];
    let c = Cluster::start(&bin, &vars, 200.0).await;
    let client = http::client();
    // 64 one-MiB parts: more requests than the hour allows.
    let id = create(&c, &client, 64 * MIB, 5).await;
    let hour = |unix: u64| unix / 3600;
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut v = c.status(&client, &id).await;
    let mut rounds = 0;
    for _ in 0..200 {
        if v["error"]["code"] == "quota_exhausted" || v["state"] == "done" {
            break;
        }
        c.tick_all(&client).await;
        rounds += 1;
        v = c.status(&client, &id).await;
        // An invocation the write quota stopped before it could give its leases back
        // left them: wait them out, as the status says.
        http::wait_for_leases(&v).await;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (hours, seconds) = c.usage(&client).await;
    println!("{rounds} rounds; requests by hour {hours:?}; most writes in a second {:?}; status {v}", seconds.iter().max());
    assert!(hours.iter().all(|&n| n <= 40), "an hour over outbound_per_hour: {hours:?}");
    assert!(seconds.iter().all(|&n| n <= 50), "a second over kv_writes_per_second: {seconds:?}");
    if hour(now) != hour(started) {
        // The hour turned during the test: the quota's window restarted, nothing more to see.
        return;
    }
    assert_eq!(v["error"]["code"], "quota_exhausted", "{v}");
    assert_eq!(v["retryAfter"], json!((hour(now) + 1) * 3600), "{v}");
    let quota = &v["quota"];
    assert_eq!(quota["outboundPerHour"], 40, "{v}");
    assert!(quota["requestsLeft"].as_u64().unwrap() > 0 && quota["eta"].as_u64().unwrap() >= (hour(now) + 1) * 3600, "{v}");
    let metrics = get_text(&client, c.instances[1].addr, "/metrics").await;
    assert!(metrics.contains("vod_uploader_quota_limit{quota=\"outbound_per_hour\"} 40"), "{metrics}");
    assert!(
        metrics.contains("vod_uploader_uploads{state=\"uploading\"} 1") || metrics.contains("vod_uploader_uploads{state=\"hashing\"} 1"),
        "{metrics}"
    );
    let left: u64 = metrics
        .lines()
        .find(|l| l.starts_with("vod_uploader_quota_left{quota=\"outbound_per_hour\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(left < 5, "the hour's requests are (nearly) used up, {left} left: {metrics}");
}
