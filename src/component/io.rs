//! Spin's side of [`crate::engine::Io`]: WASI's HTTP, clocks, randomness and files
//! (`crate::wasi_platform`), over Spin's `default` key-value store; and the incoming
//! request's body.

use crate::engine::{Body, IoError};
use crate::wasi_platform::{KeyValue, WasiIo};
use futures_util::stream::{Stream, StreamExt};
use spin_sdk::key_value::Store;
use std::pin::Pin;

/// Spin's outbound HTTP and key-value store.
pub(super) type SpinIo = WasiIo<Store>;

/// Spin's key-value store, synchronous in spin-sdk 5.2.
impl KeyValue for Store {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        Store::get(self, key).map_err(IoError::new)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        Store::set(self, key, value).map_err(IoError::new)
    }

    fn delete(&self, key: &str) -> Result<(), IoError> {
        Store::delete(self, key).map_err(IoError::new)
    }

    fn keys(&self) -> Result<Vec<String>, IoError> {
        self.get_keys().map_err(IoError::new)
    }
}

/// The incoming request's body, as spin-sdk streams it.
pub(super) struct SpinBody {
    pub(super) stream: Pin<Box<dyn Stream<Item = Result<Vec<u8>, wasi::io::streams::Error>>>>,
}

impl Body for SpinBody {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>> {
        // The host's own words, not the resource handle's Debug.
        self.stream.next().await.map(|r| r.map_err(|e| IoError::msg(e.to_debug_string())))
    }
}
