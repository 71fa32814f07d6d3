//! The checkpoint: how an upload is kept in the key-value store between invocations.
//! Format only; what the data means is [`crate::upload`]'s.
//!
//! Per upload there is one small main record (`vu1/{id}`), the commit point of work in
//! progress, plus complete chunks of part MD5s (`vu1/{id}/md5/{k}`, 4096 MD5s = 64 KiB
//! each), plus, once the upload has ended, its outcome (`vu1/{id}/end`) and, with a
//! completion webhook, where its delivery stands (`vu1/{id}/notify` while it is tried,
//! `vu1/{id}/notified/{done|failed}` once delivered). (`vu1/` is a namespace, not the format:
//! the record says its format.)
//!
//! The key-value store has no compare-and-swap, so two invocations on one upload can
//! overwrite each other's record. The outcome key is what makes an end stick: it is
//! written before the record says `done`, read before any record write (an invocation
//! that finds it stops instead of writing), and laid over the record on every load. So
//! a record that steps back under a race never turns a done upload into anything else.
//! The MD5s of the chunk still being filled live in the main record itself, so a
//! record always describes exactly the MD5s it vouches for. A complete chunk's content
//! is determined by the source alone (which must not change), so two invocations that
//! race on one upload write identical chunks: the worst a race can do is make a record
//! step back, which costs repeated work, never a wrong byte.
//!
//! Records are written in format 2 (the upload's phase with its own data) and read in
//! format 1 too (the flat record of the first release), so an upload in flight when the
//! component is upgraded carries on. For a 50 GiB file in 512 KiB parts there are 25
//! chunk keys; keys stay far below 255 bytes and values far below 1 MB (see the size
//! test at the bottom).

pub mod v1;

use crate::parts::Layout;
use crate::upload::{Outcome, Phase, Upload};
use serde::{Deserialize, Serialize};

/// The format records are written in. Format 1 is still read ([`v1`]).
pub const FORMAT: u32 = 2;

/// Prefix of every key this component writes.
pub const KEY_PREFIX: &str = "vu1/";

/// The main record's key.
pub fn record_key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// The key of MD5 chunk `k`.
pub fn md5_chunk_key(id: &str, k: u64) -> String {
    format!("{KEY_PREFIX}{id}/md5/{k}")
}

/// The key of an upload's outcome.
pub fn end_key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}/end")
}

/// The key of the completion-webhook delivery still under way for an upload (see
/// [`crate::notify`]).
pub fn notify_key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}/notify")
}

/// The key that holds the last delivered event of `kind` (`done` or `failed`): its
/// own key per kind, so `/tick` sees from the key listing alone, without a read,
/// which done uploads still owe their receiver an event.
pub fn notified_key(id: &str, kind: &str) -> String {
    format!("{KEY_PREFIX}{id}/notified/{kind}")
}

/// Every key a completion webhook may write for an upload.
pub fn notify_keys(id: &str) -> [String; 3] {
    [notify_key(id), notified_key(id, "failed"), notified_key(id, "done")]
}

/// The key of an upload's lease `name` (see [`crate::lease`]).
pub fn lease_key(id: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{id}/lease/{name}")
}

/// The upload id and lease name of a lease key.
pub fn lease_of_key(key: &str) -> Option<(&str, &str)> {
    let (id, name) = key.strip_prefix(KEY_PREFIX)?.split_once("/lease/")?;
    (!id.is_empty() && !id.contains('/') && !name.is_empty()).then_some((id, name))
}

