//! vod-uploader: resumable uploads of very large files into a VOD service, from
//! short-lived WebAssembly functions.
//!
//! The crate is a sans-IO core (plain data and functions a test can drive step by
//! step) plus, on wasm32, the Spin component that drives it.

#![warn(missing_docs)]

pub mod api;
pub mod checkpoint;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
pub mod engine;
pub mod error;
pub mod hasher;
pub mod hex;
pub mod io_error;
pub mod md5x4;
pub mod parts;
pub mod protocol;
pub mod sign;
pub mod source;
pub mod upload;
