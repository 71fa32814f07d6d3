//! The upload engine, compiled natively, against the real simulator over loopback,
//! a real Range-capable file server and a real SQLite key-value store.

use host_sim::client::VodClient;
use host_sim::kv::SqliteKv;
use host_sim::native::monotonic_now as now;
use host_sim::native::NativeIo;
use host_sim::sample::sha1_hex;
use host_sim::stack::{Stack, StackOptions};
use host_sim::vod::{faults::Faults, DEV_SECRET_ID, DEV_SECRET_KEY};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vod_uploader::engine::{self, Settings};
use vod_uploader::protocol::Credentials;
use vod_uploader::sign::Algorithm;
use vod_uploader::source::Source;
use vod_uploader::upload::{Spec, State, Upload};

const HALF: u64 = 524_288;

struct Env {
    stack: Stack,
    kv: Arc<SqliteKv>,
}

async fn env_with(faults: Faults) -> Env {
    let stack = Stack::start(StackOptions { faults, ..StackOptions::default() }).await.unwrap();
    let kv = Arc::new(SqliteKv::open(&stack.kv_file()).unwrap());
    Env { stack, kv }
}

/// The simulator with a tenth of its answers faulty (every kind, reproducibly).
async fn env() -> Env {
    env_with(Faults::new(0.1, &[], 7, Duration::from_millis(5))).await
}

/// The simulator with no faults, for tests that count requests.
async fn quiet_env() -> Env {
    env_with(Faults::none()).await
}

impl Env {
    fn settings(&self, budget: Duration) -> Settings {
        let mut s = self.stack.settings();
        s.budget = budget;
        s.concurrency = 3;
        s.checkpoint_every = Duration::ZERO;
        s.memory_threshold = 0;
        s.first_read = 2 << 20;
        // Waiting out retryAfter is the scheduler's business; tests advance at once.
        s.backoff.base_secs = 0;
        s
    }

    /// Creates an upload (the probe's settings do not matter here).
    async fn create(&self, io: &NativeIo, spec: Spec) -> Result<(Upload, bool), vod_uploader::error::Error> {
        engine::create(io, &self.settings(Duration::ZERO), spec).await
    }

    fn io(&self) -> NativeIo {
        NativeIo::new(self.kv.clone())
    }

