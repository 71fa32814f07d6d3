//! Conformance scenarios on a Redis shared through Spin's runtime config
//! (`--runtime-config-file` with `[key_value_store.default] type = "redis"`): on each
//! host alone, and on both at once, where Spin's own Redis backend writes the keys
//! host-sim up reads, and back. A real `redis-server` (host_sim::redis_server); without
//! one the scenarios say `SKIPPED (redis)` (in CI they fail).

use super::{App, Host, Runtime, World, MIB};
use host_sim::redis_server;

/// A Redis of its own and the runtime config naming it, in the app's directory.
async fn redis_for(app: &App) -> Option<(redis_server::RedisServer, Vec<String>)> {
    let bin = redis_server::require()?;
    let redis = redis_server::RedisServer::start(&bin).await.unwrap();
    let rc = app.path().join("runtime-config.toml");
    redis.write_runtime_config(&rc).unwrap();
    Some((redis, vec!["--runtime-config-file".into(), rc.display().to_string()]))
}

/// With `[key_value_store.default] type = "redis"`, the upload's state lives in Redis
/// under the component's own keys (nothing in `.spin/`), and it finishes.
pub(crate) async fn store(host: Host) -> String {
    let world = World::new().await;
    let app = App::new(|m| m);
    let Some((redis, rc)) = redis_for(&app).await else { return "SKIPPED (redis): no redis-server".into() };
    let rt = Runtime::start_with(host, &app, &world.variables(&[("budget_ms", "200".into())]), &rc).await;
    let (id, _) = rt.create(&world.source(20 * MIB, 21)).await;
    let record = vod_uploader::checkpoint::record_key(&id);
    assert!(redis.keys().await.unwrap().contains(&record), "{}: {:?}", host.name(), redis.keys().await.unwrap());
    // get-keys is the whole database's: a key that is not the component's is listed to
    // it too, and the component skips it.
    redis.set("not-the-components", b"x").await.unwrap();
    let (status, listing) = rt.call("GET", "/uploads", "").await;
    assert_eq!((status, listing["uploads"].as_array().map(Vec::len)), (200, Some(1)), "{}: {listing}", host.name());
    let done = rt.finish(&id).await;
    world.verify(&done, 20 * MIB, 21).await;
    let mut keys = redis.keys().await.unwrap();
    keys.retain(|k| k != "not-the-components");
    assert!(keys.contains(&vod_uploader::checkpoint::end_key(&id)), "{}: {keys:?}", host.name());
    assert!(keys.iter().all(|k| k.starts_with(vod_uploader::checkpoint::KEY_PREFIX)), "{}: {keys:?}", host.name());
    assert!(!app.path().join(".spin/sqlite_key_value.db").exists(), "{}: the default store went to SQLite", host.name());
    format!("done, byte-identical; Redis holds {} plain keys ({})", keys.len(), keys.join(", "))
}

/// Redis stopped under a running host: host-sim up answers a call that needs the
/// store with an error in bounded time; Spin 3.6.3 (whose Redis connection has no
/// response timeout) was seen to hold such a call for minutes, so its half only records
/// what it did within 20 s. Once Redis is back (its data kept), calls work again on both.
pub(crate) async fn restart(host: Host) -> String {
    let world = World::new().await;
    let app = App::new(|m| m);
    let Some((mut redis, rc)) = redis_for(&app).await else { return "SKIPPED (redis): no redis-server".into() };
    let rt = Runtime::start_with(host, &app, &world.variables(&[("budget_ms", "200".into())]), &rc).await;
    let (id, _) = rt.create(&world.source(3 * MIB, 4)).await;
    redis.stop();
    let started = std::time::Instant::now();
    let down = tokio::time::timeout(std::time::Duration::from_secs(20), rt.call("GET", &format!("/uploads/{id}"), "")).await;
    let took = started.elapsed();
    let down = match down {
        Ok((status, answer)) => {
            assert_ne!(status, 200, "{}: Redis is down, yet: {answer}", host.name());
            format!("{status} in {:.1} s", took.as_secs_f64())
        }
        Err(_) => {
            assert_eq!(host, Host::Spin, "host-sim up must answer within its bound while Redis is down");
            "no answer within 20 s".to_owned()
        }
    };
    redis.restart().await.unwrap();
    let mut calls = 0;
    let status = loop {
        calls += 1;
        let (status, v) = rt.call("GET", &format!("/uploads/{id}"), "").await;
        if status == 200 || calls == 5 {
            assert_eq!(status, 200, "{}: still failing after Redis came back: {v}", host.name());
            break status;
        }
    };
    let done = rt.finish(&id).await;
    world.verify(&done, 3 * MIB, 4).await;
    format!("Redis down: {down}; back: {status} at call {calls}; the upload finished")
}

/// One Redis, two runtimes serving the app at the same time: Spin's Redis backend
/// writes the upload's keys, host-sim up reads them, advances the upload and writes,
/// Spin finishes it from what host-sim wrote.
pub(crate) async fn shared() -> String {
    let world = World::new().await;
    let app = App::new(|m| m);
    let Some((redis, rc)) = redis_for(&app).await else { return "SKIPPED (redis): no redis-server".into() };
    let vars = world.variables(&[("budget_ms", "50".into())]);
    let (size, seed) = (64 * MIB, 23);
    let spin = Runtime::start_with(Host::Spin, &app, &vars, &rc).await;
    let hs = Runtime::start_with(Host::HostSim, &app, &vars, &rc).await;
    let (id, created) = spin.create(&world.source(size, seed)).await;
    assert_ne!(created["state"], "done", "too small to share: {created}");
    let written_by_spin = redis.get(&vod_uploader::checkpoint::record_key(&id)).await.unwrap();
    assert!(written_by_spin.is_some(), "Spin wrote no record to Redis: {:?}", redis.keys().await.unwrap());
    let (status, seen) = hs.call("GET", &format!("/uploads/{id}"), "").await;
    assert_eq!(status, 200, "host-sim up does not see what Spin wrote: {seen}\n{}", hs.log_text());
    assert_eq!(seen["hashedBytes"], created["hashedBytes"], "{seen}");
    let mut v = seen;
    while v["uploadedBytes"].as_u64().unwrap_or(0) == 0 {
        v = hs.call("POST", &format!("/uploads/{id}/advance"), "").await.1;
        assert_ne!(v["state"], "failed", "{v}");
    }
    assert_ne!(v["state"], "done", "host-sim finished it all: make the file larger: {v}");
    let (_, seen) = spin.call("GET", &format!("/uploads/{id}"), "").await;
    assert_eq!(seen["uploadedBytes"], v["uploadedBytes"], "Spin reads what host-sim wrote: {seen}");
    let done = spin.finish(&id).await;
    world.verify(&done, size, seed).await;
    let (_, from_hs) = hs.call("GET", &format!("/uploads/{id}"), "").await;
    assert_eq!(from_hs["state"], "done", "{from_hs}");
    format!(
        "spin created ({} hashed), host-sim up read Spin's keys and uploaded {}, spin finished byte-identical; {} keys in Redis",
        created["hashedBytes"],
        v["uploadedBytes"],
        redis.keys().await.unwrap().len()
    )
}
