//! Calls to the VOD service: signed, every wait bounded, the answer's size bounded,
//! and retried within the invocation while the failure is retryable and time allows
//! (in the spirit of object_store's `client/retry.rs`). Waits between invocations are
//! the upload's [`crate::upload::Backoff`], not this.

use super::io::{Body, HttpRequest, Io, QuotaStop};
use super::run::Run;
use super::settings::Settings;
use super::wait::{jitter, Late, Limits};
use crate::error::Error;
use crate::protocol::{self, AnswerError, Call, Method, Signer, UploadPart};
use crate::upload::Upload;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

/// Runs `attempt` until it succeeds, fails for good, `attempts` are used up, or the
/// next backoff (100 ms doubling, plus jitter) would pass the invocation's limit.
/// Returns how many attempts were made, with the last result.
async fn with_retries<I: Io, T, F: Future<Output = Result<T, Error>>>(
    io: &I,
    attempts: u32,
    limits: Limits,
    mut attempt: impl FnMut() -> F,
) -> (u32, Result<T, Error>) {
    let mut delay = Duration::from_millis(100);
    let mut made = 0;
    loop {
        made += 1;
        match attempt().await {
            // A quota that stopped requests stops retries too (they would be refused).
            Err(e) if e.retryable() && made < attempts && io.quota_stop().is_none() => {
                let wait = jitter(io, delay);
                if io.now() + wait >= limits.hard {
                    return (made, Err(e));
                }
                io.sleep(wait).await;
                delay *= 2;
            }
            result => return (made, result),
        }
    }
}

impl<I: Io> Run<'_, I> {
    /// A VOD call without a body (InitUpload or FinishUpload), with retries inside the
    /// budget; its requests are counted on the upload.
    pub(crate) async fn call<T>(&mut self, up: &mut Upload, call: Call, parse: fn(&[u8]) -> Result<T, AnswerError>) -> Result<T, Error> {
        let (io, signer, limits) = (self.io, &self.s.signer, self.limits);
        let (attempts, result) = with_retries(io, self.s.attempts, limits, || vod_call(io, signer, &call, None, parse, limits)).await;
        up.stats.vod_requests += attempts as u64;
        up.stats.vod_retries += attempts.saturating_sub(1) as u64;
        result
    }
}

/// A finished part upload.
pub(crate) struct PartResult {
    /// The part.
    pub(crate) index: u64,
    /// Requests it took.
    pub(crate) attempts: u32,
    /// How it ended.
    pub(crate) result: Result<(), Error>,
}

/// One part, retried (each attempt signed anew) while the failure is retryable and
/// the time allows.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_part<I: Io>(
    io: &I,
    s: &Settings,
    file_sha: &str,
    index: u64,
    offset: u64,
    body: Rc<Vec<u8>>,
    md5: String,
    limits: Limits,
) -> PartResult {
    let call = Call::UploadPart(UploadPart { file_sha: file_sha.to_owned(), offset, data_size: body.len() as u64, data_md5: md5 });
    let (attempts, result) =
        with_retries(io, s.attempts, limits, || vod_call(io, &s.signer, &call, Some(body.clone()), protocol::parse_part, limits)).await;
    PartResult { index, attempts, result }
}

/// Signs and sends one VOD call, reads and parses its answer, every wait bounded.
/// Largest answer read from the service. InitUpload's lists every part held, about 100
/// bytes each (10 MiB for the 100,000 parts of a 50 GiB file in 512 KiB parts), and
/// the session's part size, which decides their number, is the service's: so up to
/// 128 bytes a byte of a small file, and at most 128 bytes for each of the most parts
/// an upload may have (32 MiB).
fn max_answer(call: &Call) -> usize {
    match call {
        Call::InitUpload(p) => (64 << 10) + 128 * p.file_size.min(crate::parts::MAX_PARTS) as usize,
        _ => 64 << 10,
    }
}

async fn vod_call<I: Io, T>(
    io: &I,
    signer: &Signer,
    call: &Call,
    body: Option<Rc<Vec<u8>>>,
    parse: fn(&[u8]) -> Result<T, AnswerError>,
    limits: Limits,
) -> Result<T, Error> {
    let max_answer = max_answer(call);
    let late = |late: Late| match late {
        Late::Deadline => Error::OutOfTime,
        Late::Stall(d) => Error::VodTransport(format!("{} got no answer for {} s", call.action(), d.as_secs())),
    };
    let method = if body.is_some() { Method::Post } else { call.documented_method() };
    let signed = signer.sign(call, method, io.unix_now(), io.random());
    let mut headers = Vec::new();
    if let Some(body) = &body {
        headers.push(("content-type".to_owned(), "application/octet-stream".to_owned()));
        // Stated, not chunked, as the vendor's SDKs sent parts; the host also checks
        // that exactly this many bytes were written.
        headers.push(("content-length".to_owned(), body.len().to_string()));
    }
    let request =
        HttpRequest { method: method.as_str(), url: signed.url, headers, body: body.unwrap_or_default(), timeout: Some(limits.stall) };
    let mut response = limits.wait(io, io.send(request)).await.map_err(late)?.map_err(|e| match QuotaStop::of(&e) {
        Some(stop) => Error::Quota(stop.clone()),
        None => Error::VodTransport(format!("{} failed: {e}", call.action())),
    })?;
    let mut answer = Vec::new();
    while let Some(chunk) = limits.wait(io, response.body.chunk()).await.map_err(late)? {
        let chunk = chunk.map_err(|e| Error::VodTransport(format!("{} answer unreadable: {e}", call.action())))?;
        if answer.len() + chunk.len() > max_answer {
            return Err(Error::VodTransport(format!("{} answer is larger than {max_answer} bytes", call.action())));
        }
        answer.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&response.status) {
        return Err(Error::VodTransport(format!("{} answered HTTP {}", call.action(), response.status)));
    }
    parse(&answer).map_err(Error::from)
}
