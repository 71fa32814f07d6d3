//! Where a file comes from: an HTTP(S) URL (read with ranged GETs) or a local path
//! (read through the WASI filesystem). Plain data: which source is allowed, what names
//! it suggests, and how to probe, request and check ranges. The reading itself
//! happens in the engine, through the platform adapter.

use crate::protocol::params;
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

impl SourcePolicy {
    /// The policy from the deployment's variables: `source_origin` (exactly one
    /// origin, since Spin uses it as one `allowed_outbound_hosts` entry),
    /// `other_source_origins` (more origins, comma-separated; each must also be its
    /// own `allowed_outbound_hosts` entry) and `local_dir`. An error names the
    /// variable and what is wrong, never the value (it may be a private bucket).
    pub fn from_variables(
        source_origin: Option<&str>,
        other_origins: Option<&str>,
        local_dir: Option<&str>,
    ) -> Result<SourcePolicy, String> {
        let mut allowed_origins = Vec::new();
        if let Some(text) = source_origin.map(str::trim).filter(|t| !t.is_empty()) {
            if text.contains(',') || text.split_whitespace().nth(1).is_some() {
                return Err("the source_origin variable must be exactly one origin (scheme://host[:port]), but it holds several: \
                     Spin uses it as one allowed_outbound_hosts entry, and one invalid entry makes Spin deny every outbound \
                     request. To read from several origins, list each as its own entry of allowed_outbound_hosts in \
                     spin.toml and in the component variable other_source_origins (comma-separated)"
                    .into());
            }
            allowed_origins.push(parse_origin(text).map_err(|e| format!("the source_origin variable {e}"))?);
        }
        for text in other_origins.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
            allowed_origins.push(parse_origin(text).map_err(|e| format!("an entry of the other_source_origins variable {e}"))?);
        }
        let local_root = local_dir.map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned);
        Ok(SourcePolicy { allowed_origins, local_root })
    }

    /// Whether URL sources at `origin` (as [`origin_of`] gives it) may be read.
    fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| {
            if allowed == "*" {
                return true;
            }
            // `scheme://*.domain[:port]` allows every subdomain, as in allowed_outbound_hosts.
            if let Some((scheme, rest)) = allowed.split_once("://*.") {
                return origin
                    .strip_prefix(scheme)
                    .and_then(|o| o.strip_prefix("://"))
                    .is_some_and(|authority| authority.split_once('.').is_some_and(|(label, domain)| !label.is_empty() && domain == rest));
            }
            origin_of(allowed).as_deref() == Some(origin)
        })
    }
}

/// Checks one origin as a deployment names it: `http(s)://host[:port]`, a trailing
/// `/` allowed, `*.` before the host for every subdomain; lower-cased, default port
/// dropped. The error completes a sentence naming where the origin came from.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let shape = "must be one origin such as https://bucket.s3.amazonaws.com (scheme://host[:port], no path)";
    let text = text.trim().strip_suffix('/').unwrap_or(text.trim());
    let Some((scheme, authority)) = text.split_once("://") else {
        return Err(format!("{shape}: the scheme is missing"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("{shape}: only http and https are supported"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!("{shape}: it has a path"));
    }
    if authority.contains('@') {
        return Err(format!("{shape}: it has a user name or password"));
    }
    let (host, wildcard) = match authority.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (authority, false),
    };
    // A port follows the last `:`, unless that colon is inside an IPv6 address `[...]`.
    let host_only = match host.rsplit_once(':') {
        Some((h, port)) if !host.ends_with(']') && (!host.starts_with('[') || h.ends_with(']')) => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{shape}: the port is not a number from 1 to 65535"));
            }
            h
        }
        _ => host,
    };
    let bracketed = host_only.starts_with('[') && host_only.ends_with(']');
    if host_only.is_empty()
        || (!bracketed && !host_only.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        || (bracketed && !host_only[1..host_only.len() - 1].chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'))
    {
        return Err(format!("{shape}: the host is not a host name or address"));
    }
    let origin = origin_of(&format!("{scheme}://{host}")).ok_or_else(|| format!("{shape}: it is not an origin"))?;
    Ok(if wildcard { origin.replacen("://", "://*.", 1) } else { origin })
}

/// What is wrong with a source. Each kind is either permanent (the upload fails at
/// once with its own code) or transient (`Unreachable`, `Stalled`: retried with backoff).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Not a URL or path we can read.
    Invalid(String),
    /// A URL whose origin this deployment may not reach, or a path outside the root.
    NotAllowed(String),
    /// The source could not be read for now (network, 5xx, 429, a body cut short).
    Unreachable(String),
    /// The source sent nothing for too long.
    Stalled(String),
    /// The source is not the file the upload started with.
    Changed(String),
    /// 401 or 403: the source refuses us (an expired presigned URL, say).
    Denied(String),
    /// 404 or 410, or a local file that is gone.
    NotFound(String),
    /// Another 4xx: the source refuses the request itself.
    Refused(String),
    /// The source ignores `Range` and the file is too large to read whole.
    NoRange(String),
    /// The answer is not the range asked for (Content-Range, Content-Length or the
    /// body's length disagree with the request).
    BadRange(String),
    /// The body is encoded (gzip, ...): its bytes are not the file's.
    Encoded(String),
}