    /// Writes a sample file under the file server's root.
    fn file(&self, name: &str, size: u64, seed: u64) -> (PathBuf, Vec<u8>) {
        let path = self.stack.write_sample(name, size, seed).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    fn url(&self, name: &str) -> Source {
        Source::Url(self.stack.url(name))
    }

    /// Whether the simulator holds exactly `bytes` for a fileId.
    async fn holds(&self, file_id: &str, bytes: &[u8]) -> bool {
        self.stack.stored_sha1(file_id).await.unwrap() == (bytes.len() as u64, sha1_hex(bytes))
    }
}

fn spec(source: Source, data_size: u64) -> Spec {
    Spec { tags: vec!["e2e".into()], ..Spec::for_source(source, data_size) }
}

/// Advances until the upload is final; returns the record and the invocations used.
async fn drive(io: &NativeIo, s: &Settings, id: &str, limit: u64) -> Upload {
    for _ in 0..limit {
        let rec = engine::advance(io, s, id, now()).await.unwrap().unwrap();
        if rec.state().is_final() {
            return rec;
        }
    }
    panic!("upload {id} not final after {limit} invocations");
}

#[tokio::test]
async fn url_source_over_dozens_of_tiny_invocations() {
    let env = env().await;
    let (_, bytes) = env.file("clip.mp4", 9 * HALF + 12_345, 1);
    let io = env.io();
    let s = env.settings(Duration::ZERO);
    let (rec, created) = env.create(&io, spec(env.url("clip.mp4"), HALF)).await.unwrap();
    assert!(created);
    assert_eq!((rec.state(), rec.identity.size), (State::Pending, bytes.len() as u64));
    let done = drive(&io, &s, &rec.id, 20_000).await;
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    assert!(done.invocations >= 8, "a zero budget should take many invocations, took {}", done.invocations);
    assert_eq!(done.file_sha(), Some(sha1_hex(&bytes).as_str()));
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
    // Only the main record and the outcome are left of the upload.
    assert_eq!(env.kv.keys().unwrap(), vec![vod_uploader::checkpoint::record_key(&rec.id), vod_uploader::checkpoint::end_key(&rec.id)]);
}

#[tokio::test]
async fn local_path_source_with_a_generous_budget_in_one_invocation() {
    let env = env().await;
    let (path, bytes) = env.file("local.mov", 5 * HALF + 1, 2);
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    let (rec, _) = env.create(&io, spec(Source::Path(path.to_str().unwrap().into()), HALF)).await.unwrap();
    assert_eq!((rec.spec.file_name.as_str(), rec.spec.file_type.as_str()), ("local", "mov"));
    let done = drive(&io, &s, &rec.id, 1).await;
    assert_eq!((done.state(), done.invocations), (State::Done, 1));
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
}

#[tokio::test]
async fn small_files_are_read_once() {
    let env = quiet_env().await;
    let (_, bytes) = env.file("small.mp4", 3 * HALF + 7, 3);
    let io = env.io();
    let mut s = env.settings(Duration::from_secs(60));
    s.memory_threshold = 16 << 20;
    let (rec, _) = env.create(&io, spec(env.url("small.mp4"), HALF)).await.unwrap();
    let done = drive(&io, &s, &rec.id, 1).await;
    assert_eq!(done.state(), State::Done);
    assert_eq!(done.stats.source_bytes, bytes.len() as u64, "read once");
    // The probe and one ranged read of the whole file.
    assert_eq!(done.stats.source_requests, 2);
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
}

#[tokio::test]
async fn a_crash_before_any_write_loses_nothing_committed() {
    let env = env().await;
    let (_, bytes) = env.file("crash.mp4", 6 * HALF + 99, 4);
    let s = env.settings(Duration::ZERO);
    let (rec, _) = env.create(&env.io(), spec(env.url("crash.mp4"), HALF)).await.unwrap();
    // Count the writes of an undisturbed run on a copy of the store.
    let mut crash_at = 0u64;
    loop {
        // Each round: one invocation that "dies" at its `crash_at`-th write (nothing after
        // it is stored, the in-memory state is gone), then a fresh invocation.
        let dying = env.io();
        dying.fail_writes_after.set(Some(crash_at % 5));
        let _ = engine::advance(&dying, &s, &rec.id, now()).await;
        let fresh = env.io();
        let after = engine::advance(&fresh, &s, &rec.id, now()).await.unwrap().unwrap();
        assert_ne!(after.state(), State::Failed, "{:?}", after.error());
        if after.state() == State::Done {
            assert!(env.holds(after.file_id().unwrap(), &bytes).await);
            assert!(crash_at > 10, "too few crash points exercised: {crash_at}");
            return;
        }
        crash_at += 1;
        assert!(crash_at < 400, "no end in sight");
    }
}

#[tokio::test]
async fn code_1_with_another_part_size_and_a_wrong_listed_part() {
    let env = quiet_env().await;
    let client = VodClient::new(&env.stack.sim.endpoint(), Credentials::new(DEV_SECRET_ID, DEV_SECRET_KEY), Algorithm::HmacSha1).unwrap();

    // A session opened elsewhere with 1 MiB parts, two of them already sent.
    let (_, bytes) = env.file("other-size.mp4", 5 * HALF + 3, 5);
    let sha = sha1_hex(&bytes);
    let init = |sha: &str, size: u64, data_size: u64| vod_uploader::protocol::InitUpload {
        file_name: "x".into(),
        file_sha: sha.into(),
        file_size: size,
        data_size,
        file_type: "mp4".into(),
        ..Default::default()
    };
    client.init(init(&sha, bytes.len() as u64, 2 * HALF)).await.unwrap();
    client.part(&sha, 0, bytes[..2 * HALF as usize].to_vec().into()).await.unwrap();
    client.part(&sha, 2 * HALF, bytes[2 * HALF as usize..4 * HALF as usize].to_vec().into()).await.unwrap();
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    let (rec, _) = env.create(&io, spec(env.url("other-size.mp4"), HALF)).await.unwrap();
    let done = drive(&io, &s, &rec.id, 3).await;
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    assert_eq!(done.part_size(), 2 * HALF, "the service's part size wins");
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);

