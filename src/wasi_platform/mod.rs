//! The platform of both wasm32 builds, the Spin component (`crate::component`) and
//! the command-line uploader (`crate::cli`): outgoing HTTP over `wasi:http`, clocks,
//! randomness and files over WASI, which their hosts (Spin, `wasmtime run -S http`)
//! both serve, and a key-value store of each build's own (Spin's `default` store, the
//! command's checkpoint directory).

mod http;

pub(crate) use http::WasiBody;

use crate::engine::{local, FileInfo, HttpRequest, HttpResponse, Io, IoError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A build's key-value store.
pub(crate) trait KeyValue {
    /// Reads a key.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError>;
    /// Writes a key.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), IoError>;
    /// Removes a key.
    fn delete(&self, key: &str) -> Result<(), IoError>;
    /// Every key.
    fn keys(&self) -> Result<Vec<String>, IoError>;
}

/// The engine's [`Io`] over WASI and the store `K`.
pub(crate) struct WasiIo<K> {
    pub(crate) store: K,
}

impl<K: KeyValue> Io for WasiIo<K> {
    type Body = WasiBody;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<WasiBody>, IoError> {
        http::send(request).await
    }

    // Both stores are synchronous (spin-sdk 5.2's, and files).
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.store.get(key)
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.store.set(key, value)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), IoError> {
        self.store.delete(key)
    }

    async fn kv_keys(&self) -> Result<Vec<String>, IoError> {
        self.store.keys()
    }

    async fn sleep(&self, duration: Duration) {
        // On the executor: other parts go on uploading while one waits out its backoff.
        http::sleep(duration).await
    }

    fn now(&self) -> Duration {
        http::now()
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn unix_millis(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn random(&self) -> u32 {
        (wasi::random::random::get_random_u64() as u32).max(1)
    }

    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo> {
        local::file_info(path)
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        local::read_file(path, offset, len)
    }
}
