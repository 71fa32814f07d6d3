//! Signed reads of private objects, natively: the engine against `host-sim files --sigv4`
//! (a private bucket checking every request's SigV4 signature) and the VOD simulator.

use host_sim::files::{self, Running};
use host_sim::files_auth::Auth;
use host_sim::kv::SqliteKv;
use host_sim::native::monotonic_now as now;
use host_sim::native::NativeIo;
use host_sim::sample::sha1_hex;
use host_sim::stack::{Stack, StackOptions};
use std::sync::Arc;
use std::time::Duration;
use vod_uploader::engine::{self, Settings};
use vod_uploader::error::Error;
use vod_uploader::source::s3::S3Access;
use vod_uploader::source::{Source, SourceError};
use vod_uploader::upload::{Spec, State, Upload};

const KEY_ID: &str = "AKIDPRIVATEBUCKET";
const SECRET: &str = "never/shown+Secret0123456789abcdefEXAMPLE";
const KEY: &str = "in/my clip+1 (final).mp4";

struct Env {
    stack: Stack,
    /// The private bucket: the stack's files, signed by [`KEY_ID`] only.
    bucket: Running,
    kv: Arc<SqliteKv>,
}

async fn env() -> Env {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let auth: Auth = format!("{KEY_ID}:{SECRET}").parse().unwrap();
    let bucket = files::start_with(stack.root.clone(), "127.0.0.1:0".parse().unwrap(), Some(auth)).await.unwrap();
    std::fs::create_dir_all(stack.root.join("vids/in")).unwrap();
    let kv = Arc::new(SqliteKv::open(&stack.kv_file()).unwrap());
    Env { stack, bucket, kv }
}

impl Env {
    fn origin(&self) -> String {
        format!("http://{}", self.bucket.addr)
    }

    /// Settings that sign with `secret`, reading in several ranged GETs.
    fn settings(&self, secret: &str) -> Settings {
        let mut s = self.stack.settings();
        s.budget = Duration::from_secs(30);
        s.memory_threshold = 0;
        s.first_read = 1 << 20;
        s.backoff.base_secs = 0;
        s.s3 = S3Access::from_variables(Some(KEY_ID), Some(secret), None, None, None, Some(&self.origin())).unwrap();
        s
    }

    async fn upload(&self, s: &Settings, source: Source) -> Result<Upload, Error> {
        let io = NativeIo::new(self.kv.clone());
        let (rec, _) = engine::create(&io, s, Spec::for_source(source, 1 << 20)).await?;
        for _ in 0..100 {
            let rec = engine::advance(&io, s, &rec.id, now()).await.unwrap().unwrap();
            if rec.state().is_final() {
                return Ok(rec);
            }
        }
        panic!("not final after 100 invocations");
    }
}

#[tokio::test]
async fn private_object_uploads_byte_identical() {
    let env = env().await;
    let path = env.stack.write_sample(&format!("vids/{KEY}"), (5 << 20) + 12_345, 3).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let s = env.settings(SECRET);
    let done = env.upload(&s, Source::s3("vids", KEY).unwrap()).await.unwrap();
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    assert!(done.stats.source_requests >= 6, "a probe and ranged reads of 1 MiB: {}", done.stats.source_requests);
    let held = env.stack.stored_sha1(done.file_id().unwrap()).await.unwrap();
    assert_eq!(held, (bytes.len() as u64, sha1_hex(&bytes)));

    // A plain URL under the store's origin is signed too ...
    let url = s.s3.as_ref().unwrap().object_url("vids", KEY);
    let done = env.upload(&s, Source::Url(url.clone())).await.unwrap();
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    // ... and without S3 access it is read unsigned, which the private bucket refuses.
    let mut unsigned = s.clone();
    unsigned.s3 = None;
    let refused = env.upload(&unsigned, Source::Url(url)).await.unwrap_err();
    assert!(matches!(refused, Error::Source(SourceError::Denied(_))), "{refused:?}");
}

