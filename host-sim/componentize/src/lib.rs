//! A wasm32-wasip1 module made a component with the preview1 adapter of wasmtime 48:
//! the command adapter for a program with `fn main` (what `wasmtime run` runs), the
//! reactor adapter for a library (a Spin component, as Spin does). A component is
//! returned as it is.

use anyhow::Result;

/// Which preview1 adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// For programs: exports `wasi:cli/run`.
    Command,
    /// For libraries: exports what the module exports.
    Reactor,
}

impl Adapter {
    fn bytes(self) -> &'static [u8] {
        match self {
            Adapter::Command => wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            Adapter::Reactor => wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        }
    }
}

/// Whether `bytes` are a core module (a component has another layer number).
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(&[1, 0, 0, 0])
}

/// `bytes` as a component: a core module wrapped with `adapter`, a component as is.
pub fn componentize(bytes: &[u8], adapter: Adapter) -> Result<Vec<u8>> {
    if !is_core_module(bytes) {
        return Ok(bytes.to_vec());
    }
    wit_component::ComponentEncoder::default().validate(true).module(bytes)?.adapter("wasi_snapshot_preview1", adapter.bytes())?.encode()
}
