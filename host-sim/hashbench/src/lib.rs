//! SHA-1 and MD5 throughput of the exact hashing code the component runs, measured
//! the same way wherever it is compiled: inside wasm under `host-sim`'s wasmtime, and
//! natively (with the `sha1` crate's best backend, or its portable one when built with
//! `--cfg sha1_backend="soft"`). [`check`] compares the component's own MD5 lanes and
//! hashing pass with the crates on random input, so they are tested where they run.

use sha1::Digest as _;
use std::time::Instant;
use vod_uploader::hasher::Hasher;
use vod_uploader::md5x4::{self, LANES};
use vod_uploader::parts::Layout;

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// `sha1` and `md5` (the crates, one message), `md5x4` (the component's MD5 of four
    /// 1 MiB parts at once) or `pass` (SHA-1 of the file plus the MD5 of every 1 MiB
    /// part, as the component's hashing pass does).
    pub name: &'static str,
    /// Best throughput over the rounds, MB/s (10^6 bytes per second).
    pub mb_s: f64,
}

/// How a measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Bytes hashed per round.
    pub bytes: usize,
    /// Bytes per `update` call (the component hashes what each source read returns).
    pub chunk: usize,
    /// Rounds per figure; the best is kept (the least disturbed by other work).
    pub rounds: u32,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { bytes: 64 << 20, chunk: 64 << 10, rounds: 5 }
    }
}

/// Deterministic pseudo-random bytes (SplitMix64), so every build hashes the same input.
pub fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x5eed_u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn best(plan: &Plan, mut round: impl FnMut() -> u8) -> f64 {
    let mut fastest = f64::INFINITY;
    let mut sink = 0u8;
    for _ in 0..plan.rounds.max(1) {
        let started = Instant::now();
        sink ^= round();
        fastest = fastest.min(started.elapsed().as_secs_f64());
    }
    // The digests feed `sink` so no round can be optimized away.
    std::hint::black_box(sink);
    plan.bytes as f64 / 1e6 / fastest
}

/// Measures every figure over `data` (at least `plan.bytes` long).
pub fn measure(plan: &Plan, data: &[u8]) -> Vec<Figure> {
    let data = &data[..plan.bytes];
    let sha1 = best(plan, || {
        let mut h = sha1::Sha1::new();
        data.chunks(plan.chunk).for_each(|c| h.update(c));
        h.finalize()[0]
    });
    let md5 = best(plan, || {
        let mut h = md5::Md5::new();
        data.chunks(plan.chunk).for_each(|c| h.update(c));
        h.finalize()[0]
    });
    let part = (plan.bytes / LANES).min(1 << 20);
    let md5x4 = best(plan, || {
        let mut sink = 0;
        for group in data.chunks_exact(part * LANES) {
            let m: [&[u8]; LANES] = std::array::from_fn(|i| &group[i * part..(i + 1) * part]);
            sink ^= md5x4::digest4(m)[LANES - 1][0];
        }
        sink
    });
    let layout = Layout::new(plan.bytes as u64, 1 << 20).expect("a non-empty sample");
    let pass = best(plan, || {
        let mut h = Hasher::new(layout);
        data.chunks(plan.chunk).for_each(|c| h.update(c));
        h.file_sha().map_or(0, |s| s.as_bytes()[0]) ^ h.take_completed().last().map_or(0, |m| m[0])
    });
    vec![
        Figure { name: "sha1", mb_s: sha1 },
        Figure { name: "md5", mb_s: md5 },
        Figure { name: "md5x4", mb_s: md5x4 },
        Figure { name: "pass", mb_s: pass },
    ]
}

/// Checks the component's MD5 lanes and hashing pass against the `md-5` and `sha1`
/// crates on `cases` pseudo-random inputs (lengths around block, part and lane
/// boundaries, random cut points and checkpoints); `Err` names the first difference.
pub fn check(cases: u32) -> Result<(), String> {
    let mut rng = 0x9e37_79b9_u64;
    let mut next = |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound.max(1)
    };
    let data = sample(1 << 22);
    for case in 0..cases {
        // MD5 lanes: four different messages of one random length.
        let len = match case % 4 {
            0 => next(200) as usize,
            1 => 64 * next(40) as usize + [0, 55, 56, 63][case as usize / 4 % 4],
            _ => next(300_000) as usize,
        };
        let starts: [usize; LANES] = std::array::from_fn(|_| next((data.len() - len) as u64) as usize);
        let m: [&[u8]; LANES] = starts.map(|s| &data[s..s + len]);
        let got = md5x4::digest4(m);
        for lane in 0..LANES {
            let want: [u8; 16] = md5::Md5::digest(m[lane]).into();
            if got[lane] != want {
                return Err(format!("md5x4 lane {lane} of a {len}-byte message differs from the md-5 crate"));
            }
        }
        // The hashing pass with checkpoints at random points.
        let size = 1 + next(3 << 20) as usize;
        let part = [512usize << 10, 1 << 20, 1 + next(100_000) as usize][case as usize % 3];
        let start = next((data.len() - size) as u64) as usize;
        let file = &data[start..start + size];
        let layout = Layout::new(size as u64, part as u64).expect("non-empty");
        let mut h = Hasher::new(layout);
        let mut md5s = Vec::new();
        let mut at = 0;
        while at < size {
            let to = (at + 1 + next(size as u64 / 3) as usize).min(size);
            h.update(&file[at..to]);
            at = to;
            if next(3) == 0 {
                let (done, saved) = h.checkpoint();
                md5s.extend(done);
                h = Hasher::restore(layout, &saved).map_err(|e| e.to_string())?;
            }
        }
        md5s.extend(h.take_completed());
        let sha = vod_uploader::hex::encode(&sha1::Sha1::digest(file));
        let want: Vec<[u8; 16]> = file.chunks(part).map(|c| md5::Md5::digest(c).into()).collect();
        if h.file_sha() != Some(sha) || md5s != want {
            return Err(format!("the hashing pass over {size} bytes in {part}-byte parts differs from the crates"));
        }
    }
    Ok(())
}

/// The figures as one line of JSON: `{"sha1":..,"md5":..,"pass":..}`.
pub fn to_json(figures: &[Figure]) -> String {
    let fields: Vec<String> = figures.iter().map(|f| format!("\"{}\":{:.1}", f.name, f.mb_s)).collect();
    format!("{{{}}}", fields.join(","))
}

/// Parses [`to_json`]'s output back.
pub fn from_json(text: &str) -> Option<Vec<(String, f64)>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    inner
        .split(',')
        .map(|field| {
            let (name, value) = field.split_once(':')?;
            Some((name.trim().trim_matches('"').to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_trip_through_json() {
        let plan = Plan { bytes: 1 << 20, chunk: 4096, rounds: 1 };
        let figures = measure(&plan, &sample(plan.bytes));
        let parsed = from_json(&to_json(&figures)).expect("parses");
        assert_eq!(parsed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["sha1", "md5", "md5x4", "pass"]);
        assert!(parsed.iter().all(|(_, v)| *v > 0.0 && v.is_finite()));
    }

    #[test]
    fn the_component_hashing_matches_the_crates() {
        check(24).unwrap();
    }

    #[test]
    fn sample_is_deterministic() {
        assert_eq!(sample(24), sample(32)[..24]);
        assert_ne!(sample(16)[..8], sample(16)[8..]);
    }
}