impl SourceError {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, SourceError::Unreachable(_) | SourceError::Stalled(_))
    }

    /// The error for an HTTP status that is not a usable answer.
    pub fn from_status(status: u16) -> SourceError {
        let m = format!("source answered HTTP {status}");
        match status {
            401 | 403 => SourceError::Denied(format!("{m}: access denied (an expired or wrong presigned URL?)")),
            404 | 410 => SourceError::NotFound(format!("{m}: no such object")),
            412 => SourceError::Changed(format!("{m}: precondition failed (ETag or Last-Modified differs)")),
            408 | 425 | 429 => SourceError::Unreachable(format!("{m}: try again later")),
            400..=499 => SourceError::Refused(m),
            _ => SourceError::Unreachable(m),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Invalid(m)
            | SourceError::NotAllowed(m)
            | SourceError::Unreachable(m)
            | SourceError::Stalled(m)
            | SourceError::Changed(m)
            | SourceError::Denied(m)
            | SourceError::NotFound(m)
            | SourceError::Refused(m)
            | SourceError::NoRange(m)
            | SourceError::BadRange(m)
            | SourceError::Encoded(m) => f.write_str(m),
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
    if authority.is_empty() || authority.contains('@') || authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
        if let Some((scheme, rest)) = text.split_once("://") {
            if rest.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@')) {
                return Err(SourceError::Invalid(
                    "source URL must not carry a user name or password (user:password@host): use a presigned URL".into(),
                ));
            }
            let Some(origin) = origin_of(text) else {
                return Err(SourceError::Invalid(format!(
                    "source scheme {scheme:?} is not supported: use an http(s) URL or an absolute path"
                )));
            };
            if !policy.allows(&origin) {
                return Err(SourceError::NotAllowed(format!(
                    "source origin {origin} is not an allowed outbound host of this deployment \
                     (set the source_origin variable, or see other_source_origins for several)"
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
            Some((stem, ext)) if !stem.is_empty() && is_plain_file_type(ext) => (stem.to_owned(), ext.to_ascii_lowercase()),
            _ => (segment.clone(), "mp4".to_owned()),
        };
        (sanitize_file_name(&stem), ext)
    }
}

/// The longest fileType we suggest or accept. Ours: the document allows any fileType
/// ("usually the extension"); the API accepts, and the names suggested here give, only
/// 1 to 16 ASCII letters or digits.
pub const MAX_FILE_TYPE_LEN: usize = 16;

/// Whether `t` is a fileType by our rule: 1 to [`MAX_FILE_TYPE_LEN`] ASCII letters or
/// digits (such as mp4). Stated here, below the API, because the suggested names
/// follow it too.
pub fn is_plain_file_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_FILE_TYPE_LEN && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Makes any text a valid fileName (the document's rule, `protocol::params::file_name`,
/// and no control characters): forbidden and control characters become `_`,
/// cut to 40 bytes on a character boundary; empty becomes `upload`.
pub fn sanitize_file_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if params::forbidden_in_file_name(c) || c.is_control() { '_' } else { c };
        if out.len() + c.len_utf8() > params::MAX_FILE_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        "upload".to_owned()
    } else {
        trimmed.to_owned()
    }
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

/// Headers of the probe.
pub fn probe_headers() -> Vec<(String, String)> {
    vec![("range".to_owned(), PROBE_RANGE.to_owned()), identity_encoding()]
}

/// Asks for the bytes as stored: without it a server may compress the answer (no
/// Accept-Encoding means any coding is acceptable), and compressed bytes are not the file.
fn identity_encoding() -> (String, String) {
    ("accept-encoding".to_owned(), "identity".to_owned())
}

/// Refuses a body in any coding but identity.
fn check_encoding(headers: &[(String, String)]) -> Result<(), SourceError> {
    match header(headers, "content-encoding").map(str::trim) {
        None | Some("") => Ok(()),
        Some(coding) if coding.eq_ignore_ascii_case("identity") => Ok(()),
        Some(coding) => Err(SourceError::Encoded(format!(
            "source answered with Content-Encoding {coding:?} although identity was asked for: its bytes are not the file's"
        ))),
    }
}

fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, SourceError> {
    match header(headers, "content-length") {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| SourceError::BadRange(format!("source sent an unreadable Content-Length {v:?}"))),
    }
}

/// Reads the probe's answer.
pub fn identity_from_probe(status: u16, headers: &[(String, String)]) -> Result<Identity, SourceError> {
    check_encoding(headers)?;
    let size = match status {
        206 => match header(headers, "content-range").and_then(content_range) {
            Some((0, 0, Some(total))) => total,
            _ => return Err(SourceError::BadRange("source answered 206 without a Content-Range for byte 0".into())),
        },
        200 => content_length(headers)?
            .ok_or_else(|| SourceError::NoRange("source ignores Range requests and gives no Content-Length".into()))?,
        416 => 0,
        other => return Err(SourceError::from_status(other)),
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
    let mut headers = vec![("range".to_owned(), format!("bytes={start}-{}", end - 1)), identity_encoding()];
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

/// What a ranged read's answer holds, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeAnswer {
    /// Where the body starts in the file: `start`, or 0 when the source sent the whole
    /// file (then the bytes before `start` are to be skipped).
    pub body_start: u64,
    /// Whether the body is the whole file (then the bytes past the range are not read).
    pub whole: bool,
    /// Whether the body's length is stated (Content-Length); if not, its end is checked
    /// so a longer body is refused, never silently cut.
    pub length_known: bool,
}

/// Checks a ranged read's answer before its body is used. A source that ignores
/// `Range` is accepted only when the file is at most `whole_limit` bytes (read whole
/// and skipped into); a larger one fails with [`SourceError::NoRange`].
pub fn check_range_response(
    identity: &Identity,
    start: u64,
    end: u64,
    status: u16,
    headers: &[(String, String)],
    whole_limit: u64,
) -> Result<RangeAnswer, SourceError> {
    let changed = |why: String| SourceError::Changed(format!("the source changed since the upload started: {why}"));
    let body_start = match status {
        206 => start,
        200 if start == 0 && end == identity.size => 0,
        200 if identity.size <= whole_limit => 0,
        200 => {
            return Err(SourceError::NoRange(format!(
                "source ignores Range requests (HTTP 200 to bytes={start}-{}) and the file is too large to read whole",
                end - 1
            )))
        }
        416 => return Err(changed("a range inside the file is not satisfiable (the file became shorter)".into())),
        other => return Err(SourceError::from_status(other)),
    };
    check_encoding(headers)?;
    if let (Some(expected), Some(given)) = (&identity.etag, header(headers, "etag")) {
        if expected != given {
            return Err(changed(format!("ETag {given} instead of {expected}")));
        }
    }
    if status == 206 {
        match header(headers, "content-range").and_then(content_range) {
            Some((_, _, Some(total))) if total != identity.size => {
                return Err(changed(format!("size {total} instead of {}", identity.size)))
            }
            Some((s, e, _)) if s == start && e.checked_add(1) == Some(end) => {}
            Some((s, e, _)) => {
                return Err(SourceError::BadRange(format!("source answered bytes {s}-{e} to a request for bytes {start}-{}", end - 1)))
            }
            None => return Err(SourceError::BadRange("source answered 206 without a usable Content-Range".into())),
        }
    }
    let expected_len = if status == 206 { end - start } else { identity.size };
    let length = content_length(headers)?;
    match length {
        Some(n) if n != expected_len => {
            return Err(if status == 200 && n != identity.size {
                changed(format!("size {n} instead of {}", identity.size))
            } else {
                SourceError::BadRange(format!("source sends {n} bytes where {expected_len} were asked for"))
            })
        }
        _ => {}
    }
    Ok(RangeAnswer { body_start, whole: status == 200, length_known: length.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_headers() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop::sample::select(vec!["content-range", "Content-Length", "etag", "content-encoding", "last-modified", "x"]);
        let value = prop_oneof![
            ".{0,30}",
            "bytes [0-9]{1,21}-[0-9]{1,21}/([0-9]{1,21}|\\*)",
            "[0-9]{1,21}",
            Just("gzip".to_owned()),
            Just("identity".to_owned()),
        ];
        prop::collection::vec((name.prop_map(str::to_owned), value), 0..6)
    }

    proptest! {
        /// No status and headers make the checks panic, and an accepted ranged answer is
        /// one whose body can be used for the range asked for.
        #[test]
        fn odd_answers_never_panic_the_source_checks(
            status in prop_oneof![any::<u16>(), Just(200u16), Just(206u16), Just(412u16), Just(416u16)],
            headers in any_headers(),
            size in 1u64..=u64::MAX,
            a in any::<u64>(),
            b in any::<u64>(),
            whole_limit in any::<u64>(),
        ) {
            let _ = identity_from_probe(status, &headers);
            let identity = Identity { size, etag: Some("\"e\"".into()), last_modified: None };
            let (start, end) = (a % size, (a % size) + 1 + b % (size - a % size));
            let _ = range_request_headers(&identity, start, end);
            if let Ok(answer) = check_range_response(&identity, start, end, status, &headers, whole_limit) {
                prop_assert!(answer.body_start <= start);
                prop_assert!(answer.whole || answer.body_start == start);
                prop_assert!(header(&headers, "content-encoding").is_none_or(|c| c.trim().is_empty() || c.trim().eq_ignore_ascii_case("identity")));
            }
        }
    }

    fn policy() -> SourcePolicy {
        SourcePolicy { allowed_origins: vec!["https://bucket.s3.amazonaws.com".into()], local_root: Some("/data".into()) }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sources_are_checked_against_the_policy() {
        let p = policy();
        assert_eq!(
            Source::parse("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz=1", &p).unwrap(),
            Source::Url("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz=1".into())
        );
        assert!(Source::parse("HTTPS://Bucket.S3.amazonaws.com:443/x", &p).is_ok());
        assert!(matches!(Source::parse("https://evil.example.com/x", &p), Err(SourceError::NotAllowed(_))));
        assert!(matches!(Source::parse("ftp://bucket.s3.amazonaws.com/x", &p), Err(SourceError::Invalid(_))));
        assert_eq!(Source::parse("/data/in/clip.mov", &p).unwrap(), Source::Path("/data/in/clip.mov".into()));
        assert!(matches!(Source::parse("/etc/passwd", &p), Err(SourceError::NotAllowed(_))));
        assert!(matches!(Source::parse("/data/../etc/passwd", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("data/x", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("", &p), Err(SourceError::Invalid(_))));
        let userinfo = Source::parse("https://user:pw@bucket.s3.amazonaws.com/x", &p).unwrap_err();
        assert!(matches!(&userinfo, SourceError::Invalid(m) if m.contains("user name or password")), "{userinfo}");
        let any = SourcePolicy { allowed_origins: vec!["*".into()], local_root: None };
        assert!(Source::parse("http://127.0.0.1:8080/x", &any).is_ok());
        assert!(matches!(Source::parse("/data/x", &any), Err(SourceError::NotAllowed(_))));
    }

    #[test]
    fn source_origin_is_exactly_one_origin_and_others_are_listed_apart() {
        let policy = |origin: &str, others: &str| SourcePolicy::from_variables(Some(origin), Some(others), None);
        let p = policy("https://Bucket.S3.amazonaws.com:443/", "").unwrap();
        assert_eq!(p.allowed_origins, vec!["https://bucket.s3.amazonaws.com"]);
        // Two origins in one variable: Spin would deny every outbound request.
        for several in ["http://127.0.0.1:1,http://127.0.0.1:2", "https://a.example https://b.example", "https://a.example,"] {
            let e = policy(several, "").unwrap_err();
            assert!(e.contains("exactly one origin") && e.contains("other_source_origins") && e.contains("allowed_outbound_hosts"), "{e}");
            assert!(!e.contains("127.0.0.1") && !e.contains("a.example"), "the value is never echoed: {e}");
        }
        for (bad, why) in [
            ("bucket.s3.amazonaws.com", "scheme is missing"),
            ("ftp://h", "http and https"),
            ("https://h/videos", "has a path"),
            ("https://u:p@h", "user name or password"),
            ("https://h:0", "port"),
            ("https://h:99999", "port"),
            ("https://h_h!", "host"),
            ("https://", "host"),
        ] {
            let e = policy(bad, "").unwrap_err();
            assert!(e.starts_with("the source_origin variable must be one origin") && e.contains(why), "{bad}: {e}");
        }
        let e = policy("https://a.example", "https://b.example,https://c.example/x").unwrap_err();
        assert!(e.starts_with("an entry of the other_source_origins variable") && e.contains("has a path"), "{e}");

        assert_eq!(policy("http://[::1]", "").unwrap().allowed_origins, vec!["http://[::1]"]);
        assert_eq!(policy("http://[::1]:9000/", "").unwrap().allowed_origins, vec!["http://[::1]:9000"]);
        assert!(policy("http://[::1]:x", "").is_err() && policy("http://[zz]", "").is_err());
        let p = policy("https://a.example", " https://b.example:8443 , http://*.bucket.example ,").unwrap();
        assert_eq!(p.allowed_origins, vec!["https://a.example", "https://b.example:8443", "http://*.bucket.example"]);
        assert!(Source::parse("https://b.example:8443/x.mp4", &p).is_ok());
        assert!(Source::parse("http://v1.bucket.example/x.mp4", &p).is_ok());
        for refused in ["https://b.example/x", "http://bucket.example/x", "http://a.b.bucket.example.evil/x", "https://v1.bucket.example/x"]
        {
            assert!(matches!(Source::parse(refused, &p), Err(SourceError::NotAllowed(_))), "{refused}");
        }
        assert_eq!(SourcePolicy::from_variables(None, None, Some(" ")).unwrap(), SourcePolicy::default());
    }

    proptest! {
        /// Whatever a variable holds: no panic, and an accepted origin reads back as itself.
        #[test]
        fn any_origin_variable_is_refused_or_one_origin(text in "[a-zA-Z:/*.,@\\[\\]0-9 _-]{0,40}") {
            if let Ok(p) = SourcePolicy::from_variables(Some(&text), Some(&text), None) {
                for origin in &p.allowed_origins {
                    prop_assert!(!origin.contains([',', ' ']) && origin.matches('/').count() == 2, "{}", origin);
                    prop_assert_eq!(parse_origin(origin), Ok(origin.clone()));
                }
            }
        }
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
        assert!(matches!(identity_from_probe(403, &[]), Err(SourceError::Denied(_))));
        assert!(matches!(identity_from_probe(404, &[]), Err(SourceError::NotFound(_))));
        assert!(matches!(identity_from_probe(503, &[]), Err(SourceError::Unreachable(_))));
        assert_eq!(identity_from_probe(200, &h(&[("content-length", "5")])).unwrap().size, 5);
        let gzip = h(&[("Content-Range", "bytes 0-0/1000"), ("Content-Encoding", "gzip")]);
        assert!(matches!(identity_from_probe(206, &gzip), Err(SourceError::Encoded(_))));

        let req = range_request_headers(&id, 100, 200);
        assert_eq!(req, h(&[("range", "bytes=100-199"), ("accept-encoding", "identity"), ("if-match", "\"abc\"")]));
        let check = |status, headers: &[(String, String)]| check_range_response(&id, 100, 200, status, headers, 0);
        let ok = h(&[("content-range", "bytes 100-199/1000"), ("etag", "\"abc\"")]);
        assert_eq!(check(206, &ok), Ok(RangeAnswer { body_start: 100, whole: false, length_known: false }));
        let with_length = h(&[("content-range", "bytes 100-199/1000"), ("content-length", "100")]);
        assert_eq!(check(206, &with_length), Ok(RangeAnswer { body_start: 100, whole: false, length_known: true }));
        let too_long = h(&[("content-range", "bytes 100-199/1000"), ("content-length", "101")]);
        assert!(matches!(check(206, &too_long), Err(SourceError::BadRange(_))));
        assert!(matches!(check(412, &[]), Err(SourceError::Changed(_))));
        assert!(matches!(check(416, &[]), Err(SourceError::Changed(_))));
        assert!(matches!(check(403, &[]), Err(SourceError::Denied(_))));
        assert!(matches!(check(410, &[]), Err(SourceError::NotFound(_))));
        assert!(matches!(check(502, &[]), Err(SourceError::Unreachable(_))));
        let other_tag = h(&[("content-range", "bytes 100-199/1000"), ("etag", "\"xyz\"")]);
        assert!(matches!(check(206, &other_tag), Err(SourceError::Changed(_))));
        let other_size = h(&[("content-range", "bytes 100-199/1001")]);
        assert!(matches!(check(206, &other_size), Err(SourceError::Changed(_))));
        let shifted = h(&[("content-range", "bytes 101-200/1000")]);
        assert!(matches!(check(206, &shifted), Err(SourceError::BadRange(_))));
        let gzip = h(&[("content-range", "bytes 100-199/1000"), ("content-encoding", "gzip")]);
        assert!(matches!(check(206, &gzip), Err(SourceError::Encoded(_))));
        assert!(matches!(check(200, &[]), Err(SourceError::NoRange(_))));
        // A source without ranges is read whole when the file is small enough.
        assert_eq!(
            check_range_response(&id, 100, 200, 200, &[], 1000),
            Ok(RangeAnswer { body_start: 0, whole: true, length_known: false })
        );
        assert!(check_range_response(&id, 0, 1000, 200, &[], 0).is_ok());
    }
}
