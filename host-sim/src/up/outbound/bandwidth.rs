//! The instance's outbound bandwidth cap (`--outbound-mbps`): an instance of a
//! platform gets a share of its machine's network, not the loopback's gigabytes per
//! second, and an uploader tuned on loopback must still fit its budget there.
//!
//! Two token buckets, one per direction (request bodies sent, response bodies
//! received), shared by every concurrent outgoing request of the instance. A body's
//! piece is passed on once the bucket has the tokens for it. The bucket is plain
//! arithmetic on a clock the caller gives ([`TokenBucket::reserve`]), so its tests run
//! on a virtual clock; [`Throttled`] is the only part that sleeps.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The smallest burst: a few network packets' worth, so that small requests and
/// headers-sized bodies do not wait on a slow cap.
const MIN_BURST: f64 = 64.0 * 1024.0;

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes' worth.
/// Reservations larger than what it holds go into debt, which later reservations wait
/// behind: the long-run rate is exactly `rate` however the pieces are sized.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// May be negative: bytes reserved that the rate has not yet paid for.
    tokens: f64,
    /// The clock reading of the last reservation.
    last: Duration,
}

impl TokenBucket {
    /// A full bucket of `burst` bytes filling at `rate` bytes per second (both > 0).
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket { rate, burst, tokens: burst, last: Duration::ZERO }
    }

    /// The bucket for `mbps` megabits per second (10^6 bits), with a burst of 50 ms of
    /// traffic (at least 64 KiB).
    pub fn for_mbps(mbps: f64) -> TokenBucket {
        let rate = mbps * 1e6 / 8.0;
        TokenBucket::new(rate, (rate * 0.05).max(MIN_BURST))
    }

    /// Bytes per second.
    #[cfg(test)]
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Reserves `bytes` at clock reading `now` (a reading earlier than the last one
    /// counts as the last: the clock never runs back); how long after `now` they may
    /// go.
    pub fn reserve(&mut self, now: Duration, bytes: u64) -> Duration {
        let now = now.max(self.last);
        let earned = (now - self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One direction's bucket, shared by an instance's requests, on tokio's clock.
#[derive(Debug)]
pub struct Shared {
    bucket: Mutex<TokenBucket>,
    origin: Instant,
}

impl Shared {
    fn new(bucket: TokenBucket) -> Arc<Shared> {
        Arc::new(Shared { bucket: Mutex::new(bucket), origin: Instant::now() })
    }

    fn reserve(&self, bytes: u64) -> Duration {
        let now = self.origin.elapsed();
        self.bucket.lock().unwrap_or_else(|p| p.into_inner()).reserve(now, bytes)
    }
}

/// The instance's two buckets.
#[derive(Debug, Clone)]
pub struct Bandwidth {
    /// Request bodies sent.
    pub up: Arc<Shared>,
    /// Response bodies received.
    pub down: Arc<Shared>,
}

impl Bandwidth {
    /// `mbps` each way; `None` unless `mbps` is a positive, finite number.
    pub fn new(mbps: f64) -> Option<Bandwidth> {
        (mbps.is_finite() && mbps > 0.0)
            .then(|| Bandwidth { up: Shared::new(TokenBucket::for_mbps(mbps)), down: Shared::new(TokenBucket::for_mbps(mbps)) })
    }
}

/// A body whose data frames each wait for their tokens before they are passed on.
pub struct Throttled<B> {
    inner: B,
    bucket: Arc<Shared>,
    /// A frame that has its tokens reserved and waits for `sleep`.
    held: Option<(Frame<Bytes>, Pin<Box<Sleep>>)>,
}

impl<B> Throttled<B> {
    /// `inner`, paced by `bucket`.
    pub fn new(inner: B, bucket: Arc<Shared>) -> Throttled<B> {
        Throttled { inner, bucket, held: None }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Throttled<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some((_, sleep)) = self.held.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (frame, _) = self.held.take().expect("held");
            return Poll::Ready(Some(Ok(frame)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, |d| d.len() as u64);
                let wait = if bytes > 0 { self.bucket.reserve(bytes) } else { Duration::ZERO };
                if wait.is_zero() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                self.held = Some((frame, Box::pin(tokio::time::sleep(wait))));
                self.poll_frame(cx)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One sender after another on a virtual clock: each piece is reserved when the
    /// sender is ready (at `ready`, or when its previous piece went) and goes `wait`
    /// later. Returns the instants pieces went, with their sizes.
    fn run(bucket: &mut TokenBucket, pieces: &[(u64, Duration)]) -> Vec<(Duration, u64)> {
        let mut now = Duration::ZERO;
        let mut sent = Vec::new();
        for &(bytes, gap) in pieces {
            now += gap;
            now += bucket.reserve(now, bytes);
            sent.push((now, bytes));
        }
        sent
    }

    #[test]
    fn mbps_are_megabits() {
        let b = TokenBucket::for_mbps(8.0);
        assert_eq!(b.rate(), 1_000_000.0);
        assert!(Bandwidth::new(0.0).is_none() && Bandwidth::new(f64::NAN).is_none() && Bandwidth::new(-1.0).is_none());
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_paces() {
        let mut b = TokenBucket::new(1000.0, 500.0);
        assert_eq!(b.reserve(Duration::ZERO, 500), Duration::ZERO);
        assert_eq!(b.reserve(Duration::ZERO, 1000), Duration::from_secs(1));
        // Another caller at the same instant queues behind that debt.
        assert_eq!(b.reserve(Duration::ZERO, 100), Duration::from_millis(1100));
        // An idle bucket refills to its burst, no more.
        assert_eq!(b.reserve(Duration::from_secs(100), 500), Duration::ZERO);
        assert_eq!(b.reserve(Duration::from_secs(100), 1), Duration::from_millis(1));
    }

    proptest! {
        /// Never faster than the cap: by any instant T, at most burst + rate x T bytes
        /// have gone, whatever the piece sizes and pauses.
        #[test]
        fn never_faster_than_the_rate(
            rate in 1_000.0f64..1e9,
            burst in 1.0f64..1e6,
            pieces in proptest::collection::vec((0u64..2_000_000, 0u64..50_000), 1..200),
        ) {
            let mut bucket = TokenBucket::new(rate, burst);
            let pieces: Vec<(u64, Duration)> = pieces.into_iter().map(|(b, us)| (b, Duration::from_micros(us))).collect();
            let mut total = 0u64;
            for (at, bytes) in run(&mut bucket, &pieces) {
                total += bytes;
                let allowed = burst + rate * at.as_secs_f64();
                prop_assert!(total as f64 <= allowed * (1.0 + 1e-9) + 1.0, "{total} bytes by {at:?}, allowed {allowed}");
            }
        }

        /// Never slower than the cap when busy: a sender that always has data finishes
        /// S bytes at (S - burst) / rate, not later.
        #[test]
        fn a_busy_sender_gets_the_whole_rate(
            rate in 1_000.0f64..1e9,
            burst in 1.0f64..1e6,
            sizes in proptest::collection::vec(1u64..2_000_000, 1..200),
        ) {
            let mut bucket = TokenBucket::new(rate, burst);
            let pieces: Vec<(u64, Duration)> = sizes.iter().map(|&b| (b, Duration::ZERO)).collect();
            let sent = run(&mut bucket, &pieces);
            let total: u64 = sizes.iter().sum();
            let expected = ((total as f64 - burst).max(0.0)) / rate;
            let finished = sent.last().unwrap().0.as_secs_f64();
            prop_assert!((finished - expected).abs() <= 1e-6 + expected * 1e-9, "finished at {finished}, expected {expected}");
        }

        /// Shared fairly in total: two senders interleaving on one bucket together get
        /// the rate of one, never more.
        #[test]
        fn concurrent_senders_share_one_rate(
            sizes in proptest::collection::vec(1u64..500_000, 2..100),
        ) {
            let (rate, burst) = (1e6, 65_536.0);
            let mut bucket = TokenBucket::new(rate, burst);
            // Two senders: each reserves at the instant its previous piece went.
            let mut ready = [Duration::ZERO; 2];
            let mut total = 0u64;
            let mut last = Duration::ZERO;
            for &bytes in &sizes {
                let who = if ready[0] <= ready[1] { 0 } else { 1 };
                let at = ready[who];
                ready[who] = at + bucket.reserve(at, bytes);
                total += bytes;
                last = last.max(ready[who]);
            }
            prop_assert!(total as f64 <= burst + rate * last.as_secs_f64() + 1.0);
        }
    }
}
