//! Leases: which invocation works on which part of an upload, so that invocations on
//! many instances sharing one store spread over the work instead of repeating it.
//!
//! An upload's hashing pass is one lease ([`HASH`]); its upload pass is cut into part
//! ranges ([`Ranges`]), each a lease of its own, so several invocations send one
//! file's parts at once. A lease is a key in the store naming its owner (one
//! invocation) and until when it holds. The store has no compare-and-swap, so taking
//! one is best effort: write it, read it back, and back off if another owner's write
//! landed last. Two owners may still both believe they hold a lease (both read their
//! own write before the other's landed): that costs repeated work, never a wrong byte,
//! because what a lease guards is safe to do twice (the record write is the commit
//! point, and done parts are merged, see [`crate::upload::Upload::merge_stored`]).
//!
//! A lease lasts a little past its owner's time limit: no invocation outlives that, so
//! a lease whose owner was killed frees itself by then.

use crate::parts::{DoneParts, Layout};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The lease of an upload's hashing pass (and of what precedes it: the first probe).
pub const HASH: &str = "hash";

/// Bytes of parts per range lease of the upload pass: large enough that taking a lease
/// (two reads and a write) is nothing beside sending the range, small enough that a
/// 2 GiB file is tens of ranges, shared evenly by a few instances.
pub const RANGE_BYTES: u64 = 64 << 20;

/// Milliseconds a lease holds past its owner's time limit (clock skew between
/// instances, and the closing checkpoint's last write).
pub const SLACK_MS: u64 = 1000;

/// One lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The invocation holding it (random, per invocation).
    pub owner: String,
    /// Unix milliseconds after which it no longer holds.
    #[serde(rename = "untilMs")]
    pub until_ms: u64,
}

impl Lease {
    /// Whether it still holds at `now_ms` (unix milliseconds).
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms
    }

    /// Serializes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("leases serialize")
    }

    /// Reads a stored lease; `None` for anything unreadable (a lease is advice, and an
    /// unreadable one holds nothing).
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The name of range `k`'s lease.
pub fn range_name(k: u64) -> String {
    format!("r{k}")
}

/// The range of a range lease's name.
pub fn range_of_name(name: &str) -> Option<u64> {
    name.strip_prefix('r')?.parse().ok()
}

/// A session's parts cut into ranges of whole parts, each leased on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    parts: u64,
    per_range: u64,
}

impl Ranges {
    /// Ranges of `layout`'s parts, about `range_bytes` each (at least one part).
    pub fn new(layout: Layout, range_bytes: u64) -> Ranges {
        Ranges { parts: layout.count(), per_range: (range_bytes / layout.part_size()).max(1) }
    }

    /// How many ranges there are.
    pub fn count(&self) -> u64 {
        self.parts.div_ceil(self.per_range)
    }

    /// The parts of range `k` (empty past the end).
    pub fn parts(&self, k: u64) -> Range<u64> {
        let start = k.saturating_mul(self.per_range).min(self.parts);
        start..start.saturating_add(self.per_range).min(self.parts)
    }

    /// The first part of range `k` not in `done`.
    pub fn first_missing(&self, done: &DoneParts, k: u64) -> Option<u64> {
        done.first_missing_in(self.parts(k))
    }

    /// The ranges with a part not in `done`, starting from the one `seed` picks and
    /// going round: owners with different seeds start far apart.
    pub fn missing_from(&self, done: &DoneParts, seed: u64) -> Vec<u64> {
        let missing: Vec<u64> = (0..self.count()).filter(|&k| self.first_missing(done, k).is_some()).collect();
        if missing.is_empty() {
            return missing;
        }
        let start = (seed % missing.len() as u64) as usize;
        missing[start..].iter().chain(&missing[..start]).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lease_round_trip_and_liveness() {
        let l = Lease { owner: "ab12".into(), until_ms: 100 };
        assert_eq!(Lease::decode(&l.encode()), Some(l.clone()));
        assert!(l.live(99) && !l.live(100));
        assert_eq!(Lease::decode(b"not json"), None);
        assert_eq!(range_of_name(&range_name(17)), Some(17));
        assert_eq!(range_of_name(HASH), None);
    }

    proptest! {
        /// The ranges tile the parts, each of whole parts, none empty; the missing
        /// ranges are exactly those with a part not done, each once, whatever the seed.
        #[test]
        fn ranges_tile_the_parts(
            parts in 1u64..3000,
            part in prop::sample::select(vec![1u64, 7, 1 << 20, 5 << 20]),
            range_bytes in 1u64..(200 << 20),
            done_below in 0u64..3000,
            above in prop::collection::vec(0u64..3000, 0..20),
            seed in any::<u64>(),
        ) {
            let layout = Layout::new(parts * part, part).unwrap();
            let r = Ranges::new(layout, range_bytes);
            let mut next = 0;
            for k in 0..r.count() {
                let p = r.parts(k);
                prop_assert_eq!(p.start, next);
                prop_assert!(p.end > p.start);
                next = p.end;
            }
            prop_assert_eq!(next, parts);
            let mut done = DoneParts::all(done_below.min(parts));
            for i in above.into_iter().filter(|&i| i < parts) { done.mark(i); }
            let mut missing = r.missing_from(&done, seed);
            let want: Vec<u64> = (0..r.count()).filter(|&k| r.parts(k).any(|i| !done.contains(i))).collect();
            missing.sort_unstable();
            prop_assert_eq!(missing, want);
        }
    }
}