    // A session whose part 1 holds wrong bytes (a valid MD5 of other bytes).
    let (_, bytes) = env.file("wrong-part.mp4", 4 * HALF, 6);
    let sha = sha1_hex(&bytes);
    client.init(init(&sha, bytes.len() as u64, HALF)).await.unwrap();
    client.part(&sha, 0, bytes[..HALF as usize].to_vec().into()).await.unwrap();
    client.part(&sha, HALF, vec![0xee; HALF as usize].into()).await.unwrap();
    let (rec, _) = env.create(&io, spec(env.url("wrong-part.mp4"), HALF)).await.unwrap();
    let done = drive(&io, &s, &rec.id, 3).await;
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
    // Part 0 was trusted (same MD5), part 1 was sent again: 3 parts sent, plus the probe,
    // the hashing read, the upload read, InitUpload and FinishUpload.
    assert_eq!(done.stats.vod_requests, 2 + 3);
}

#[tokio::test]
async fn code_2_for_a_file_the_service_already_has() {
    let env = quiet_env().await;
    let (_, bytes) = env.file("first.mp4", HALF + 1, 7);
    std::fs::write(env.stack.root.join("copy.mp4"), &bytes).unwrap();
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    let (a, _) = env.create(&io, spec(env.url("first.mp4"), HALF)).await.unwrap();
    let first = drive(&io, &s, &a.id, 2).await;
    let (b, _) = env.create(&io, spec(env.url("copy.mp4"), HALF)).await.unwrap();
    assert_ne!(a.id, b.id);
    let second = drive(&io, &s, &b.id, 2).await;
    assert_eq!((second.state(), &second.file_id()), (State::Done, &first.file_id()));
    assert_eq!(second.stats.vod_requests, 1, "InitUpload answered code 2: nothing sent");
}

#[tokio::test]
async fn the_same_request_for_the_same_source_is_one_upload() {
    let env = env().await;
    env.file("same.mp4", 1000, 8);
    let io = env.io();
    let (a, new_a) = env.create(&io, spec(env.url("same.mp4"), HALF)).await.unwrap();
    let (b, new_b) = env.create(&io, spec(env.url("same.mp4"), HALF)).await.unwrap();
    assert_eq!((a.id.as_str(), new_a, new_b), (b.id.as_str(), true, false));
    // A changed source is a different upload.
    env.file("same.mp4", 1001, 8);
    let (c, new_c) = env.create(&io, spec(env.url("same.mp4"), HALF)).await.unwrap();
    assert!(new_c && c.id != a.id);
}

#[tokio::test]
async fn faults_injected_by_the_simulator_are_survived() {
    let env = env_with(Faults::new(0.25, &[], 99, Duration::from_millis(5))).await;
    let (_, bytes) = env.file("faulty.mp4", 12 * HALF + 5, 9);
    let io = env.io();
    let mut s = env.settings(Duration::from_millis(300));
    s.backoff.base_secs = 0;
    let (rec, _) = env.create(&io, spec(env.url("faulty.mp4"), HALF)).await.unwrap();
    let done = drive(&io, &s, &rec.id, 300).await;
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
}