/// The upload id of a main record's key (not of an auxiliary key).
pub fn id_of_record_key(key: &str) -> Option<&str> {
    key.strip_prefix(KEY_PREFIX).filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The upload id of an outcome key.
pub fn id_of_end_key(key: &str) -> Option<&str> {
    key.strip_prefix(KEY_PREFIX)?.strip_suffix("/end").filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Every key of an upload, in the order they are removed: the record first (an upload
/// without its record is gone), then its MD5 chunks, then its outcome.
pub fn keys_of(up: &Upload) -> Vec<String> {
    let mut keys = vec![record_key(&up.id)];
    keys.extend(md5_chunk_keys(up));
    keys.push(end_key(&up.id));
    keys
}

/// The keys of an upload's stored MD5 chunks.
pub fn md5_chunk_keys(up: &Upload) -> Vec<String> {
    (0..up.md5s().map_or(0, |m| m.chunks)).map(|k| md5_chunk_key(&up.id, k)).collect()
}

/// A stored record that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord(pub String);

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored checkpoint is unusable: {}", self.0)
    }
}

impl std::error::Error for BadRecord {}

impl Outcome {
    /// Serializes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("outcomes serialize")
    }

    /// Reads a stored outcome.
    pub fn decode(bytes: &[u8]) -> Result<Outcome, BadRecord> {
        serde_json::from_slice(bytes).map_err(|e| BadRecord(format!("outcome: {e}")))
    }
}

impl Upload {
    /// Serializes for the store, in [`FORMAT`].
    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Stored<'a> {
            format: u32,
            #[serde(flatten)]
            upload: &'a Upload,
        }
        serde_json::to_vec(&Stored { format: FORMAT, upload: self }).expect("uploads serialize")
    }

    /// Reads a stored record of format 1 or 2, refusing any other and any record that
    /// breaks an invariant later steps rely on (a stored record is input like any
    /// other: checked, never trusted to be well-formed).
    pub fn decode(bytes: &[u8]) -> Result<Upload, BadRecord> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(|e| BadRecord(e.to_string()))?;
        let upload = match version.format {
            1 => v1::Record::decode(bytes)?.into_upload()?,
            2 => serde_json::from_slice(bytes).map_err(|e| BadRecord(e.to_string()))?,
            other => return Err(BadRecord(format!("format {other} is not a supported format (1 or {FORMAT})"))),
        };
        check(&upload).map_err(BadRecord)?;
        Ok(upload)
    }
}

/// The invariants every later use of an upload relies on.
fn check(up: &Upload) -> Result<(), String> {
    let size = up.identity.size;
    if size == 0 {
        return Err("the source size is 0".into());
    }
    // A part size is checked with the part count it gives: a stored size and part size
    // are input, and too many parts would make later uses of the record slow or large.
    // Not for an ended upload, which is only shown and removed in time (a record of an
    // earlier release, with more parts, stays readable so that it can be).
    let ended = up.state().is_final();
    let in_range = |name: &str, part: u64| {
        if part == 0 || part > crate::protocol::MAX_PART_SIZE {
            return Err(format!("{name} {part} is outside 1..={}", crate::protocol::MAX_PART_SIZE));
        }
        match ended {
            true => Ok(()),
            false => crate::parts::check_part_count(size, part).map_err(|e| format!("{name}: {e}")),
        }
    };
    in_range("spec dataSize", up.spec.data_size)?;
    check_phase(&up.phase, size, &in_range, true)
}

fn check_phase(phase: &Phase, size: u64, in_range: &dyn Fn(&str, u64) -> Result<(), String>, top: bool) -> Result<(), String> {
    if let Some(md5s) = phase.md5s().filter(|_| !matches!(phase, Phase::Failed(_) | Phase::Cancelled(_))) {
        in_range("MD5 part size", md5s.part_size)?;
        md5s.check(size)?;
    }
    match phase {
        Phase::Pending => Ok(()),
        Phase::Hashing(h) if h.hasher.offset > size => Err("hashed past the end of the source".into()),
        Phase::Hashing(_) => Ok(()),
        Phase::Uploading(u) => {
            in_range("part size", u.part_size)?;
            if !u.done.fits(Layout::new(size, u.part_size).map_or(0, |l| l.count())) {
                return Err("done parts past the last part".into());
            }
            Ok(())
        }
        Phase::Finishing(f) => in_range("part size", f.part_size),
        Phase::Done(d) => in_range("part size", d.part_size),
        Phase::Failed(_) | Phase::Cancelled(_) if !top => Err("a final phase inside another".into()),
        Phase::Failed(f) => check_phase(&f.was, size, in_range, false),
        Phase::Cancelled(c) => check_phase(&c.was, size, in_range, false),
    }
}

#[cfg(test)]
mod tests;
