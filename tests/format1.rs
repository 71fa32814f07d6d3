//! Uploads of stored format 1, as today's engine leaves them, must finish under any
//! later engine: an upload in flight when a user upgrades the component carries on.
//!
//! `tests/fixtures/format1/*.json` hold the key-value map (key -> base64 value) of
//! uploads stopped in various states, with what is needed to finish them: the source
//! (its name and the seed and size of its bytes), the part size, the virtual time they
//! were stopped at and what the VOD service held then. They were written by the last
//! release that wrote format 1 (commit 5251ad3, whose `generate_format1_fixtures` in
//! this file made them in the simulated world), and are never regenerated: they are
//! what users' stores hold.
//!
//! `*.status.json` beside each is the API's status of its record, compared exactly.

#[allow(dead_code)]
mod sim;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};
use sim::model::{sha1_hex, Session, SourceFile};
use sim::scenario::Scenario;
use sim::world::{block_on, run, KillWhen, Kills, Latency, Rng, SimIo, Task, World};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use vod_uploader::checkpoint;
use vod_uploader::engine::{self, Settings};
use vod_uploader::source::{Identity, Source};
use vod_uploader::upload::{self, Outcome, Spec, State, Upload};

/// The fixtures, by file stem.
const FIXTURES: [&str; 8] = [
    "pending-waiting",
    "hashing-md5-chunk",
    "uploading-parts-done",
    "finishing",
    "failed-in-uploading",
    "done",
    "cancelled",
    "pending-no-defaults",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1")
}

/// How a fixture's upload was made, and what a world needs to carry it on.
#[derive(Debug, Clone)]
struct Setup {
    seed: u64,
    size: usize,
    part: u64,
    local: bool,
}

impl Setup {
    fn name(&self) -> String {
        if self.local {
            "/data/clip0.mp4".into()
        } else {
            "http://src.sim/clip0.mp4?X-Amz-Signature=secret".into()
        }
    }

    /// The source's bytes: a recipe, not stored, so fixtures stay small.
    fn bytes(&self) -> Vec<u8> {
        Rng::new(self.seed).bytes(self.size)
    }

    fn settings(&self) -> Rc<Settings> {
        Rc::new(Scenario::plain(self.size, self.part, self.local).settings())
    }

    /// The settings a fixture is finished with: longer invocations than it was made
    /// with (thousands of one-byte parts would take hundreds of 30 ms invocations).
    fn finishing_settings(&self) -> Rc<Settings> {
        let mut sc = Scenario::plain(self.size, self.part, self.local);
        sc.budget_ms = 400;
        sc.checkpoint_ms = 5;
        Rc::new(sc.settings())
    }

    /// A world with the source in it and nothing else.
    fn world(&self) -> Rc<World> {
        // Network legs of 1 to 5 ms: parts overtake each other, so doneAbove fills.
        let world = World::new(self.seed, Latency { kv_ms: 1, net_ms: 5 });
        world.checkpoint_every.set(self.settings().checkpoint_every);
        world.sources.borrow_mut().insert(self.name(), SourceFile::new(self.bytes()));
        world
    }
}

fn observer(world: &Rc<World>) -> SimIo {
    SimIo { world: world.clone(), inv: None }
}

fn load(world: &Rc<World>, id: &str) -> Option<Upload> {
    let (io, id) = (observer(world), id.to_owned());
    block_on(world, async move { engine::load(&io, &id).await }).expect("the record loads")
}

/// One advance of `id` as a worker invocation (latency, kills); whether it was killed.
fn invoke(world: &Rc<World>, settings: &Rc<Settings>, id: &str) -> bool {
    let w = world.watch();
    let (world2, s, id2) = (world.clone(), settings.clone(), id.to_owned());
    run(
        world,
        vec![Task::new(Some(w), async move {
            let started = world2.now();
            world2.start(w, s.time_limit());
            let io = SimIo { world: world2.clone(), inv: Some(w) };
            if let Err(e) = engine::advance(&io, &s, &id2, started).await {
                world2.violation(format!("invocation {w}: {e}"));
            }
        })],
        Duration::from_secs(600),
    );
    let killed = world.watches.borrow()[w].killed;
    killed
}

