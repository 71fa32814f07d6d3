//! Models of the peers: a source (an object store, or a local file) that can stall,
//! fail, compress, ignore ranges or change; and the VOD service with its sessions,
//! parts and files, its codes 0/1/2, faults, odd answers and answers lost after it
//! acted. They follow the protocol document and `host-sim vod`, which the real-HTTP
//! tests hold to the same rules.

use super::world::{Answer, BodyKind, Delivery, Rng};
use md5::Digest as _;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use vod_uploader::engine::{FileInfo, HttpRequest};
use vod_uploader::protocol::codes;
use vod_uploader::source::header;

/// Host name of the modelled VOD service.
pub const VOD_HOST: &str = "vod.sim";

fn md5_hex(bytes: &[u8]) -> String {
    vod_uploader::hex::encode(&md5::Md5::digest(bytes))
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    vod_uploader::hex::encode(&sha1::Sha1::digest(bytes))
}

/// How a source misbehaves beyond transient faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    None,
    /// Answers 200 with the whole file to every ranged request.
    IgnoresRange,
    /// Answers with `Content-Encoding: gzip` whatever was asked (the bytes differ).
    Gzip,
    /// Answers a range one byte off the one asked for.
    ShiftedRange,
    /// Answers the range asked for plus extra bytes, without a Content-Length.
    LongBody,
    /// From its n-th request on, answers this status (an expired presigned URL: 403).
    StatusFrom(u16, u64),
    /// From its n-th request on, never answers.
    SilentFrom(u64),
}

/// The `Range: bytes=A-B` a request asks for (B inclusive), as the source model reads
/// it: anything else is a request for the whole file.
pub fn requested_range(request: &HttpRequest) -> Option<(u64, u64)> {
    let (a, b) = header(&request.headers, "range")?.strip_prefix("bytes=")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A source file: an object behind a URL, or a local file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub bytes: Vec<u8>,
    /// New content (and ETag) from this virtual time on.
    pub change: Option<(Duration, Vec<u8>)>,
    pub quirk: Quirk,
    /// Bytes per body chunk, and the time between chunks.
    pub chunk: usize,
    pub gap: Duration,
    /// Probability that a request fails for now (503, dropped, silent, stalled mid-body).
    pub flaky: f64,
    /// Whether a 206 states its Content-Length (else the body's end is the only bound).
    pub states_length: bool,
    pub requests: u64,
}

impl SourceFile {
    pub fn new(bytes: Vec<u8>) -> Self {
        SourceFile {
            bytes,
            change: None,
            quirk: Quirk::None,
            chunk: 4096,
            gap: Duration::from_millis(1),
            flaky: 0.0,
            states_length: true,
            requests: 0,
        }
    }

    /// The content and its version at `now`.
    fn at(&self, now: Duration) -> (&[u8], u32) {
        match &self.change {
            Some((when, bytes)) if now >= *when => (bytes, 2),
            _ => (&self.bytes, 1),
        }
    }

    pub fn file_info(&self, now: Duration) -> FileInfo {
        let (bytes, version) = self.at(now);
        FileInfo { is_file: true, size: bytes.len() as u64, modified: Some(format!("{version}.000000000")) }
    }

    pub fn read(&self, now: Duration, offset: u64, len: usize) -> Vec<u8> {
        let (bytes, _) = self.at(now);
        let start = (offset as usize).min(bytes.len());
        bytes[start..(start + len).min(bytes.len())].to_vec()
    }

    fn status(status: u16) -> Delivery {
        Delivery::Answer(Answer {
            status,
            headers: vec![],
            chunks: vec![b"no".to_vec()],
            skip: 0,
            gap: Duration::ZERO,
            stall: false,
            kind: BodyKind::Other,
        })
    }

