//! The engine's native driver: [`vod_uploader::engine::Io`] over hyper (real HTTP)
//! and [`SqliteKv`] (real SQLite), so the same engine that runs in the component is
//! tested natively against the simulator.

use crate::http::{self, HttpClient};
use crate::kv::SqliteKv;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vod_uploader::engine::{local, Body, FileInfo, HttpRequest, HttpResponse, Io, IoError};

/// Counts what the engine did, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Requests sent.
    pub requests: u64,
    /// Key-value writes.
    pub kv_writes: u64,
}

/// Real HTTP and real SQLite.
pub struct NativeIo {
    client: HttpClient,
    /// The key-value store.
    pub kv: Arc<SqliteKv>,
    counters: Cell<Counters>,
    /// When set, `kv_set` fails after this many more writes: a crash between steps.
    pub fail_writes_after: Cell<Option<u64>>,
}

impl NativeIo {
    /// A driver over `kv`.
    pub fn new(kv: Arc<SqliteKv>) -> Self {
        NativeIo { client: http::client(), kv, counters: Cell::new(Counters::default()), fail_writes_after: Cell::new(None) }
    }

    /// What was counted so far.
    pub fn counters(&self) -> Counters {
        self.counters.get()
    }
}

/// Monotonic time since the first call in this process: the clock every [`NativeIo`]
/// shares, so `started` taken from one driver means the same on another.
pub fn monotonic_now() -> Duration {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// A hyper response body.
pub struct NativeBody(hyper::body::Incoming);

impl Body for NativeBody {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>> {
        loop {
            match self.0.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data.to_vec()));
                    }
                }
                Err(e) => return Some(Err(IoError::new(e))),
            }
        }
    }
}

impl Io for NativeIo {
    type Body = NativeBody;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<NativeBody>, IoError> {
        let mut c = self.counters.get();
        c.requests += 1;
        self.counters.set(c);
        let mut builder = hyper::Request::builder().method(request.method).uri(&request.url);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        let req = builder.body(http::full(Bytes::copy_from_slice(&request.body))).map_err(IoError::new)?;
        let response = self.client.request(req).await.map_err(IoError::new)?;
        let status = response.status().as_u16();
        let headers =
            response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        Ok(HttpResponse { status, headers, body: NativeBody(response.into_body()) })
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.kv.get(key).map_err(IoError::new)
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        if let Some(left) = self.fail_writes_after.get() {
            if left == 0 {
                return Err("injected crash: key-value write refused".into());
            }
            self.fail_writes_after.set(Some(left - 1));
        }
        let mut c = self.counters.get();
        c.kv_writes += 1;
        self.counters.set(c);
        self.kv.set(key, value).map_err(IoError::new)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), IoError> {
        self.kv.delete(key).map_err(IoError::new)
    }

    async fn kv_keys(&self) -> Result<Vec<String>, IoError> {
        self.kv.keys().map_err(IoError::new)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }

    fn now(&self) -> Duration {
        monotonic_now()
    }

    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo> {
        local::file_info(path)
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        local::read_file(path, offset, len)
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn unix_millis(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn random(&self) -> u32 {
        rand::random::<u32>().max(1)
    }
}
