//! The soak of `host-sim soak`, shorter: three `host-sim up` processes of the real
//! `.wasm` on one real `redis-server`, chaos kills on every instance, a simulator
//! process with 10% faults, Redis restarted and the simulator killed and restarted
//! mid-run, ticks and concurrent advances, quotas on; uploads of 1 byte to 20 MiB, then
//! waves of smaller ones until at least 200 invocations were killed while working. Every must-be of
//! the soak is asserted. Skipped with `SKIPPED (redis)` without redis-server, except
//! in CI.

use host_sim::redis_server;
use host_sim::soak::{self, SoakArgs};
use std::path::{Path, PathBuf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_under_kills_faults_and_restarts() {
    let Some(redis) = redis_server::require() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/wasm32-wasip1/release/vod_uploader.wasm");
    assert!(wasm.exists(), "{} is missing: build the component with `make wasm` (make test does) first", wasm.display());
    let args = SoakArgs {
        max_mib: 20,
        min_kills: 200,
        // Waves of 30 uploads up to 20 MiB give some ten kills in working invocations each.
        top_up_mib: 20,
        timeout_secs: 900,
        manifest: root.join("spin.toml"),
        bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_host-sim"))),
        redis_server: Some(redis),
        ..SoakArgs::default()
    };
    let report = soak::run(args).await.expect("the soak could not run");
    println!("{}", report.text());
    assert!(!report.timed_out, "the overall timeout ended the run");
    assert_eq!(report.uploads_done, report.uploads, "uploads not done: {:#?}", report.not_done);
    assert_eq!(report.files_identical, report.uploads, "files not identical: {:#?}", report.files_wrong);
    assert!(report.finish_problems.is_empty(), "{:#?}", report.finish_problems);
    assert_eq!(report.finished_once, report.distinct_files);
    assert!(report.kills.working_kills >= 200, "{:?}", report.kills);
    assert_eq!(report.kv_quota.over, 0, "{:?}", report.kv_quota);
    assert_eq!(report.outbound_quota.over, 0, "{:?}", report.outbound_quota);
    assert!(report.redis_restarted && report.vod_restarted);
    assert!(report.failures().is_empty(), "{:#?}", report.failures());
}