    /// Answers a GET.
    pub fn handle(&mut self, request: &HttpRequest, now: Duration, rng: &mut Rng) -> Delivery {
        self.requests += 1;
        let (quirk, chunk, gap, states_length, requests) = (self.quirk, self.chunk, self.gap, self.states_length, self.requests);
        let (bytes, version) = self.at(now);
        let size = bytes.len() as u64;
        let etag = format!("\"v{version}-{size}\"");
        let mut stall_mid_body = false;
        if rng.chance(self.flaky) {
            match rng.range(0, 3) {
                0 => return Self::status(503),
                1 => return Delivery::Dropped,
                2 => return Delivery::Silence,
                _ => stall_mid_body = true,
            }
        }
        match quirk {
            Quirk::StatusFrom(status, from) if requests >= from => return Self::status(status),
            Quirk::SilentFrom(from) if requests >= from => return Delivery::Silence,
            _ => {}
        }
        if let Some(want) = header(&request.headers, "if-match") {
            if want != etag {
                return Self::status(412);
            }
        }
        let range = requested_range(request).map(|(a, b)| (a, b.saturating_add(1).min(size)));
        let mut headers = vec![("etag".to_owned(), etag)];
        let (status, start, end) = match range {
            Some((a, _)) if a >= size => {
                headers.push(("content-range".into(), format!("bytes */{size}")));
                return Delivery::Answer(Answer {
                    status: 416,
                    headers,
                    chunks: vec![],
                    skip: 0,
                    gap,
                    stall: false,
                    kind: BodyKind::Other,
                });
            }
            Some((a, b)) if quirk != Quirk::IgnoresRange => (206, a, b.max(a + 1)),
            _ => (200, 0, size),
        };
        let (body_start, body_end) = if quirk == Quirk::ShiftedRange && status == 206 {
            let s = (start + 1).min(size - 1);
            (s, (s + (end - start)).min(size))
        } else {
            (start, end)
        };
        let mut body = bytes[body_start as usize..body_end as usize].to_vec();
        if status == 206 {
            headers.push(("content-range".into(), format!("bytes {body_start}-{}/{size}", body_end - 1)));
        }
        match quirk {
            Quirk::Gzip => {
                headers.push(("content-encoding".into(), "gzip".into()));
                body.iter_mut().for_each(|b| *b = b.rotate_left(3) ^ 0x5a);
            }
            Quirk::LongBody => body.extend_from_slice(&[0xee; 100]),
            _ => {}
        }
        if states_length && quirk != Quirk::LongBody {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        let mut chunks: Vec<Vec<u8>> = body.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect();
        if stall_mid_body && !chunks.is_empty() {
            chunks.truncate(rng.range(0, chunks.len() as u64 - 1) as usize);
        }
        // A whole file sent for a range: the bytes before the range are only skipped.
        let skip = match range {
            Some((a, _)) if status == 200 => a as usize,
            _ => 0,
        };
        Delivery::Answer(Answer { status, headers, chunks, skip, gap, stall: stall_mid_body, kind: BodyKind::Source })
    }
}

/// An open upload session of the service.
#[derive(Debug, Clone)]
pub struct Session {
    pub file_size: u64,
    pub data_size: u64,
    pub parts: BTreeMap<u64, Vec<u8>>,
}

/// A file the service holds.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub file_id: String,
    pub url: String,
    pub bytes: Vec<u8>,
}

/// The VOD service.
#[derive(Debug, Default)]
pub struct Service {
    pub sessions: HashMap<String, Session>,
    pub files: HashMap<String, StoredFile>,
    /// Probability of a fault per request (retryable error, 503, dropped before or
    /// after acting, silence).
    pub faults: f64,
    /// Probability of an odd answer (not JSON, unknown code, code 1 with `dataSize` 0,
    /// a success without `fileId`).
    pub odd: f64,
    /// InitUpload is refused for good (`canRetry: 0`), as for bad credentials.
    pub refuse: bool,
    /// UploadPart calls that carried a part the session already held, byte-identical.
    pub duplicate_parts: u64,
    pub part_calls: u64,
}

fn code(code: i64, message: &str, retry: bool) -> serde_json::Value {
    json!({ "code": code, "message": message, "codeDesc": "", "canRetry": retry as u8 })
}

impl Service {
    pub fn file_id_for(sha: &str) -> String {
        let n = u64::from_str_radix(&sha[..15], 16).unwrap_or(0);
        (1_000_000_000_000_000_000u64 + n).to_string()
    }

    /// Stores a finished file outright (the same bytes uploaded earlier).
    pub fn hold(&mut self, bytes: &[u8]) -> StoredFile {
        let sha = sha1_hex(bytes);
        let file_id = Self::file_id_for(&sha);
        let file = StoredFile { url: format!("http://1.vod2.example/{file_id}/f0.mp4"), file_id, bytes: bytes.to_vec() };
        self.files.insert(sha, file.clone());
        file
    }

    /// Answers a call.
    pub fn handle(&mut self, request: &HttpRequest, _unix: u64, rng: &mut Rng) -> Delivery {
        let query = request.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let action = params.get("Action").map(String::as_str).unwrap_or_default();
        let kind = if action == "UploadPart" { BodyKind::PartAck } else { BodyKind::Other };
        let mut dropped_after = false;
        if rng.chance(self.faults) {
            match rng.range(0, 4) {
                0 => return Delivery::Answer(Answer::json(code(codes::WRITE_CACHE, "failed to write cache", true), BodyKind::Other)),
                1 => {
                    return Delivery::Answer(Answer {
                        status: 503,
                        headers: vec![],
                        chunks: vec![b"<html>busy</html>".to_vec()],
                        skip: 0,
                        gap: Duration::ZERO,
                        stall: false,
                        kind: BodyKind::Other,
                    })
                }
                2 => return Delivery::Dropped,
                3 => dropped_after = true,
                _ => return Delivery::Silence,
            }
        }
        if rng.chance(self.odd) {
            let odd = match (action, rng.range(0, 3)) {
                (_, 0) => {
                    return Delivery::Answer(Answer {
                        status: 200,
                        headers: vec![],
                        chunks: vec![b"<html>gateway</html>".to_vec()],
                        skip: 0,
                        gap: Duration::ZERO,
                        stall: false,
                        kind: BodyKind::Other,
                    })
                }
                ("InitUpload", 1) => json!({"code": 1, "dataSize": 0, "listParts": [{"offset": "x"}]}),
                ("FinishUpload", 1) => json!({"code": 0, "fileId": ""}),
                (_, 2) => json!({"code": 7}),
                _ => json!({"code": "zero", "listParts": {}}),
            };
            return Delivery::Answer(Answer::json(odd, BodyKind::Other));
        }
        let value = match action {
            "InitUpload" => self.init(&params),
            "UploadPart" => self.part(&params, &request.body),
            "FinishUpload" => self.finish(&params),
            _ => code(codes::COMMON, "unknown Action", false),
        };
        if dropped_after {
            // The service acted; its answer is lost on the way back.
            return Delivery::Dropped;
        }
        let kind = if value["code"] == 0 { kind } else { BodyKind::Other };
        Delivery::Answer(Answer::json(value, kind))
    }

