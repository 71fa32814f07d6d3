//! Which parts of a session are uploaded: a watermark below which every part is, and
//! runs of parts above it that finished out of order (parts in flight, and the ranges
//! other invocations sent: see [`crate::lease`]).
//!
//! Stored as the watermark and the runs (`{"below": 12, "runs": [[40, 64]]}`), so a
//! record stays small however the parts were sent. Records of earlier releases listed
//! each part above the watermark (`"above": [13, 15]`); those are still read.

use serde::{Deserialize, Serialize};

/// The uploaded parts of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct DoneParts {
    /// Every part below this index is uploaded.
    pub below: u64,
    /// Uploaded parts above `below`, as half-open runs: sorted, apart (neither
    /// touching nor overlapping), each above `below` and not starting at it.
    runs: Vec<(u64, u64)>,
}

/// The stored shape.
#[derive(Serialize, Deserialize)]
struct Stored {
    below: u64,
    /// Parts one by one (records of earlier releases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    above: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    runs: Vec<[u64; 2]>,
}

impl From<Stored> for DoneParts {
    /// Any list is taken in: runs out of order, overlapping or empty are put right
    /// (a stored record is input, checked by [`DoneParts::fits`] before use).
    fn from(s: Stored) -> DoneParts {
        let parts = s.above.into_iter().map(|i| (i, i.saturating_add(1)));
        DoneParts::from_runs(s.below, parts.chain(s.runs.into_iter().map(|[start, end]| (start, end))).collect())
    }
}

impl From<DoneParts> for Stored {
    fn from(d: DoneParts) -> Stored {
        Stored { below: d.below, above: Vec::new(), runs: d.runs.iter().map(|&(s, e)| [s, e]).collect() }
    }
}

impl DoneParts {
    /// Every one of `count` parts.
    pub fn all(count: u64) -> DoneParts {
        DoneParts { below: count, runs: Vec::new() }
    }

    /// Every part below `below` and in `runs` (half-open, in any order, overlapping or
    /// empty: a stored list is input). Sorted first, so that each run joins the end and
    /// any list is taken in n log n, not in n² (a list in descending order would move
    /// every run at each step).
    pub fn from_runs(below: u64, mut runs: Vec<(u64, u64)>) -> DoneParts {
        runs.sort_unstable();
        let mut done = DoneParts { below, runs: Vec::with_capacity(runs.len().min(1024)) };
        for (start, end) in runs {
            done.add(start, end);
        }
        done
    }

    /// Whether part `index` is uploaded.
    pub fn contains(&self, index: u64) -> bool {
        if index < self.below {
            return true;
        }
        let at = self.runs.partition_point(|&(start, _)| start <= index);
        at > 0 && index < self.runs[at - 1].1
    }

    /// Marks part `index` uploaded.
    pub fn mark(&mut self, index: u64) {
        self.add(index, index.saturating_add(1));
    }

    /// Marks parts `start..end` uploaded, keeping the runs apart and moving the
    /// watermark over a run that reaches it.
    fn add(&mut self, start: u64, end: u64) {
        let start = start.max(self.below);
        if start >= end {
            return;
        }
        // The runs that touch or overlap start..end become one.
        let first = self.runs.partition_point(|&(_, e)| e < start);
        let last = self.runs.partition_point(|&(s, _)| s <= end);
        let (mut s, mut e) = (start, end);
        if first < last {
            s = s.min(self.runs[first].0);
            e = e.max(self.runs[last - 1].1);
        }
        self.runs.splice(first..last, [(s, e)]);
        if self.runs[0].0 <= self.below {
            self.below = self.below.max(self.runs[0].1);
            self.runs.remove(0);
        }
    }

    /// Adds every part `other` holds (another invocation's view of the same session).
    pub fn merge(&mut self, other: &DoneParts) {
        let below = other.below;
        self.add(0, below);
        for &(s, e) in &other.runs {
            self.add(s, e);
        }
    }

    /// Whether it holds every part `other` holds.
    pub fn covers(&self, other: &DoneParts) -> bool {
        let mut both = self.clone();
        both.merge(other);
        both == *self
    }

    /// How many parts are uploaded.
    pub fn count(&self) -> u64 {
        self.below + self.runs.iter().map(|(s, e)| e - s).sum::<u64>()
    }

    /// The runs of uploaded parts above the watermark.
    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    /// The first part of `0..count` not uploaded.
    pub fn first_missing(&self, count: u64) -> Option<u64> {
        (self.below < count).then_some(self.below)
    }

    /// The first part of `parts` not uploaded. In logarithmic time, not part by part:
    /// a session's part size is the service's choice, so a range may hold very many.
    pub fn first_missing_in(&self, parts: std::ops::Range<u64>) -> Option<u64> {
        let from = parts.start.max(self.below);
        // Runs are apart, so the part after the run that holds `from` is missing.
        let at = self.runs.partition_point(|&(start, _)| start <= from);
        let first = match at.checked_sub(1).map(|i| self.runs[i]) {
            Some((_, end)) if from < end => end,
            _ => from,
        };
        (first < parts.end).then_some(first)
    }

