//! One invocation on one upload: load it, work through its phases until it is done or
//! the time is up, conclude (an error waits or fails it, through the upload's own
//! functions) and save.

use super::io::{Advanced, Io};
use super::notify::deliver_due;
use super::read::probe_for;
use super::records::{load_raw, settle};
use super::run::Run;
use super::settings::Settings;
use super::wait::Limits;
use crate::error::Error;
use crate::lease;
use crate::source::SourceError;
use crate::upload::{State, Upload};
use std::collections::HashMap;
use std::time::Duration;

/// Works on upload `id` until it is done or the invocation's time (from `started`, on
/// [`Io::now`]) is up; returns the upload as saved. `Ok(None)` when there is no such
/// upload. An upload that has ended done or failed then delivers its completion event,
/// if one is due and there is time.
pub async fn advance<I: Io>(io: &I, settings: &Settings, id: &str, started: Duration) -> Result<Option<Upload>, Error> {
    let mut before = None;
    let result = work_on(io, settings, id, started, &mut before).await;
    if let Some(before) = before {
        let after = result.as_ref().ok().and_then(|u| u.as_ref());
        io.observe(&Advanced {
            id: id.to_owned(),
            before: before.state(),
            after: after.map(Upload::state),
            hashed: after.map_or(0, |a| a.hashed_bytes().saturating_sub(before.hashed_bytes())),
            uploaded: after.map_or(0, |a| a.uploaded_bytes().saturating_sub(before.uploaded_bytes())),
            error: match &result {
                Err(e) => Some(e.code().to_owned()),
                Ok(_) => after.and_then(|a| a.error()).map(|e| e.code.clone()),
            },
            busy: after.is_some_and(|a| a == &before && !a.state().is_final()),
        });
    }
    // A write the quota refused is the quota's doing, not the store's.
    let up = result.map_err(|e| match (e, io.quota_stop()) {
        (Error::Storage(_), Some(stop)) => Error::Quota(stop),
        (e, _) => e,
    })?;
    if let Some(up) = up.as_ref().filter(|up| up.state().is_final()) {
        // The upload's own state is saved; a delivery the store could not record is
        // tried again by a later invocation, so its error is not this call's.
        let _ = deliver_due(io, settings, up, started + settings.time_limit()).await;
    }
    Ok(up)
}

async fn work_on<I: Io>(
    io: &I,
    settings: &Settings,
    id: &str,
    started: Duration,
    before: &mut Option<Upload>,
) -> Result<Option<Upload>, Error> {
    let (Some(mut up), end) = load_raw(io, id).await? else { return Ok(None) };
    *before = Some(up.clone());
    if let Some(end) = end {
        return settle(io, up, &end).await.map(Some);
    }
    if up.state().is_final() {
        return Ok(Some(up));
    }
    up.invocations += 1;
    up.attempted_at = io.unix_now();
    let limits = Limits { hard: started + settings.time_limit(), stall: settings.stall_timeout };
    let (a, b) = (io.random(), io.random());
    let left = limits.hard.saturating_sub(io.now());
    let mut run = Run {
        io,
        s: settings,
        soft: started + settings.budget,
        limits,
        last_save: started,
        saved: None,
        memory: None,
        chunks: HashMap::new(),
        progressed: false,
        owner: settings.lease_owner.clone().unwrap_or_else(|| format!("{a:08x}{b:08x}")),
        seed: (a as u64) << 32 | b as u64,
        lease_until_ms: io.unix_millis() + left.as_millis() as u64 + lease::SLACK_MS,
        held: Vec::new(),
        range: None,
        shared: false,
        busy: None,
    };
    let outcome = run.work(&mut up).await;
    // Leases are given back (others may take the work over at once: a lease left to
    // expire would keep the next invocation off the upload until then).
    run.let_go_all().await;
    if run.busy.is_some() && !run.progressed && matches!(outcome, Ok(()) | Err(Error::OutOfTime)) {
        // Another invocation holds the work it could do: nothing to record (a write
        // would cost a quota and could step its record back).
        return Ok(before.clone());
    }
    let now = io.unix_now();
    let backoff = settings.backoff;
    match outcome {
        Err(Error::Ended(end)) => {
            up.lay_outcome(&end);
            return Ok(Some(up));
        }
        Err(Error::Overtaken(stored)) => return Ok(Some(*stored)),
        // Whatever the work ran into, a quota stopped it: the upload waits it out.
        _ if io.quota_stop().is_some() => {
            let stop = io.quota_stop().expect("checked");
            up.wait_for_quota(stop.quota, stop.limit, stop.retry_at, run.progressed)
        }
        Ok(()) => up.invocation_ok(),
        Err(Error::OutOfTime) if run.progressed => up.invocation_ok(),
        Err(Error::OutOfTime) => {
            let stalled = Error::Source(SourceError::Stalled("no progress before the invocation's time was up".into()));
            up.fail_or_wait(stalled.to_upload_error(), stalled.voids_checkpoint(), now, false, backoff)
        }
        Err(e) => up.fail_or_wait(e.to_upload_error(), e.voids_checkpoint(), now, run.progressed, backoff),
    }
    // The closing checkpoint, unless the work's own last one already holds all of it:
    // KV writes are a platform quota.
    if !run.saved.as_ref().is_some_and(|saved| Upload { updated_at: saved.updated_at, ..up.clone() } == *saved) {
        match run.save(&mut up).await {
            Err(Error::Ended(end)) => up.lay_outcome(&end),
            Err(Error::Overtaken(stored)) => up = *stored,
            other => other?,
        }
    }
    Ok(Some(up))
}

impl<I: Io> Run<'_, I> {
    /// Each phase's pass in turn, until the upload is final or the time is up.
    async fn work(&mut self, up: &mut Upload) -> Result<(), Error> {
        loop {
            // Out of time, or every piece of work left is another invocation's.
            if self.out_of_time() || self.busy.is_some() {
                return Ok(());
            }
            match up.state() {
                State::Pending | State::Hashing if !self.hold(&up.id, lease::HASH).await? => return Ok(()),
                State::Pending => {
                    if up.needs_probe() {
                        // Created from an event: the source as the store has it now.
                        let identity = probe_for(self.io, self.s, &up.spec.source, up.spec.data_size).await?;
                        up.stats.source_requests += up.spec.source.is_remote() as u64;
                        up.probed(identity).map_err(SourceError::Changed)?;
                    }
                    up.start_hashing()
                }
                State::Hashing => self.hash(up).await?,
                State::Uploading => self.upload(up).await?,
                State::Finishing => self.finish(up).await?,
                State::Done | State::Failed | State::Cancelled => return Ok(()),
            }
        }
    }
}
