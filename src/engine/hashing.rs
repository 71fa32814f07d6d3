//! The hashing pass: the whole file's SHA-1 and every part's MD5, read once from the
//! source, with the hasher's state saved at every checkpoint so the pass resumes in
//! the next invocation where this one stopped.

use super::io::Io;
use super::read::read_chunk;
use super::records::storage;
use super::run::Run;
use crate::checkpoint;
use crate::error::Error;
use crate::hasher::Hasher;
use crate::upload::{Phase, Upload};
use std::rc::Rc;

impl<I: Io> Run<'_, I> {
    /// Stores the hasher's progress: new MD5 chunks first, then the record. The upload
    /// is changed only once the chunks it will count are stored, and the hasher forgets
    /// its MD5s only then: a write that fails leaves both able to checkpoint again.
    async fn save_hashing(&mut self, up: &mut Upload, hasher: &mut Hasher) -> Result<(), Error> {
        let saved = hasher.state();
        self.store_md5s(up, hasher).await?;
        if let Some(h) = up.hashing_mut() {
            h.saved(saved);
        }
        self.save(up).await
    }

    /// Stores the hasher's completed MD5s: full chunks under their keys, the rest in the
    /// upload (in memory, written by the next save).
    async fn store_md5s(&mut self, up: &mut Upload, hasher: &mut Hasher) -> Result<(), Error> {
        let Phase::Hashing(h) = &up.phase else { return Ok(()) };
        let append = h.md5s.appended(hasher.completed());
        for (k, value) in &append.writes {
            self.io.kv_set(&checkpoint::md5_chunk_key(&up.id, *k), value).await.map_err(storage)?;
            up.stats.kv_writes += 1;
        }
        if let Some(h) = up.hashing_mut() {
            h.md5s.set(append);
        }
        hasher.forget_completed();
        Ok(())
    }

    /// Hashes on from where the last checkpoint left off, until the file is hashed or
    /// the time is up.
    pub(crate) async fn hash(&mut self, up: &mut Upload) -> Result<(), Error> {
        let Phase::Hashing(h) = &up.phase else { return Ok(()) };
        let from = h.hasher.offset;
        let mut hasher = Hasher::restore(h.md5s.layout(up.identity.size), &(&h.hasher).into())?;
        let size = up.identity.size;
        // A small file is read once: kept from this pass for the upload pass.
        let keep = size <= self.s.memory_threshold && hasher.offset() == 0;
        let mut kept = Vec::with_capacity(if keep { size as usize } else { 0 });
        match self.hash_reads(up, &mut hasher, keep.then_some(&mut kept)).await {
            Ok(()) => {}
            Err(e @ (Error::Ended(_) | Error::Overtaken(_))) => return Err(e),
            Err(e) => {
                // What was hashed before the error is kept.
                if hasher.offset() > from {
                    self.save_hashing(up, &mut hasher).await?;
                }
                return Err(e);
            }
        }
        if let Some(sha) = hasher.file_sha() {
            if keep {
                self.memory = Some(Rc::new(kept));
            }
            self.store_md5s(up, &mut hasher).await?;
            up.hashed(sha);
            self.save(up).await
        } else if matches!(&up.phase, Phase::Hashing(h) if h.hasher.offset == hasher.offset()) {
            // The last checkpoint of the reads already holds it all.
            Ok(())
        } else {
            self.save_hashing(up, &mut hasher).await
        }
    }

    async fn hash_reads(&mut self, up: &mut Upload, hasher: &mut Hasher, mut kept: Option<&mut Vec<u8>>) -> Result<(), Error> {
        let size = up.identity.size;
        while !hasher.is_complete() && !self.out_of_time() {
            let start = hasher.offset();
            let end = if kept.is_some() { size } else { start.saturating_add(self.read_len(up)).min(size) };
            let mut reader = self.open(up, start, end).await?;
            let began = self.io.now();
            let mut got = 0u64;
            let result = loop {
                match read_chunk(self.io, self.limits, &mut reader).await {
                    Ok(Some(chunk)) => {
                        hasher.update(&chunk);
                        self.progressed = true;
                        got += chunk.len() as u64;
                        if let Some(kept) = kept.as_deref_mut() {
                            kept.extend_from_slice(&chunk);
                        }
                        if self.save_due() {
                            if let Err(e) = self.save_hashing(up, hasher).await {
                                break Err(e);
                            }
                        }
                        if self.out_of_time() {
                            break Ok(());
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            up.stats.source_bytes += got;
            self.learn_rate(up, got, self.io.now().saturating_sub(began));
            result?;
        }
        Ok(())
    }
}
