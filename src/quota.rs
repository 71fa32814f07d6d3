//! Platform quotas shared by every instance of a deployment: outbound requests per
//! hour (Fermyon Cloud allows 500) and key-value writes per second (Akamai Functions
//! allows 50). The arithmetic only; [`crate::engine::Metered`] does the I/O.
//!
//! Instances share nothing but the store, which has no compare-and-swap or increment,
//! so usage is counted in claims: each invocation writes its own key saying how much it
//! claims, then sums every live claim and keeps its own only if the sum fits the limit
//! (else shrinks it to what fits). An increase is only ever kept after a read that
//! follows its write, so of two claims that race, the later reader sees the other:
//! the sum of kept claims never exceeds the limit, whatever the interleaving.
//! - Outbound requests: claims per fixed unix hour (`vuq/out/{hour}/{owner}` = a
//!   count), taken in chunks as requests go out and trimmed to what was used at the
//!   end of the invocation. A killed invocation's unused claim is lost for that hour.
//! - Key-value writes: a claim is a rate for the invocation's lifetime
//!   (`vuq/kvw/{until}/{owner}` = a rate); the invocation keeps its writes within its
//!   rate in every unix second, the claim's own write included, and when it ends its
//!   claim stays until that second is over. Only a claim that lost a race (written,
//!   then found not to fit, and removed) costs writes outside every rate: those come
//!   out of a margin of the limit that rates never take.

/// Prefix of every quota key.
pub const KEY_PREFIX: &str = "vuq/";

/// Outbound requests claimed at a time, at most: a claim an invocation does not use up
/// is lost for the hour when it is killed, so a small hourly limit is claimed in
/// smaller pieces (a sixteenth of it).
pub fn outbound_chunk(per_hour: u64) -> u64 {
    (per_hour / 16).clamp(1, 32)
}

/// The deployment's quotas (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Outbound HTTP requests per unix hour, over all instances.
    pub outbound_per_hour: Option<u64>,
    /// Key-value writes (sets and deletes) per unix second, over all instances.
    pub kv_writes_per_second: Option<u64>,
}

/// The unix hour of `unix` seconds.
pub fn hour(unix: u64) -> u64 {
    unix / 3600
}

/// The key of `owner`'s outbound claim in `hour`.
pub fn outbound_key(hour: u64, owner: &str) -> String {
    format!("{KEY_PREFIX}out/{hour}/{owner}")
}

/// The hour and owner of an outbound claim's key.
pub fn outbound_of_key(key: &str) -> Option<(u64, &str)> {
    let (hour, owner) = key.strip_prefix(KEY_PREFIX)?.strip_prefix("out/")?.split_once('/')?;
    Some((hour.parse().ok()?, owner))
}

/// The key of `owner`'s key-value write rate claim, holding until `until` (unix
/// seconds; in the key, so that a listing tells live claims without reading them).
pub fn kv_rate_key(until: u64, owner: &str) -> String {
    format!("{KEY_PREFIX}kvw/{until}/{owner}")
}

/// Until when a rate claim's key holds, and its owner.
pub fn kv_rate_of_key(key: &str) -> Option<(u64, &str)> {
    let (until, owner) = key.strip_prefix(KEY_PREFIX)?.strip_prefix("kvw/")?.split_once('/')?;
    Some((until.parse().ok()?, owner)).filter(|(_, o)| !o.is_empty())
}

/// A stored claim's count (`0` for anything unreadable).
pub fn decode_count(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The part of a write limit no rate claim takes: the claims' own writes come out of it.
pub fn kv_margin(limit: u64) -> u64 {
    (limit / 5).max(1)
}

/// The rate one invocation asks for: a quarter of what claims may take (four
/// invocations at once get it all; more share what is left), at least one write per
/// second, at most ten (an invocation's closing second, its last checkpoint and leases
/// given back, takes about that).
pub fn kv_share(limit: u64) -> u64 {
    (limit.saturating_sub(kv_margin(limit)) / 4).clamp(1, 10)
}

/// What a claim may be, given what the others claim: `want`, or what is left of
/// `limit`, whichever is less.
pub fn fit(limit: u64, others: u64, want: u64) -> u64 {
    want.min(limit.saturating_sub(others))
}

/// Outbound requests an upload still needs, roughly: a request per part left, the
/// session's opening and finishing, and a read of the source per range left.
pub fn requests_left(parts_left: u64, source_reads: u64, calls: u64) -> u64 {
    parts_left + source_reads + calls
}

/// The earliest unix second at which the last of `left` requests can go out, when
/// `free` more fit in the hour of `now` and `per_hour` in each hour after.
pub fn eta(now: u64, left: u64, free: u64, per_hour: u64) -> u64 {
    if left <= free {
        return now;
    }
    let hours_after = (left - free).div_ceil(per_hour.max(1));
    (hour(now) + hours_after) * 3600
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(outbound_of_key(&outbound_key(500_000, "ab")), Some((500_000, "ab")));
        assert_eq!(kv_rate_of_key(&kv_rate_key(77, "ab")), Some((77, "ab")));
        assert_eq!(outbound_of_key("vu1/x"), None);
        assert_eq!(decode_count(b"17"), 17);
        assert_eq!(decode_count(b"junk"), 0);
    }

    #[test]
    fn the_issue_example_finishes_in_its_third_hour() {
        // 1 GiB in 1 MiB parts: about 1,030 requests at 500 an hour, from an hour's start.
        let start = 1_800_000_000 / 3600 * 3600;
        let eta = eta(start, 1030, 500, 500);
        assert_eq!(eta, start + 2 * 3600, "the last requests go out in the third hour");
    }

    #[test]
    fn shares() {
        assert_eq!((kv_margin(50), kv_share(50)), (10, 10));
        assert_eq!((kv_margin(1), kv_share(1)), (1, 1));
        assert_eq!(kv_share(10_000), 10);
    }

    proptest! {
        /// Claims taken one after another with [`fit`] never sum past the limit.
        #[test]
        fn fitted_claims_stay_within_the_limit(limit in 1u64..2000, wants in prop::collection::vec(0u64..100, 0..60)) {
            let mut sum = 0;
            for want in wants {
                let got = fit(limit, sum, want);
                prop_assert!(got <= want);
                sum += got;
                prop_assert!(sum <= limit);
            }
        }

        /// The ETA is within the hour that has room for the last request.
        #[test]
        fn eta_is_where_the_last_request_fits(now in 0u64..1u64 << 40, left in 0u64..100_000, free in 0u64..1000, per_hour in 1u64..1000) {
            let free = free.min(per_hour);
            let at = eta(now, left, free, per_hour);
            prop_assert!(at >= now);
            let hours = hour(at) - hour(now);
            let fits = free + hours * per_hour;
            prop_assert!(left <= fits);
            if hours > 0 { prop_assert!(left > free + (hours - 1) * per_hour); }
        }
    }
}
