//! Which parts of a session are uploaded: a watermark below which every part is, and
//! the few above it that finished out of order (at most the parts in flight).

use serde::{Deserialize, Serialize};

/// The uploaded parts of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DoneParts {
    /// Every part below this index is uploaded.
    pub below: u64,
    /// Uploaded parts above `below`, ascending.
    #[serde(default)]
    pub above: Vec<u64>,
}

impl DoneParts {
    /// Every one of `count` parts.
    pub fn all(count: u64) -> DoneParts {
        DoneParts { below: count, above: Vec::new() }
    }

    /// Whether part `index` is uploaded.
    pub fn contains(&self, index: u64) -> bool {
        index < self.below || self.above.contains(&index)
    }

    /// Marks part `index` uploaded, keeping `above` small by moving the watermark over
    /// every contiguous done part.
    pub fn mark(&mut self, index: u64) {
        if self.contains(index) {
            return;
        }
        self.above.push(index);
        self.above.sort_unstable();
        while let Some(pos) = self.above.iter().position(|&i| i == self.below) {
            self.above.remove(pos);
            self.below += 1;
        }
    }

    /// How many parts are uploaded.
    pub fn count(&self) -> u64 {
        self.below + self.above.len() as u64
    }

    /// The first part of `0..count` not uploaded.
    pub fn first_missing(&self, count: u64) -> Option<u64> {
        (self.below..count).find(|&i| !self.contains(i))
    }

    /// Whether every part is below `count` (a stored value is checked, not trusted).
    pub fn fits(&self, count: u64) -> bool {
        self.below <= count && self.above.iter().all(|&i| i < count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Marking parts done in any order keeps `above` free of parts below the
        /// watermark and counts each part once.
        #[test]
        fn watermark(order in Just((0u64..200).collect::<Vec<_>>()).prop_shuffle(), upto in 0usize..200) {
            let mut d = DoneParts::default();
            for &i in &order[..upto] { d.mark(i); d.mark(i); }
            prop_assert_eq!(d.count(), upto as u64);
            for &i in &order[..upto] { prop_assert!(d.contains(i)); }
            for &i in &order[upto..] { prop_assert!(!d.contains(i)); }
            prop_assert!(d.above.iter().all(|&i| i > d.below));
            prop_assert_eq!(d.first_missing(200), order[upto..].iter().copied().min());
        }
    }
}
