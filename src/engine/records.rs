//! An upload's keys in the store: loading it with its outcome laid over it, listing
//! every upload, writing its record (the commit point), and removing its keys.

use super::io::{Io, IoError, QuotaStop};
use crate::checkpoint;
use crate::error::Error;
use crate::upload::{Outcome, State, Upload};

/// A failure of the key-value store, as the engine's error.
/// A failure of the store; a write the quota refused is the quota's.
pub(crate) fn storage(e: IoError) -> Error {
    match QuotaStop::of(&e) {
        Some(stop) => Error::Quota(stop.clone()),
        None => Error::Storage(e),
    }
}

/// An upload's outcome, if it has ended.
pub(crate) async fn read_end<I: Io>(io: &I, id: &str) -> Result<Option<Outcome>, Error> {
    match io.kv_get(&checkpoint::end_key(id)).await.map_err(storage)? {
        Some(bytes) => Ok(Some(Outcome::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// An upload's stored record and outcome, as they are (not laid over each other).
pub(crate) async fn load_raw<I: Io>(io: &I, id: &str) -> Result<(Option<Upload>, Option<Outcome>), Error> {
    let record = match io.kv_get(&checkpoint::record_key(id)).await.map_err(storage)? {
        Some(bytes) => Some(Upload::decode(&bytes)?),
        None => None,
    };
    let end = if record.is_some() { read_end(io, id).await? } else { None };
    Ok((record, end))
}

/// Loads an upload, with its outcome laid over it. `None` when there is no such upload
/// (a lone outcome key is a tombstone, not an upload).
pub async fn load<I: Io>(io: &I, id: &str) -> Result<Option<Upload>, Error> {
    let (record, end) = load_raw(io, id).await?;
    Ok(record.map(|mut up| {
        if let Some(end) = &end {
            up.lay_outcome(end);
        }
        up
    }))
}

/// Every upload in the store, as one listing of its keys.
pub struct Listing {
    /// Every upload with its outcome laid over it, oldest first.
    pub uploads: Vec<Upload>,
    /// Uploads whose record cannot be read (named rather than hiding every other upload).
    pub unreadable: Vec<String>,
    /// Outcome keys whose record is gone, with their outcome.
    pub(crate) lone_ends: Vec<(String, Option<Outcome>)>,
    /// Every key, to remove an upload's keys whatever its record says.
    pub(crate) keys: Vec<String>,
}

impl Listing {
    /// Every key of the store, as listed.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// Lists every upload.
pub async fn list<I: Io>(io: &I) -> Result<Listing, Error> {
    let keys = io.kv_keys().await.map_err(storage)?;
    let ended: std::collections::BTreeSet<&str> = keys.iter().filter_map(|k| checkpoint::id_of_end_key(k)).collect();
    let mut uploads = Vec::new();
    let mut unreadable = Vec::new();
    let mut lone_ends = Vec::new();
    for key in &keys {
        if let Some(id) = checkpoint::id_of_record_key(key) {
            let Some(bytes) = io.kv_get(key).await.map_err(storage)? else { continue };
            let Ok(mut up) = Upload::decode(&bytes) else {
                unreadable.push(id.to_owned());
                continue;
            };
            if ended.contains(id) {
                match read_end(io, id).await {
                    Ok(Some(end)) => up.lay_outcome(&end),
                    Ok(None) => {}
                    Err(_) => {
                        unreadable.push(id.to_owned());
                        continue;
                    }
                }
            }
            uploads.push(up);
        }
    }
    for id in &ended {
        if !keys.contains(&checkpoint::record_key(id)) {
            lone_ends.push(((*id).to_owned(), read_end(io, id).await.ok().flatten()));
        }
    }
    uploads.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(Listing { uploads, unreadable, lone_ends, keys })
}

/// Every key of upload `id` in a listing of keys, in the order of removal: the record
/// first (an upload without its record is gone), then its chunks, the outcome last.
pub(crate) fn keys_of(keys: &[String], id: &str) -> Vec<String> {
    let (record, end) = (checkpoint::record_key(id), checkpoint::end_key(id));
    let prefix = format!("{record}/");
    let mut own: Vec<String> = keys.iter().filter(|k| **k == record).cloned().collect();
    own.extend(keys.iter().filter(|k| k.starts_with(&prefix) && **k != end).cloned());
    own.extend(keys.iter().filter(|k| **k == end).cloned());
    own
}

pub(crate) async fn remove_keys<I: Io>(io: &I, keys: &[String]) -> Result<(), Error> {
    for key in keys {
        io.kv_delete(key).await.map_err(storage)?;
    }
    Ok(())
}

/// Writes an upload's record unless it has ended meanwhile (then `Err(Ended)`). While
/// parts are sent, the parts another invocation recorded are merged in first (see
/// [`Upload::merge_stored`]): several invocations may send one upload's part ranges.
/// A retry writes over the failed record it started from.
pub(crate) async fn commit<I: Io>(io: &I, up: &mut Upload) -> Result<(), Error> {
    write_record(io, up, false).await
}

/// [`commit`] for an invocation's work, which never started from a failed record: one
/// found failed was failed by another invocation meanwhile (then `Err(Overtaken)`).
pub(crate) async fn commit_work<I: Io>(io: &I, up: &mut Upload) -> Result<(), Error> {
    write_record(io, up, true).await
}

async fn write_record<I: Io>(io: &I, up: &mut Upload, yield_to_failed: bool) -> Result<(), Error> {
    if let Some(end) = read_end(io, &up.id).await? {
        return Err(Error::Ended(end));
    }
    if up.uploading().is_some() {
        if let Some(stored) = io.kv_get(&checkpoint::record_key(&up.id)).await.map_err(storage)? {
            // An unreadable record is overwritten, as before merging existed.
            if let Ok(stored) = Upload::decode(&stored) {
                if yield_to_failed && stored.state() == State::Failed && up.state() != State::Failed {
                    // Another invocation failed the upload meanwhile (its source refused,
                    // say): a final state no racing write may undo.
                    return Err(Error::Overtaken(Box::new(stored)));
                }
                up.merge_stored(&stored);
            }
        }
    }
    up.updated_at = io.unix_now();
    up.stats.kv_writes += 1;
    io.kv_set(&checkpoint::record_key(&up.id), &up.encode()).await.map_err(storage)
}

/// Brings an upload that has ended in line with its outcome: a done upload's MD5
/// chunks removed and its record saying done; a cancelled one's keys removed. (A
/// finishing or cancelling invocation does this itself; this completes it after a
/// kill, or undoes a racing invocation's late write.)
pub(crate) async fn settle<I: Io>(io: &I, mut up: Upload, end: &Outcome) -> Result<Upload, Error> {
    let chunks = checkpoint::md5_chunk_keys(&up);
    match end {
        Outcome::Done { .. } if up.state() == State::Done && chunks.is_empty() => {}
        Outcome::Done { .. } => {
            up.lay_outcome(end);
            remove_keys(io, &chunks).await?;
            io.kv_set(&checkpoint::record_key(&up.id), &up.encode()).await.map_err(storage)?;
        }
        Outcome::Cancelled { .. } => {
            up.lay_outcome(end);
            if up.state() == State::Cancelled {
                remove_keys(io, &[checkpoint::record_key(&up.id)]).await?;
                remove_keys(io, &chunks).await?;
            }
        }
    }
    Ok(up)
}
