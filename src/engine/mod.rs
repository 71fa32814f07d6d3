//! The upload engine: one invocation's worth of work on an upload, within a time
//! budget, over any platform that implements [`Io`] (Spin's outbound HTTP and
//! key-value store in the component; tokio, hyper and SQLite in the native tests; a
//! virtual clock and in-memory models in the deterministic simulation).
//!
//! Decisions about the upload itself live in [`crate::upload`]; this module sequences
//! the I/O: ranged reads of the source (`read`), the hashing pass (`hashing`),
//! concurrent part uploads with retries (`uploading`, `vod`), and checkpoints at
//! least every `checkpoint_every` and before returning (`records`).
//!
//! Three rules make it safe to kill an invocation at any instant and to run several
//! on one upload at once, on a store without compare-and-swap:
//! - the record write is the commit point of work in progress, and what it refers to
//!   (MD5 chunks) is stored before it;
//! - an upload's end is a separate write-once key ([`checkpoint::end_key`]), read before
//!   every record write and laid over the record on every load, so done stays done;
//! - every wait (a request, a body read, a backoff) is bounded by the invocation's
//!   time, so an invocation always returns, with a checkpoint, before the platform
//!   would kill it.

mod advance;
mod events;
mod hashing;
mod io;
mod leases;
mod meter;
mod notify;
mod read;
mod records;
mod run;
mod settings;
mod tick;
mod uploading;
mod vod;
mod wait;

pub use advance::advance;
pub use events::{record_event, Recorded};
pub use io::{local, Advanced, Body, FileInfo, HttpRequest, HttpResponse, Io, IoError, QuotaStop};
pub use leases::leases;
pub use meter::{outbound_hour, sweep, HourUse, Metered, Usage};
pub use notify::delivery;
pub use read::probe_for;
pub use records::{list, load, Listing};
pub use settings::Settings;
pub use tick::{tick, TickReport};

use crate::checkpoint;
use crate::error::Error;
use crate::upload::{Outcome, Spec, State, Upload};
use records::{commit, keys_of, load_raw, remove_keys, storage};

/// Removes an upload, or stops it: a done upload is forgotten (every key removed; the
/// service keeps the file); any other is cancelled (a tombstone outcome first, so an
/// invocation still at work stops at its next checkpoint, then its keys). Returns its
/// last status.
pub async fn cancel<I: Io>(io: &I, id: &str) -> Result<Option<Upload>, Error> {
    let Some(mut up) = load(io, id).await? else { return Ok(None) };
    let keys = io.kv_keys().await.map_err(storage)?;
    let mut own = keys_of(&keys, id);
    if up.state() != State::Done {
        let at = io.unix_now();
        io.kv_set(&checkpoint::end_key(id), &Outcome::Cancelled { at }.encode()).await.map_err(storage)?;
        up.lay_outcome(&Outcome::Cancelled { at });
        own.retain(|k| *k != checkpoint::end_key(id));
    }
    remove_keys(io, &own).await?;
    Ok(Some(up))
}

/// Creates the upload for `spec` unless the same request for the same unchanged source
/// exists; returns the upload and whether it is new. A failed upload found this way is
/// restarted from its last good checkpoint (the request is its retry).
pub async fn create<I: Io>(io: &I, settings: &Settings, spec: Spec) -> Result<(Upload, bool), Error> {
    let identity = probe_for(io, settings, &spec.source, spec.data_size).await?;
    let mut up = Upload::new(spec, identity, io.unix_now());
    up.stats.source_requests = up.spec.source.is_remote() as u64;
    let (existing, end) = load_raw(io, &up.id).await?;
    let had_record = existing.is_some();
    match (existing, &end) {
        (Some(mut existing), Some(end @ Outcome::Done { .. })) => {
            existing.lay_outcome(end);
            return Ok((existing, false));
        }
        (Some(mut existing), None) => {
            if existing.state() == State::Failed {
                existing.retry();
                commit(io, &mut existing).await?;
            }
            return Ok((existing, false));
        }
        _ => {}
    }
    // Start afresh. A cancelled or ended upload of the same request had a record: its
    // keys (the tombstone among them) go first, so that they do not fall on the new one.
    // Without a record, what is left is an ended upload's tombstone and notification
    // keys (a cancel leaves its tombstone alone; a removal can be cut short), and those
    // go; any other key is another creator's that got here first (two runs of the
    // command at once, two `POST /uploads` of one source), its record, leases and MD5 chunks,
    // and stays: removing them would pull its upload from under it. (A stale lease
    // only expires; a stale MD5 chunk is written again before any record counts it.)
    let keys = io.kv_keys().await.map_err(storage)?;
    let mut stale = keys_of(&keys, &up.id);
    if !had_record {
        let (end, notify) = (checkpoint::end_key(&up.id), checkpoint::notify_keys(&up.id));
        stale.retain(|k| *k == end || notify.contains(k));
    }
    stale.reverse();
    remove_keys(io, &stale).await?;
    io.kv_set(&checkpoint::record_key(&up.id), &up.encode()).await.map_err(storage)?;
    up.stats.kv_writes += 1;
    Ok((up, true))
}

/// Restarts a failed upload from its last good checkpoint (nothing to do for any
/// other). Returns the upload as saved.
pub async fn retry<I: Io>(io: &I, id: &str) -> Result<Option<Upload>, Error> {
    let Some(mut up) = load(io, id).await? else { return Ok(None) };
    if up.state() == State::Failed {
        up.retry();
        commit(io, &mut up).await?;
    }
    Ok(Some(up))
}