    /// Whether every part is below `count` (a stored value is checked, not trusted).
    pub fn fits(&self, count: u64) -> bool {
        self.below <= count && self.runs.last().is_none_or(|&(_, e)| e <= count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_shapes() {
        let mut d = DoneParts::default();
        for i in [3, 4, 5, 9, 0] {
            d.mark(i);
        }
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, r#"{"below":1,"runs":[[3,6],[9,10]]}"#);
        assert_eq!(serde_json::from_str::<DoneParts>(&json).unwrap(), d);
        // Earlier releases' records: one by one.
        let old: DoneParts = serde_json::from_str(r#"{"below":1,"above":[3,4,5,9]}"#).unwrap();
        assert_eq!(old, d);
        // Runs out of order, overlapping, empty or below the watermark are put right.
        let odd: DoneParts = serde_json::from_str(r#"{"below":1,"runs":[[9,10],[4,6],[3,5],[7,7],[0,2]]}"#).unwrap();
        assert_eq!(odd.below, 2);
        assert_eq!(odd.runs(), &[(3, 6), (9, 10)]);
        assert!(!DoneParts::all(5).fits(4) && DoneParts::all(5).fits(5) && !d.fits(9) && d.fits(10));
    }

    /// The most parts an upload may have, stored one by one in descending order with
    /// gaps (the worst order for inserting into sorted runs), are read in one pass:
    /// inserted as listed, each would move every run before it.
    #[test]
    fn a_long_stored_list_in_descending_order() {
        let n = crate::parts::MAX_PARTS;
        let above: Vec<u64> = (0..n / 2).rev().map(|i| 2 * i + 1).collect();
        let json = serde_json::json!({ "below": 0, "above": above }).to_string();
        let d: DoneParts = serde_json::from_str(&json).unwrap();
        assert_eq!((d.count(), d.runs.len() as u64, d.first_missing(n)), (n / 2, n / 2, Some(0)));
        assert!(d.contains(n - 1) && !d.contains(n - 2));
    }

    proptest! {
        /// Marking parts done in any order counts each part once and holds exactly
        /// them, in canonical form.
        #[test]
        fn watermark(order in Just((0u64..200).collect::<Vec<_>>()).prop_shuffle(), upto in 0usize..200) {
            let mut d = DoneParts::default();
            for &i in &order[..upto] { d.mark(i); d.mark(i); }
            prop_assert_eq!(d.count(), upto as u64);
            for &i in &order[..upto] { prop_assert!(d.contains(i)); }
            for &i in &order[upto..] { prop_assert!(!d.contains(i)); }
            prop_assert!(d.runs.windows(2).all(|w| w[0].1 < w[1].0));
            prop_assert!(d.runs.first().is_none_or(|r| r.0 > d.below));
            prop_assert_eq!(d.first_missing(200), order[upto..].iter().copied().min());
            prop_assert_eq!(serde_json::from_str::<DoneParts>(&serde_json::to_string(&d).unwrap()).unwrap(), d);
        }

        /// The first missing part of a range is the one a part-by-part search finds.
        #[test]
        fn first_missing_in_is_the_first_not_contained(
            parts in prop::collection::vec(0u64..300, 0..150),
            below in 0u64..40,
            start in 0u64..320,
            len in 0u64..60,
        ) {
            let mut d = DoneParts::all(below);
            for &i in &parts { d.mark(i); }
            let range = start..start + len;
            prop_assert_eq!(d.first_missing_in(range.clone()), range.clone().find(|&i| !d.contains(i)));
            // However large the range: no part-by-part walk (this would not end).
            let huge = start..u64::MAX;
            prop_assert_eq!(d.first_missing_in(huge), (start..start + 400).find(|&i| !d.contains(i)));
        }

        /// A stored list in any order is taken in as marking its parts one by one.
        #[test]
        fn from_runs_is_marking_in_any_order(below in 0u64..20, runs in prop::collection::vec((0u64..300, 0u64..8), 0..80)) {
            let mut one_by_one = DoneParts::all(below);
            for &(s, n) in &runs { for i in s..s + n { one_by_one.mark(i); } }
            let runs: Vec<_> = runs.iter().map(|&(s, n)| (s, s + n)).collect();
            prop_assert_eq!(DoneParts::from_runs(below, runs.clone()), one_by_one.clone());
            let mut reversed = runs;
            reversed.reverse();
            prop_assert_eq!(DoneParts::from_runs(below, reversed), one_by_one);
        }

        /// Merging two views holds exactly the parts of either, in canonical form
        /// (whatever order the parts were marked in, and either way round).
        #[test]
        fn merge_is_a_union(a in prop::collection::vec(0u64..300, 0..120), b in prop::collection::vec(0u64..300, 0..120)) {
            let view = |parts: &[u64]| { let mut d = DoneParts::default(); for &i in parts { d.mark(i); } d };
            let (mut ab, mut ba) = (view(&a), view(&b));
            ab.merge(&view(&b));
            ba.merge(&view(&a));
            let mut both = a.clone();
            both.extend(&b);
            prop_assert_eq!(&ab, &view(&both));
            prop_assert_eq!(&ab, &ba);
            for i in 0..300 { prop_assert_eq!(ab.contains(i), a.contains(&i) || b.contains(&i)); }
        }

        /// A view covers another exactly when it holds every part the other holds.
        #[test]
        fn covers_is_a_superset(a in prop::collection::vec(0u64..200, 0..80), b in prop::collection::vec(0u64..200, 0..80)) {
            let view = |parts: &[u64]| { let mut d = DoneParts::default(); for &i in parts { d.mark(i); } d };
            let (va, vb) = (view(&a), view(&b));
            prop_assert_eq!(va.covers(&vb), b.iter().all(|i| a.contains(i)));
            let mut ab = va.clone();
            ab.merge(&vb);
            prop_assert!(ab.covers(&va) && ab.covers(&vb));
        }
    }
}
