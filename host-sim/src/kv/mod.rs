//! Key-value stores as Spin serves them to a component (`fermyon:spin/key-value@2.0.0`),
//! on the backends Spin's runtime config offers and host-sim runs:
//!
//! - [`sqlite`]: Spin's own store (`type = "spin"`, and the `default` store a Spin app
//!   gets unconfigured), one SQLite file in Spin's layout; also what the native driver
//!   of the engine (tests) uses directly, as [`SqliteKv`].
//! - [`redis`]: `type = "redis"`, a Redis server shared by several instances, exactly as
//!   Spin's Redis backend uses it (plain keys, `KEYS *`, reconnection).
//!
//! [`Store`] is one opened store, whichever the backend: what `host-sim up` calls.
//! The platform's limits (key and value sizes, key count) are applied above it, by the
//! host, identically for every backend.

pub mod redis;
pub mod sqlite;

pub use self::redis::RedisKv;
pub use sqlite::{Migration, SqliteKv};

/// The label of the store every Spin application gets without configuring it.
pub const DEFAULT_STORE: &str = "default";

/// A key-value error as Spin gives it to the guest: `error::other(message)`, the
/// message being the backend's error in Rust's `Debug` form (Spin's `log_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError(pub String);

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KvError {}

/// Spin's `log_error` (crates/factor-key-value/src/host.rs): the error is logged as a
/// warning and given to the guest in its `Debug` form.
pub(crate) fn log_error(error: impl std::fmt::Debug) -> KvError {
    tracing::warn!("key-value error: {error:?}");
    KvError(format!("{error:?}"))
}

/// One store, on one backend.
pub enum Store {
    /// Spin's SQLite store; `summary` says where it is, in Spin's words.
    Sqlite {
        /// The store.
        kv: SqliteKv,
        /// `"<path>"`, or `a temporary in-memory store`.
        summary: String,
    },
    /// A Redis server.
    Redis(RedisKv),
}

impl Store {
    /// Where the data goes, as Spin's `Storing default key-value data to ...` line says
    /// it (`Redis at host:port`; never the URL, which may hold a password).
    pub fn summary(&self) -> String {
        match self {
            Store::Sqlite { summary, .. } => summary.clone(),
            Store::Redis(redis) => redis.summary(),
        }
    }

    /// What Spin does when a guest opens the store: Redis connects on the first open
    /// (an error if it cannot), SQLite has nothing to do.
    pub async fn open(&self) -> Result<(), KvError> {
        match self {
            Store::Sqlite { .. } => Ok(()),
            Store::Redis(redis) => redis.open().await,
        }
    }

    /// The value of `key`, `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Store::Sqlite { kv, .. } => kv.get(key).map_err(log_error),
            Store::Redis(redis) => redis.get(key).await,
        }
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        match self {
            Store::Sqlite { kv, .. } => kv.set(key, value).map_err(log_error),
            Store::Redis(redis) => redis.set(key, value).await,
        }
    }

    /// Removes `key`; no error when it is absent.
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        match self {
            Store::Sqlite { kv, .. } => kv.delete(key).map_err(log_error),
            Store::Redis(redis) => redis.delete(key).await,
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        match self {
            Store::Sqlite { kv, .. } => kv.exists(key).map_err(log_error),
            Store::Redis(redis) => redis.exists(key).await,
        }
    }

    /// Every key of the store (for Redis: of the whole database, as Spin's `KEYS *`).
    pub async fn keys(&self) -> Result<Vec<String>, KvError> {
        match self {
            Store::Sqlite { kv, .. } => kv.keys().map_err(log_error),
            Store::Redis(redis) => redis.keys().await,
        }
    }
}
