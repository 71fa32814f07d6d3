//! Bounded waits: every request, body chunk and backoff of an invocation races its
//! time limit and the stall limit, so an invocation always returns in time.

use super::io::Io;
use futures_util::future::{select, Either};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// Why a bounded wait ended without its result.
pub(crate) enum Late {
    /// The invocation's time is up.
    Deadline,
    /// The peer sent nothing for `stall_timeout`.
    Stall(Duration),
}

/// The invocation's time limits, copied into every wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// No wait goes past this (monotonic).
    pub(crate) hard: Duration,
    /// Longest single wait.
    pub(crate) stall: Duration,
}

impl Limits {
    /// Waits for `fut` until the deadline or the stall limit, whichever is first. At or
    /// past the deadline `fut` is still polled once: an answer already there is kept.
    pub(crate) async fn wait<I: Io, T>(self, io: &I, fut: impl Future<Output = T>) -> Result<T, Late> {
        let now = io.now();
        let (wait, late) = if now + self.stall < self.hard {
            (self.stall, Late::Stall(self.stall))
        } else {
            (self.hard.saturating_sub(now), Late::Deadline)
        };
        let timer = async move {
            if !wait.is_zero() {
                io.sleep(wait).await
            }
        };
        match select(pin!(fut), pin!(timer)).await {
            Either::Left((v, _)) => Ok(v),
            Either::Right(_) => Err(late),
        }
    }
}

/// `delay` plus up to half again, at random: retries of many invocations spread out.
pub(crate) fn jitter<I: Io>(io: &I, delay: Duration) -> Duration {
    delay + delay.mul_f64((io.random() % 1000) as f64 / 2000.0)
}
