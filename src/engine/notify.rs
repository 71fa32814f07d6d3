//! Delivering the completion webhook: the event an ended upload owes is POSTed, and
//! where its delivery stands is kept in the store, so a delivery that fails (or an
//! invocation killed before it) is tried again by a later invocation, with backoff.
//! At least once: a kill between the receiver's answer and the write that records it
//! means one more delivery with the same id, which the receiver drops.

use super::io::{Body, HttpRequest, Io};
use super::records::storage;
use super::settings::Settings;
use super::wait::{Late, Limits};
use crate::checkpoint;
use crate::error::Error;
use crate::notify::{event_for, Delivery, Event};
use crate::upload::{State, Upload};
use std::rc::Rc;
use std::time::Duration;

/// Longest wait for a receiver's answer: a receiver should answer at once and work later.
const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers the event upload `up` owes, if one is due and there is time before
/// `deadline` (on [`Io::now`]). Returns where its delivery stands, `None` when nothing
/// is owed (no webhook configured, or the upload has not ended done or failed).
pub(crate) async fn deliver_due<I: Io>(io: &I, s: &Settings, up: &Upload, deadline: Duration) -> Result<Option<Delivery>, Error> {
    let (Some(target), Some(event)) = (&s.notify, event_for(up)) else { return Ok(None) };
    let mut delivery = match standing(io, up, &event).await? {
        d if !d.due(io.unix_now()) => return Ok(Some(d)),
        d => d,
    };
    let left = deadline.saturating_sub(io.now());
    if left.is_zero() {
        return Ok(Some(delivery));
    }
    let limits = Limits { hard: io.now() + left.min(RECEIVER_TIMEOUT), stall: RECEIVER_TIMEOUT };
    let request = HttpRequest {
        method: "POST",
        url: target.url.clone(),
        headers: target.headers(&event, io.unix_now()),
        body: Rc::new(event.body),
        timeout: Some(limits.stall),
    };
    let result = match limits.wait(io, io.send(request)).await {
        Ok(Ok(mut response)) => {
            // The answer's body is not needed; reading a little of it lets the
            // connection be reused, and a slow receiver is not waited for.
            let _ = limits.wait(io, response.body.chunk()).await;
            if (200..300).contains(&response.status) {
                Ok(())
            } else {
                Err(format!("the receiver answered {}", response.status))
            }
        }
        Ok(Err(e)) => Err(format!("the request failed: {e}")),
        Err(Late::Stall(_) | Late::Deadline) => Err("the receiver did not answer in time".into()),
    };
    delivery.attempted(io.unix_now(), result, target.retry_secs);
    let pending = checkpoint::notify_key(&up.id);
    if delivery.delivered_at.is_some() {
        io.kv_set(&checkpoint::notified_key(&up.id, event.ended), &delivery.encode()).await.map_err(storage)?;
        io.kv_delete(&pending).await.map_err(storage)?;
        if event.ended == "done" {
            // A failure told of earlier is superseded: done is the last word.
            io.kv_delete(&checkpoint::notified_key(&up.id, "failed")).await.map_err(storage)?;
        }
    } else {
        io.kv_set(&pending, &delivery.encode()).await.map_err(storage)?;
    }
    Ok(Some(delivery))
}

/// Where the delivery of `event` stands in the store.
async fn standing<I: Io>(io: &I, up: &Upload, event: &Event) -> Result<Delivery, Error> {
    let ours = |d: &Delivery| d.delivery_id == event.delivery_id;
    if let Some(bytes) = io.kv_get(&checkpoint::notified_key(&up.id, event.ended)).await.map_err(storage)? {
        match Delivery::decode(&bytes) {
            Some(d) if ours(&d) => return Ok(d),
            // Unreadable, yet written only once delivered.
            None if event.ended == "done" => return Ok(delivered(&event.delivery_id)),
            _ => {}
        }
    }
    let pending = io.kv_get(&checkpoint::notify_key(&up.id)).await.map_err(storage)?.and_then(|b| Delivery::decode(&b));
    Ok(pending.filter(ours).unwrap_or_else(|| Delivery::new(&event.delivery_id)))
}

/// Where the delivery of the event `up` owes stands, without trying it; `None` when
/// nothing is owed.
pub async fn delivery<I: Io>(io: &I, s: &Settings, up: &Upload) -> Result<Option<Delivery>, Error> {
    match (&s.notify, event_for(up)) {
        (Some(_), Some(event)) => Ok(Some(standing(io, up, &event).await?)),
        _ => Ok(None),
    }
}

/// Whether `up` may still owe its receiver an event, from a listing of keys alone: a
/// done upload is settled by its `notified/done` key; a failed one is read to tell
/// (its key may be of an earlier failure).
pub(crate) fn owed(s: &Settings, up: &Upload, keys: &[String]) -> bool {
    s.notify.is_some()
        && match up.state() {
            State::Done => !keys.contains(&checkpoint::notified_key(&up.id, "done")),
            State::Failed => true,
            _ => false,
        }
}

/// A delivered marker whose value cannot be read: it was delivered all the same.
fn delivered(delivery_id: &str) -> Delivery {
    let mut d = Delivery::new(delivery_id);
    d.attempts = 1;
    d.delivered_at = Some(0);
    d
}
