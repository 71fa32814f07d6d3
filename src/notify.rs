//! The completion webhook, as plain data: which event an ended upload owes its
//! receiver, the body and signature of a delivery, and when a failed delivery is tried
//! again. Sending and storing are the engine's (`engine/notify.rs`).
//!
//! A delivery is signed the way Stripe and GitHub sign theirs: the header
//! `vod-uploader-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! so a receiver checks the body and refuses a replay of an old one by its time. Every
//! delivery of one event carries the same `vod-uploader-delivery` id, for the receiver
//! to drop the repeats an at-least-once sender makes.

use crate::upload::{status, State, Upload};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

/// Where completion events go.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// The receiver's URL (under an allowed outbound host).
    pub url: String,
    /// The first wait before a failed delivery is tried again, doubling up to an hour.
    pub retry_secs: u64,
    secret: Vec<u8>,
}

impl NotifyTarget {
    /// A receiver at `url`, signed with `secret`; a failed delivery is tried again
    /// after [`DEFAULT_RETRY_SECS`], doubling.
    pub fn new(url: impl Into<String>, secret: impl AsRef<[u8]>) -> NotifyTarget {
        NotifyTarget { url: url.into(), retry_secs: DEFAULT_RETRY_SECS, secret: secret.as_ref().to_vec() }
    }

    /// The headers of one delivery of `event`, signed at `unix` seconds.
    pub fn headers(&self, event: &Event, unix: u64) -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "application/json".into()),
            ("vod-uploader-event".into(), event.kind.into()),
            ("vod-uploader-delivery".into(), event.delivery_id.clone()),
            ("vod-uploader-signature".into(), signature_header(&self.secret, unix, &event.body)),
        ]
    }
}