#[tokio::test]
async fn a_source_that_changes_mid_upload_fails_the_upload() {
    let env = env().await;
    // Over HTTP: the ETag changes.
    let (path, _) = env.file("changing.mp4", 8 * HALF, 10);
    let io = env.io();
    let s = env.settings(Duration::ZERO);
    let (rec, _) = env.create(&io, spec(env.url("changing.mp4"), HALF)).await.unwrap();
    engine::advance(&io, &s, &rec.id, now()).await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 1;
    std::thread::sleep(Duration::from_millis(5));
    std::fs::write(&path, &bytes).unwrap();
    let failed = drive(&io, &s, &rec.id, 100).await;
    assert_eq!(failed.state(), State::Failed);
    assert_eq!(failed.error().as_ref().unwrap().code, "source_changed", "{:?}", failed.error());

    // A local file: size and modification time change.
    let (path, _) = env.file("changing-local.mp4", 8 * HALF, 11);
    let (rec, _) = env.create(&io, spec(Source::Path(path.to_str().unwrap().into()), HALF)).await.unwrap();
    engine::advance(&io, &s, &rec.id, now()).await.unwrap();
    std::thread::sleep(Duration::from_millis(5));
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all_at_end(b"more");
    let failed = drive(&io, &s, &rec.id, 100).await;
    assert_eq!(failed.error().as_ref().map(|e| e.code.as_str()), Some("source_changed"));
}

trait AppendExt {
    fn write_all_at_end(&mut self, bytes: &[u8]);
}

impl AppendExt for std::fs::File {
    fn write_all_at_end(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.write_all(bytes).unwrap();
    }
}

#[tokio::test]
async fn two_invocations_advancing_one_upload_at_once() {
    let env = env().await;
    let (_, bytes) = env.file("race.mp4", 10 * HALF + 77, 12);
    let s = env.settings(Duration::from_millis(1));
    let (rec, _) = env.create(&env.io(), spec(env.url("race.mp4"), HALF)).await.unwrap();
    let (a, b) = (env.io(), env.io());
    for _ in 0..20_000 {
        let (ra, rb) = tokio::join!(engine::advance(&a, &s, &rec.id, now()), engine::advance(&b, &s, &rec.id, now()));
        let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert_ne!(ra.state(), State::Failed, "{:?}", ra.error());
        assert_ne!(rb.state(), State::Failed, "{:?}", rb.error());
        if ra.state() == State::Done || rb.state() == State::Done {
            let done = if ra.state() == State::Done { ra } else { rb };
            assert!(env.holds(done.file_id().unwrap(), &bytes).await);
            return;
        }
    }
    panic!("the racing invocations never finished");
}

#[tokio::test]
async fn cancel_removes_every_key_and_stops_work() {
    let env = env().await;
    env.file("cancel.mp4", 3 * HALF, 13);
    let io = env.io();
    let s = env.settings(Duration::ZERO);
    let (rec, _) = env.create(&io, spec(env.url("cancel.mp4"), HALF)).await.unwrap();
    engine::advance(&io, &s, &rec.id, now()).await.unwrap();
    let gone = engine::cancel(&io, &rec.id).await.unwrap().unwrap();
    assert_eq!(gone.state(), State::Cancelled);
    // Only the tombstone is left, until a tick removes it.
    assert_eq!(env.kv.keys().unwrap(), vec![vod_uploader::checkpoint::end_key(&rec.id)]);
    assert!(engine::advance(&io, &s, &rec.id, now()).await.unwrap().is_none());
    assert!(engine::cancel(&io, &rec.id).await.unwrap().is_none());
}

