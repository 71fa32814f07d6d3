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
//! - Outbound requests: claims per fixed unix hour (`vuq/out/{hour}/{until}/{owner}`
//!   = a count), taken in chunks as requests go out and trimmed to what was used at the
//!   end of the invocation. A killed invocation's unused claim is lost for that hour.
//!   `until` is when its owner's life ends: after that (and [`SKEW_SECS`]) the claim
//!   can no longer change. So the claims of an hour are folded, to keep its keys few
//!   however many invocations it has: `vuq/out/{hour}/upto/{t}` holds the sum of every
//!   claim of the hour whose `until` is at most `t`, and covers them (a reader adds the
//!   latest fold to the claims after its `t` and ignores the rest). A fold is written
//!   before the claims it covers are removed, and its value depends only on `t` and
//!   those final claims: two folders racing to `t` write the same value, and a folder
//!   that finds a key it listed gone (another fold removed it) writes nothing.
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

/// How far the clocks of two instances may disagree, in seconds: a claim is taken as
/// final only this long after its owner's life ended.
pub const SKEW_SECS: u64 = 10;

/// Final claims of one hour that the next claimer folds into one.
pub const FOLD_AT: usize = 8;

/// The key of `owner`'s outbound claim in `hour`; `until`, when its owner's life ends
/// (unix seconds).
pub fn outbound_key(hour: u64, until: u64, owner: &str) -> String {
    format!("{KEY_PREFIX}out/{hour}/{until}/{owner}")
}

/// The key of the fold of `hour`'s claims up to `until` `upto`.
pub fn fold_key(hour: u64, upto: u64) -> String {
    format!("{KEY_PREFIX}out/{hour}/upto/{upto}")
}

/// The hour and `upto` of a fold's key.
pub fn fold_of_key(key: &str) -> Option<(u64, u64)> {
    let (hour, upto) = key.strip_prefix(KEY_PREFIX)?.strip_prefix("out/")?.split_once("/upto/")?;
    Some((hour.parse().ok()?, upto.parse().ok()?))
}

/// The `upto` a fold at unix time `now` goes to: claims that ended before it are final
/// however the instances' clocks differ (rounded down, so that folders agree).
pub fn fold_upto(now: u64) -> u64 {
    now.saturating_sub(SKEW_SECS) / 5 * 5
}

/// How one hour's outbound claims stand in a listing of the store's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourClaims {
    /// The latest fold, if any: (key, upto).
    pub fold: Option<(String, u64)>,
    /// The claims it does not cover (key, until).
    pub claims: Vec<(String, u64, String)>,
    /// Keys a later fold covers (older folds and the claims they cover), to remove.
    pub covered: Vec<String>,
}

impl HourClaims {
    /// Reads `hour`'s claims from a listing.
    pub fn of(keys: &[String], hour: u64) -> HourClaims {
        let fold = keys
            .iter()
            .filter_map(|k| fold_of_key(k).filter(|(h, _)| *h == hour).map(|(_, upto)| (k.clone(), upto)))
            .max_by_key(|(_, upto)| *upto);
        let upto = fold.as_ref().map(|f| f.1);
        let mut view = HourClaims { fold, ..HourClaims::default() };
        for key in keys {
            if let Some(claim) = outbound_of_key(key).filter(|c| c.hour == hour) {
                if upto.is_some_and(|t| claim.until <= t) {
                    view.covered.push(key.clone());
                } else {
                    view.claims.push((key.clone(), claim.until, claim.owner.to_owned()));
                }
            } else if fold_of_key(key).is_some_and(|(h, t)| h == hour && Some(t) < upto) {
                view.covered.push(key.clone());
            }
        }
        view
    }
}

/// An outbound claim's key, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundKey<'a> {
    /// The unix hour it counts in.
    pub hour: u64,
    /// When its owner's life ends.
    pub until: u64,
    /// Who wrote it.
    pub owner: &'a str,
}

/// The hour of an outbound claim's or fold's key, whatever its release wrote after it
/// (for the sweep of hours past).
pub fn outbound_hour_of_key(key: &str) -> Option<u64> {
    key.strip_prefix(KEY_PREFIX)?.strip_prefix("out/")?.split('/').next()?.parse().ok()
}

/// The hour, end and owner of an outbound claim's key.
pub fn outbound_of_key(key: &str) -> Option<OutboundKey<'_>> {
    let (hour, rest) = key.strip_prefix(KEY_PREFIX)?.strip_prefix("out/")?.split_once('/')?;
    let (until, owner) = rest.split_once('/')?;
    Some(OutboundKey { hour: hour.parse().ok()?, until: until.parse().ok()?, owner }).filter(|k| !k.owner.is_empty())
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
        let key = outbound_key(500_000, 1_800_000_010, "ab");
        assert_eq!(outbound_of_key(&key), Some(OutboundKey { hour: 500_000, until: 1_800_000_010, owner: "ab" }));
        // Keys of the first release (no `until`) are not claims any more.
        assert_eq!(outbound_of_key("vuq/out/500000/ab"), None);
        assert_eq!(kv_rate_of_key(&kv_rate_key(77, "ab")), Some((77, "ab")));
        assert_eq!(outbound_of_key("vu1/x"), None);
        assert_eq!(decode_count(b"17"), 17);
        assert_eq!(decode_count(b"junk"), 0);
    }

    #[test]
    fn a_fold_covers_the_claims_up_to_its_time_and_older_folds() {
        let h = 500_000;
        let keys = vec![
            outbound_key(h, 100, "a"),
            outbound_key(h, 200, "b"),
            outbound_key(h, 300, "c"),
            fold_key(h, 150),
            fold_key(h, 200),
            outbound_key(h + 1, 100, "d"),
            fold_key(h - 1, 900),
        ];
        let view = HourClaims::of(&keys, h);
        assert_eq!(view.fold, Some((fold_key(h, 200), 200)));
        assert_eq!(view.claims, vec![(outbound_key(h, 300, "c"), 300, "c".to_owned())]);
        assert_eq!(view.covered, vec![outbound_key(h, 100, "a"), outbound_key(h, 200, "b"), fold_key(h, 150)]);
        assert_eq!(fold_of_key(&fold_key(h, 200)), Some((h, 200)));
        assert_eq!(outbound_of_key(&fold_key(h, 200)), None);
        assert_eq!(outbound_hour_of_key(&fold_key(h, 200)), Some(h));
        assert_eq!(fold_upto(1004), 990);
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
