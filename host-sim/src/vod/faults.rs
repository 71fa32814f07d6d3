//! Fault injection, reproducible from a seed.
//!
//! Whether a request meets a fault is a pure function of the seed, the request's
//! identity (action, fileSha, offset) and how many times that identity was seen
//! before, so a run is repeatable whatever order concurrent requests arrive in.

use crate::sample::{fnv1a, splitmix64};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum FaultKind {
    /// A retryable protocol error (-10004 or -10005, canRetry 1) before acting.
    Error,
    /// HTTP 503 from "the gateway", before the service acted.
    Http503,
    /// HTTP 500 after the service acted (the call took effect, the answer is lost).
    Http500,
    /// The connection is closed before the service acted.
    DropBefore,
    /// The connection is closed after the service acted.
    DropAfter,
    /// The answer is delayed by the slow-answer delay, then given normally.
    Slow,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 6] =
        [FaultKind::Error, FaultKind::Http503, FaultKind::Http500, FaultKind::DropBefore, FaultKind::DropAfter, FaultKind::Slow];
}

/// The fault plan.
#[derive(Debug)]
pub struct Faults {
    rate: f64,
    kinds: Vec<FaultKind>,
    seed: u64,
    /// How long a slow answer waits.
    pub slow: Duration,
    seen: Mutex<HashMap<String, u64>>,
}

impl Faults {
    /// `rate` in 0..=1 of requests meet one of `kinds` (all kinds when empty).
    pub fn new(rate: f64, kinds: &[FaultKind], seed: u64, slow: Duration) -> Self {
        let kinds = if kinds.is_empty() { FaultKind::ALL.to_vec() } else { kinds.to_vec() };
        Faults { rate: rate.clamp(0.0, 1.0), kinds, seed, slow, seen: Mutex::new(HashMap::new()) }
    }

    /// No faults.
    pub fn none() -> Self {
        Self::new(0.0, &[], 0, Duration::ZERO)
    }

    /// The fault, if any, for the next request with this identity.
    pub fn decide(&self, identity: &str) -> Option<FaultKind> {
        if self.rate <= 0.0 {
            return None;
        }
        let attempt = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let n = seen.entry(identity.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let roll = splitmix64(self.seed ^ splitmix64(fnv1a(identity) ^ splitmix64(attempt)));
        // Top 53 bits as a uniform number in [0, 1).
        let unit = (roll >> 11) as f64 / (1u64 << 53) as f64;
        if unit >= self.rate {
            return None;
        }
        Some(self.kinds[(splitmix64(roll) % self.kinds.len() as u64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults_and_rate_is_respected() {
        let run = |seed| {
            let f = Faults::new(0.3, &[], seed, Duration::ZERO);
            (0..2000).map(|i| f.decide(&format!("UploadPart/x/{}", i % 100))).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|f| f.is_some()).count();
        assert!((450..750).contains(&hits), "{hits}");
        let kinds: std::collections::HashSet<_> = run(7).into_iter().flatten().collect();
        assert_eq!(kinds.len(), FaultKind::ALL.len());
    }

    #[test]
    fn narrowed_kinds_and_zero_rate() {
        let f = Faults::new(1.0, &[FaultKind::Http503], 1, Duration::ZERO);
        assert!((0..50).all(|i| f.decide(&i.to_string()) == Some(FaultKind::Http503)));
        assert!((0..50).all(|i| Faults::none().decide(&i.to_string()).is_none()));
    }
}