/// The same request again after a cancel is a new upload of the same id: the cancel's
/// tombstone goes first (else it would fall on the new record and cancel it too), and
/// the new upload finishes.
#[tokio::test]
async fn the_same_request_after_a_cancel_starts_afresh_and_finishes() {
    let env = env().await;
    let (_, bytes) = env.file("again.mp4", 3 * HALF, 14);
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    let (rec, _) = env.create(&io, spec(env.url("again.mp4"), HALF)).await.unwrap();
    engine::advance(&io, &s, &rec.id, now()).await.unwrap();
    engine::cancel(&io, &rec.id).await.unwrap().unwrap();
    let (again, created) = env.create(&io, spec(env.url("again.mp4"), HALF)).await.unwrap();
    assert!(created, "a new upload");
    assert_eq!((again.id.as_str(), again.state()), (rec.id.as_str(), State::Pending));
    let mut up = again;
    for _ in 0..20 {
        up = engine::advance(&io, &s, &up.id, now()).await.unwrap().expect("the new upload is kept");
        if up.state().is_final() {
            break;
        }
    }
    assert_eq!(up.state(), State::Done, "{:?}", up.error());
    assert!(env.holds(up.file_id().unwrap(), &bytes).await);
}

#[tokio::test]
async fn tick_advances_every_unfinished_upload() {
    let env = env().await;
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    let mut ids = Vec::new();
    for i in 0..3 {
        env.file(&format!("t{i}.mp4"), HALF * (i + 1), 20 + i);
        ids.push(env.create(&io, spec(env.url(&format!("t{i}.mp4")), HALF)).await.unwrap().0.id);
    }
    let report = engine::tick(&io, &s, now()).await.unwrap();
    assert_eq!((report.advanced.len(), report.waiting), (3, 0));
    for id in ids {
        assert_eq!(engine::load(&io, &id).await.unwrap().unwrap().state(), State::Done);
    }
}

/// An invocation that checkpointed its work does not write the same record again on
/// its way out: one record write per invocation here (KV writes are a platform quota),
/// besides the hashing pass's lease (taken, then given back).
#[tokio::test]
async fn one_record_write_per_invocation_that_checkpoints_once() {
    let env = quiet_env().await;
    env.file("writes.mp4", 20 * HALF, 4);
    let io = env.io();
    let mut s = env.settings(Duration::ZERO);
    s.checkpoint_every = Duration::from_secs(3600);
    let (rec, _) = env.create(&io, spec(env.url("writes.mp4"), HALF)).await.unwrap();
    for _ in 0..5 {
        let before = io.counters().kv_writes;
        let now = engine::advance(&io, &s, &rec.id, now()).await.unwrap().unwrap();
        assert_eq!(now.state(), State::Hashing, "{:?}", now.error());
        assert_eq!(io.counters().kv_writes - before, 2, "one checkpoint and the lease: two writes");
    }
}

/// Finding 1 of the hardening issue: the same bytes under another name. B opened its
/// session, A finished the file, and B's next part is refused as "already finished":
/// B ends done with A's fileId (it used to end failed).
#[tokio::test]
async fn the_same_bytes_under_another_name_end_done_not_failed() {
    let env = quiet_env().await;
    let (_, bytes) = env.file("a.mp4", 6 * HALF + 5, 30);
    std::fs::write(env.stack.root.join("b.mp4"), &bytes).unwrap();
    let io = env.io();
    let s = env.settings(Duration::ZERO);
    let (a, _) = env.create(&io, spec(env.url("a.mp4"), HALF)).await.unwrap();
    let (b, _) = env.create(&io, spec(env.url("b.mp4"), HALF)).await.unwrap();
    // B hashes and opens its session, one small step at a time.
    let mut steps = 0;
    while !engine::load(&io, &b.id).await.unwrap().is_some_and(|r| r.uploading().is_some_and(|u| u.session)) {
        let r = engine::advance(&io, &s, &b.id, now()).await.unwrap().unwrap();
        steps += 1;
        assert!(steps < 5000, "B never opened its session: {:?} {:?}", r.state(), r.error());
    }
    let done_a = drive(&io, &env.settings(Duration::from_secs(60)), &a.id, 3).await;
    assert_eq!(done_a.state(), State::Done, "{:?}", done_a.error());
    let done_b = drive(&io, &s, &b.id, 50).await;
    assert_eq!((done_b.state(), &done_b.file_id()), (State::Done, &done_a.file_id()), "{:?}", done_b.error());
    assert!(env.holds(done_b.file_id().unwrap(), &bytes).await);
}

