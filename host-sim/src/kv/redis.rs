//! The `redis` key-value backend, as Spin 3.6's (crates/key-value-redis/src/store.rs)
//! uses Redis, so that several `host-sim up` and `spin up` processes configured with one
//! `runtime-config.toml` are instances of one app on one store:
//!
//! - the URL is checked when the runtime config is read (`Invalid Redis URL`), the
//!   connection made when a guest first opens the store (an error to that `open` when
//!   Redis cannot be reached; the next open tries again), then kept and shared by every
//!   instance: a `ConnectionManager`, which reconnects by itself after an I/O error;
//! - keys are the component's keys as they are (no prefix, the label is not part of
//!   them), values are bytes: `GET`, `SET`, `DEL`, `EXISTS`;
//! - `get-keys` is `KEYS *` over the whole database (whatever else it holds);
//! - an error is `error::other` holding the Redis error's `Debug` text, logged as a
//!   warning.
//!
//! Where host-sim bounds what Spin leaves open: every command gives up after
//! [`OP_TIMEOUT`], so a guest calling while Redis is down gets an error in bounded time
//! (Spin's manager retries connecting for several seconds first). Like Spin, host-sim
//! does not send a failed command again: after Redis comes back, the call that finds
//! the old connection broken fails and starts the reconnection, and later calls work.

use super::{log_error, KvError};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::AsyncCommands as _;
use anyhow::{bail, Context as _, Result};
use std::future::Future;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The longest a guest's key-value call waits on Redis, reconnection included.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// A store on a Redis server.
pub struct RedisKv {
    client: ::redis::Client,
    /// `host:port` (or the socket path), for the log: never the URL's password.
    addr: String,
    connection: OnceCell<ConnectionManager>,
}

impl RedisKv {
    /// A store on the Redis server at `url` (`redis://[user:password@]host[:port][/db]`,
    /// or `redis+unix://`/`unix://`); nothing is connected yet. `Err` names what is
    /// wrong with the URL without repeating it (it may hold a password).
    pub fn new(url: &str) -> Result<RedisKv> {
        let parsed = ::redis::parse_redis_url(url).context("Invalid Redis URL")?;
        if matches!(parsed.scheme(), "rediss" | "valkeys") {
            bail!("Invalid Redis URL: {}:// (TLS) is served by Spin but not by host-sim; use redis://", parsed.scheme());
        }
        let client = ::redis::Client::open(parsed).map_err(|e| anyhow::anyhow!("Invalid Redis URL: {e}"))?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(RedisKv { client, addr, connection: OnceCell::new() })
    }

    /// Spin's summary of the store: `Redis at host:port`.
    pub fn summary(&self) -> String {
        format!("Redis at {}", self.addr)
    }

    /// The shared connection, made on first use; a failure leaves none, so the next
    /// call tries again (Spin's `OnceCell::get_or_try_init`).
    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        self.connection.get_or_try_init(|| self.client.get_connection_manager_with_config(config)).await.cloned().map_err(log_error)
    }

    /// Runs one command on the shared connection within [`OP_TIMEOUT`].
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = ::redis::RedisResult<T>>,
    {
        let attempt = async {
            let connection = self.connection().await?;
            command(connection).await.map_err(log_error)
        };
        match tokio::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(log_error(format!("Redis at {} did not answer within {OP_TIMEOUT:?}", self.addr))),
        }
    }

    /// What Spin does at a guest's `open`: connect if not yet connected (an error if
    /// Redis cannot be reached), then a `PING` whose failure is ignored (the manager
    /// reconnects in the background).
    pub async fn open(&self) -> Result<(), KvError> {
        let connection = tokio::time::timeout(OP_TIMEOUT, self.connection())
            .await
            .map_err(|_| log_error(format!("Redis at {} did not answer within {OP_TIMEOUT:?}", self.addr)))??;
        let _ = tokio::time::timeout(OP_TIMEOUT, async move { connection.clone().ping::<()>().await }).await;
        Ok(())
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.run(|mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await }).await
    }

    /// `SET key value`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.run(|mut c| async move { c.set::<_, _, ()>(key, value).await }).await
    }

    /// `DEL key` (no error when absent).
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.run(|mut c| async move { c.del::<_, ()>(key).await }).await
    }

    /// `EXISTS key`.
    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.run(|mut c| async move { c.exists::<_, bool>(key).await }).await
    }

    /// `KEYS *`: every key of the database, in Redis's order (none), as Spin lists them.
    pub async fn keys(&self) -> Result<Vec<String>, KvError> {
        self.run(|mut c| async move { c.keys::<_, Vec<String>>("*").await }).await
    }
}
