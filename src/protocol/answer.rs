//! The service's answers: the JSON envelope every call shares, InitUpload's three
//! successful codes, a finished file, and the service's failures. Lenient where the
//! service and its documents were; nothing unread is trusted.

use super::params::{is_md5, MAX_PART_SIZE};
use serde_json::Value;
use std::fmt;

/// Longest service message kept (it is stored with the upload and shown).
const MAX_MESSAGE_CHARS: usize = 300;

/// Longest `fileId` or play URL accepted in an answer: they are stored and shown.
const MAX_ANSWER_TEXT: usize = 2048;

/// A failure answer from the service: `code < 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The negative code, e.g. -10003.
    pub code: i64,
    /// The service's message.
    pub message: String,
    /// `canRetry: 1`.
    pub retryable: bool,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VOD service error {}: {}", self.code, self.message)
    }
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The service said no.
    Api(ApiError),
    /// The bytes were not an answer of the expected shape.
    Malformed(String),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Api(e) => e.fmt(f),
            AnswerError::Malformed(why) => write!(f, "malformed answer from the VOD service: {why}"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// A part the service already holds (from `listParts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// Start of the part.
    pub offset: u64,
    /// Its length.
    pub size: u64,
    /// Its MD5 as the service reports it (lower-cased), when it does.
    pub md5: Option<String>,
}

/// InitUpload's successful answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitAnswer {
    /// Code 0: a new session; every part is to be sent.
    New,
    /// Code 1: a session exists; its part size overrides ours and `parts` are held.
    Resume {
        /// The session's part size.
        data_size: u64,
        /// Parts the service holds.
        parts: Vec<ListedPart>,
    },
    /// Code 2: this SHA-1 is already a finished file.
    Exists(Finished),
}

/// A finished file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The decimal fileId.
    pub file_id: String,
    /// Its play URL.
    pub url: String,
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses the common envelope; returns the JSON object and its `code` when `code >= 0`.
fn envelope(body: &[u8]) -> Result<(serde_json::Map<String, Value>, i64), AnswerError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(format!("not JSON ({e}): {}", preview(body))))?;
    let Value::Object(map) = value else {
        return Err(AnswerError::Malformed(format!("not a JSON object: {}", preview(body))));
    };
    let code = map.get("code").and_then(as_i64).ok_or_else(|| AnswerError::Malformed(format!("no integer `code`: {}", preview(body))))?;
    if code < 0 {
        let message = as_text(map.get("message"))
            .filter(|m| !m.is_empty())
            .or_else(|| as_text(map.get("codeDesc")))
            .unwrap_or_default()
            .chars()
            .take(MAX_MESSAGE_CHARS)
            .collect();
        let retryable = match map.get("canRetry") {
            Some(Value::Bool(b)) => *b,
            Some(v) => as_i64(v) == Some(1),
            None => false,
        };
        return Err(AnswerError::Api(ApiError { code, message, retryable }));
    }
    Ok((map, code))
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

fn finished(map: &serde_json::Map<String, Value>) -> Result<Finished, AnswerError> {
    let usable = |s: &String| s.len() <= MAX_ANSWER_TEXT && !s.chars().any(char::is_control);
    let file_id = as_text(map.get("fileId"))
        .filter(|s| !s.trim().is_empty() && usable(s))
        .ok_or_else(|| AnswerError::Malformed("no usable `fileId`".into()))?;
    let url = as_text(map.get("url")).filter(usable).unwrap_or_default();
    Ok(Finished { file_id, url })
}

/// Reads InitUpload's answer. Lenient where the service and its documents were:
/// `dataMd5` or `dataSha`, `dataSize` or `dataLen`, numbers given as strings.
pub fn parse_init(body: &[u8]) -> Result<InitAnswer, AnswerError> {
    let (map, code) = envelope(body)?;
    match code {
        0 => Ok(InitAnswer::New),
        1 => {
            let data_size = map
                .get("dataSize")
                .or_else(|| map.get("dataLen"))
                .and_then(as_u64)
                .ok_or_else(|| AnswerError::Malformed("code 1 without a `dataSize`".into()))?;
            if data_size == 0 || data_size > MAX_PART_SIZE {
                return Err(AnswerError::Malformed(format!("code 1 with `dataSize` {data_size}, not in 1..={MAX_PART_SIZE}")));
            }
            let mut parts = Vec::new();
            match map.get("listParts") {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => {
                    // An entry that cannot be read is left out: the part is sent again,
                    // which the protocol allows; nothing unread is ever trusted.
                    for entry in list {
                        let offset = entry.get("offset").and_then(as_u64);
                        let size = entry.get("dataSize").or_else(|| entry.get("dataLen")).and_then(as_u64);
                        let md5 = as_text(entry.get("dataMd5").or_else(|| entry.get("dataSha")))
                            .filter(|m| is_md5(m))
                            .map(|m| m.to_ascii_lowercase());
                        if let (Some(offset), Some(size)) = (offset, size) {
                            parts.push(ListedPart { offset, size, md5 });
                        }
                    }
                }
                Some(_) => return Err(AnswerError::Malformed("`listParts` is not an array".into())),
            }
            Ok(InitAnswer::Resume { data_size, parts })
        }
        2 => Ok(InitAnswer::Exists(finished(&map)?)),
        other => Err(AnswerError::Malformed(format!("unknown InitUpload code {other}"))),
    }
}