/// Finding 2: a source that stalls mid-body ends the invocation within its time, with
/// what was hashed saved and the upload retryable after a backoff (it used to hold the
/// invocation until the platform killed it).
#[tokio::test]
async fn a_stalled_source_ends_the_invocation_in_time_and_stays_retryable() {
    let env = quiet_env().await;
    env.file("stall.mp4", 8 * HALF, 31);
    let io = env.io();
    let mut s = env.settings(Duration::from_millis(1500));
    s.stall_timeout = Duration::from_millis(300);
    s.first_read = u64::MAX;
    let (rec, _) = env.create(&io, spec(env.url("stall.mp4?fault=stall-body&stall_after=1000000"), HALF)).await.unwrap();
    let began = Instant::now();
    let after = engine::advance(&io, &s, &rec.id, now()).await.unwrap().unwrap();
    let took = began.elapsed();
    assert!(took < s.budget + Duration::from_millis(500), "the invocation took {took:?}");
    let error = after.error().cloned().unwrap();
    assert_eq!((after.state(), error.code.as_str(), error.retryable), (State::Hashing, "source_stalled", true), "{error:?}");
    assert!(after.retry_after().is_some());
    assert!(after.hashed_bytes() >= 500_000, "what was hashed before the stall is kept");
    // Nothing arrives at all: the probe of a new upload gives up as stalled, too.
    let began = Instant::now();
    let probe = env.create(&io, spec(env.url("stall.mp4?fault=stall-headers"), HALF)).await.unwrap_err();
    assert_eq!(probe.code(), "source_stalled");
    assert!(began.elapsed() < Duration::from_secs(11));
}

/// Finding 3: a source that compresses its answers is refused; one that compresses only
/// when asked to is read as stored, since every request asks for identity.
#[tokio::test]
async fn an_encoded_source_is_refused_and_identity_is_asked_for() {
    let env = quiet_env().await;
    let (_, bytes) = env.file("z.mp4", 3 * HALF + 17, 32);
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    let refused = env.create(&io, spec(env.url("z.mp4?fault=gzip"), HALF)).await.unwrap_err();
    assert_eq!(refused.code(), "source_encoded", "{refused}");
    let (rec, _) = env.create(&io, spec(env.url("z.mp4?fault=gzip-negotiated"), HALF)).await.unwrap();
    let done = drive(&io, &s, &rec.id, 2).await;
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
}

/// Finding 5: permanent source conditions fail the upload at once with their own codes
/// (they used to be retried forever).
#[tokio::test]
async fn permanent_source_errors_fail_at_once() {
    let env = quiet_env().await;
    env.file("p.mp4", 6 * HALF, 33);
    let io = env.io();
    let s = env.settings(Duration::from_secs(60));
    // A presigned URL that expires after the probe and the first read.
    let (rec, _) = env.create(&io, spec(env.url("p.mp4?fault=status&status=403&after=2"), HALF)).await.unwrap();
    let failed = drive(&io, &s, &rec.id, 1).await;
    assert_eq!((failed.state(), failed.error().as_ref().map(|e| e.code.as_str())), (State::Failed, Some("source_denied")));
    for (query, code) in [
        ("fault=status&status=404", "source_not_found"),
        ("fault=status&status=410", "source_not_found"),
        ("fault=bad-range", "source_bad_range"),
    ] {
        let e = env.create(&io, spec(env.url(&format!("p.mp4?{query}")), HALF)).await.unwrap_err();
        assert_eq!(e.code(), code, "{query}: {e}");
    }
    for (query, code) in [("fault=no-range", "source_no_range"), ("fault=long-body", "source_bad_range")] {
        let (rec, _) = env.create(&io, spec(env.url(&format!("p.mp4?{query}")), HALF)).await.unwrap();
        let failed = drive(&io, &s, &rec.id, 1).await;
        assert_eq!(failed.error().as_ref().map(|e| e.code.as_str()), Some(code), "{query}: {:?}", failed.error());
    }
}

