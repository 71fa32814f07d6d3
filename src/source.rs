//! Where a file comes from: an HTTP(S) URL (read with ranged GETs) or a local path
//! (read through the WASI filesystem). Plain data: which source is allowed, what names
//! it suggests, and how to probe, request and check ranges. The reading itself
//! happens in the engine, through the platform adapter.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A file's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "location")]
pub enum Source {
    /// `http://` or `https://` URL, e.g. a presigned object-storage URL.
    Url(String),
    /// An absolute path under the allowed local directory.
    Path(String),
}

/// What the deployment allows as sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Allowed `scheme://host[:port]` origins for URL sources (Spin's
    /// `allowed_outbound_hosts` for the object store). `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The directory local paths must be under; `None` refuses local paths.
    pub local_root: Option<String>,
}

/// What is wrong with a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Not a URL or path we can read.
    Invalid(String),
    /// A URL whose origin this deployment may not reach, or a path outside the root.
    NotAllowed(String),
    /// The source could not be read (network, status, missing file).
    Unreachable(String),
    /// The source is not the file the upload started with.
    Changed(String),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Invalid(m) | SourceError::NotAllowed(m) | SourceError::Unreachable(m) | SourceError::Changed(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for SourceError {}

/// `scheme://host[:port]` of a URL, lower-cased, default ports dropped.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

impl Source {
    /// Reads a user's `source` string and checks it against the policy.
    pub fn parse(text: &str, policy: &SourcePolicy) -> Result<Source, SourceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SourceError::Invalid("source is empty".into()));
        }
        if text.chars().any(char::is_control) || text.contains(' ') {
            return Err(SourceError::Invalid("source must not contain spaces or control characters".into()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let Some(origin) = origin_of(text) else {
                return Err(SourceError::Invalid(format!(
                    "source scheme {scheme:?} is not supported: use an http(s) URL or an absolute path"
                )));
            };
            let allowed = policy.allowed_origins.iter().any(|o| o == "*" || origin_of(o).as_deref() == Some(&origin));
            if !allowed {
                return Err(SourceError::NotAllowed(format!(
                    "source origin {origin} is not an allowed outbound host of this deployment (set the source_origin variable)"
                )));
            }
            return Ok(Source::Url(text.to_owned()));
        }
        if !text.starts_with('/') {
            return Err(SourceError::Invalid("source must be an http(s) URL or an absolute path".into()));
        }
        let Some(root) = &policy.local_root else {
            return Err(SourceError::NotAllowed("local path sources are disabled in this deployment".into()));
        };
        if text.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(SourceError::Invalid("source path must not contain . or .. segments".into()));
        }
        let root = root.trim_end_matches('/');
        if !text.starts_with(&format!("{root}/")) {
            return Err(SourceError::NotAllowed(format!("source path must be under {root}/")));
        }
        Ok(Source::Path(text.to_owned()))
    }

    /// The source as the user wrote it.
    pub fn location(&self) -> &str {
        match self {
            Source::Url(s) | Source::Path(s) => s,
        }
    }

    /// The last path segment (query and fragment removed, percent-escapes decoded).
    fn last_segment(&self) -> String {
        let path = match self {
            Source::Url(url) => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
                let path = rest.split(['?', '#']).next().unwrap_or("");
                path.split_once('/').map(|(_, p)| p).unwrap_or("")
            }
            Source::Path(p) => p.as_str(),
        };
        let segment = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
        percent_decode(segment)
    }

    /// fileName and fileType suggested by the source's last path segment, made valid
    /// for the protocol: no extension and none of `\ / : * ? " < > |` in the name, at
    /// most 40 bytes; the extension (letters and digits) as the type, else `mp4`.
    pub fn default_names(&self) -> (String, String) {
        let segment = self.last_segment();
        let (stem, ext) = match segment.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() && ext.len() <= 16 && ext.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                (stem.to_owned(), ext.to_ascii_lowercase())
            }
            _ => (segment.clone(), "mp4".to_owned()),
        };
        (sanitize_file_name(&stem), ext)
    }
}

