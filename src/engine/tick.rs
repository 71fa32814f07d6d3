//! `/tick`: the scheduler's pass over every upload: delivering the completion events
//! still owed, removing final uploads past retention and what racing invocations left
//! behind, then advancing the unfinished ones, least recently attempted first.

use super::advance::advance;
use super::io::Io;
use super::notify::{deliver_due, delivery, owed};
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
    /// Ended uploads whose completion event this tick delivered.
    pub notified: Vec<String>,
}

/// Removes final uploads past retention, then advances unfinished ones, least recently
/// attempted first and skipping those waiting out a `retryAfter`, until the
/// invocation's time is up. One upload's error never stops the others.
pub async fn tick<I: Io>(io: &I, settings: &Settings, started: Duration) -> Result<TickReport, Error> {
    let listing = list(io).await?;
    let now = io.unix_now();
    let mut report = TickReport::default();
    // Completion events owed first (they are short), within half the budget so that a
    // receiver that is down cannot starve the uploads.
    let deliveries_end = started + settings.time_limit() / 2;
    for up in listing.uploads.iter().filter(|up| owed(settings, up, &listing.keys)) {
        if io.now() >= deliveries_end || io.quota_stop().is_some() {
            break;
        }
        match deliver_due(io, settings, up, deliveries_end).await {
            Ok(Some(d)) if d.delivered_at.is_some() => report.notified.push(up.id.clone()),
            Ok(_) => {}
            Err(e) => report.errors.push((up.id.clone(), e.code().to_owned(), e.to_string())),
        }
    }
    for up in &listing.uploads {
        let mut own = keys_of(&listing.keys, &up.id);
        if settings.notify.is_some() {
            // A delivery this tick may have written keys the listing has not seen.
            let at = own.iter().position(|k| *k == checkpoint::end_key(&up.id)).unwrap_or(own.len());
            let missing: Vec<String> = checkpoint::notify_keys(&up.id).into_iter().filter(|k| !own.contains(k)).collect();
            own.splice(at..at, missing);
        }
        let ended = up.ended_at().unwrap_or(up.updated_at);
        if up.state().is_final() && ended.saturating_add(settings.retention_secs) <= now {
            // Kept while its event is still being delivered (until delivered or given up).
            if owed(settings, up, &listing.keys) && !report.notified.contains(&up.id) {
                match delivery(io, settings, up).await {
                    Ok(Some(d)) if d.delivered_at.is_none() && !d.given_up() => continue,
                    _ => {}
                }
            }
            remove_keys(io, &own).await?;
            report.removed.push(up.id.clone());
        } else if up.state() == State::Done {
            // MD5 chunks a racing invocation wrote after the upload finished, and a
            // delivery's bookkeeping left by one that lost its race to deliver.
            let told = listing.keys.contains(&checkpoint::notified_key(&up.id, "done"));
            let pending = checkpoint::notify_key(&up.id);
            let stale: Vec<String> =
                own.into_iter().filter(|k| k.contains("/md5/") || k.contains("/lease/") || (told && *k == pending)).collect();
            remove_keys(io, &stale).await?;
        } else if up.state() == State::Cancelled {
            // A record a racing invocation wrote after the cancel: only the tombstone stays.
            let end = checkpoint::end_key(&up.id);
            remove_keys(io, &own.into_iter().filter(|k| *k != end).collect::<Vec<_>>()).await?;
        }
    }
    // A delivery's or a lease's key written after a racing removal of its upload: nothing
    // refers to it.
    let orphans: Vec<String> = listing
        .keys
        .iter()
        .filter(|k| {
            k.strip_prefix(checkpoint::KEY_PREFIX).and_then(|rest| rest.split_once('/')).is_some_and(|(id, rest)| {
                (rest.starts_with("notif") || rest.starts_with("lease/"))
                    && !listing.keys.contains(&checkpoint::record_key(id))
                    && !listing.keys.contains(&checkpoint::end_key(id))
            })
        })
        .cloned()
        .collect();
    remove_keys(io, &orphans).await?;
    for (id, end) in &listing.lone_ends {
        if end.as_ref().is_none_or(|e| e.at().saturating_add(TOMBSTONE_SECS.min(settings.retention_secs)) <= now) {
            remove_keys(io, &keys_of(&listing.keys, id)).await?;
        }
    }
    // Claims of quota windows past (a store error here is the next tick's to retry).
    let _ = super::meter::sweep(io, &listing.keys).await;
    let mut due: Vec<&Upload> =
        listing.uploads.iter().filter(|u| !u.state().is_final() && u.retry_after().is_none_or(|t| t <= now)).collect();
    // Uploads no invocation is on first (no lease key), so that invocations ticking at
    // once on several instances spread over the uploads before they share one.
    let leased = |up: &Upload| listing.keys.iter().any(|k| checkpoint::lease_of_key(k).is_some_and(|(id, _)| id == up.id));
    due.sort_by_cached_key(|up| (leased(up), up.attempted_at, up.created_at, up.id.clone()));
    for up in due {
        if (io.now() >= started + settings.budget && !report.advanced.is_empty()) || io.quota_stop().is_some() {
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
