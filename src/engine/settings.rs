//! How the engine works: its time budget, limits, concurrency and backoff.

use crate::notify::NotifyTarget;
use crate::protocol::Signer;
use crate::source::s3::S3Access;
use crate::upload::Backoff;
use std::time::Duration;

/// How the engine works.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Signs VOD calls.
    pub signer: Signer,
    /// Time for one invocation's work: no new work starts after it.
    pub budget: Duration,
    /// The least time any invocation gets, whatever its budget: a budget smaller than
    /// this still advances the upload once (see [`Settings::time_limit`]).
    pub min_budget: Duration,
    /// Longest wait for any one answer or body chunk before the peer counts as stalled.
    pub stall_timeout: Duration,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Longest time between checkpoints.
    pub checkpoint_every: Duration,
    /// Files up to this size are read once: kept in memory from hashing to upload.
    /// A source that ignores `Range` is readable only up to this size.
    pub memory_threshold: u64,
    /// Attempts per VOD call within an invocation.
    pub attempts: u32,
    /// Length of a ranged read while no read rate is known (`u64::MAX`: to the end).
    pub first_read: u64,
    /// Waits between invocations after retryable errors, and when to give up.
    pub backoff: Backoff,
    /// How long done, failed and cancelled uploads are kept before `/tick` removes them.
    pub retention_secs: u64,
    /// The platform's quotas, kept over every instance (see [`crate::quota`]).
    pub quotas: crate::quota::Quotas,
    /// How long a lease's write settles before it is read back (see
    /// [`crate::lease`]): longer than the store's round trip, so that of invocations
    /// taking one lease together only the last writer keeps it.
    pub lease_settle: Duration,
    /// The owner every lease of this process is taken as, when it is not random per
    /// invocation: a program that alone uses its store across runs (the command-line
    /// uploader's checkpoint directory) takes back at once the leases a killed run of it
    /// left, instead of waiting for them to expire. Two such programs on one store at
    /// once then share leases: their work is duplicated, never wrong.
    pub lease_owner: Option<String>,
    /// Bytes of parts per lease of the upload pass (see [`crate::lease::Ranges`]).
    pub range_bytes: u64,
    /// Where completion events go (`None`: nowhere).
    pub notify: Option<NotifyTarget>,
    /// Signed (SigV4) access to an S3-compatible store: `s3://` sources are read through
    /// it, and so are URL sources under its origin that are not presigned. `None`: every
    /// source is read unsigned, as given.
    pub s3: Option<S3Access>,
}

impl Settings {
    /// Defaults: 20 s budget, 4 parts at once, a checkpoint every 2 s, files up to
    /// 8 MiB read once, a peer silent for 10 s is stalled, retries from 5 s doubling up
    /// to 15 min, give up after 24 h without progress, final uploads kept 168 h.
    pub fn new(signer: Signer) -> Self {
        Settings {
            signer,
            budget: Duration::from_secs(20),
            min_budget: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
            concurrency: 4,
            checkpoint_every: Duration::from_secs(2),
            memory_threshold: 8 << 20,
            attempts: 5,
            // Until a read rate is known, read to the end: one request per pass, and a
            // stop at the deadline throws away only what TCP buffered, as with any length.
            first_read: u64::MAX,
            backoff: Backoff { base_secs: 5, cap_secs: 900, give_up_secs: 24 * 3600 },
            retention_secs: 168 * 3600,
            range_bytes: crate::lease::RANGE_BYTES,
            lease_settle: Duration::from_millis(50),
            lease_owner: None,
            quotas: crate::quota::Quotas::default(),
            notify: None,
            s3: None,
        }
    }
}

impl Settings {
    /// How long an invocation may take in all: no new work starts after `budget`, and
    /// what is under way (parts in flight, a read, the closing checkpoint) gets a tenth
    /// more to finish, so that it is not thrown away and sent again next time. At least
    /// `min_budget`.
    pub fn time_limit(&self) -> Duration {
        (self.budget + self.budget / 10).max(self.min_budget)
    }
}