/// Invocations until the upload is final (honouring `retryAfter`, as a scheduler does)
/// or an invocation is killed; whether one was.
fn until_final_or_killed(world: &Rc<World>, settings: &Rc<Settings>, id: &str) -> bool {
    for _ in 0..500 {
        let Some(rec) = load(world, id) else { return false };
        if rec.state().is_final() {
            return false;
        }
        if let Some(at) = rec.retry_after() {
            world.advance_clock(Duration::from_secs(at.saturating_sub(world.unix())));
        }
        if invoke(world, settings, id) {
            return true;
        }
        world.advance_clock(Duration::from_millis(10));
    }
    panic!("upload {id} not final after 500 invocations");
}

fn read(stem: &str) -> Value {
    let path = dir().join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture json")
}

fn setup_of(f: &Value) -> Setup {
    let n = |v: &Value| v.as_u64().expect("a number");
    Setup {
        seed: n(&f["source"]["seed"]),
        size: n(&f["source"]["size"]) as usize,
        part: n(&f["partSize"]),
        local: f["source"]["local"].as_bool().expect("local"),
    }
}

/// A fresh world holding the fixture: its keys, its source's bytes, what the service
/// held, at the virtual time it was stopped. Returns the upload's id too.
fn world_of(f: &Value) -> (Rc<World>, Setup, String) {
    let setup = setup_of(f);
    assert_eq!(f["source"]["name"], json!(setup.name()), "the fixture's source name");
    let world = setup.world();
    world.advance_clock(Duration::from_millis(f["clockMs"].as_u64().expect("clockMs")));
    let bytes = setup.bytes();
    {
        let mut service = world.service.borrow_mut();
        if let Some(session) = f["service"]["session"].as_object() {
            let data_size = session["dataSize"].as_u64().expect("dataSize");
            let parts = session["parts"]
                .as_array()
                .expect("parts")
                .iter()
                .map(|o| {
                    let o = o.as_u64().expect("offset");
                    let end = (o + data_size).min(bytes.len() as u64);
                    (o, bytes[o as usize..end as usize].to_vec())
                })
                .collect();
            service.sessions.insert(sha1_hex(&bytes), Session { file_size: bytes.len() as u64, data_size, parts });
        }
        if f["service"]["held"].as_bool().expect("held") {
            service.hold(&bytes);
        }
    }
    let mut id = None;
    for (key, value) in f["kv"].as_object().expect("kv") {
        let value = STANDARD.decode(value.as_str().expect("base64")).expect("base64");
        world.kv.borrow_mut().insert(key.clone(), value);
        id = id.or(checkpoint::id_of_record_key(key).or(checkpoint::id_of_end_key(key)).map(str::to_owned));
    }
    let id = id.expect("the fixture holds an upload");
    world.truth.borrow_mut().insert(id.clone(), bytes);
    (world, setup, id)
}

/// The API's status of a fixture's upload, as a load (the outcome over the record) sees it.
fn status_of(f: &Value) -> Value {
    let (world, _, id) = world_of(f);
    upload::status(&load(&world, &id).expect("the fixture has a record"))
}