/// Makes any text a valid fileName: forbidden and control characters become `_`,
/// cut to 40 bytes on a character boundary; empty becomes `upload`.
pub fn sanitize_file_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if crate::protocol::FORBIDDEN_NAME_CHARS.contains(&c) || c.is_control() { '_' } else { c };
        if out.len() + c.len_utf8() > crate::protocol::MAX_FILE_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    if trimmed.is_empty() { "upload".to_owned() } else { trimmed.to_owned() }
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What identifies the source's content: checked on every read, so a source that
/// changed mid-upload fails the upload instead of corrupting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Size in bytes.
    pub size: u64,
    /// HTTP ETag, when the server gave one (strong or weak, as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// HTTP Last-Modified, or a local file's modification time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// Looks up a header (case-insensitive) in a list.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Parses `bytes START-END/TOTAL`.
fn content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?, total))
}

/// The probe that learns a URL source's identity: a one-byte ranged GET (which a
/// presigned GET URL allows, where HEAD may not be).
pub const PROBE_RANGE: &str = "bytes=0-0";

/// Reads the probe's answer.
pub fn identity_from_probe(status: u16, headers: &[(String, String)]) -> Result<Identity, SourceError> {
    let size = match status {
        206 => header(headers, "content-range")
            .and_then(content_range)
            .and_then(|(_, _, total)| total)
            .ok_or_else(|| SourceError::Unreachable("source answered 206 without a usable Content-Range".into()))?,
        200 => header(headers, "content-length").and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
            SourceError::Unreachable("source ignores Range requests and gives no Content-Length".into())
        })?,
        416 => 0,
        other => return Err(SourceError::Unreachable(format!("source answered HTTP {other} to a ranged GET"))),
    };
    if size == 0 {
        return Err(SourceError::Invalid("source is empty: the service needs a file of at least one byte".into()));
    }
    Ok(Identity {
        size,
        etag: header(headers, "etag").map(str::to_owned),
        last_modified: header(headers, "last-modified").map(str::to_owned),
    })
}

/// Headers of a ranged read of `start..end` that only succeeds on the same content.
pub fn range_request_headers(identity: &Identity, start: u64, end: u64) -> Vec<(String, String)> {
    let mut headers = vec![("range".to_owned(), format!("bytes={start}-{}", end - 1))];
    if let Some(etag) = &identity.etag {
        // If-Match needs a strong ETag; a weak one is compared by hand on the answer.
        if !etag.starts_with("W/") {
            headers.push(("if-match".to_owned(), etag.clone()));
        }
    } else if let Some(modified) = &identity.last_modified {
        headers.push(("if-unmodified-since".to_owned(), modified.clone()));
    }
    headers
}