/// The secret never shows, not even in a debug print of the settings.
impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyTarget").field("url", &self.url).field("secret", &"<redacted>").finish()
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>`.
pub fn signature_header(secret: &[u8], unix: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", crate::hex::encode(&mac.finalize().into_bytes()))
}

/// The event an ended upload owes its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `upload.done` or `upload.failed`.
    pub kind: &'static str,
    /// `done` or `failed`.
    pub ended: &'static str,
    /// Stable for every delivery of this event: `{id}.done`, or `{id}.failed.{ended_at}`
    /// (an upload retried after failing and failing again owes a new event).
    pub delivery_id: String,
    /// The JSON body, the same bytes on every attempt.
    pub body: Vec<u8>,
}

/// The event upload `up` owes, if it has ended done or failed (a cancel was asked for
/// by the user, who needs no telling).
pub fn event_for(up: &Upload) -> Option<Event> {
    let ended_at = up.ended_at()?;
    let (kind, ended, delivery_id) = match up.state() {
        State::Done => ("upload.done", "done", format!("{}.done", up.id)),
        State::Failed => ("upload.failed", "failed", format!("{}.failed.{ended_at}", up.id)),
        _ => return None,
    };
    // The status's own fields (one place says how an upload is shown), those a
    // receiver needs, plus what makes it an event.
    let status = status(up);
    let mut body = json!({ "type": kind, "deliveryId": delivery_id, "endedAt": ended_at });
    let map = body.as_object_mut().expect("an object");
    for key in ["id", "state", "source", "fileName", "fileType", "size", "createdAt", "fileSha", "fileId", "url", "tags", "error"] {
        if let Some(value) = status.get(key) {
            map.insert(key.into(), value.clone());
        }
    }
    Some(Event { kind, ended, delivery_id, body: serde_json::to_vec(&body).expect("JSON serializes") })
}

/// Attempts before a delivery is given up (about a day and a half of backoff).
pub const MAX_ATTEMPTS: u32 = 40;

/// The first wait before a failed delivery is tried again.
pub const DEFAULT_RETRY_SECS: u64 = 10;

/// The longest wait between attempts.
const MAX_WAIT_SECS: u64 = 3600;

/// Where the delivery of one event stands, as stored while it is not yet delivered
/// (`vu1/{id}/notify`) and once it is (`vu1/{id}/notified/{done|failed}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The event's delivery id.
    pub delivery_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (unix seconds); 0 once delivered or given up.
    pub next_at: u64,
    /// When the receiver took it (a 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<u64>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Delivery {
    /// Nothing tried yet.
    pub fn new(delivery_id: impl Into<String>) -> Delivery {
        Delivery { delivery_id: delivery_id.into(), attempts: 0, next_at: 0, delivered_at: None, last_error: None }
    }

    /// Whether an attempt is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        self.delivered_at.is_none() && !self.given_up() && self.next_at <= now
    }

    /// Whether the attempts are used up.
    pub fn given_up(&self) -> bool {
        self.delivered_at.is_none() && self.attempts >= MAX_ATTEMPTS
    }

    /// After an attempt at `now`: delivered, or the next try after a backoff that
    /// doubles from `retry_secs` to at most an hour.
    pub fn attempted(&mut self, now: u64, result: Result<(), String>, retry_secs: u64) {
        self.attempts += 1;
        match result {
            Ok(()) => {
                self.delivered_at = Some(now);
                self.next_at = 0;
                self.last_error = None;
            }
            Err(e) => {
                let wait = retry_secs.max(1).saturating_mul(1 << self.attempts.saturating_sub(1).min(20)).min(MAX_WAIT_SECS);
                self.next_at = if self.given_up() { 0 } else { now + wait };
                self.last_error = Some(e);
            }
        }
    }

    /// Serializes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("deliveries serialize")
    }

    /// Reads a stored delivery; `None` for bytes that are not one (a delivery is only
    /// bookkeeping: an unreadable one is tried again, never an error).
    pub fn decode(bytes: &[u8]) -> Option<Delivery> {
        serde_json::from_slice(bytes).ok()
    }

    /// As the status shows it.
    pub fn status(&self) -> serde_json::Value {
        let mut v = json!({ "deliveryId": self.delivery_id, "delivered": self.delivered_at.is_some(), "attempts": self.attempts });
        let map = v.as_object_mut().expect("an object");
        if let Some(at) = self.delivered_at {
            map.insert("deliveredAt".into(), json!(at));
        }
        if self.given_up() {
            map.insert("gaveUp".into(), json!(true));
        } else if self.delivered_at.is_none() && self.next_at > 0 {
            map.insert("nextAt".into(), json!(self.next_at));
        }
        if let Some(e) = &self.last_error {
            map.insert("lastError".into(), json!(e));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently:
    /// `python3 -c "import hmac,hashlib;print(hmac.new(b'whsec_test',b'1700000000.{\"a\":1}',hashlib.sha256).hexdigest())"`
    #[test]
    fn signature_matches_an_independent_hmac() {
        assert_eq!(
            signature_header(b"whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn backoff_doubles_to_an_hour_and_gives_up() {
        let mut d = Delivery::new("x.done");
        assert!(d.due(0));
        let mut waits = vec![];
        for i in 0..MAX_ATTEMPTS {
            let now = 1000 * u64::from(i);
            d.attempted(now, Err("503".into()), DEFAULT_RETRY_SECS);
            if d.next_at > 0 {
                waits.push(d.next_at - now);
            }
        }
        assert_eq!(&waits[..5], &[10, 20, 40, 80, 160]);
        assert!(waits.iter().all(|&w| w <= 3600) && waits.last() == Some(&3600));
        assert!(d.given_up() && !d.due(u64::MAX));
        assert_eq!(d.status()["gaveUp"], true);
        let mut ok = Delivery::new("x.done");
        ok.attempted(5, Err("timeout".into()), DEFAULT_RETRY_SECS);
        assert!(!ok.due(14) && ok.due(15));
        ok.attempted(15, Ok(()), DEFAULT_RETRY_SECS);
        assert!(!ok.due(u64::MAX) && ok.delivered_at == Some(15) && ok.last_error.is_none());
        assert_eq!(Delivery::decode(&ok.encode()), Some(ok));
        assert_eq!(Delivery::decode(b"not json"), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = NotifyTarget::new("https://hooks.example/vod", "s3cr3t-value");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