#[tokio::test]
async fn wrong_secret_fails_source_denied_naming_the_key_id() {
    let env = env().await;
    env.stack.write_sample("vids/a.mp4", 1000, 4).unwrap();
    let wrong = "wrong-secret-value-XYZ";
    let e = env.upload(&env.settings(wrong), Source::s3("vids", "a.mp4").unwrap()).await.unwrap_err();
    assert_eq!(e.code(), "source_denied");
    let message = e.to_string();
    assert!(message.contains(KEY_ID) && message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(!message.contains(wrong) && !message.contains(SECRET), "{message}");

    // An unknown key id is named as such.
    let mut s = env.settings(SECRET);
    s.s3 = S3Access::from_variables(Some("AKIDUNKNOWN"), Some(SECRET), None, None, None, Some(&env.origin())).unwrap();
    let e = env.upload(&s, Source::s3("vids", "a.mp4").unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("AKIDUNKNOWN") && e.to_string().contains("InvalidAccessKeyId"), "{e}");
}

/// The engine's I/O with a wall clock that ticks one second per reading, starting
/// `offset` seconds from now, and a record of each request's `x-amz-date`.
struct TickingIo {
    inner: NativeIo,
    offset: std::cell::Cell<i64>,
    dates: std::cell::RefCell<Vec<Option<String>>>,
}

impl vod_uploader::engine::Io for TickingIo {
    type Body = <NativeIo as vod_uploader::engine::Io>::Body;

    async fn send(
        &self,
        r: vod_uploader::engine::HttpRequest,
    ) -> Result<vod_uploader::engine::HttpResponse<Self::Body>, vod_uploader::engine::IoError> {
        if !r.url.contains("/v2/index.php") {
            self.dates.borrow_mut().push(vod_uploader::source::header(&r.headers, "x-amz-date").map(str::to_owned));
        }
        self.inner.send(r).await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, vod_uploader::engine::IoError> {
        self.inner.kv_get(key).await
    }
    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), vod_uploader::engine::IoError> {
        self.inner.kv_set(key, value).await
    }
    async fn kv_delete(&self, key: &str) -> Result<(), vod_uploader::engine::IoError> {
        self.inner.kv_delete(key).await
    }
    async fn kv_keys(&self) -> Result<Vec<String>, vod_uploader::engine::IoError> {
        self.inner.kv_keys().await
    }
    async fn sleep(&self, d: Duration) {
        self.inner.sleep(d).await
    }
    fn now(&self) -> Duration {
        self.inner.now()
    }
    fn unix_now(&self) -> u64 {
        self.offset.set(self.offset.get() + 1);
        self.inner.unix_now().saturating_add_signed(self.offset.get())
    }
    fn random(&self) -> u32 {
        self.inner.random()
    }
    async fn file_info(&self, path: &str) -> std::io::Result<vod_uploader::engine::FileInfo> {
        self.inner.file_info(path).await
    }
    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read_file(path, offset, len).await
    }
}

/// Each source request is signed at the moment it is sent: every one carries the
/// `x-amz-date` of its own clock reading (no two alike), and a clock 16 minutes off fails
/// as the store's `RequestTimeTooSkewed`, named.
#[tokio::test]
async fn every_send_is_signed_at_its_own_time() {
    let env = env().await;
    env.stack.write_sample("vids/b.mp4", (3 << 20) + 5, 5).unwrap();
    let s = env.settings(SECRET);
    // From 200 s behind: the VOD service signs with the same clock and allows ±300 s.
    let io = TickingIo { inner: NativeIo::new(env.kv.clone()), offset: (-200).into(), dates: Default::default() };
    let (rec, _) = engine::create(&io, &s, Spec::for_source(Source::s3("vids", "b.mp4").unwrap(), 1 << 20)).await.unwrap();
    let done = engine::advance(&io, &s, &rec.id, now()).await.unwrap().unwrap();
    assert_eq!(done.state(), State::Done, "{:?}", done.error());
    let dates = io.dates.borrow().clone();
    assert!(dates.len() >= 4, "{dates:?}");
    let distinct: std::collections::BTreeSet<_> = dates.iter().map(|d| d.clone().expect("every source request is signed")).collect();
    assert_eq!(distinct.len(), dates.len(), "each send its own date: {dates:?}");

    let late = TickingIo { inner: NativeIo::new(env.kv.clone()), offset: (16 * 60).into(), dates: Default::default() };
    let e = engine::create(&late, &s, Spec::for_source(Source::s3("vids", "b.mp4").unwrap(), 1 << 21)).await.unwrap_err();
    assert!(e.to_string().contains("RequestTimeTooSkewed") && e.to_string().contains(KEY_ID), "{e}");
}