/// Reads UploadPart's answer.
pub fn parse_part(body: &[u8]) -> Result<(), AnswerError> {
    envelope(body).map(|_| ())
}

/// Reads FinishUpload's answer.
pub fn parse_finish(body: &[u8]) -> Result<Finished, AnswerError> {
    let (map, _) = envelope(body)?;
    finished(&map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JSON values built from the answer's own vocabulary, nested, with odd types.
    fn answer_json() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "code",
            "message",
            "codeDesc",
            "canRetry",
            "dataSize",
            "dataLen",
            "listParts",
            "offset",
            "dataMd5",
            "dataSha",
            "fileId",
            "url",
            "sessionInfo",
            "x",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-3i64..4).prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            ".{0,40}".prop_map(Value::from),
            "[0-9a-fA-F]{32}".prop_map(Value::from),
            "-?[0-9]{1,25}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest! {
        /// No answer, however odd, makes a parser panic; what they accept is usable.
        #[test]
        fn answers_never_panic_the_parsers(value in answer_json(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let text = value.to_string();
            for body in [text.as_bytes(), &bytes[..]] {
                match parse_init(body) {
                    Ok(InitAnswer::Resume { data_size, .. }) => prop_assert!((1..=MAX_PART_SIZE).contains(&data_size)),
                    Ok(InitAnswer::Exists(f)) => prop_assert!(!f.file_id.trim().is_empty()),
                    _ => {}
                }
                let _ = parse_part(body);
                if let Ok(f) = parse_finish(body) {
                    prop_assert!(!f.file_id.trim().is_empty() && f.file_id.len() <= MAX_ANSWER_TEXT);
                }
            }
        }
    }

    #[test]
    fn parses_the_documented_resume_answer_leniently() {
        let body = br#"{"code":1,"message":"","codeDesc":"","canRetry":0,"dataSize":"1048576",
            "listParts":[{"offset":0,"dataSize":1048576,"dataMd5":"0BEE89B07A248E27C83FC3D5951213C1"},
                         {"offset":"1048576","dataLen":1048576,"dataSha":"f5ac8127b3b6b85cdc13f237c6005d80"}]}"#;
        let InitAnswer::Resume { data_size, parts } = parse_init(body).unwrap() else { panic!() };
        assert_eq!(data_size, 1_048_576);
        assert_eq!(parts[0].md5.as_deref(), Some("0bee89b07a248e27c83fc3d5951213c1"));
        assert_eq!(parts[1], ListedPart { offset: 1_048_576, size: 1_048_576, md5: Some("f5ac8127b3b6b85cdc13f237c6005d80".into()) });
    }

    #[test]
    fn parses_codes_0_2_and_errors() {
        assert_eq!(parse_init(br#"{"code":0,"message":""}"#).unwrap(), InitAnswer::New);
        assert_eq!(
            parse_init(br#"{"code":2,"fileId":7031868222808505913,"url":"http://u"}"#).unwrap(),
            InitAnswer::Exists(Finished { file_id: "7031868222808505913".into(), url: "http://u".into() })
        );
        assert_eq!(
            parse_part(br#"{"code":-10004,"message":"cache","canRetry":1}"#).unwrap_err(),
            AnswerError::Api(ApiError { code: -10004, message: "cache".into(), retryable: true })
        );
        assert!(matches!(parse_finish(br#"{"code":0}"#), Err(AnswerError::Malformed(_))));
        assert!(matches!(parse_part(b"<html>502</html>"), Err(AnswerError::Malformed(_))));
        assert!(matches!(parse_init(br#"{"code":7}"#), Err(AnswerError::Malformed(_))));
        // Code 1 with a part size of 0 (it used to panic in the part layout) or over the bound.
        assert!(matches!(parse_init(br#"{"code":1,"dataSize":0}"#), Err(AnswerError::Malformed(_))));
        assert!(matches!(parse_init(br#"{"code":1,"dataSize":8388608}"#), Err(AnswerError::Malformed(_))));
        // Unreadable listed parts are left out, not trusted and not fatal.
        let InitAnswer::Resume { parts, .. } =
            parse_init(br#"{"code":1,"dataSize":4,"listParts":[{"offset":"x"},{"offset":4,"dataSize":4,"dataMd5":"nothex"}]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(parts, vec![ListedPart { offset: 4, size: 4, md5: None }]);
        assert!(matches!(parse_finish(br#"{"code":0,"fileId":" "}"#), Err(AnswerError::Malformed(_))));
    }
}
