//! Format 1: the flat record of the first release, read (never written) so that an
//! upload in flight when the component is upgraded finishes after the upgrade.
//!
//! Frozen: these fields, names and defaults are what format-1 records hold (records
//! from before the hardening release lack the fields marked as defaulted). The
//! fixtures in `tests/fixtures/format1/` are such records, written by that release.

use super::BadRecord;
use crate::parts::DoneParts;
use crate::source::Identity;
use crate::upload::{
    Cancelled, Done, Failed, Finishing, HashState, Hashing, Md5s, Phase, Spec, State, Stats, Upload, UploadError, Uploading, Waiting,
};
use serde::Deserialize;

/// The error code format 1 recorded for an unusable checkpoint: a retry of an upload
/// that failed with it starts over (frozen with the format).
const CHECKPOINT_UNUSABLE: &str = "checkpoint_unusable";

/// A format-1 record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Record {
    pub format: u32,
    pub id: String,
    pub spec: Spec,
    pub identity: Identity,
    pub state: State,
    #[serde(default)]
    pub hashing: Option<HashState>,
    pub md5_part_size: u64,
    pub md5_chunks: u64,
    #[serde(with = "crate::upload::b64")]
    pub md5_tail: Vec<u8>,
    #[serde(default)]
    pub file_sha: Option<String>,
    pub part_size: u64,
    pub session: bool,
    pub done_below: u64,
    #[serde(default)]
    pub done_above: Vec<u64>,
    #[serde(default)]
    pub file_id: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub error: Option<UploadError>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    pub invocations: u64,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub repairs: u32,
    #[serde(default)]
    pub read_rate: u64,
    #[serde(default)]
    pub stats: Stats,
    #[serde(default)]
    pub attempted_at: u64,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub failing_since: Option<u64>,
    #[serde(default)]
    pub failed_in: Option<State>,
    #[serde(default)]
    pub ended_at: Option<u64>,
}

impl Record {
    /// Reads a format-1 record.
    pub fn decode(bytes: &[u8]) -> Result<Record, BadRecord> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| BadRecord(e.to_string()))?;
        if record.format != 1 {
            return Err(BadRecord(format!("format {} is not format 1", record.format)));
        }
        Ok(record)
    }

    /// The upload this record describes. The state's data must be there: a record that
    /// says uploading without a SHA-1 (which no release wrote) is refused when read.
    pub fn into_upload(self) -> Result<Upload, BadRecord> {
        let bad = |what: &str| BadRecord(what.to_owned());
        let ended_at = self.ended_at.unwrap_or(self.updated_at);
        let phase = match self.state {
            State::Done => Phase::Done(Done {
                file_id: self.file_id.clone().ok_or_else(|| bad("done without a fileId"))?,
                url: self.url.clone().ok_or_else(|| bad("done without a url"))?,
                file_sha: self.file_sha.clone(),
                part_size: self.part_size,
                ended_at,
            }),
            State::Failed => {
                let error = self.error.clone().ok_or_else(|| bad("failed without an error"))?;
                let restart = error.code == CHECKPOINT_UNUSABLE || self.failed_in.is_none_or(State::is_final);
                // A record that failed because of its own data may lack what its state
                // needs: it restarts from pending either way.
                let was = match self.failed_in {
                    Some(state) if !state.is_final() => {
                        self.active(state).or_else(|e| if restart { Ok(Phase::Pending) } else { Err(e) })?
                    }
                    _ => Phase::Pending,
                };
                Phase::Failed(Failed { error, ended_at, was: Box::new(was), from_start: restart })
            }
            State::Cancelled => {
                // Which state it was cancelled in is not recorded: what its data shows.
                let was = [State::Uploading, State::Hashing].into_iter().find_map(|s| self.active(s).ok()).unwrap_or(Phase::Pending);
                Phase::Cancelled(Cancelled { ended_at, error: self.error.clone(), was: Box::new(was) })
            }
            active => self.active(active)?,
        };
        let waiting = match (&phase, &self.error) {
            (Phase::Done(_) | Phase::Failed(_) | Phase::Cancelled(_), _) | (_, None) => None,
            (_, Some(error)) => Some(Waiting { error: error.clone(), retry_after: self.retry_after.unwrap_or(0) }),
        };
        Ok(Upload {
            id: self.id,
            spec: self.spec,
            identity: self.identity,
            phase,
            waiting,
            retries: self.retries,
            failing_since: self.failing_since,
            invocations: self.invocations,
            created_at: self.created_at,
            updated_at: self.updated_at,
            attempted_at: self.attempted_at,
            read_rate: self.read_rate,
            stats: self.stats,
            // Format 1 predates storage events.
            origin: None,
        })
    }

    fn md5s(&self) -> Md5s {
        Md5s { part_size: self.md5_part_size, chunks: self.md5_chunks, tail: self.md5_tail.clone() }
    }

    /// The active phase `state` from the record's flat fields.
    fn active(&self, state: State) -> Result<Phase, BadRecord> {
        let bad = |what: &str| BadRecord(what.to_owned());
        let sha = || self.file_sha.clone().ok_or_else(|| bad(&format!("{} without a SHA-1", format!("{state:?}").to_lowercase())));
        Ok(match state {
            State::Pending => Phase::Pending,
            State::Hashing => Phase::Hashing(Hashing {
                hasher: self.hashing.clone().ok_or_else(|| bad("hashing without a hash state"))?,
                md5s: self.md5s(),
            }),
            State::Uploading => Phase::Uploading(Uploading {
                file_sha: sha()?,
                md5s: self.md5s(),
                part_size: self.part_size,
                done: DoneParts::from_runs(self.done_below, self.done_above.iter().map(|&i| (i, i.saturating_add(1))).collect()),
                session: self.session,
                repairs: self.repairs,
                opened: 0,
            }),
            State::Finishing => {
                Phase::Finishing(Finishing { file_sha: sha()?, md5s: self.md5s(), part_size: self.part_size, repairs: self.repairs })
            }
            State::Done | State::Failed | State::Cancelled => return Err(bad("a final state is not a phase to resume")),
        })
    }
}
