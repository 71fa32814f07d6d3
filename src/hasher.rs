//! One pass over the file that yields both what the protocol needs before and during
//! the upload: the SHA-1 of the whole file and the MD5 of every part. Its state can be
//! saved mid-stream (even mid-block and mid-part) and restored in a later invocation.

use crate::md5x4::{self, LANES};
use crate::parts::Layout;
use md5::Md5;
use sha1::digest::common::hazmat::{SerializableState, SerializedState};
use sha1::{Digest, Sha1};

/// MD5 of one part.
pub type PartMd5 = [u8; 16];

/// The hashing pass over a file.
///
/// Part MD5s are computed [`LANES`] parts at a time ([`crate::md5x4`]): whole parts are
/// gathered from a part boundary until `LANES` of them are in (`LANES` x part size of
/// memory), then hashed together. A part begun but not gathered (the state was saved
/// mid-part) is finished on its own, as is anything left at a checkpoint or at the end.
#[derive(Clone)]
pub struct Hasher {
    layout: Layout,
    offset: u64,
    sha1: Sha1,
    /// The MD5 of a part begun before a checkpoint; while set, `batch` is empty.
    single: Option<Md5>,
    /// The bytes `offset - batch.len() .. offset`, from a part boundary.
    batch: Vec<u8>,
    completed: Vec<PartMd5>,
}

/// A saved [`Hasher`], for a checkpoint. The digest states are the `sha1`/`md-5`
/// 0.11 serialized forms, stable within that line only: the checkpoint format names
/// its version so a future change is detected instead of misread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedHasher {
    /// Bytes hashed so far.
    pub offset: u64,
    /// Serialized SHA-1 state (92 bytes).
    pub sha1: Vec<u8>,
    /// Serialized MD5 state of the part in progress (88 bytes).
    pub part_md5: Vec<u8>,
}

/// A saved state that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHasherState(pub &'static str);

impl std::fmt::Display for BadHasherState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "saved hash state is unusable: {}", self.0)
    }
}

impl std::error::Error for BadHasherState {}

impl Hasher {
    /// A pass from the start of a file laid out as `layout`.
    pub fn new(layout: Layout) -> Self {
        Hasher { layout, offset: 0, sha1: Sha1::new(), single: None, batch: Vec::new(), completed: Vec::new() }
    }

    /// Bytes hashed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether every byte was hashed.
    pub fn is_complete(&self) -> bool {
        self.offset == self.layout.file_size()
    }

    /// Feeds the next bytes of the file. Bytes past the file's end are an error the
    /// caller must not make; they are ignored rather than hashed.
    pub fn update(&mut self, mut data: &[u8]) {
        let left = self.layout.file_size() - self.offset;
        if data.len() as u64 > left {
            data = &data[..left as usize];
        }
        self.sha1.update(data);
        while !data.is_empty() {
            let end = match self.single {
                Some(_) => self.layout.range(self.layout.index_holding(self.offset)).end,
                None => self.batch_end(),
            };
            let take = (end - self.offset).min(data.len() as u64) as usize;
            match &mut self.single {
                Some(md5) => md5.update(&data[..take]),
                None => {
                    if self.batch.capacity() == 0 {
                        self.batch.reserve_exact((end - self.offset) as usize);
                    }
                    self.batch.extend_from_slice(&data[..take]);
                }
            }
            self.offset += take as u64;
            data = &data[take..];
            if self.offset == end {
                match self.single.take() {
                    Some(md5) => self.completed.push(md5.finalize().into()),
                    None => self.hash_batch(),
                }
            }
        }
    }

    /// Where the batch being gathered is complete: `LANES` parts on, or the file's end.
    fn batch_end(&self) -> u64 {
        let start = self.offset - self.batch.len() as u64;
        (start + LANES as u64 * self.layout.part_size()).min(self.layout.file_size())
    }

    /// Hashes the gathered whole parts (together when there are `LANES` of the same
    /// length) and keeps a trailing partial part in `single`.
    fn hash_batch(&mut self) {
        let part = self.layout.part_size() as usize;
        let mut batch = std::mem::take(&mut self.batch);
        let (together, rest) = batch.split_at(if batch.len() / part == LANES { LANES * part } else { 0 });
        if !together.is_empty() {
            self.completed.extend(md5x4::digest4(std::array::from_fn(|i| &together[i * part..(i + 1) * part])));
        }
        for bytes in rest.chunks(part) {
            // Short only at the file's end, or where the bytes so far end mid-part.
            if bytes.len() == part || self.offset == self.layout.file_size() {
                self.completed.push(Md5::digest(bytes).into());
            } else {
                self.single = Some(Md5::new_with_prefix(bytes));
            }
        }
        batch.clear();
        self.batch = batch;
    }

    /// Takes the MD5s of the parts completed since the last call, in part order.
    pub fn take_completed(&mut self) -> Vec<PartMd5> {
        std::mem::take(&mut self.completed)
    }

    /// The SHA-1 of the file, lower-case hex, once every byte was hashed.
    pub fn file_sha(&self) -> Option<String> {
        self.is_complete().then(|| crate::hex::encode(&self.sha1.clone().finalize()))
    }

