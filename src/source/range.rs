//! A URL source's identity and its ranged reads: the probe, the headers of a read that
//! only succeeds on the same content, and the checks of an answer before its body is used.

use super::SourceError;
use serde::{Deserialize, Serialize};

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

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
