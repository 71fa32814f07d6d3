//! What `host-sim up` gives a guest to import, as Spin gives it: WASI and `wasi:http`
//! (outgoing requests through [`Hooks`]), `fermyon:spin/key-value@2.0.0` on the app's
//! stores (SQLite or Redis) with the platform's key, value and key-count limits, and
//! `fermyon:spin/variables@2.0.0`. [`Ctx`] is the store data of one instance.

use super::outbound::Hooks;
use super::stores::Stores;
use super::usage::Usage;
use super::wasm::MemoryLimiter;
use super::{InvocationStats, Limits};
use crate::kv::Store;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin/host",
        // Async: a store on Redis is reached over the network, and an invocation must
        // not block its thread (nor the others') while it waits.
        imports: { default: async },
        with: {
            "fermyon:spin/key-value.store": super::KvHandle,
        },
    });
}

use bindings::fermyon::spin::{key_value, variables};

/// The KV resource: the store a handle opened.
pub struct KvHandle {
    store: Arc<Store>,
}

/// The store data of one instance: its WASI and HTTP contexts, and what the key-value
/// and variables imports answer from.
pub(super) struct Ctx {
    pub(super) table: ResourceTable,
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) hooks: Hooks,
    /// The stores the component may open (`key_value_stores` in the manifest).
    pub(super) stores: Arc<Stores>,
    pub(super) limits: Limits,
    pub(super) variables: Arc<BTreeMap<String, String>>,
    pub(super) memory: MemoryLimiter,
    pub(super) stats: Arc<InvocationStats>,
    /// The instance's counters by time window (key-value writes per second).
    pub(super) usage: Arc<Usage>,
}

/// A linker for `engine` with every import a Spin HTTP component may use.
pub(super) fn linker(engine: &Engine) -> Result<Linker<Ctx>> {
    let mut linker: Linker<Ctx> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    key_value::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |c| c)?;
    variables::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |c| c)?;
    Ok(linker)
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

fn kv_other(e: impl std::fmt::Display) -> key_value::Error {
    key_value::Error::Other(e.to_string())
}

impl key_value::Host for Ctx {}

impl Ctx {
    fn store(&self, handle: &Resource<KvHandle>) -> Result<Arc<Store>, key_value::Error> {
        Ok(self.table.get(handle).map_err(kv_other)?.store.clone())
    }
}

/// The platform's limits (key and value sizes, keys per store) sit here, above the
/// backends, so that they apply the same way on SQLite and on Redis.
impl key_value::HostStore for Ctx {
    async fn open(&mut self, label: String) -> Result<Resource<KvHandle>, key_value::Error> {
        // Spin: a label the component does not list is denied; one it lists is always
        // defined (an undefined one stops the app's start).
        let Some(store) = self.stores.get(&label).cloned() else {
            return Err(key_value::Error::AccessDenied);
        };
        store.open().await.map_err(kv_other)?;
        self.table.push(KvHandle { store }).map_err(kv_other)
    }

    async fn get(&mut self, store: Resource<KvHandle>, key: String) -> Result<Option<Vec<u8>>, key_value::Error> {
        let value = self.store(&store)?.get(&key).await.map_err(kv_other)?;
        self.stats.kv_read.fetch_add(value.as_ref().map_or(0, |v| v.len() as u64), Ordering::Relaxed);
        Ok(value)
    }

    async fn set(&mut self, store: Resource<KvHandle>, key: String, value: Vec<u8>) -> Result<(), key_value::Error> {
        let store = self.store(&store)?;
        if key.len() > self.limits.key_bytes {
            return Err(kv_other(format!("key is {} bytes; the limit is {}", key.len(), self.limits.key_bytes)));
        }
        if value.len() > self.limits.value_bytes {
            return Err(kv_other(format!("value is {} bytes; the limit is {}", value.len(), self.limits.value_bytes)));
        }
        if !store.exists(&key).await.map_err(kv_other)? && store.keys().await.map_err(kv_other)?.len() as u64 >= self.limits.keys {
            return Err(key_value::Error::StoreTableFull);
        }
        self.stats.kv_written.fetch_add(value.len() as u64, Ordering::Relaxed);
        self.usage.kv_write();
        store.set(&key, &value).await.map_err(kv_other)
    }

    async fn delete(&mut self, store: Resource<KvHandle>, key: String) -> Result<(), key_value::Error> {
        let store = self.store(&store)?;
        self.usage.kv_write();
        store.delete(&key).await.map_err(kv_other)
    }

    async fn exists(&mut self, store: Resource<KvHandle>, key: String) -> Result<bool, key_value::Error> {
        self.store(&store)?.exists(&key).await.map_err(kv_other)
    }

    async fn get_keys(&mut self, store: Resource<KvHandle>) -> Result<Vec<String>, key_value::Error> {
        self.store(&store)?.keys().await.map_err(kv_other)
    }

    async fn drop(&mut self, store: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl variables::Host for Ctx {
    async fn get(&mut self, name: String) -> Result<String, variables::Error> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(variables::Error::InvalidName(name));
        }
        self.variables.get(&name).cloned().ok_or(variables::Error::Undefined(name))
    }
}
