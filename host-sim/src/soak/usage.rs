//! The platform quotas checked from outside: each instance counts its outbound requests
//! per unix hour and its key-value writes per unix second (`usage` in its stats, the
//! newest windows only), so the soak reads them often, keeps every window it saw, adds
//! the instances up window by window and counts the windows over the limit. Also the
//! kills, counted from the instances' invocation log lines.

use super::world::World;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every window seen, per instance: window -> count (a later read of a window replaces
/// an earlier one, counts only grow).
#[derive(Debug, Default)]
pub struct UsageLog {
    outbound: Vec<BTreeMap<u64, u64>>,
    kv_writes: Vec<BTreeMap<u64, u64>>,
}

/// The windows of a quota added up over the instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaCheck {
    /// The limit.
    pub limit: u64,
    /// Windows counted.
    pub windows: usize,
    /// Windows whose sum is over the limit.
    pub over: usize,
    /// The largest sum in any window.
    pub max: u64,
    /// The windows over the limit, the first few: (window, sum).
    pub worst: Vec<(u64, u64)>,
}

fn merge(into: &mut BTreeMap<u64, u64>, map: &Value) {
    for (window, n) in map.as_object().into_iter().flatten() {
        if let (Ok(window), Some(n)) = (window.parse::<u64>(), n.as_u64()) {
            let kept = into.entry(window).or_default();
            *kept = (*kept).max(n);
        }
    }
}

fn check(per_instance: &[BTreeMap<u64, u64>], limit: u64) -> QuotaCheck {
    let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
    for m in per_instance {
        for (w, n) in m {
            *sums.entry(*w).or_default() += n;
        }
    }
    let over: Vec<(u64, u64)> = sums.iter().filter(|(_, &n)| n > limit).map(|(&w, &n)| (w, n)).collect();
    let max = sums.values().copied().max().unwrap_or(0);
    QuotaCheck { limit, windows: sums.len(), over: over.len(), max, worst: over.into_iter().take(10).collect() }
}

impl UsageLog {
    /// Reads every instance's usage now. An instance that does not answer is read next
    /// time: its windows are kept for minutes (seconds) to hours.
    pub async fn read(&mut self, world: &World) {
        self.outbound.resize_with(world.ups.len(), BTreeMap::new);
        self.kv_writes.resize_with(world.ups.len(), BTreeMap::new);
        for i in 0..world.ups.len() {
            if let Ok(stats) = world.host_stats(i).await {
                merge(&mut self.outbound[i], &stats["usage"]["outboundPerHour"]);
                merge(&mut self.kv_writes[i], &stats["usage"]["kvWritesPerSecond"]);
            }
        }
    }

    /// Outbound requests per hour over all instances against `limit`.
    pub fn outbound(&self, limit: u64) -> QuotaCheck {
        check(&self.outbound, limit)
    }

    /// Key-value writes per second over all instances against `limit`.
    pub fn kv_writes(&self, limit: u64) -> QuotaCheck {
        check(&self.kv_writes, limit)
    }
}

/// Invocations and chaos kills as the instances logged them (one `invocation` line
/// each, with its outbound request count and its outcome).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kills {
    /// Invocations that ended, logged.
    pub invocations: u64,
    /// Of those, the ones that sent at least one outbound request: they worked.
    pub working_invocations: u64,
    /// Invocations killed by chaos.
    pub kills: u64,
    /// Of those, the ones killed after sending a request: killed while working (an
    /// idle tick sends none, and neither does an invocation killed before its first).
    pub working_kills: u64,
}

impl Kills {
    /// Counts the lines of every instance's log.
    pub fn from_logs(world: &World) -> Kills {
        let mut k = Kills::default();
        for up in &world.ups {
            for line in up.log_text().lines().filter(|l| l.contains(" invocation ") && l.contains(" outcome=")) {
                let outbound = field(line, "outbound=").unwrap_or(0);
                let killed = line.contains("outcome=killed by chaos");
                k.invocations += 1;
                k.working_invocations += u64::from(outbound > 0);
                k.kills += u64::from(killed);
                k.working_kills += u64::from(killed && outbound > 0);
            }
        }
        k
    }
}

/// The number after ` name` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}"))? + name.len() + 1;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_add_up_over_instances_and_reads() {
        let mut log = UsageLog { outbound: vec![BTreeMap::new(); 2], kv_writes: vec![BTreeMap::new(); 2] };
        merge(&mut log.kv_writes[0], &serde_json::json!({"100": 20, "101": 5}));
        merge(&mut log.kv_writes[0], &serde_json::json!({"101": 30}));
        merge(&mut log.kv_writes[1], &serde_json::json!({"101": 21, "102": 1}));
        assert_eq!(log.kv_writes(50), QuotaCheck { limit: 50, windows: 3, over: 1, max: 51, worst: vec![(101, 51)] });
        assert_eq!(log.outbound(10), QuotaCheck { limit: 10, ..QuotaCheck::default() });
    }

    #[test]
    fn fields_of_an_invocation_line() {
        let line = "2025 INFO host_sim::up::server::ending: invocation component=vod-uploader route=POST /tick status=500 \
                    wall_ms=120 guest_ms=0 outbound=3 kv_read=10 kv_written=0 peak_memory_kib=0 outcome=killed by chaos";
        assert_eq!(field(line, "outbound="), Some(3));
        assert_eq!(field(line, "wall_ms="), Some(120));
        assert_eq!(field(line, "absent="), None);
    }
}
