//! The end of an invocation, which may come well after its answer (a guest may set its
//! response and go on working, as on Spin): what became of the guest, counted in the
//! host's counters, and the invocation's log line.

use super::Shared;
use crate::up::{redact, InvocationStats};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The guest's task: its memory peak (or its error) and its busy time, unless the time
/// limit or a chaos kill ended it first.
type Task = tokio::task::JoinHandle<Result<(anyhow::Result<usize>, Duration), tokio::time::error::Elapsed>>;

/// What became of the guest.
pub(super) struct Ended {
    /// For the log: `ok`, `failed: ...`, `killed by chaos`, `killed: time limit ...`.
    pub(super) note: String,
    /// Killed by host-sim's time limit or by chaos.
    pub(super) killed: bool,
    /// The guest's error in full (with its wasm backtrace), for the log.
    pub(super) failure: Option<String>,
    busy: Duration,
    peak: usize,
}

/// Waits for the guest's task to end and counts how it ended (`ended` last, so that a
/// caller polling it sees the other counters already updated).
pub(super) async fn account(shared: Arc<Shared>, task: Task, kill_at: Option<Duration>) -> Ended {
    let outcome = task.await;
    let stats = &shared.stats;
    let ended = match outcome {
        Ok(Ok((Ok(peak), busy))) => Ended { note: "ok".to_owned(), killed: false, failure: None, busy, peak },
        Ok(Ok((Err(e), busy))) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            Ended { note: format!("failed: {e:#}"), killed: false, failure: Some(format!("guest invocation failed: {e:?}")), busy, peak: 0 }
        }
        Ok(Err(_)) if kill_at.is_some() => {
            stats.chaos_kills.fetch_add(1, Ordering::Relaxed);
            Ended { note: "killed by chaos".to_owned(), killed: true, failure: None, busy: Duration::ZERO, peak: 0 }
        }
        Ok(Err(_)) => {
            stats.timeouts.fetch_add(1, Ordering::Relaxed);
            let note = format!("killed: time limit of {:?}", shared.limits.time);
            Ended { note, killed: true, failure: None, busy: Duration::ZERO, peak: 0 }
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            let failure = Some(format!("guest invocation panicked: {e:?}"));
            Ended { note: format!("panicked: {e}"), killed: false, failure, busy: Duration::ZERO, peak: 0 }
        }
    };
    stats.ended.fetch_add(1, Ordering::Relaxed);
    ended
}

/// What the log line of an invocation tells besides how it ended.
pub(super) struct Invocation {
    pub(super) shared: Arc<Shared>,
    pub(super) route: String,
    pub(super) started: Instant,
    pub(super) stats: Arc<InvocationStats>,
}

impl Invocation {
    /// The invocation's one log line, as Spin logs it, once the guest has ended:
    /// `status` is what the client was answered, `wall_ms` the guest's whole run.
    pub(super) fn log(&self, status: u16, ended: &Ended) {
        let shared = &self.shared;
        let _serialized = shared.log_lock.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(
            component = %shared.app.component,
            route = %self.route,
            status,
            wall_ms = self.started.elapsed().as_millis() as u64,
            guest_ms = ended.busy.as_millis() as u64,
            outbound = self.stats.outbound.load(Ordering::Relaxed),
            kv_read = self.stats.kv_read.load(Ordering::Relaxed),
            kv_written = self.stats.kv_written.load(Ordering::Relaxed),
            peak_memory_kib = ended.peak as u64 / 1024,
            outcome = %redact(&ended.note, &shared.secrets),
            "invocation"
        );
    }
}
