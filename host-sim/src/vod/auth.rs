//! Authentication: the signature, the Timestamp window, and replays.

use super::params::{Common, Query};
use super::reply::Reject;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use vod_uploader::protocol::Credentials;
use vod_uploader::sign;

/// Known key pairs and the replay state.
pub struct Auth {
    keys: HashMap<String, Credentials>,
    window_secs: i64,
    replays: Arc<Mutex<ReplayGuard>>,
}

/// Whether a Timestamp is inside the window around `now`.
pub fn fresh(now: i64, timestamp: i64, window_secs: i64) -> bool {
    (now - timestamp).abs() <= window_secs
}

/// The answer a signed request got, kept so that an identical repeat gets it again,
/// byte for byte: the JSON as sent. Only the answer is kept, never the request's body
/// (a part is up to 1 MiB; its answer is a few dozen bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The answer's `code`, for the log.
    pub code: i64,
    /// The JSON body as first sent.
    pub body: Bytes,
}

/// (SecretId, Signature): what names one signed request. The signature is an HMAC,
/// under the SecretId's key, of the method, host, path and every parameter (Timestamp
/// and Nonce included), and its Base64 is decoded canonically (one text per MAC), so
/// the same text means the same signed string: a different request cannot carry it
/// unless its signer made it so or found an HMAC collision. The SecretId is part of
/// the key so that clients can never meet in one entry.
type Key = (String, String);

/// Where a signed request stands.
enum Seen {
    /// Admitted and not answered yet; `done` wakes the repeats waiting for it.
    InFlight { done: Arc<Notify> },
    /// Answered with this.
    Answered(Remembered),
    /// Answered, but the answer was let go to keep within the memory budget.
    Forgotten,
}

struct Entry {
    /// The request's Timestamp (seconds): the entry is needed until it leaves the window.
    timestamp: i64,
    /// Which admission this entry belongs to (a key pruned and seen again gets a new one).
    ticket: u64,
    seen: Seen,
}

/// What the guard knows of a signed request.
#[derive(Debug)]
pub enum Sighting {
    /// Not seen inside the window: run it under this ticket, then
    /// [settle](ReplayGuard::settle) it.
    New(u64),
    /// An identical request is being run; wait on this, then ask again.
    InFlight(Arc<Notify>),
    /// Answered before: answer the repeat with this, changing nothing.
    Answered(Remembered),
    /// Answered before, but the answer is no longer kept.
    Forgotten,
}

/// Remembers every signed request seen inside the Timestamp window, keyed on its
/// signature, with its answer. A replay is the same signed request sent again, so it
/// gets the first answer and changes nothing. Distinct requests never collide here,
/// however their Timestamp and Nonce happen to coincide (clients draw Nonce from a
/// small range and send hundreds of requests in the same second).
///
/// Memory: an entry lives while its Timestamp is inside the window (a request outside
/// it is refused as stale before it gets here); stale entries are pruned once more than
/// `prune_above` are kept. The answers' bytes are held to `answer_budget`, oldest let go
/// first (a large InitUpload listParts is the only big answer); the entry itself stays,
/// so a repeat is still never run twice.
pub struct ReplayGuard {
    entries: HashMap<Key, Entry>,
    /// Answers in the order they were kept, for the budget: (key, ticket).
    answered: VecDeque<(Key, u64)>,
    answer_bytes: usize,
    answer_budget: usize,
    prune_above: usize,
    next_prune: usize,
    next_ticket: u64,
}

impl ReplayGuard {
    /// Prunes stale entries once more than `prune_above` are kept; keeps at most
    /// `answer_budget` bytes of answers.
    pub fn new(prune_above: usize, answer_budget: usize) -> Self {
        ReplayGuard {
            entries: HashMap::new(),
            answered: VecDeque::new(),
            answer_bytes: 0,
            answer_budget,
            prune_above,
            next_prune: prune_above,
            next_ticket: 0,
        }
    }