/// Carries a fixture's upload on to its end with today's engine (a failed one retried
/// first), under `kills`; checks how it ends. Returns the I/O calls the invocations made.
fn finish(stem: &str, kills: Kills) -> Result<u64, String> {
    let f = read(stem);
    let (world, setup, id) = world_of(&f);
    let before = load(&world, &id).ok_or("no record")?;
    if before.state() == State::Failed {
        let (io, id2) = (observer(&world), id.clone());
        let retried = block_on(&world, async move { engine::retry(&io, &id2).await }).map_err(|e| format!("retry: {e}"))?;
        if retried.map(|r| r.state()) != Some(State::Uploading) {
            return Err("the retry did not resume the upload in uploading".into());
        }
    }
    let settings = setup.finishing_settings();
    world.checkpoint_every.set(settings.checkpoint_every);
    world.kills.set(kills);
    while until_final_or_killed(&world, &settings, &id) {}
    world.kills.set(Kills::None);
    // One more invocation after the end settles what a kill left half done.
    invoke(&world, &settings, &id);
    if !world.violations.borrow().is_empty() {
        return Err(format!("violations: {:?}", world.violations.borrow()));
    }
    let bytes = setup.bytes();
    let held = world.service.borrow().files.get(&sha1_hex(&bytes)).map(|s| (s.file_id.clone(), s.bytes == bytes));
    let end = world.kv.borrow().get(&checkpoint::end_key(&id)).map(|v| Outcome::decode(v).expect("an outcome"));
    let after = load(&world, &id);
    if before.state() == State::Cancelled {
        // Cancelled stays cancelled: the tombstone is all that is left.
        let keys: Vec<String> = world.kv.borrow().keys().cloned().collect();
        if !matches!(end, Some(Outcome::Cancelled { .. })) || keys != [checkpoint::end_key(&id)] || held.is_some() {
            return Err(format!("cancelled upload ended with {end:?}, keys {keys:?}, service {held:?}"));
        }
        return Ok(world.calls.get());
    }
    let after = after.ok_or("the record vanished")?;
    match (&held, after.state()) {
        (Some((file_id, true)), State::Done) if after.file_id() == Some(file_id.as_str()) => {}
        _ => return Err(format!("ended {:?} as {:?}; the service holds {held:?}", after.state(), after.file_id())),
    }
    if !matches!(&end, Some(Outcome::Done { file_id, .. }) if Some(file_id.as_str()) == after.file_id()) {
        return Err(format!("done without its outcome: {end:?}"));
    }
    if before.state() == State::Done && before.file_id() != after.file_id() {
        return Err(format!("done as {:?}, now done as {:?}", before.file_id(), after.file_id()));
    }
    Ok(world.calls.get())
}

/// Every format-1 fixture finishes: done with the source's exact bytes at the service
/// (the done one keeps its fileId), or, cancelled, stays cancelled.
#[test]
fn format1_records_finish() {
    for stem in FIXTURES {
        if let Err(e) = finish(stem, Kills::None) {
            panic!("{stem}: {e}");
        }
    }
}

/// The same, killed at each I/O call in turn (before and after a write takes effect):
/// carrying on a record of the previous release is crash-safe, also where it is first
/// read and replaced. The one-byte-part fixture only at its first calls (each of its
/// runs sends thousands of parts; its later calls are the same upload pass as the others').
#[test]
fn format1_records_finish_under_a_kill_at_every_io_call() {
    let mut failures = Vec::new();
    let mut runs = 0;
    for stem in FIXTURES {
        let calls = finish(stem, Kills::None).unwrap_or_else(|e| panic!("{stem} without kills: {e}"));
        let swept = if stem == "hashing-md5-chunk" { calls.min(4) } else { calls };
        for k in 0..swept {
            for when in [KillWhen::Before, KillWhen::After] {
                runs += 1;
                if let Err(e) = finish(stem, Kills::At(k, when)) {
                    failures.push(format!("{stem} killed at call {k} {when:?}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures[..failures.len().min(3)].join("\n"));
    println!("{runs} runs, each killed at one call");
}

/// The API's status of each fixture's record, exactly as stored beside it.
#[test]
fn format1_status_goldens() {
    for stem in FIXTURES {
        let path = dir().join(format!("{stem}.status.json"));
        let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("status golden")).expect("json");
        assert_eq!(status_of(&read(stem)), want, "{}", path.display());
    }
}

/// Upload ids are stored (as keys) and handed to users: they must not drift.
#[test]
fn upload_id_goldens() {
    let identity = Identity { size: 1_000_000, etag: Some("\"abc\"".into()), last_modified: Some("Wed, 01 Jan 2025 00:00:00 GMT".into()) };
    let url = Spec::for_source(Source::Url("https://bucket.example/a/clip.mp4?X-Amz-Signature=s".into()), 1 << 20);
    let tagged = Spec { tags: vec!["news".into(), "2025".into()], class_id: Some(7), is_transcode: true, ..url.clone() };
    let local = Spec::for_source(Source::Path("/data/film.mkv".into()), 512 * 1024);
    let local_identity = Identity { size: 42, etag: None, last_modified: Some("1735689600.000000000".into()) };
    assert_eq!(upload::upload_id(&url, &identity), "fa062e1fbc4b157f6c6f");
    assert_eq!(upload::upload_id(&tagged, &identity), "868da5254abfa67b9e8e");
    assert_eq!(upload::upload_id(&local, &local_identity), "be2b42161169c192d9b0");
}
