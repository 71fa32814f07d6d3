//! `/tick`: the scheduler's pass over every upload: removing final uploads past
//! retention and what racing invocations left behind, then advancing the unfinished
//! ones, least recently attempted first.

use super::advance::advance;
use super::io::Io;
use super::records::{keys_of, list, remove_keys};
use super::settings::Settings;
use crate::checkpoint;
use crate::error::Error;
use crate::upload::{State, Upload};
use std::time::Duration;

/// A lone outcome key (its record gone: a cancel's tombstone, or the rest of a
/// removal cut short) is kept this long, beyond any invocation still at work.
const TOMBSTONE_SECS: u64 = 3600;

/// Summary of a tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Uploads worked on.
    pub advanced: Vec<String>,
    /// Uploads whose invocation ended in an error of the store (id, code, message);
    /// the others were still advanced.
    pub errors: Vec<(String, String, String)>,
    /// Final uploads removed after the retention time.
    pub removed: Vec<String>,
    /// Unfinished uploads left for a later tick.
    pub waiting: usize,
}

/// Removes final uploads past retention, then advances unfinished ones, least recently
/// attempted first and skipping those waiting out a `retryAfter`, until the
/// invocation's time is up. One upload's error never stops the others.
pub async fn tick<I: Io>(io: &I, settings: &Settings, started: Duration) -> Result<TickReport, Error> {
    let listing = list(io).await?;
    let now = io.unix_now();
    let mut report = TickReport::default();
    for up in &listing.uploads {
        let own = keys_of(&listing.keys, &up.id);
        let ended = up.ended_at().unwrap_or(up.updated_at);
        if up.state().is_final() && ended.saturating_add(settings.retention_secs) <= now {
            remove_keys(io, &own).await?;
            report.removed.push(up.id.clone());
        } else if up.state() == State::Done {
            // MD5 chunks a racing invocation wrote after the upload finished.
            let chunks: Vec<String> = own.into_iter().filter(|k| k.contains("/md5/")).collect();
            remove_keys(io, &chunks).await?;
        } else if up.state() == State::Cancelled {
            // A record a racing invocation wrote after the cancel: only the tombstone stays.
            let end = checkpoint::end_key(&up.id);
            remove_keys(io, &own.into_iter().filter(|k| *k != end).collect::<Vec<_>>()).await?;
        }
    }
    for (id, end) in &listing.lone_ends {
        if end.as_ref().is_none_or(|e| e.at().saturating_add(TOMBSTONE_SECS.min(settings.retention_secs)) <= now) {
            remove_keys(io, &keys_of(&listing.keys, id)).await?;
        }
    }
    let mut due: Vec<&Upload> =
        listing.uploads.iter().filter(|u| !u.state().is_final() && u.retry_after().is_none_or(|t| t <= now)).collect();
    due.sort_by(|a, b| (a.attempted_at, a.created_at, &a.id).cmp(&(b.attempted_at, b.created_at, &b.id)));
    for up in due {
        if io.now() >= started + settings.budget && !report.advanced.is_empty() {
            break;
        }
        match advance(io, settings, &up.id, started).await {
            Ok(_) => report.advanced.push(up.id.clone()),
            Err(e) => report.errors.push((up.id.clone(), e.code().to_owned(), e.to_string())),
        }
    }
    report.waiting = match list(io).await {
        Ok(after) => after.uploads.iter().filter(|u| !u.state().is_final()).count(),
        Err(_) => listing.uploads.iter().filter(|u| !u.state().is_final()).count(),
    };
    Ok(report)
}
