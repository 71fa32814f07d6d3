//! Per-SecretId rate limits: a token bucket per (SecretId, action), refilled evenly
//! over a minute, holding at most one minute's allowance.

use super::params::Action;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Calls per minute per action; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// InitUpload per minute (documented: 100).
    pub init: u32,
    /// UploadPart per minute (documented: 10000).
    pub part: u32,
    /// FinishUpload per minute (documented: 100).
    pub finish: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { init: 100, part: 10_000, finish: 100 }
    }
}

impl Limits {
    fn of(&self, action: Action) -> u32 {
        match action {
            Action::InitUpload => self.init,
            Action::UploadPart => self.part,
            Action::FinishUpload => self.finish,
        }
    }
}

/// The buckets.
pub struct RateLimiter {
    limits: Limits,
    buckets: Mutex<HashMap<(String, Action), (f64, Instant)>>,
}

impl RateLimiter {
    /// Buckets for `limits`.
    pub fn new(limits: Limits) -> Self {
        RateLimiter { limits, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one call from the bucket; `Err(limit)` when it is empty.
    pub fn take(&self, secret_id: &str, action: Action, now: Instant) -> Result<(), u32> {
        let limit = self.limits.of(action);
        if limit == 0 {
            return Ok(());
        }
        let capacity = limit as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry((secret_id.to_owned(), action)).or_insert((capacity, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * capacity / 60.0).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(limit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_empties_refills_and_is_per_secret_and_action() {
        let r = RateLimiter::new(Limits { init: 3, part: 0, finish: 100 });
        let t0 = Instant::now();
        for _ in 0..3 {
            r.take("a", Action::InitUpload, t0).unwrap();
        }
        assert_eq!(r.take("a", Action::InitUpload, t0), Err(3));
        r.take("b", Action::InitUpload, t0).unwrap();
        r.take("a", Action::FinishUpload, t0).unwrap();
        (0..1000).for_each(|_| r.take("a", Action::UploadPart, t0).unwrap());
        // One call's worth of refill takes 20 s at 3 per minute.
        assert!(r.take("a", Action::InitUpload, t0 + Duration::from_secs(19)).is_err());
        assert!(r.take("a", Action::InitUpload, t0 + Duration::from_secs(41)).is_ok());
    }
}