    /// The MD5s of the parts completed since they were last taken or forgotten.
    pub fn completed(&self) -> &[PartMd5] {
        &self.completed
    }

    /// Forgets the completed MD5s, once they are stored.
    pub fn forget_completed(&mut self) {
        self.completed.clear();
    }

    /// The state to save, the completed MD5s kept until they are forgotten (a checkpoint
    /// whose writes fail loses none). Parts gathered for the lanes are hashed one by one
    /// first, so the state stays two digest states.
    pub fn state(&mut self) -> SavedHasher {
        if !self.batch.is_empty() {
            self.hash_batch();
        }
        let part_md5 = self.single.as_ref().map_or_else(|| Md5::new().serialize(), |m| m.serialize());
        SavedHasher { offset: self.offset, sha1: self.sha1.serialize().to_vec(), part_md5: part_md5.to_vec() }
    }

    /// Saves the state for a checkpoint: the MD5s completed since they were last taken
    /// (store them before the state), and the state itself.
    pub fn checkpoint(&mut self) -> (Vec<PartMd5>, SavedHasher) {
        let saved = self.state();
        (self.take_completed(), saved)
    }

    /// Restores a saved state for the same layout.
    pub fn restore(layout: Layout, saved: &SavedHasher) -> Result<Self, BadHasherState> {
        if saved.offset > layout.file_size() {
            return Err(BadHasherState("offset is past the end of the file"));
        }
        let sha1_state =
            SerializedState::<Sha1>::try_from(saved.sha1.as_slice()).map_err(|_| BadHasherState("SHA-1 state has the wrong length"))?;
        let md5_state =
            SerializedState::<Md5>::try_from(saved.part_md5.as_slice()).map_err(|_| BadHasherState("MD5 state has the wrong length"))?;
        let sha1 = Sha1::deserialize(&sha1_state).map_err(|_| BadHasherState("SHA-1 state is corrupt"))?;
        let part = Md5::deserialize(&md5_state).map_err(|_| BadHasherState("MD5 state is corrupt"))?;
        let at_boundary = saved.offset % layout.part_size() == 0;
        if at_boundary && part.serialize() != Md5::new().serialize() {
            return Err(BadHasherState("MD5 state at a part boundary is not empty"));
        }
        let single = (!at_boundary).then_some(part);
        Ok(Hasher { layout, offset: saved.offset, sha1, single, batch: Vec::new(), completed: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
    }

    fn reference(data: &[u8], part: usize) -> (String, Vec<PartMd5>) {
        let sha = crate::hex::encode(&Sha1::digest(data));
        (sha, data.chunks(part).map(|c| Md5::digest(c).into()).collect())
    }

    #[test]
    fn matches_one_shot_digests() {
        let data = bytes(6_000_000, 1);
        let mut h = Hasher::new(Layout::new(6_000_000, 1_048_576).unwrap());
        h.update(&data);
        let (sha, md5s) = reference(&data, 1_048_576);
        assert_eq!(h.file_sha(), Some(sha));
        assert_eq!(h.take_completed(), md5s);
        assert!(h.take_completed().is_empty());
    }

    #[test]
    fn corrupt_states_are_refused() {
        let layout = Layout::new(10, 4).unwrap();
        let (_, saved) = Hasher::new(layout).checkpoint();
        assert_eq!((saved.sha1.len(), saved.part_md5.len()), (92, 88));
        let mut short = saved.clone();
        short.sha1.pop();
        assert!(Hasher::restore(layout, &short).is_err());
        let mut past = saved.clone();
        past.offset = 11;
        assert!(Hasher::restore(layout, &past).is_err());
        // A part's MD5 state that has bytes in it cannot belong at a part boundary.
        let mut h = Hasher::new(layout);
        h.update(&[1, 2]);
        let mut misplaced = saved.clone();
        misplaced.part_md5 = h.checkpoint().1.part_md5;
        assert!(Hasher::restore(layout, &misplaced).is_err());
        assert!(Hasher::restore(layout, &saved).is_ok());
    }

    proptest! {
        /// Cutting the pass anywhere (mid-block, mid-part), saving and restoring any
        /// number of times gives the same SHA-1 and part MD5s as one pass.
        #[test]
        fn save_restore_anywhere(
            len in 1usize..40_000,
            part in 1usize..5_000,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            seed in any::<u8>(),
        ) {
            let data = bytes(len, seed);
            let layout = Layout::new(len as u64, part as u64).unwrap();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
            points.push(len);
            points.sort();
            let mut h = Hasher::new(layout);
            let mut md5s = Vec::new();
            let mut at = 0;
            for p in points {
                h.update(&data[at..p]);
                at = p;
                let (done, saved) = h.checkpoint();
                md5s.extend(done);
                h = Hasher::restore(layout, &saved).unwrap();
            }
            let (sha, expected) = reference(&data, part);
            prop_assert_eq!(h.file_sha(), Some(sha));
            prop_assert_eq!(md5s, expected);
        }
    }
}