    /// Looks the signed request up; a request not seen is recorded as in flight.
    pub fn sight(&mut self, secret_id: &str, signature: &str, timestamp: i64, now: i64, window_secs: i64) -> Sighting {
        if self.entries.len() > self.next_prune {
            self.prune(now - window_secs);
        }
        let key = (secret_id.to_owned(), signature.to_owned());
        if let Some(entry) = self.entries.get(&key) {
            return match &entry.seen {
                Seen::InFlight { done } => Sighting::InFlight(done.clone()),
                Seen::Answered(answer) => Sighting::Answered(answer.clone()),
                Seen::Forgotten => Sighting::Forgotten,
            };
        }
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.entries.insert(key, Entry { timestamp, ticket, seen: Seen::InFlight { done: Arc::new(Notify::new()) } });
        Sighting::New(ticket)
    }

    /// Ends the run of `ticket`: with `Some(answer)` every repeat gets that answer;
    /// with `None` the request is forgotten, and a repeat runs as if it were the first
    /// (for answers that say nothing was done). Wakes the repeats waiting either way.
    pub fn settle(&mut self, secret_id: &str, signature: &str, ticket: u64, answer: Option<Remembered>) {
        let key = (secret_id.to_owned(), signature.to_owned());
        let Some(entry) = self.entries.get_mut(&key) else { return };
        let Seen::InFlight { done } = &entry.seen else { return };
        if entry.ticket != ticket {
            return;
        }
        let done = done.clone();
        match answer {
            Some(answer) => {
                self.answer_bytes += answer.body.len();
                entry.seen = Seen::Answered(answer);
                self.answered.push_back((key, ticket));
                self.keep_to_budget();
            }
            None => {
                self.entries.remove(&key);
            }
        }
        done.notify_waiters();
    }

    fn keep_to_budget(&mut self) {
        while self.answer_bytes > self.answer_budget {
            let Some((key, ticket)) = self.answered.pop_front() else { break };
            if let Some(entry) = self.entries.get_mut(&key).filter(|e| e.ticket == ticket) {
                if let Seen::Answered(answer) = &entry.seen {
                    self.answer_bytes -= answer.body.len();
                    entry.seen = Seen::Forgotten;
                }
            }
        }
    }

    fn prune(&mut self, oldest: i64) {
        // Entries outside the window can never match again: their requests are refused
        // as stale before they get here. Requests still running stay whatever their age.
        self.entries.retain(|_, e| matches!(e.seen, Seen::InFlight { .. }) || e.timestamp >= oldest);
        let entries = &self.entries;
        self.answered.retain(|(key, ticket)| entries.get(key).is_some_and(|e| e.ticket == *ticket && matches!(e.seen, Seen::Answered(_))));
        self.answer_bytes = self.entries.values().map(|e| if let Seen::Answered(a) = &e.seen { a.body.len() } else { 0 }).sum();
        // Pruning walks every entry: when most are fresh, wait for twice as many before
        // the next walk, so that a busy window costs O(1) per request on average.
        self.next_prune = self.prune_above.max(self.entries.len() * 2);
    }

    /// How many signed requests are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of answers kept.
    pub fn answer_bytes(&self) -> usize {
        self.answer_bytes
    }
}

/// How an authenticated request is to be served.
pub enum Admission {
    /// Its first sight: run it, then [settle](Ticket::settle) the ticket with its answer.
    First(Ticket),
    /// An identical repeat of an answered request: answer this, do nothing else.
    Repeat(Remembered),
}

/// The right to run a signed request once. Dropped unsettled (its connection closed
/// before it was answered), it releases the request, and an identical repeat waiting
/// for it runs it instead.
pub struct Ticket {
    replays: Arc<Mutex<ReplayGuard>>,
    secret_id: String,
    signature: String,
    ticket: u64,
    settled: bool,
}

