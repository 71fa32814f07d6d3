//! The deterministic simulation: the real engine, on virtual time, against models of
//! the source, the VOD service and the key-value store, with kills at any I/O call and
//! two or three invocations interleaved on one upload. Every scenario comes from a
//! seed; a failing one prints how to replay it:
//!
//! ```text
//! SIM_SEED=1234 cargo test --test simulation replay -- --nocapture
//! ```

mod sim;

use sim::scenario::run_seed;


/// Seeded scenarios per test below; the harness runs the tests in parallel.
const PER_TEST: u64 = 2_500;

fn seeds(from: u64) {
    let mut failures = Vec::new();
    let mut kills = 0;
    let mut slowest = Vec::new();
    for seed in from..from + PER_TEST {
        let began = std::time::Instant::now();
        let result = run_seed(seed, None);
        slowest.push((began.elapsed(), seed));
        match result {
            Ok(report) => kills += report.kills,
            Err(problem) => {
                failures.push(format!("seed {seed}: {problem}\nreplay: SIM_SEED={seed} cargo test --test simulation replay -- --nocapture"));
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    if std::env::var_os("SIM_PROFILE").is_some() {
        slowest.sort();
        println!("slowest seeds: {:?}", &slowest[slowest.len().saturating_sub(10)..]);
    }
    assert!(failures.is_empty(), "{} failing seeds:\n{}", failures.len(), failures.join("\n\n"));
    assert!(kills > 0, "no invocation was killed in {PER_TEST} scenarios");
}

#[test]
fn scenarios_0() {
    seeds(0);
}

#[test]
fn scenarios_1() {
    seeds(PER_TEST);
}

#[test]
fn scenarios_2() {
    seeds(2 * PER_TEST);
}

#[test]
fn scenarios_3() {
    seeds(3 * PER_TEST);
}

/// Replays one seed (`SIM_SEED`), printing what it measured.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("SIM_SEED") else { return };
    let seed: u64 = seed.parse().expect("SIM_SEED is a number");
    match run_seed(seed, None) {
        Ok(report) => println!("seed {seed}: {report:?}"),
        Err(problem) => panic!("seed {seed}: {problem}"),
    }
}