    fn init(&mut self, p: &HashMap<String, String>) -> serde_json::Value {
        let sha = p.get("fileSha").cloned().unwrap_or_default();
        let size: u64 = p.get("fileSize").and_then(|v| v.parse().ok()).unwrap_or(0);
        let data_size: u64 = p.get("dataSize").and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Some(file) = self.files.get(&sha) {
            return json!({ "code": 2, "fileId": file.file_id, "url": file.url });
        }
        if self.refuse {
            return code(codes::SIGNATURE, "signature verification failed", false);
        }
        if sha.len() != 40 || size == 0 || data_size == 0 {
            return code(codes::PARAMS, "bad parameters", false);
        }
        match self.sessions.get(&sha) {
            Some(s) if s.file_size != size => code(codes::PARAMS, "fileSize differs from the open session", false),
            Some(s) => {
                let parts: Vec<_> = s.parts.iter().map(|(o, b)| json!({"offset": o, "dataSize": b.len(), "dataMd5": md5_hex(b)})).collect();
                json!({ "code": 1, "dataSize": s.data_size, "listParts": parts })
            }
            None => {
                self.sessions.insert(sha, Session { file_size: size, data_size, parts: BTreeMap::new() });
                json!({ "code": 0 })
            }
        }
    }

    fn part(&mut self, p: &HashMap<String, String>, body: &[u8]) -> serde_json::Value {
        self.part_calls += 1;
        let sha = p.get("fileSha").cloned().unwrap_or_default();
        let offset: u64 = p.get("offset").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
        let data_size: u64 = p.get("dataSize").and_then(|v| v.parse().ok()).unwrap_or(0);
        let Some(session) = self.sessions.get_mut(&sha) else {
            return match self.files.get(&sha) {
                Some(f) => code(codes::PARAMS, &format!("fileSha {sha} is already finished as fileId {}", f.file_id), false),
                None => code(codes::PARAMS, &format!("fileSha {sha} has no upload session"), false),
            };
        };
        if offset >= session.file_size || offset % session.data_size != 0 {
            return code(codes::PARAMS, "offset is not a part's", false);
        }
        let expected = session.data_size.min(session.file_size - offset);
        if data_size != expected {
            return code(codes::PARAMS, "dataSize is wrong for this part", false);
        }
        if body.len() as u64 != data_size {
            return code(codes::INVALID_BODY, "body length differs from dataSize", false);
        }
        if p.get("dataMd5").map(String::as_str) != Some(md5_hex(body).as_str()) {
            return code(codes::INVALID_BODY, "body MD5 does not match dataMd5", false);
        }
        if session.parts.get(&offset).is_some_and(|held| held == body) {
            self.duplicate_parts += 1;
        }
        session.parts.insert(offset, body.to_vec());
        code(0, "", false)
    }

    fn finish(&mut self, p: &HashMap<String, String>) -> serde_json::Value {
        let sha = p.get("fileSha").cloned().unwrap_or_default();
        if let Some(f) = self.files.get(&sha) {
            return json!({ "code": 0, "fileId": f.file_id, "url": f.url, "sessionInfo": {} });
        }
        let Some(session) = self.sessions.get(&sha) else {
            return code(codes::PARAMS, &format!("fileSha {sha} has no upload session"), false);
        };
        let count = session.file_size.div_ceil(session.data_size);
        let missing = (0..count).filter(|i| {
            let offset = i * session.data_size;
            session.parts.get(&offset).map(|b| b.len() as u64) != Some(session.data_size.min(session.file_size - offset))
        });
        if missing.count() > 0 {
            return code(codes::PARAMS, "parts are missing", false);
        }
        let bytes: Vec<u8> = session.parts.values().flatten().copied().collect();
        if sha1_hex(&bytes) != sha {
            return code(codes::PARAMS, "fileSha does not match the parts; the session stays open", false);
        }
        self.sessions.remove(&sha);
        let file = self.hold(&bytes);
        json!({ "code": 0, "fileId": file.file_id, "url": file.url, "sessionInfo": {} })
    }
}