impl Ticket {
    /// Records the answer repeats get (`None`: repeats run again; see
    /// [`ReplayGuard::settle`]).
    pub fn settle(mut self, answer: Option<Remembered>) {
        self.settled = true;
        lock(&self.replays).settle(&self.secret_id, &self.signature, self.ticket, answer);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            lock(&self.replays).settle(&self.secret_id, &self.signature, self.ticket, None);
        }
    }
}

fn lock(replays: &Mutex<ReplayGuard>) -> std::sync::MutexGuard<'_, ReplayGuard> {
    // Every change to the guard is made whole under the lock: a poisoned one is usable.
    replays.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host name a `Host` value names without its port (`None` when it has none).
pub fn bare_host(host: &str) -> Option<&str> {
    if host.ends_with(']') {
        return None; // an IPv6 literal without a port
    }
    host.rsplit_once(':').filter(|(h, port)| !h.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h)
}

/// Stale replay entries are pruned once more than this many are kept.
pub const PRUNE_ABOVE: usize = 100_000;
/// At most this many bytes of answers are kept for repeats.
pub const ANSWER_BUDGET: usize = 64 << 20;

impl Auth {
    /// Accepts the given key pairs; Timestamps within `window_secs` of now.
    pub fn new(credentials: impl IntoIterator<Item = Credentials>, window_secs: u64) -> Self {
        Auth {
            keys: credentials.into_iter().map(|c| (c.secret_id().to_owned(), c)).collect(),
            window_secs: window_secs as i64,
            replays: Arc::new(Mutex::new(ReplayGuard::new(PRUNE_ABOVE, ANSWER_BUDGET))),
        }
    }

    /// Checks a request's signature and freshness (-10002 on any failure), then says
    /// whether it is new or a repeat. `host` is the request's Host header; a signature
    /// over the bare host name (no port), as the SDKs computed it, is accepted too.
    ///
    /// A repeat that arrives while the identical request is still running waits for
    /// that one's answer and gets it: it is the same request, so it is owed the same
    /// answer, and refusing it with a retryable error would only have the client send
    /// it again until the first is done. If the first ends without an answer to keep
    /// (its connection closed, or nothing was done and retrying may succeed), the
    /// waiting repeat runs in its place.
    pub async fn admit(&self, c: &Common, method: &str, host: &str, path: &str, q: &Query, now: i64) -> Result<Admission, Reject> {
        self.check(c, method, host, path, q, now)?;
        loop {
            let running;
            let finished = {
                let mut replays = lock(&self.replays);
                match replays.sight(&c.secret_id, &c.signature, c.timestamp, now, self.window_secs) {
                    Sighting::New(ticket) => {
                        return Ok(Admission::First(Ticket {
                            replays: self.replays.clone(),
                            secret_id: c.secret_id.clone(),
                            signature: c.signature.clone(),
                            ticket,
                            settled: false,
                        }))
                    }
                    Sighting::Answered(answer) => return Ok(Admission::Repeat(answer)),
                    Sighting::Forgotten => {
                        return Err(Reject::signature(
                            "this signed request was already answered and its answer is no longer kept: a replayed request is refused (sign it again)",
                        ))
                    }
                    // Made before the lock is let go, so the wake-up cannot be missed.
                    Sighting::InFlight(done) => {
                        running = done;
                        running.notified()
                    }
                }
            };
            finished.await;
        }
    }

