//! Part arithmetic: how a file of `file_size` bytes splits into parts of `part_size`.
//! Every part has `part_size` bytes but the last, which has the 1..=`part_size` left.

use std::ops::Range;

mod cutter;
mod done;

pub use cutter::PartCutter;
pub use done::DoneParts;

/// The most parts an upload may have: 128 GiB in the 512 KiB parts the service may be
/// asked for, 256 GiB in 1 MiB parts. As many as one InitUpload answer that lists them
/// all can hold (the engine reads at most 32 MiB of it), so that a session can always
/// be resumed from the service's word; it also bounds what one upload stores (16 bytes
/// of MD5 per part) and the work of reading a stored record, which is input.
pub const MAX_PARTS: u64 = 1 << 18;

/// Whether a file of `file_size` bytes in parts of `part_size` has at most
/// [`MAX_PARTS`] parts; `Err` says why not.
pub fn check_part_count(file_size: u64, part_size: u64) -> Result<(), String> {
    let count = file_size.div_ceil(part_size.max(1));
    if count > MAX_PARTS {
        return Err(format!(
            "{file_size} bytes in parts of {part_size} bytes are {count} parts, more than the {MAX_PARTS} an upload may have (at most {} bytes in parts of that size)",
            MAX_PARTS.saturating_mul(part_size)
        ));
    }
    Ok(())
}

/// A file cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    file_size: u64,
    part_size: u64,
}

impl Layout {
    /// `None` when either size is zero.
    pub fn new(file_size: u64, part_size: u64) -> Option<Self> {
        (file_size > 0 && part_size > 0).then_some(Layout { file_size, part_size })
    }

    /// The file's size.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The size of every part but the last.
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// How many parts there are (at least one).
    pub fn count(&self) -> u64 {
        self.file_size.div_ceil(self.part_size)
    }

    /// Where part `index` starts.
    pub fn offset(&self, index: u64) -> u64 {
        // Saturating: an index read from a stored record may be far past the end.
        index.saturating_mul(self.part_size)
    }

    /// The bytes of part `index`; empty past the end.
    pub fn range(&self, index: u64) -> Range<u64> {
        let start = self.offset(index).min(self.file_size);
        start..start.saturating_add(self.part_size).min(self.file_size)
    }

    /// The bytes in parts `parts` together (the parts past the end count 0). In constant
    /// time: a stored run of done parts may hold any number of them.
    pub fn bytes(&self, parts: Range<u64>) -> u64 {
        if parts.is_empty() {
            return 0;
        }
        self.range(parts.end - 1).end - self.range(parts.start).start
    }

    /// The length of part `index` (0 past the end).
    pub fn len(&self, index: u64) -> u64 {
        let r = self.range(index);
        r.end - r.start
    }

    /// The part that starts at `offset`, if one does.
    pub fn index_at(&self, offset: u64) -> Option<u64> {
        (offset % self.part_size == 0 && offset < self.file_size).then(|| offset / self.part_size)
    }

    /// The part that holds byte `offset`.
    pub fn index_holding(&self, offset: u64) -> u64 {
        offset / self.part_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_example() {
        let l = Layout::new(6_000_000, 1_048_576).unwrap();
        assert_eq!(l.count(), 6);
        assert_eq!(l.range(5), 5_242_880..6_000_000);
        assert_eq!(l.len(5), 757_120);
        assert_eq!(l.index_at(4_194_304), Some(4));
        assert_eq!(l.index_at(4_194_305), None);
        assert_eq!(l.index_at(6_291_456), None);
        assert!(Layout::new(0, 1).is_none() && Layout::new(1, 0).is_none());
    }

    #[test]
    fn part_count_bound() {
        assert!(check_part_count(MAX_PARTS * 524_288, 524_288).is_ok());
        let e = check_part_count(MAX_PARTS * 524_288 + 1, 524_288).unwrap_err();
        assert!(e.contains("262145 parts") && e.contains("at most 137438953472 bytes"), "{e}");
        assert!(check_part_count(u64::MAX, 1).is_err() && check_part_count(u64::MAX, 0).is_err());
    }

    proptest! {
        #[test]
        fn parts_tile_the_file(
            part in prop::sample::select(vec![524_288u64, 1_048_576, 1, 7]),
            parts in 1u64..3000,
            extra in any::<u64>(),
        ) {
            let size = (parts - 1) * part + 1 + extra % part;
            let l = Layout::new(size, part).unwrap();
            prop_assert_eq!(l.count(), parts);
            let mut next = 0;
            for i in 0..l.count() {
                let r = l.range(i);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                if i + 1 < l.count() { prop_assert_eq!(l.len(i), part); } else { prop_assert!(l.len(i) <= part); }
                prop_assert_eq!(l.index_at(r.start), Some(i));
                prop_assert_eq!(l.index_holding(r.end - 1), i);
                next = r.end;
            }
            prop_assert_eq!(next, size);
            prop_assert_eq!(l.len(l.count()), 0);
        }

        #[test]
        fn count_and_last_part_for_huge_files(size in 1u64..(1 << 46), part in prop::sample::select(vec![524_288u64, 1_048_576])) {
            let l = Layout::new(size, part).unwrap();
            let last = l.count() - 1;
            prop_assert_eq!(l.range(last).end, size);
            prop_assert!(l.len(last) >= 1 && l.len(last) <= part);
            prop_assert_eq!(last * part + l.len(last), size);
        }

        /// `bytes` is the sum of the parts' lengths, and never overflows, whatever the
        /// sizes and however far past the end the parts go.
        #[test]
        fn bytes_of_parts_is_the_sum_of_their_lengths(
            size in prop_oneof![1u64..5000, Just(u64::MAX), any::<u64>()],
            part in prop_oneof![1u64..9, Just(4u64 << 20), Just(u64::MAX)],
            start in prop_oneof![0u64..40, any::<u64>()],
            len in 0u64..40,
        ) {
            let l = Layout::new(size.max(1), part).unwrap();
            let end = start.saturating_add(len);
            prop_assert_eq!(l.bytes(start..end), (start..end).map(|i| l.len(i)).sum::<u64>());
            prop_assert!(l.bytes(0..l.count()) == l.file_size());
            prop_assert!(l.bytes(start..u64::MAX) <= l.file_size());
        }
    }
}
