//! Reading the source: its identity (a probe), then ranged reads chunk by chunk, each
//! wait bounded, every answer checked against the range asked for.

use super::io::{Body, HttpRequest, Io};
use super::run::Run;
use super::settings::Settings;
use super::wait::{Late, Limits};
use crate::error::Error;
use crate::source::{self, Identity, Source, SourceError};
use crate::upload::Upload;
use std::rc::Rc;

/// Learns a source's identity: a one-byte ranged GET for URLs, metadata for paths.
pub async fn probe<I: Io>(io: &I, settings: &Settings, source: &Source) -> Result<Identity, Error> {
    let limits = Limits { hard: io.now() + settings.time_limit(), stall: settings.stall_timeout };
    match source {
        Source::Url(url) => {
            let request = HttpRequest {
                method: "GET",
                url: url.clone(),
                headers: source::probe_headers(),
                body: Rc::default(),
                timeout: Some(limits.stall),
            };
            let response = match limits.wait(io, io.send(request)).await {
                Ok(sent) => sent.map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?,
                Err(Late::Stall(d)) => return Err(SourceError::Stalled(format!("source did not answer within {} s", d.as_secs())).into()),
                Err(Late::Deadline) => return Err(SourceError::Stalled("source did not answer within the invocation's time".into()).into()),
            };
            Ok(source::identity_from_probe(response.status, &response.headers)?)
        }
        Source::Path(path) => {
            let info = io.file_info(path).await.map_err(|e| file_error(path, e))?;
            if !info.is_file {
                return Err(SourceError::Invalid(format!("{path} is not a file")).into());
            }
            if info.size == 0 {
                return Err(SourceError::Invalid(format!("{path} is empty: the service needs at least one byte")).into());
            }
            Ok(Identity { size: info.size, etag: None, last_modified: info.modified })
        }
    }
}

pub(crate) fn file_error(path: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::NotFound(format!("{path} does not exist")),
        std::io::ErrorKind::PermissionDenied => SourceError::Denied(format!("cannot read {path}: {e}")),
        _ => SourceError::Unreachable(format!("cannot read {path}: {e}")),
    }
    .into()
}

/// A source opened at a range.
pub(crate) enum Reader<B> {
    Http {
        body: B,
        /// Bytes of the range still to come.
        left: u64,
        /// Bytes to drop first (a source without ranges sends the whole file).
        skip: u64,
        /// The body is the whole file: bytes past the range are not read.
        whole: bool,
        /// Whether to check, once the range is in, that the body ends there.
        check_end: bool,
    },
    File {
        path: String,
        pos: u64,
        left: u64,
    },
    Memory {
        bytes: Rc<Vec<u8>>,
        pos: usize,
        end: usize,
    },
}

/// Largest chunk handed on at once from a local file or the kept file.
const CHUNK: u64 = 1 << 20;

/// The next chunk of a source, each wait bounded by `limits`.
pub(crate) async fn read_chunk<I: Io>(io: &I, limits: Limits, reader: &mut Reader<I::Body>) -> Result<Option<Vec<u8>>, Error> {
    let late = |late: Late| match late {
        Late::Deadline => Error::OutOfTime,
        Late::Stall(d) => SourceError::Stalled(format!("source sent nothing for {} s", d.as_secs())).into(),
    };
    match reader {
        Reader::Http { body, left, skip, whole, check_end } => loop {
            if *left == 0 {
                if !*check_end {
                    return Ok(None);
                }
                // The body's length was not stated: it must end here, not run on.
                return match limits.wait(io, body.chunk()).await.map_err(late)? {
                    None => {
                        *check_end = false;
                        Ok(None)
                    }
                    Some(Ok(chunk)) if chunk.is_empty() => continue,
                    Some(Ok(_)) => Err(SourceError::BadRange("source sent more bytes than the range asked for".into()).into()),
                    Some(Err(e)) => Err(SourceError::Unreachable(format!("source read failed: {e}")).into()),
                };
            }
            match limits.wait(io, body.chunk()).await.map_err(late)? {
                None => return Err(SourceError::Unreachable(format!("source body ended {left} bytes early")).into()),
                Some(Err(e)) => return Err(SourceError::Unreachable(format!("source read failed: {e}")).into()),
                Some(Ok(mut chunk)) => {
                    if *skip > 0 {
                        // Compared as u64: on wasm32 a count of 4 GiB or more does not fit usize.
                        let drop = (chunk.len() as u64).min(*skip) as usize;
                        chunk.drain(..drop);
                        *skip -= drop as u64;
                    }
                    if chunk.len() as u64 > *left {
                        if !*whole {
                            return Err(SourceError::BadRange("source sent more bytes than the range asked for".into()).into());
                        }
                        chunk.truncate(*left as usize);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    *left -= chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            }
        },
        Reader::File { path, pos, left } => {
            if *left == 0 {
                return Ok(None);
            }
            let want = (*left).min(CHUNK) as usize;
            let chunk = limits.wait(io, io.read_file(path, *pos, want)).await.map_err(late)?.map_err(|e| file_error(path, e))?;
            if chunk.is_empty() {
                return Err(SourceError::Changed("the source file became shorter".into()).into());
            }
            let n = chunk.len().min(want);
            *pos += n as u64;
            *left -= n as u64;
            Ok(Some(if n == chunk.len() { chunk } else { chunk[..n].to_vec() }))
        }
        Reader::Memory { bytes, pos, end } => {
            if pos >= end {
                return Ok(None);
            }
            let to = (*pos + CHUNK as usize).min(*end);
            let chunk = bytes[*pos..to].to_vec();
            *pos = to;
            Ok(Some(chunk))
        }
    }
}

impl<I: Io> Run<'_, I> {
    /// Opens the source at `start..end`: the file kept in memory, a ranged GET, or a local file.
    pub(crate) async fn open(&mut self, up: &mut Upload, start: u64, end: u64) -> Result<Reader<I::Body>, Error> {
        if let Some(bytes) = &self.memory {
            return Ok(Reader::Memory { bytes: bytes.clone(), pos: start as usize, end: end as usize });
        }
        match &up.spec.source {
            Source::Url(url) => {
                up.stats.source_requests += 1;
                let request = HttpRequest {
                    method: "GET",
                    url: url.clone(),
                    headers: source::range_request_headers(&up.identity, start, end),
                    body: Rc::default(),
                    timeout: Some(self.limits.stall),
                };
                let response = match self.limits.wait(self.io, self.io.send(request)).await {
                    Ok(sent) => sent.map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?,
                    Err(Late::Deadline) => return Err(Error::OutOfTime),
                    Err(Late::Stall(d)) => {
                        return Err(SourceError::Stalled(format!("source did not answer within {} s", d.as_secs())).into())
                    }
                };
                let answer =
                    source::check_range_response(&up.identity, start, end, response.status, &response.headers, self.s.memory_threshold)?;
                Ok(Reader::Http {
                    body: response.body,
                    left: end - start,
                    skip: start - answer.body_start,
                    whole: answer.whole,
                    check_end: !answer.length_known && !answer.whole,
                })
            }
            Source::Path(path) => {
                let info = self.io.file_info(path).await.map_err(|e| file_error(path, e))?;
                if info.size != up.identity.size || info.modified != up.identity.last_modified {
                    return Err(SourceError::Changed(format!(
                        "the source changed since the upload started: {path} is now {} bytes, modified {}",
                        info.size,
                        info.modified.unwrap_or_default()
                    ))
                    .into());
                }
                Ok(Reader::File { path: path.clone(), pos: start, left: end - start })
            }
        }
    }
}