    /// Checks a request's signature and freshness (-10002 on any failure).
    fn check(&self, c: &Common, method: &str, host: &str, path: &str, q: &Query, now: i64) -> Result<(), Reject> {
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
            return Err(Reject::signature("Signature does not match the request (check the SecretKey, method, host, path and parameters)"));
        }
        if !fresh(now, c.timestamp, self.window_secs) {
            return Err(Reject::signature(format!(
                "Timestamp {} is outside the allowed window of ±{} s around the server's time {now}",
                c.timestamp, self.window_secs
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

    fn answer(text: &str) -> Option<Remembered> {
        Some(Remembered { code: 0, body: Bytes::from(text.to_owned()) })
    }

    fn ticket(s: Sighting) -> u64 {
        match s {
            Sighting::New(t) => t,
            other => panic!("not new: {other:?}"),
        }
    }

    #[test]
    fn replay_guard_keys_on_the_signature_and_keeps_the_first_answer() {
        let mut g = ReplayGuard::new(100, 1000);
        // Same Timestamp (and whatever Nonce): different signatures are different requests.
        let a = ticket(g.sight("id", "sigA", 100, 100, 300));
        let b = ticket(g.sight("id", "sigB", 100, 100, 300));
        assert!(matches!(g.sight("id", "sigA", 100, 100, 300), Sighting::InFlight(_)), "a repeat while running");
        g.settle("id", "sigA", a, answer("first"));
        match g.sight("id", "sigA", 100, 101, 300) {
            Sighting::Answered(r) => assert_eq!(r.body, "first"),
            other => panic!("{other:?}"),
        }
        // Another ticket (a stale one) cannot overwrite the answer.
        g.settle("id", "sigA", b, answer("second"));
        assert!(matches!(g.sight("id", "sigA", 100, 101, 300), Sighting::Answered(r) if r.body == "first"));
        // Settled with no answer: forgotten, the next sight runs it again.
        g.settle("id", "sigB", b, None);
        assert!(matches!(g.sight("id", "sigB", 100, 101, 300), Sighting::New(_)));
        // Per SecretId.
        assert!(matches!(g.sight("other", "sigA", 100, 101, 300), Sighting::New(_)));
        assert_eq!(g.answer_bytes(), 5);
    }

    #[tokio::test]
    async fn settling_wakes_the_repeats_waiting() {
        let mut g = ReplayGuard::new(100, 1000);
        let t = ticket(g.sight("id", "s", 1, 1, 300));
        let Sighting::InFlight(done) = g.sight("id", "s", 1, 1, 300) else { panic!() };
        let waiting = done.notified();
        g.settle("id", "s", t, answer("x"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.expect("woken");
    }

    #[test]
    fn answers_beyond_the_budget_are_let_go_oldest_first_but_still_never_run_twice() {
        let mut g = ReplayGuard::new(100, 10);
        for (sig, text) in [("1", "aaaa"), ("2", "bbbb"), ("3", "cccc")] {
            let t = ticket(g.sight("id", sig, 1, 1, 300));
            g.settle("id", sig, t, answer(text));
        }
        assert_eq!(g.answer_bytes(), 8);
        assert!(matches!(g.sight("id", "1", 1, 1, 300), Sighting::Forgotten));
        assert!(matches!(g.sight("id", "2", 1, 1, 300), Sighting::Answered(_)));
        assert!(matches!(g.sight("id", "3", 1, 1, 300), Sighting::Answered(_)));
    }

    #[test]
    fn replay_guard_forgets_only_what_is_outside_the_window() {
        let mut g = ReplayGuard::new(3, 1000);
        for sig in ["1", "2"] {
            let t = ticket(g.sight("id", sig, 100, 1000, 300));
            g.settle("id", sig, t, answer("old"));
        }
        ticket(g.sight("id", "running", 100, 1000, 300));
        let t = ticket(g.sight("id", "4", 950, 1000, 300));
        g.settle("id", "4", t, answer("fresh"));
        assert_eq!(g.len(), 4, "no pruning while at most prune_above are kept");
        ticket(g.sight("id", "5", 960, 1000, 300));
        assert_eq!(g.len(), 3, "the two stale answers are forgotten; the fresh one and both running kept");
        assert_eq!(g.answer_bytes(), 5);
        assert!(matches!(g.sight("id", "4", 950, 1000, 300), Sighting::Answered(_)), "a fresh entry is still known");
        assert!(matches!(g.sight("id", "running", 100, 1000, 300), Sighting::InFlight(_)), "running entries stay");
    }
}