/// A source too large for the part count an upload may have is refused when it is
/// asked for, naming its size and the most it may be; one at the limit is taken.
#[tokio::test]
async fn a_source_with_too_many_parts_is_refused_with_its_size() {
    let env = quiet_env().await;
    let io = env.io();
    let max = vod_uploader::parts::MAX_PARTS * HALF;
    let e = env.create(&io, spec(Source::Url(env.stack.gen_url(max + 1, 3)), HALF)).await.unwrap_err();
    assert_eq!(e.code(), "invalid_source", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("too large") && text.contains(&format!("{} bytes", max + 1)) && text.contains(&format!("at most {max} bytes")),
        "{text}"
    );
    let (rec, created) = env.create(&io, spec(Source::Url(env.stack.gen_url(max, 3)), HALF)).await.unwrap();
    assert_eq!((created, rec.state(), rec.identity.size), (true, State::Pending, max));
}

/// A failed upload is retried by asking for it again: it resumes from its checkpoint
/// (it used to answer the failed record).
#[tokio::test]
async fn a_failed_upload_resumes_when_asked_for_again() {
    let env = quiet_env().await;
    let (path, bytes) = env.file("gone.mov", 8 * HALF, 34);
    let io = env.io();
    let s = env.settings(Duration::ZERO);
    let source = Source::Path(path.to_str().unwrap().into());
    let (rec, _) = env.create(&io, spec(source.clone(), HALF)).await.unwrap();
    engine::advance(&io, &s, &rec.id, now()).await.unwrap();
    let hashed = engine::load(&io, &rec.id).await.unwrap().unwrap().hashed_bytes();
    assert!(hashed > 0);
    // The file goes away (renamed: its modification time stays), and comes back.
    let away = env.stack.root.join("away.mov");
    std::fs::rename(&path, &away).unwrap();
    let failed = drive(&io, &s, &rec.id, 1).await;
    assert_eq!(failed.error().as_ref().map(|e| e.code.as_str()), Some("source_not_found"));
    std::fs::rename(&away, &path).unwrap();
    let (again, created) = env.create(&io, spec(source, HALF)).await.unwrap();
    assert_eq!((again.id.as_str(), created, again.state()), (rec.id.as_str(), false, State::Hashing));
    assert!(again.hashed_bytes() >= hashed, "resumed from its checkpoint");
    let done = drive(&io, &env.settings(Duration::from_secs(60)), &rec.id, 1).await;
    assert!(env.holds(done.file_id().unwrap(), &bytes).await);
}

/// Finding 7: a done upload keeps only its record and outcome, and a tick after the
/// retention time removes those too; its status is then not found.
#[tokio::test]
async fn final_uploads_are_removed_after_retention() {
    let env = quiet_env().await;
    env.file("r.mp4", HALF + 3, 35);
    let io = env.io();
    let mut s = env.settings(Duration::from_secs(60));
    let (rec, _) = env.create(&io, spec(env.url("r.mp4"), HALF)).await.unwrap();
    drive(&io, &s, &rec.id, 1).await;
    let report = engine::tick(&io, &s, now()).await.unwrap();
    assert!(report.removed.is_empty() && env.kv.keys().unwrap().len() == 2);
    s.retention_secs = 0;
    let report = engine::tick(&io, &s, now()).await.unwrap();
    assert_eq!(report.removed, vec![rec.id.clone()]);
    assert!(env.kv.keys().unwrap().is_empty());
    assert!(engine::load(&io, &rec.id).await.unwrap().is_none());
}
