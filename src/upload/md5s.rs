//! The part MD5s an upload has computed: complete chunks of [`MD5S_PER_CHUNK`] stored
//! under their own keys, and the chunk still being filled (the tail) kept in the upload
//! itself, so the upload always describes exactly the MD5s it vouches for.

use crate::hasher::PartMd5;
use crate::parts::Layout;
use serde::{Deserialize, Serialize};

/// MD5s per chunk key.
pub const MD5S_PER_CHUNK: u64 = 4096;

/// The stored part MD5s of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Md5s {
    /// The part size they were computed for.
    pub part_size: u64,
    /// Complete chunks, stored under their own keys (chunk `k` under index `k`).
    pub chunks: u64,
    /// The MD5s after the complete chunks, 16 bytes each.
    #[serde(with = "super::b64")]
    pub tail: Vec<u8>,
}

/// What appending MD5s stores ([`Md5s::appended`]): complete chunks to write first,
/// then the new counts to take with [`Md5s::set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Md5Append {
    /// Complete chunks: (chunk index, value), to store before the upload is saved.
    pub writes: Vec<(u64, Vec<u8>)>,
    chunks: u64,
    tail: Vec<u8>,
}

impl Md5s {
    /// None yet, for parts of `part_size`.
    pub fn new(part_size: u64) -> Md5s {
        Md5s { part_size, chunks: 0, tail: Vec::new() }
    }

    /// How many part MD5s are stored.
    pub fn count(&self) -> u64 {
        self.chunks.saturating_mul(MD5S_PER_CHUNK).saturating_add(self.tail.len() as u64 / 16)
    }

    /// The layout of a file of `size` bytes in the parts these MD5s are for.
    pub fn layout(&self, size: u64) -> Layout {
        // Sizes are positive: checked when an upload is read, when the source is probed
        // and when the service's part size is parsed.
        Layout::new(size, self.part_size).expect("sizes are positive")
    }

    /// Whether these are the MD5s of every part of a session with `part_size` over a
    /// file of `size` bytes (then a listed part can be checked, and a part's MD5 need not
    /// be computed again).
    pub fn fit(&self, size: u64, part_size: u64) -> bool {
        self.part_size == part_size && self.count() == self.layout(size).count()
    }

    /// What appending MD5s would store, leaving these as they are: the chunk writes,
    /// then (with [`Md5s::set`]) the new counts. So a failed chunk write leaves an upload
    /// that still describes exactly what is stored.
    pub fn appended(&self, md5s: &[PartMd5]) -> Md5Append {
        let (mut chunks, mut tail) = (self.chunks, self.tail.clone());
        let mut writes = Vec::new();
        for md5 in md5s {
            tail.extend_from_slice(md5);
            if tail.len() as u64 == 16 * MD5S_PER_CHUNK {
                writes.push((chunks, std::mem::take(&mut tail)));
                chunks += 1;
            }
        }
        Md5Append { writes, chunks, tail }
    }

    /// Takes the counts computed by [`Md5s::appended`], once its writes are stored.
    pub fn set(&mut self, append: Md5Append) {
        self.chunks = append.chunks;
        self.tail = append.tail;
    }

    /// The MD5 of part `index` if it is in the tail; `Err(k)` names the chunk to load
    /// when it is in a complete chunk; `Ok(None)` when not stored.
    pub fn in_tail(&self, index: u64) -> Result<Option<PartMd5>, u64> {
        if index < self.chunks * MD5S_PER_CHUNK {
            return Err(index / MD5S_PER_CHUNK);
        }
        let at = ((index - self.chunks * MD5S_PER_CHUNK) * 16) as usize;
        Ok(self.tail.get(at..at + 16).map(|s| s.try_into().expect("16 bytes")))
    }

    /// Whether the counts fit a file of `size` bytes (a stored value is checked).
    pub fn check(&self, size: u64) -> Result<(), String> {
        if self.tail.len() % 16 != 0 || self.tail.len() as u64 > 16 * MD5S_PER_CHUNK {
            return Err("MD5 tail has a bad length".into());
        }
        let parts = size.div_ceil(self.part_size.max(1));
        if self.chunks > parts / MD5S_PER_CHUNK || self.count() > parts {
            return Err("more MD5s than parts".into());
        }
        Ok(())
    }
}

/// MD5 `index` of a stored chunk value.
pub fn md5_in_chunk(chunk: &[u8], index: u64) -> Option<PartMd5> {
    let at = ((index % MD5S_PER_CHUNK) * 16) as usize;
    chunk.get(at..at + 16).map(|s| s.try_into().expect("16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// MD5s appended in any batches land in chunks and tail so that every index reads
        /// back the MD5 appended for it.
        #[test]
        fn md5_storage_round_trips(batches in proptest::collection::vec(0usize..3000, 1..8)) {
            let mut m = Md5s::new(1);
            let mut chunks = std::collections::HashMap::new();
            let mut n = 0u64;
            for b in batches {
                let md5s: Vec<PartMd5> = (n..n + b as u64).map(|i| { let mut m = [0u8; 16]; m[..8].copy_from_slice(&i.to_le_bytes()); m }).collect();
                n += b as u64;
                let mut append = m.appended(&md5s);
                for (k, value) in std::mem::take(&mut append.writes) { chunks.insert(k, value); }
                m.set(append);
                m = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
            }
            prop_assert_eq!(m.count(), n);
            prop_assert!(m.check(1 << 40).is_ok());
            for i in (0..n).step_by(97).chain(n.checked_sub(1)) {
                let md5 = match m.in_tail(i) {
                    Ok(found) => found.unwrap(),
                    Err(k) => md5_in_chunk(&chunks[&k], i).unwrap(),
                };
                prop_assert_eq!(&md5[..8], &i.to_le_bytes()[..]);
            }
            prop_assert_eq!(m.in_tail(n), Ok(None));
        }
    }
}
