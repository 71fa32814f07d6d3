//! The command-line uploader, `vod-upload.wasm`: the same engine as the Spin
//! component, run by `wasmtime run -S http` on a file in a granted directory (or an
//! `http(s)` source), its checkpoints in a directory ([`dir_store`]) instead of a
//! key-value store.
//!
//! - [`args`]: the command line and the environment, read into plain data;
//! - [`dir_store`]: one file per key, each write atomic;
//! - [`exit`]: the exit codes, from the engine's stable error codes;
//! - [`run`]: the commands, over any [`crate::engine::Io`], so a native test drives
//!   them as the command does;
//! - `wasi` (wasm32 with the `cli` feature): the command's [`crate::engine::Io`] and
//!   its `main`.

pub mod args;
pub mod dir_store;
pub mod exit;
pub mod run;
#[cfg(all(target_arch = "wasm32", feature = "cli"))]
pub mod wasi;

pub use args::{Command, Env, Invocation, UploadArgs, HELP};
pub use exit::Exit;
