//! vod-uploader: resumable uploads of very large files into a VOD service, from
//! short-lived WebAssembly functions.
//!
//! A sans-IO core (plain data and functions a test can drive step by step) plus, on
//! wasm32, the Spin component that drives it. From the bottom up:
//! - [`hex`], [`sign`], [`md5x4`], [`parts`]: encodings, request signing, hashing four
//!   parts at once, part arithmetic;
//! - [`hasher`], [`protocol`], [`io_error`]: the resumable SHA-1 and MD5 pass, the VOD
//!   service's wire protocol and parameter rules, a platform's I/O error;
//! - [`source`]: where the bytes come from, and checks of what a source answers;
//! - [`upload`]: the upload as a state machine, each state with its data;
//! - [`checkpoint`]: how an upload is stored (format 2; format 1 still read);
//! - [`lease`]: which invocation works on which part of an upload, across instances;
//! - [`error`]: the engine's one error type and the stable codes users see;
//! - [`notify`]: the completion webhook's events, signatures and retries;
//! - [`quota`]: platform quotas shared by every instance, kept by claims in the store;
//! - [`engine`]: the I/O, sequenced over an [`engine::Io`] trait;
//! - [`api`]: the HTTP API; [`log`]: one JSON line per invocation; `component` (wasm32
//!   only): the Spin adapter;
//! - [`cli`]: the command-line uploader (`vod-upload.wasm`, run by `wasmtime run`): its
//!   arguments, its checkpoint directory, and (wasm32 only) its WASI adapter.

#![warn(missing_docs)]

pub mod api;
pub mod checkpoint;
pub mod cli;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
pub mod engine;
pub mod error;
pub mod events;
pub mod hasher;
pub mod hex;
pub mod io_error;
pub mod lease;
pub mod log;
pub mod md5x4;
pub mod notify;
pub mod parts;
pub mod protocol;
pub mod quota;
pub mod sign;
pub mod source;
pub mod upload;
#[cfg(all(target_arch = "wasm32", any(feature = "component", feature = "cli")))]
mod wasi_platform;
