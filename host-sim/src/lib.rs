//! host-sim: the stand-in for everything vod-uploader talks to but does not own.
//!
//! - [`vod`]: a faithful simulator of the VOD server-upload API (`host-sim vod`).
//! - [`client`]: a minimal native protocol client, for tests, the demo and benchmarks.
//! - [`demo`], [`uploader_bench`] and [`vod_bench`]: the README's main job, the
//!   uploader's benchmarks and the simulator's ingest benchmark.

pub mod client;
pub mod demo;
pub mod files;
pub mod http;
pub mod kv;
pub mod native;
pub mod sample;
pub mod stack;
pub mod up;
pub mod uploader_bench;
pub mod vod;
pub mod vod_bench;

/// Sets up logging to stderr (`RUST_LOG` overrides `default`).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
