//! Authentication: the signature, the Timestamp window and Nonce replay.

use super::params::{Common, Query};
use super::reply::Reject;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use vod_uploader::protocol::Credentials;
use vod_uploader::sign;

/// Known key pairs and the replay state.
pub struct Auth {
    keys: HashMap<String, Credentials>,
    window_secs: i64,
    // (SecretId, Timestamp, Nonce) seen inside the window. Replay protection keys on
    // the pair the documents pair up (Nonce with Timestamp): a replayed request carries
    // both unchanged, while honest clients sending thousands of parts a minute with
    // random nonces do not collide by accident.
    seen: Mutex<HashSet<(String, i64, u64)>>,
}

impl Auth {
    /// Accepts the given key pairs; Timestamps within `window_secs` of now.
    pub fn new(credentials: impl IntoIterator<Item = Credentials>, window_secs: u64) -> Self {
        Auth {
            keys: credentials.into_iter().map(|c| (c.secret_id().to_owned(), c)).collect(),
            window_secs: window_secs as i64,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Checks a request's signature, freshness and nonce (-10002 on any failure).
    /// `host` is the request's Host header; a signature over the bare host name (no
    /// port), as the SDKs computed it, is accepted too.
    pub fn check(&self, c: &Common, method: &str, host: &str, path: &str, q: &Query, now: i64) -> Result<(), Reject> {
        let Some(creds) = self.keys.get(&c.secret_id) else {
            return Err(Reject::signature(format!("SecretId {:?} is not known", c.secret_id)));
        };
        let bare = if host.ends_with(']') {
            None // an IPv6 literal without a port
        } else {
            host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h)
        };
        let candidates = std::iter::once(host).chain(bare.filter(|b| !b.is_empty() && *b != host));
        let mut valid = false;
        for candidate in candidates {
            // An unknown SignatureMethod was already refused by the common checks.
            if sign::verify(creds.secret_key(), method, candidate, path, q.pairs(), &c.signature).unwrap_or(false) {
                valid = true;
                break;
            }
        }
        if !valid {
            return Err(Reject::signature(
                "Signature does not match the request (check the SecretKey, method, host, path and parameters)",
            ));
        }
        if (now - c.timestamp).abs() > self.window_secs {
            return Err(Reject::signature(format!(
                "Timestamp {} is outside the allowed window of ±{} s around the server's time {now}",
                c.timestamp, self.window_secs
            )));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            let oldest = now - self.window_secs;
            seen.retain(|(_, ts, _)| *ts >= oldest);
        }
        if !seen.insert((c.secret_id.clone(), c.timestamp, c.nonce)) {
            return Err(Reject::signature(format!(
                "Nonce {} with Timestamp {} was already used: a replayed request is refused",
                c.nonce, c.timestamp
            )));
        }
        Ok(())
    }
}
