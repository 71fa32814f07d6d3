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
    replay: Mutex<ReplayGuard>,
}

/// Whether a Timestamp is inside the window around `now`.
pub fn fresh(now: i64, timestamp: i64, window_secs: i64) -> bool {
    (now - timestamp).abs() <= window_secs
}

/// Remembers (SecretId, Timestamp, Nonce) seen inside the window. Replay protection
/// keys on the pair the documents pair up (Nonce with Timestamp): a replayed request
/// carries both unchanged, while honest clients sending thousands of parts a minute
/// with random nonces do not collide by accident.
pub struct ReplayGuard {
    seen: HashSet<(String, i64, u64)>,
    prune_above: usize,
}

impl ReplayGuard {
    /// Forgets entries older than the window once more than `prune_above` are kept.
    pub fn new(prune_above: usize) -> Self {
        ReplayGuard { seen: HashSet::new(), prune_above }
    }

    /// Records a use; `false` if the same (SecretId, Timestamp, Nonce) was seen.
    pub fn first_use(&mut self, secret_id: &str, timestamp: i64, nonce: u64, now: i64, window_secs: i64) -> bool {
        if self.seen.len() > self.prune_above {
            // Entries outside the window can never match again: their requests are
            // refused as stale before they get here.
            let oldest = now - window_secs;
            self.seen.retain(|(_, ts, _)| *ts >= oldest);
        }
        self.seen.insert((secret_id.to_owned(), timestamp, nonce))
    }

    /// How many uses are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The host name a `Host` value names without its port (`None` when it has none).
pub fn bare_host(host: &str) -> Option<&str> {
    if host.ends_with(']') {
        return None; // an IPv6 literal without a port
    }
    host.rsplit_once(':')
        .filter(|(h, port)| !h.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h)
}

impl Auth {
    /// Accepts the given key pairs; Timestamps within `window_secs` of now.
    pub fn new(credentials: impl IntoIterator<Item = Credentials>, window_secs: u64) -> Self {
        Auth {
            keys: credentials.into_iter().map(|c| (c.secret_id().to_owned(), c)).collect(),
            window_secs: window_secs as i64,
            replay: Mutex::new(ReplayGuard::new(100_000)),
        }
    }

    /// Checks a request's signature, freshness and nonce (-10002 on any failure).
    /// `host` is the request's Host header; a signature over the bare host name (no
    /// port), as the SDKs computed it, is accepted too.
    pub fn check(&self, c: &Common, method: &str, host: &str, path: &str, q: &Query, now: i64) -> Result<(), Reject> {
        let Some(creds) = self.keys.get(&c.secret_id) else {
            return Err(Reject::signature(format!("SecretId {:?} is not known", c.secret_id)));
        };
        let candidates = std::iter::once(host).chain(bare_host(host));
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
        if !fresh(now, c.timestamp, self.window_secs) {
            return Err(Reject::signature(format!(
                "Timestamp {} is outside the allowed window of ±{} s around the server's time {now}",
                c.timestamp, self.window_secs
            )));
        }
        let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        if !replay.first_use(&c.secret_id, c.timestamp, c.nonce, now, self.window_secs) {
            return Err(Reject::signature(format!(
                "Nonce {} with Timestamp {} was already used: a replayed request is refused",
                c.nonce, c.timestamp
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_boundaries() {
        assert!(fresh(1000, 700, 300) && fresh(1000, 1300, 300));
        assert!(!fresh(1000, 699, 300) && !fresh(1000, 1301, 300));
    }

    #[test]
    fn bare_hosts() {
        assert_eq!(bare_host("127.0.0.1:9000"), Some("127.0.0.1"));
        assert_eq!(bare_host("[::1]:9000"), Some("[::1]"));
        assert_eq!(bare_host("[::1]"), None);
        assert_eq!(bare_host("vod2.qcloud.com"), None);
        assert_eq!(bare_host("h:x"), None);
        assert_eq!(bare_host(":80"), None);
        assert_eq!(bare_host("h:"), None);
    }

    #[test]
    fn replay_guard_forgets_only_what_is_outside_the_window() {
        let mut g = ReplayGuard::new(3);
        for nonce in 1..=3 {
            assert!(g.first_use("id", 100, nonce, 1000, 300));
        }
        assert!(g.first_use("id", 950, 4, 1000, 300));
        assert_eq!(g.len(), 4, "no pruning while at most prune_above are kept");
        assert!(g.first_use("id", 960, 5, 1000, 300));
        assert_eq!(g.len(), 2, "the three stale entries are forgotten, the fresh one kept");
        assert!(!g.first_use("id", 950, 4, 1000, 300), "a fresh entry is still refused");
        assert!(g.first_use("other", 950, 4, 1000, 300), "per SecretId");
    }
}
