//! The simulator's counters as a client reads them from `GET /sim/stats`, added up over
//! restarts: the counters live in memory, so a harness that kills and restarts the
//! simulator reads them before each restart and adds the reads together.

use serde_json::Value;
use std::collections::BTreeMap;

/// Counters of one or more simulator runs (see [`super::Counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Protocol requests received.
    pub requests: u64,
    /// UploadPart requests received.
    pub part_requests: u64,
    /// Requests that met an injected fault.
    pub faults: u64,
    /// Parts stored.
    pub parts_stored: u64,
    /// Parts stored at an offset the session already held.
    pub parts_resent: u64,
    /// Parts refused because their file was already finished.
    pub parts_after_finish: u64,
    /// Repeats of a signed request answered with the first answer.
    pub repeats: u64,
    /// Bytes of UploadPart bodies stored.
    pub part_bytes_stored: u64,
    /// Bytes stored at an offset the session already held (duplicated part bytes).
    pub part_bytes_resent: u64,
    /// FinishUpload calls that created a file, by fileSha.
    pub finishes: BTreeMap<String, u64>,
}

impl SimStats {
    /// Reads the JSON of `GET /sim/stats`; `None` if a counter is missing (a simulator
    /// older than these counters, or not the simulator at all).
    pub fn from_json(v: &Value) -> Option<SimStats> {
        let n = |name: &str| v.get(name).and_then(Value::as_u64);
        let finishes = v.get("finishes")?.as_object()?.iter().map(|(sha, n)| Some((sha.clone(), n.as_u64()?))).collect::<Option<_>>()?;
        Some(SimStats {
            requests: n("requests")?,
            part_requests: n("partRequests")?,
            faults: n("faults")?,
            parts_stored: n("partsStored")?,
            parts_resent: n("partsResent")?,
            parts_after_finish: n("partsAfterFinish")?,
            repeats: n("repeats")?,
            part_bytes_stored: n("partBytesStored")?,
            part_bytes_resent: n("partBytesResent")?,
            finishes,
        })
    }

    /// Adds another run's counters to these.
    pub fn add(&mut self, other: &SimStats) {
        self.requests += other.requests;
        self.part_requests += other.part_requests;
        self.faults += other.faults;
        self.parts_stored += other.parts_stored;
        self.parts_resent += other.parts_resent;
        self.parts_after_finish += other.parts_after_finish;
        self.repeats += other.repeats;
        self.part_bytes_stored += other.part_bytes_stored;
        self.part_bytes_resent += other.part_bytes_resent;
        for (sha, n) in &other.finishes {
            *self.finishes.entry(sha.clone()).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_of_two_runs_add_up() {
        let counters = super::super::Counters::default();
        counters.part_bytes_stored.store(10, std::sync::atomic::Ordering::Relaxed);
        counters.finishes.lock().unwrap().insert("ab".into(), 1);
        let first = SimStats::from_json(&counters.to_json()).expect("every counter is there");
        let mut total = first.clone();
        total.add(&first);
        assert_eq!(total.part_bytes_stored, 20);
        assert_eq!(total.finishes, BTreeMap::from([("ab".to_owned(), 2)]));
        assert_eq!(SimStats::from_json(&serde_json::json!({"requests": 1})), None);
    }
}
