//! The deterministic simulation: the real engine, on virtual time, against models of
//! the source, the VOD service and the key-value store, with kills at any I/O call and
//! two or three invocations interleaved on one upload. Every scenario comes from a
//! seed; a failing one prints how to replay it:
//!
//! ```text
//! SIM_SEED=1234 cargo test --test simulation replay -- --nocapture
//! ```

mod sim;

use sim::scenario::{run_scenario, run_seed, stalled_next_to_healthy, Preseed, Scenario};
use sim::world::{KillWhen, Kills};


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

/// Small uploads killed at each of their I/O calls in turn, before and after a write
/// takes effect, then carried on by fresh invocations: every one must end right.
#[test]
fn a_kill_at_every_io_call() {
    let mut cases = vec![Scenario::plain(1, 4, false), Scenario::plain(13, 4, false), Scenario::plain(300, 64, true)];
    let mut twins = Scenario::plain(40, 16, false);
    twins.twin = true;
    cases.push(twins);
    let mut resumed = Scenario::plain(50, 8, false);
    resumed.preseed = Preseed::Session { data_size: 16 };
    cases.push(resumed);
    let mut kept = Scenario::plain(100, 32, false);
    kept.memory_threshold = 4096;
    kept.first_read = u64::MAX;
    cases.push(kept);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (i, sc) in cases.iter().enumerate() {
        let seed = 90_000 + i as u64;
        let calls = run_scenario(seed, sc, Some(Kills::None)).unwrap_or_else(|e| panic!("case {i} without kills: {e}")).io_calls;
        assert!(calls >= 10, "case {i}: only {calls} calls");
        for k in 0..calls {
            for when in [KillWhen::Before, KillWhen::After] {
                runs += 1;
                if let Err(e) = run_scenario(seed, sc, Some(Kills::At(k, when))) {
                    failures.push(format!("case {i} ({sc:?}) killed at call {k} {when:?}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures[..failures.len().min(3)].join("\n\n"));
    println!("{runs} runs, each killed at one call");
}

/// Ticks alone, a stalled source next to a healthy one: the healthy upload finishes.
#[test]
fn a_stalled_upload_does_not_starve_a_healthy_one() {
    for seed in 0..20 {
        match stalled_next_to_healthy(seed) {
            Ok(report) if seed == 0 => println!("{report}"),
            Ok(_) => {}
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
}

/// The store refuses MD5 chunk writes now and then: no record ever counts a chunk that
/// is not stored (the record is changed only once its chunks are), and the upload ends done.
#[test]
fn refused_md5_chunk_writes_leave_no_record_counting_them() {
    for (seed, part) in [(1u64, 1u64), (2, 2), (3, 1)] {
        let mut sc = Scenario::plain(4096 * part as usize + 700, part, false);
        sc.budget_ms = 400;
        sc.checkpoint_ms = 5;
        sc.failing_writes = Some(("/md5/".into(), 3));
        if let Err(e) = run_scenario(seed, &sc, None) {
            panic!("seed {seed}: {e}");
        }
    }
}
