//! One invocation's work on one upload: its limits, what it read and loaded, and its
//! saves.

use super::io::Io;
use super::records::commit_work;
use super::records::storage;
use super::settings::Settings;
use super::wait::Limits;
use crate::checkpoint;
use crate::error::Error;
use crate::hasher::PartMd5;
use crate::upload::{md5_in_chunk, Md5s, Upload};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// One invocation's work on one upload.
pub(crate) struct Run<'a, I: Io> {
    pub(crate) io: &'a I,
    pub(crate) s: &'a Settings,
    /// No new work starts after this (once some progress was made).
    pub(crate) soft: Duration,
    pub(crate) limits: Limits,
    pub(crate) last_save: Duration,
    /// The record as this invocation last wrote it.
    pub(crate) saved: Option<Upload>,
    /// The whole file, when it fits the memory threshold and was read this invocation.
    pub(crate) memory: Option<Rc<Vec<u8>>>,
    /// MD5 chunks loaded this invocation.
    pub(crate) chunks: HashMap<u64, Vec<u8>>,
    /// Whether this invocation moved the upload forward yet: the budget is only
    /// enforced after some progress, so even a tiny budget always advances.
    pub(crate) progressed: bool,
    /// This invocation, as the owner of the leases it takes (random).
    pub(crate) owner: String,
    /// Where this invocation starts looking for a free part range (from its owner).
    pub(crate) seed: u64,
    /// Unix milliseconds until which its leases hold: a little past its time limit.
    pub(crate) lease_until_ms: u64,
    /// The keys of the leases it holds.
    pub(crate) held: Vec<String>,
    /// The part range it is sending.
    pub(crate) range: Option<u64>,
    /// It sent parts of an upload cut into several ranges: other invocations may be
    /// writing the upload's record at the same time.
    pub(crate) shared: bool,
    /// The lease (name, holder) that kept it from working, if one did.
    pub(crate) busy: Option<(String, crate::lease::Lease)>,
}

impl<'a, I: Io> Run<'a, I> {
    /// No new work starts: the budget is spent (once some progress was made), or a
    /// platform quota stopped requests.
    pub(crate) fn out_of_time(&self) -> bool {
        (self.progressed && self.io.now() >= self.soft) || self.io.quota_stop().is_some()
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.soft.saturating_sub(self.io.now())
    }

    /// Writes the upload's record (the commit point), unless the upload ended meanwhile.
    pub(crate) async fn save(&mut self, up: &mut Upload) -> Result<(), Error> {
        commit_work(self.io, up).await?;
        self.last_save = self.io.now();
        self.saved = Some(up.clone());
        Ok(())
    }

    pub(crate) fn save_due(&self) -> bool {
        self.io.now().saturating_sub(self.last_save) >= self.s.checkpoint_every
    }

    /// The upload pass's last checkpoint when other invocations may be sending other
    /// ranges of the upload: a record's read, merge and write are not atomic, so one
    /// written at the same moment can overwrite the parts this one recorded. Once the
    /// others' writes have landed (the leases' settling wait), the record is read back
    /// and written again (merging anew) while it lacks any of them.
    pub(crate) async fn save_shared(&mut self, up: &mut Upload) -> Result<(), Error> {
        self.save(up).await?;
        if !self.shared {
            return Ok(());
        }
        for _ in 0..2 {
            self.io.sleep(self.s.lease_settle).await;
            let stored = self.io.kv_get(&checkpoint::record_key(&up.id)).await.map_err(storage)?;
            match stored.map(|bytes| Upload::decode(&bytes)) {
                Some(Ok(stored)) if !stored.holds_parts_of(up) => self.save(up).await?,
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// How many bytes to ask the source for next: what the remaining budget can read at
    /// the rate seen so far, so that reads are few and large but little is fetched and
    /// thrown away when the budget runs out.
    pub(crate) fn read_len(&self, up: &Upload) -> u64 {
        if up.read_rate == 0 {
            return self.s.first_read;
        }
        let secs = self.remaining().as_secs_f64();
        ((up.read_rate as f64 * secs * 1.1) as u64).max(8 << 20)
    }

    pub(crate) fn learn_rate(&self, up: &mut Upload, bytes: u64, took: Duration) {
        if bytes >= (4 << 20) && took > Duration::from_millis(50) {
            let rate = (bytes as f64 / took.as_secs_f64()) as u64;
            // The mean without the sum, which a stored rate (input) could overflow.
            up.read_rate = if up.read_rate == 0 { rate } else { up.read_rate / 2 + rate / 2 + (up.read_rate & rate & 1) };
        }
    }

    /// The stored MD5 of part `index`, loading its chunk when needed.
    pub(crate) async fn stored_md5(&mut self, id: &str, md5s: &Md5s, index: u64) -> Result<Option<PartMd5>, Error> {
        match md5s.in_tail(index) {
            Ok(found) => Ok(found),
            Err(k) => {
                if !self.chunks.contains_key(&k) {
                    let key = checkpoint::md5_chunk_key(id, k);
                    let value = self
                        .io
                        .kv_get(&key)
                        .await
                        .map_err(storage)?
                        .ok_or_else(|| Error::Checkpoint(format!("MD5 chunk {key} is missing")))?;
                    self.chunks.insert(k, value);
                }
                Ok(md5_in_chunk(&self.chunks[&k], index))
            }
        }
    }
}
