//! Recording the uploads a storage event announces: one per object version, found
//! again when a sender delivers the same event twice (they all deliver at least once).
//! Recording only reads and writes the store (no probe of the source: a body of many
//! records must be answered before the sender's timeout); the first invocation that
//! works on an upload probes its source.

use super::io::Io;
use super::records::{load_raw, read_end, storage};
use crate::checkpoint;
use crate::error::Error;
use crate::source::SourceError;
use crate::upload::{EventOrigin, Outcome, Spec, State, Upload};

/// An upload an event announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its id.
    pub id: String,
    /// Whether this call created it (else the event was a repeat).
    pub new: bool,
    /// Its state now.
    pub state: State,
}

/// Records the upload of one announced object version under `id`, unless it exists.
/// A cancelled one stays cancelled while its tombstone is kept (the user's word); one
/// removed after retention is recorded again by a late repeat of its event (the event
/// is then all there is to go by).
pub async fn record_event<I: Io>(io: &I, id: &str, spec: Spec, origin: EventOrigin, size: Option<u64>) -> Result<Recorded, Error> {
    let (existing, end) = load_raw(io, id).await?;
    if let Some(mut up) = existing {
        if let Some(end) = &end {
            up.lay_outcome(end);
        }
        return Ok(Recorded { id: id.to_owned(), new: false, state: up.state() });
    }
    // A lone outcome: a cancel's tombstone, or the last key of a removal under way.
    match read_end(io, id).await? {
        Some(Outcome::Cancelled { .. }) => return Ok(Recorded { id: id.to_owned(), new: false, state: State::Cancelled }),
        Some(Outcome::Done { .. }) => return Ok(Recorded { id: id.to_owned(), new: false, state: State::Done }),
        None => {}
    }
    // No listing of the store's keys for leftovers: a removal takes the record first
    // and the outcome last, and what may be left between (MD5 chunks) was computed from
    // this same object version, so it is what the new record would store again.
    // The event's size is the store's word: one too large is refused now, not stored
    // as a record that every later read would refuse.
    if let Some(size) = size {
        crate::parts::check_part_count(size, spec.data_size)
            .map_err(|e| SourceError::Invalid(format!("the object {} is too large to upload: {e}", origin.key)))?;
    }
    let mut up = Upload::from_event(id.to_owned(), spec, origin, size, io.unix_now());
    up.stats.kv_writes += 1;
    io.kv_set(&checkpoint::record_key(id), &up.encode()).await.map_err(storage)?;
    Ok(Recorded { id: id.to_owned(), new: true, state: up.state() })
}
