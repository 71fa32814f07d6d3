//! What platforms meter in fixed windows, counted per instance: outbound requests per
//! unix hour (Fermyon Cloud: 500 per hour per app) and key-value writes, `set` and
//! `delete`, per unix second (Akamai Functions: 50 per second). A window is
//! `floor(unix_secs / length)`. Each instance counts its own; several instances of one
//! app add theirs up window by window to check the app's quota (a soak harness reads
//! them from `/.well-known/host-sim/stats`).
//!
//! Only recent windows are kept ([`KEEP_HOURS`], [`KEEP_SECONDS`]), so the maps stay
//! small however long the host runs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Hours of outbound counts kept.
pub const KEEP_HOURS: u64 = 6;
/// Seconds of key-value write counts kept.
pub const KEEP_SECONDS: u64 = 600;

/// Counts by window, the newest `keep` windows.
#[derive(Debug)]
pub struct Windows {
    /// Length of a window, seconds.
    length: u64,
    keep: u64,
    counts: BTreeMap<u64, u64>,
}

impl Windows {
    /// Windows of `length` seconds, the newest `keep` kept.
    pub fn new(length: u64, keep: u64) -> Windows {
        Windows { length: length.max(1), keep: keep.max(1), counts: BTreeMap::new() }
    }

    /// Counts one event at `unix_secs`. An event older than every window kept (a clock
    /// stepped back far) is still counted in its window, then dropped with the old ones.
    pub fn add(&mut self, unix_secs: u64) {
        *self.counts.entry(unix_secs / self.length).or_default() += 1;
        if let Some(&newest) = self.counts.keys().next_back() {
            let oldest_kept = newest.saturating_sub(self.keep - 1);
            while self.counts.first_key_value().is_some_and(|(&w, _)| w < oldest_kept) {
                self.counts.pop_first();
            }
        }
    }

    /// The counts kept, window -> count.
    pub fn counts(&self) -> BTreeMap<u64, u64> {
        self.counts.clone()
    }
}

/// One instance's counters by window.
#[derive(Debug)]
pub struct Usage {
    outbound: Mutex<Windows>,
    kv_writes: Mutex<Windows>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage { outbound: Mutex::new(Windows::new(3600, KEEP_HOURS)), kv_writes: Mutex::new(Windows::new(1, KEEP_SECONDS)) }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn lock(m: &Mutex<Windows>) -> std::sync::MutexGuard<'_, Windows> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Usage {
    /// Counts an outbound request sent now.
    pub fn outbound(&self) {
        self.outbound_at(now());
    }

    /// Counts an outbound request sent at `unix_secs`.
    pub fn outbound_at(&self, unix_secs: u64) {
        lock(&self.outbound).add(unix_secs);
    }

    /// Counts a key-value write (`set` or `delete`) made now.
    pub fn kv_write(&self) {
        self.kv_write_at(now());
    }

    /// Counts a key-value write made at `unix_secs`.
    pub fn kv_write_at(&self, unix_secs: u64) {
        lock(&self.kv_writes).add(unix_secs);
    }

    /// Outbound requests by unix hour, the last [`KEEP_HOURS`].
    pub fn outbound_per_hour(&self) -> BTreeMap<u64, u64> {
        lock(&self.outbound).counts()
    }

    /// Key-value writes by unix second, the last [`KEEP_SECONDS`].
    pub fn kv_writes_per_second(&self) -> BTreeMap<u64, u64> {
        lock(&self.kv_writes).counts()
    }

    /// Both maps for the stats endpoint: `{"outboundPerHour": {"<hour>": n, ...},
    /// "kvWritesPerSecond": {"<second>": n, ...}}` (JSON keys are strings).
    pub fn to_json(&self) -> serde_json::Value {
        let map = |m: BTreeMap<u64, u64>| m.into_iter().map(|(w, n)| (w.to_string(), serde_json::Value::from(n))).collect();
        serde_json::json!({
            "outboundPerHour": serde_json::Value::Object(map(self.outbound_per_hour())),
            "kvWritesPerSecond": serde_json::Value::Object(map(self.kv_writes_per_second())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_bounded() {
        let usage = Usage::default();
        for s in [7199, 7200, 7201, 10_799, 10_800] {
            usage.outbound_at(s);
        }
        assert_eq!(usage.outbound_per_hour(), BTreeMap::from([(1, 1), (2, 3), (3, 1)]));
        for s in 0..2000 {
            usage.kv_write_at(s);
            usage.kv_write_at(s);
        }
        let writes = usage.kv_writes_per_second();
        assert_eq!(writes.len() as u64, KEEP_SECONDS);
        assert_eq!(writes.first_key_value(), Some((&(2000 - KEEP_SECONDS), &2)));
        assert!(writes.values().all(|&n| n == 2));
        let json = usage.to_json();
        assert_eq!(json["outboundPerHour"]["2"], 3);
        assert_eq!(json["kvWritesPerSecond"]["1999"], 2);
    }

    #[test]
    fn an_old_event_does_not_grow_the_map() {
        let mut w = Windows::new(1, 3);
        for s in [100, 101, 102, 5, 103] {
            w.add(s);
        }
        assert_eq!(w.counts(), BTreeMap::from([(101, 1), (102, 1), (103, 1)]));
    }
}
