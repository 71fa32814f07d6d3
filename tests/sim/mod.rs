//! The deterministic simulation's parts (see `tests/simulation.rs`).

pub mod cli;
pub mod hooks;
pub mod model;
pub mod scenario;
pub mod world;
