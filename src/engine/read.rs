//! Reading the source: its identity (a probe), then ranged reads chunk by chunk, each
//! wait bounded, every answer checked against the range asked for.

use super::io::{Body, HttpRequest, HttpResponse, Io};
use super::run::Run;
use super::settings::Settings;
use super::wait::{Late, Limits};
use crate::error::Error;
use crate::source::s3::{self, S3Access};
use crate::source::{self, Identity, Source, SourceError};
use crate::upload::Upload;
use std::rc::Rc;

/// The source's identity, refused when the source is too large to upload in parts of
/// `part_size` (more than [`crate::parts::MAX_PARTS`]).
pub async fn probe_for<I: Io>(io: &I, settings: &Settings, source: &Source, part_size: u64) -> Result<Identity, Error> {
    let identity = probe(io, settings, source).await?;
    crate::parts::check_part_count(identity.size, part_size)
        .map_err(|e| SourceError::Invalid(format!("the source is too large to upload: {e}")))?;
    Ok(identity)
}

/// Learns a source's identity: a one-byte ranged GET for URLs and S3 objects, metadata
/// for paths.
pub async fn probe<I: Io>(io: &I, settings: &Settings, source: &Source) -> Result<Identity, Error> {
    let limits = Limits { hard: io.now() + settings.time_limit(), stall: settings.stall_timeout };
    match source {
        Source::Url(_) | Source::S3(_) => {
            let deadline = SourceError::Stalled("source did not answer within the invocation's time".into()).into();
            let response = send_source(io, settings, limits, source, source::probe_headers(), deadline).await?;
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

/// Sends a GET of a URL or S3 source with `headers`: the one place such a request is
/// built, so the probe and every ranged read are signed alike. An `s3://` source becomes
/// its object's URL; a signed request is signed here, at the moment it is sent, so a
/// retry carries a fresh `x-amz-date`. URL sources the settings do not sign go out
/// exactly as given. `deadline` is the error when the invocation's time runs out first.
/// A signed read the store refuses fails as `Denied`, naming the key id.
async fn send_source<I: Io>(
    io: &I,
    s: &Settings,
    limits: Limits,
    source: &Source,
    mut headers: Vec<(String, String)>,
    deadline: Error,
) -> Result<HttpResponse<I::Body>, Error> {
    let (url, signer) = match source {
        Source::Url(url) => (url.clone(), s.s3.as_ref().filter(|a| a.signs(url))),
        Source::S3(location) => {
            let Some(access) = &s.s3 else {
                return Err(SourceError::NotAllowed(
                    "the source is an s3:// object but this deployment has no S3 access: set the source_access_key_id and \
                     source_secret_access_key variables"
                        .into(),
                )
                .into());
            };
            let (bucket, key) = s3::parse_s3_url(location).map_err(SourceError::Invalid)?;
            (access.object_url(bucket, key), Some(access))
        }
        Source::Path(path) => return Err(SourceError::Invalid(format!("{path} is a local path, not read over HTTP")).into()),
    };
    if let Some(access) = signer {
        access.sign("GET", &url, &mut headers, io.unix_now());
    }
    let request = HttpRequest { method: "GET", url, headers, body: Rc::default(), timeout: Some(limits.stall) };
    let mut response = match limits.wait(io, io.send(request)).await {
        Ok(sent) => sent.map_err(|e| SourceError::Unreachable(format!("source request failed: {e}")))?,
        Err(Late::Stall(d)) => return Err(SourceError::Stalled(format!("source did not answer within {} s", d.as_secs())).into()),
        Err(Late::Deadline) => return Err(deadline),
    };
    if let Some(access) = signer {
        if matches!(response.status, 400 | 401 | 403) {
            let head = error_head(io, limits, &mut response.body).await;
            // S3 answers some credential problems (ExpiredToken) with 400; any other 400
            // stays a refused request.
            if response.status != 400 || s3::is_denied_code(&head) {
                return Err(denied(access, &head));
            }
        }
    }
    Ok(response)
}

/// The first 4 KiB of an error body at most (enough for S3's `<Code>`), each wait bounded;
/// what cannot be read is left out.
async fn error_head<I: Io>(io: &I, limits: Limits, body: &mut I::Body) -> Vec<u8> {
    const HEAD: usize = 4 << 10;
    let mut head = Vec::new();
    while head.len() < HEAD {
        match limits.wait(io, body.chunk()).await {
            Ok(Some(Ok(chunk))) => head.extend_from_slice(&chunk),
            _ => break,
        }
    }
    head.truncate(HEAD);
    head
}

fn denied(access: &S3Access, head: &[u8]) -> Error {
    SourceError::Denied(s3::denied_message(&access.creds.access_key_id, head)).into()
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
            Source::Url(_) | Source::S3(_) => {
                up.stats.source_requests += 1;
                let headers = source::range_request_headers(&up.identity, start, end);
                let response = send_source(self.io, self.s, self.limits, &up.spec.source, headers, Error::OutOfTime).await?;
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