/// Checks a ranged read's answer before its body is used.
pub fn check_range_response(identity: &Identity, start: u64, end: u64, status: u16, headers: &[(String, String)]) -> Result<(), SourceError> {
    let changed = |why: String| SourceError::Changed(format!("the source changed since the upload started: {why}"));
    match status {
        206 => {}
        412 => return Err(changed("precondition failed (ETag or Last-Modified differs)".into())),
        200 if start == 0 && end == identity.size => {}
        200 => return Err(SourceError::Unreachable("source ignored the Range header".into())),
        other => return Err(SourceError::Unreachable(format!("source answered HTTP {other} to a ranged GET"))),
    }
    if let (Some(expected), Some(given)) = (&identity.etag, header(headers, "etag")) {
        if expected != given {
            return Err(changed(format!("ETag {given} instead of {expected}")));
        }
    }
    if status == 206 {
        match header(headers, "content-range").and_then(content_range) {
            Some((s, e, total)) if s == start && e + 1 == end && total.is_none_or(|t| t == identity.size) => {}
            Some((_, _, Some(total))) if total != identity.size => {
                return Err(changed(format!("size {total} instead of {}", identity.size)))
            }
            _ => return Err(SourceError::Unreachable("source answered with a different range".into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SourcePolicy {
        SourcePolicy { allowed_origins: vec!["https://bucket.s3.amazonaws.com".into()], local_root: Some("/data".into()) }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sources_are_checked_against_the_policy() {
        let p = policy();
        assert_eq!(Source::parse("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz=1", &p).unwrap(), Source::Url("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz=1".into()));
        assert!(Source::parse("HTTPS://Bucket.S3.amazonaws.com:443/x", &p).is_ok());
        assert!(matches!(Source::parse("https://evil.example.com/x", &p), Err(SourceError::NotAllowed(_))));
        assert!(matches!(Source::parse("ftp://bucket.s3.amazonaws.com/x", &p), Err(SourceError::Invalid(_))));
        assert_eq!(Source::parse("/data/in/clip.mov", &p).unwrap(), Source::Path("/data/in/clip.mov".into()));
        assert!(matches!(Source::parse("/etc/passwd", &p), Err(SourceError::NotAllowed(_))));
        assert!(matches!(Source::parse("/data/../etc/passwd", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("data/x", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("", &p), Err(SourceError::Invalid(_))));
        let any = SourcePolicy { allowed_origins: vec!["*".into()], local_root: None };
        assert!(Source::parse("http://127.0.0.1:8080/x", &any).is_ok());
        assert!(matches!(Source::parse("/data/x", &any), Err(SourceError::NotAllowed(_))));
    }

    #[test]
    fn names_are_made_valid_for_the_protocol() {
        let names = |s: &str| Source::Url(s.into()).default_names();
        assert_eq!(names("https://h/videos/My%20Clip.MOV?sig=1"), ("My Clip".into(), "mov".into()));
        assert_eq!(names("https://h/a:b*c?.mp4"), ("a_b_c".into(), "mp4".into()));
        assert_eq!(Source::Path("/data/a?b|c.MOV".into()).default_names(), ("a_b_c".into(), "mov".into()));
        assert_eq!(names("https://h/"), ("upload".into(), "mp4".into()));
        assert_eq!(names("https://h/%E4%B8%AD%zz%"), ("中%zz%".into(), "mp4".into()));
        assert_eq!(names("https://h/archive.tar.gz"), ("archive.tar".into(), "gz".into()));
        let long = Source::Path(format!("/data/{}.flv", "é".repeat(30))).default_names();
        assert!(long.0.len() <= 40 && long.0.chars().all(|c| c == 'é'));
        assert_eq!(long.1, "flv");
    }

    #[test]
    fn probe_and_range_checks() {
        let id = identity_from_probe(206, &h(&[("Content-Range", "bytes 0-0/1000"), ("ETag", "\"abc\"")])).unwrap();
        assert_eq!(id, Identity { size: 1000, etag: Some("\"abc\"".into()), last_modified: None });
        assert!(matches!(identity_from_probe(416, &[]), Err(SourceError::Invalid(_))));
        assert!(matches!(identity_from_probe(403, &[]), Err(SourceError::Unreachable(_))));
        assert_eq!(identity_from_probe(200, &h(&[("content-length", "5")])).unwrap().size, 5);

        let req = range_request_headers(&id, 100, 200);
        assert_eq!(req, h(&[("range", "bytes=100-199"), ("if-match", "\"abc\"")]));
        let ok = h(&[("content-range", "bytes 100-199/1000"), ("etag", "\"abc\"")]);
        assert!(check_range_response(&id, 100, 200, 206, &ok).is_ok());
        assert!(matches!(check_range_response(&id, 100, 200, 412, &[]), Err(SourceError::Changed(_))));
        let other_tag = h(&[("content-range", "bytes 100-199/1000"), ("etag", "\"xyz\"")]);
        assert!(matches!(check_range_response(&id, 100, 200, 206, &other_tag), Err(SourceError::Changed(_))));
        let other_size = h(&[("content-range", "bytes 100-199/1001")]);
        assert!(matches!(check_range_response(&id, 100, 200, 206, &other_size), Err(SourceError::Changed(_))));
        assert!(check_range_response(&id, 100, 200, 200, &[]).is_err());
        assert!(check_range_response(&id, 0, 1000, 200, &[]).is_ok());
    }
}
