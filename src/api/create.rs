//! `POST /uploads`: the body, read into a [`Spec`]. The protocol's own parameter rules
//! come from `protocol::params` (the same the simulator enforces); the limits named
//! here are ours, stricter than the document's.

use super::ApiResponse;
use crate::error::{Error, Refusal};
use crate::protocol::params::{self as rules, FileNameProblem, MAX_FILE_NAME_BYTES, PART_SIZES};
use crate::source::{is_plain_file_type, Source, SourcePolicy, MAX_FILE_TYPE_LEN};
use crate::upload::Spec;
use serde::Deserialize;

/// Our own limits on `POST /uploads`, stricter than the document's (which allows any
/// number of tags of any content, any fileType, and control characters in fileName):
/// at most this many tags. (Ours too: fileName not blank and without control characters;
/// fileType by `source::is_plain_file_type`.)
pub const MAX_TAGS: usize = 16;

/// Ours: a tag's length in characters (at least 1; no control characters either).
pub const MAX_TAG_CHARS: usize = 32;

/// A 0/1 or boolean flag, as users of the protocol and of JSON write it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(u8),
}

/// The body of `POST /uploads`, as sent: camelCase names, nothing unknown.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    source: String,
    file_name: Option<String>,
    file_type: Option<String>,
    tags: Option<Vec<String>>,
    class_id: Option<u64>,
    is_transcode: Option<Flag>,
    is_screenshot: Option<Flag>,
    is_watermark: Option<Flag>,
    data_size: Option<u64>,
}

/// A flag as JSON gives it: a boolean, or a number that the document's `0 or 1` rule
/// reads.
fn flag(name: &str, value: Option<Flag>) -> Result<bool, ApiResponse> {
    match value {
        None => Ok(false),
        Some(Flag::Bool(on)) => Ok(on),
        Some(Flag::Int(n)) => rules::flag(&n.to_string())
            .map_err(|_| ApiResponse::refused(Refusal::BadRequest, format!("{name} must be true, false, 0 or 1, got {n}"))),
    }
}

/// Reads and validates the body of `POST /uploads` into a [`Spec`].
pub fn parse_create(body: &[u8], policy: &SourcePolicy) -> Result<Spec, ApiResponse> {
    let bad = |message: String| ApiResponse::refused(Refusal::BadRequest, message);
    let parsed: CreateBody = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let source = Source::parse(&parsed.source, policy).map_err(|e| ApiResponse::from_error(&Error::Source(e)))?;
    let (default_name, default_type) = source.default_names();
    let file_name = match parsed.file_name {
        None => default_name,
        Some(name) => {
            let wrong_length = || bad(format!("fileName must be 1 to {MAX_FILE_NAME_BYTES} bytes, got {}", name.len()));
            // Ours: not blank, and no control characters; the rest is the document's rule.
            if name.trim().is_empty() {
                return Err(wrong_length());
            }
            match rules::file_name_refusing(&name, char::is_control) {
                Ok(()) => {}
                Err(FileNameProblem::TooLong { .. }) => return Err(wrong_length()),
                Err(FileNameProblem::Forbidden(c)) => {
                    return Err(bad(format!("fileName must not contain {c:?} (nor any of {})", rules::forbidden_name_chars_listed())))
                }
            }
            name
        }
    };
    let file_type = match parsed.file_type {
        None => default_type,
        Some(t) if is_plain_file_type(&t) => t,
        Some(t) => return Err(bad(format!("fileType must be 1 to {MAX_FILE_TYPE_LEN} ASCII letters or digits (such as mp4), got {t:?}"))),
    };
    let tags = parsed.tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(bad(format!("at most {MAX_TAGS} tags are allowed, got {}", tags.len())));
    }
    if let Some(t) = tags.iter().find(|t| t.is_empty() || t.chars().count() > MAX_TAG_CHARS || t.chars().any(char::is_control)) {
        return Err(bad(format!("each tag must be 1 to {MAX_TAG_CHARS} characters without control characters, got {t:?}")));
    }
    let data_size = parsed.data_size.unwrap_or(PART_SIZES[1]);
    rules::data_size(data_size).map_err(|problem| bad(problem.to_string()))?;
    Ok(Spec {
        source,
        file_name,
        file_type,
        tags,
        class_id: parsed.class_id,
        is_transcode: flag("isTranscode", parsed.is_transcode)?,
        is_screenshot: flag("isScreenshot", parsed.is_screenshot)?,
        is_watermark: flag("isWatermark", parsed.is_watermark)?,
        data_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SourcePolicy {
        SourcePolicy { allowed_origins: vec!["https://bucket.example".into()], local_root: Some("/data".into()), s3: false }
    }

    fn err(body: &str) -> (u16, String, String) {
        let r = parse_create(body.as_bytes(), &policy()).unwrap_err();
        (r.status, r.body["error"]["code"].as_str().unwrap().into(), r.body["error"]["message"].as_str().unwrap().into())
    }

    #[test]
    fn a_minimal_request_gets_derived_valid_names() {
        let spec = parse_create(br#"{"source":"https://bucket.example/in/My:Clip.MKV?sig=x"}"#, &policy()).unwrap();
        assert_eq!((spec.file_name.as_str(), spec.file_type.as_str(), spec.data_size), ("My_Clip", "mkv", 1_048_576));
        let spec = parse_create(
            br#"{"source":"/data/a.mp4","isTranscode":1,"isWatermark":true,"tags":["a"],"classId":3,"dataSize":524288}"#,
            &policy(),
        )
        .unwrap();
        assert!(spec.is_transcode && spec.is_watermark && !spec.is_screenshot);
    }

    #[test]
    fn bad_input_is_named() {
        for (body, status, code, needle) in [
            ("{", 400, "bad_request", "invalid JSON"),
            ("[]", 400, "bad_request", "invalid JSON"),
            (r#"{"source":"https://bucket.example/a","colour":"red"}"#, 400, "bad_request", "colour"),
            (r#"{"source":42}"#, 400, "bad_request", "invalid type"),
            (r#"{}"#, 400, "bad_request", "source"),
            (r#"{"source":"ftp://bucket.example/a"}"#, 400, "invalid_source", "scheme"),
            (r#"{"source":"https://other.example/a"}"#, 403, "source_not_allowed", "other.example"),
            (r#"{"source":"/etc/passwd"}"#, 403, "source_not_allowed", "/data"),
            (r#"{"source":"/data/a","fileName":"a/b"}"#, 400, "bad_request", "fileName"),
            (r#"{"source":"/data/a","fileName":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#, 400, "bad_request", "fileName"),
            (r#"{"source":"/data/a","fileType":"m p4"}"#, 400, "bad_request", "fileType"),
            (r#"{"source":"/data/a","dataSize":1000}"#, 400, "bad_request", "dataSize"),
            (r#"{"source":"/data/a","tags":[""]}"#, 400, "bad_request", "tag"),
            (r#"{"source":"/data/a","isTranscode":2}"#, 400, "bad_request", "isTranscode"),
            (r#"{"source":"/data/a","classId":-1}"#, 400, "bad_request", "invalid value"),
        ] {
            let (s, c, m) = err(body);
            assert_eq!((s, c.as_str()), (status, code), "{body}: {m}");
            assert!(m.contains(needle), "{body}: {m}");
        }
    }
}
