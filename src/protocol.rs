//! The VOD server-upload protocol (legacy v2) as plain data: signed requests out,
//! parsed answers in. No I/O happens here; the caller supplies the clock and the nonce,
//! sends the request however it likes and hands back the answer's bytes.

use crate::sign::{self, Algorithm};
use serde_json::Value;
use std::fmt;

/// The part sizes the protocol allows (`dataSize` of InitUpload).
pub const PART_SIZES: [u64; 2] = [524_288, 1_048_576];

/// The largest session part size accepted from the service (code 1's `dataSize`, which
/// overrides ours). The protocol's are 512 KiB and 1 MiB; a larger one is followed up
/// to this bound, which keeps parts in flight within the platform's memory.
pub const MAX_PART_SIZE: u64 = 4 << 20;

/// The service's failure codes the uploader acts on.
pub mod vod_codes {
    /// Protocol parameters refused; for UploadPart also "no session" or "already finished".
    pub const PARAMS: i64 = -10003;
    /// The body was refused (its MD5 differs from `dataMd5`, or its length).
    pub const INVALID_BODY: i64 = -10006;
}

/// Longest service message kept (it is stored with the upload and shown).
const MAX_MESSAGE_CHARS: usize = 300;

/// Longest `fileId` or play URL accepted in an answer: they are stored and shown.
const MAX_ANSWER_TEXT: usize = 2048;

/// Characters the documents forbid in fileName.
pub const FORBIDDEN_NAME_CHARS: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>', '|'];

/// fileName's limit in bytes (the extension is not part of it).
pub const MAX_FILE_NAME_BYTES: usize = 40;

/// The documented endpoint of the service.
pub const DEFAULT_ENDPOINT: &str = "https://vod2.qcloud.com/v2/index.php";

/// The caller's key pair. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    secret_id: String,
    secret_key: String,
}

impl Credentials {
    /// A key pair.
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials { secret_id: secret_id.into(), secret_key: secret_key.into() }
    }

    /// The public half, sent as `SecretId`.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The secret half. Only signing code should need it.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("secret_id", &self.secret_id).field("secret_key", &"<redacted>").finish()
    }
}

/// Where requests go: `scheme://authority` for the URL, the `Host` value that is
/// signed, and the path (`/v2/index.php` or `/v3/index.php`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    origin: String,
    host: String,
    path: String,
}

/// An endpoint URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEndpoint(pub String);

impl fmt::Display for InvalidEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid VOD endpoint: {}", self.0)
    }
}

impl std::error::Error for InvalidEndpoint {}

impl Endpoint {
    /// Parses `http(s)://host[:port]/path`. The path defaults to `/v2/index.php`; a
    /// query or fragment is refused because the signed string could not include it.
    /// The error says what is wrong without repeating the value (it may come from a
    /// secret variable).
    pub fn parse(url: &str) -> Result<Self, InvalidEndpoint> {
        let bad = |why: &str| InvalidEndpoint(why.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("scheme must be http or https"));
        }
        if rest.contains(['?', '#']) {
            return Err(bad("must not have a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', ' ']) {
            return Err(bad("no usable host"));
        }
        let authority = authority.to_ascii_lowercase();
        // The Host header, and so the signed host, leaves out a default port.
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let host = authority.strip_suffix(default_port).unwrap_or(&authority).to_owned();
        let path = if path.is_empty() || path == "/" { "/v2/index.php" } else { path };
        Ok(Endpoint { origin: format!("{scheme}://{host}"), host, path: path.to_owned() })
    }

    /// The host as signed and sent in `Host`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path, e.g. `/v2/index.php`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// HTTP method of a call. InitUpload and FinishUpload are documented as GET;
/// UploadPart is always POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// InitUpload's protocol parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitUpload {
    /// At most 40 bytes, no extension, none of `\ / : * ? " < > |`.
    pub file_name: String,
    /// SHA-1 of the whole file, 40 lower-case hex digits.
    pub file_sha: String,
    /// The file's size in bytes.
    pub file_size: u64,
    /// The part size asked for: one of [`PART_SIZES`].
    pub data_size: u64,
    /// Usually the extension: mp4, flv, ...
    pub file_type: String,
    /// Sent as `tags.1`, `tags.2`, ...
    pub tags: Vec<String>,
    /// Category id.
    pub class_id: Option<u64>,
    /// Whether to transcode after upload.
    pub is_transcode: bool,
    /// Whether to take screenshots after upload.
    pub is_screenshot: bool,
    /// Whether to watermark.
    pub is_watermark: bool,
}

/// UploadPart's protocol parameters (the body is the part's bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// The file's SHA-1, as in InitUpload.
    pub file_sha: String,
    /// Where the part starts: a multiple of the session's part size.
    pub offset: u64,
    /// This part's length.
    pub data_size: u64,
    /// MD5 of this part's bytes, 32 lower-case hex digits.
    pub data_md5: String,
}

/// FinishUpload's protocol parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishUpload {
    /// The file's SHA-1, as in InitUpload.
    pub file_sha: String,
}

/// One call of the protocol, with its own parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Open or resume a session.
    InitUpload(InitUpload),
    /// Send one part.
    UploadPart(UploadPart),
    /// Close the session and get the fileId.
    FinishUpload(FinishUpload),
}

impl Call {
    /// The `Action` parameter.
    pub fn action(&self) -> &'static str {
        match self {
            Call::InitUpload(_) => "InitUpload",
            Call::UploadPart(_) => "UploadPart",
            Call::FinishUpload(_) => "FinishUpload",
        }
    }

    /// The method the protocol documents for this call.
    pub fn documented_method(&self) -> Method {
        match self {
            Call::UploadPart(_) => Method::Post,
            _ => Method::Get,
        }
    }

    fn push_params(&self, out: &mut Vec<(String, String)>) {
        let mut push = |k: &str, v: String| out.push((k.to_owned(), v));
        match self {
            Call::InitUpload(p) => {
                push("fileName", p.file_name.clone());
                push("fileSha", p.file_sha.clone());
                push("fileSize", p.file_size.to_string());
                push("dataSize", p.data_size.to_string());
                push("fileType", p.file_type.clone());
                for (i, tag) in p.tags.iter().enumerate() {
                    push(&format!("tags.{}", i + 1), tag.clone());
                }
                if let Some(class_id) = p.class_id {
                    push("classId", class_id.to_string());
                }
                // Defaults are 0: send only the flags that are set.
                for (name, on) in [("isTranscode", p.is_transcode), ("isScreenshot", p.is_screenshot), ("isWatermark", p.is_watermark)] {
                    if on {
                        push(name, "1".into());
                    }
                }
            }
            Call::UploadPart(p) => {
                push("fileSha", p.file_sha.clone());
                push("offset", p.offset.to_string());
                push("dataSize", p.data_size.to_string());
                push("dataMd5", p.data_md5.clone());
            }
            Call::FinishUpload(p) => push("fileSha", p.file_sha.clone()),
        }
    }
}

/// Everything needed to sign calls: endpoint, credentials, region, HMAC variant.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Where the calls go.
    pub endpoint: Endpoint,
    /// Who signs them.
    pub credentials: Credentials,
    /// `Region`: bj, gz, sh, hk or ca.
    pub region: String,
    /// HmacSHA1 (sent without a `SignatureMethod`) or HmacSHA256.
    pub algorithm: Algorithm,
}

/// A request ready to send: method and full URL. The body (UploadPart only) is the
/// part's bytes, with `Content-Type: application/octet-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The HTTP method.
    pub method: Method,
    /// The full URL, every value percent-encoded.
    pub url: String,
}

impl Signer {
    /// Builds the signed request for `call`. `timestamp` is Unix seconds and `nonce` a
    /// fresh random positive number. A retried call is signed again with a new nonce:
    /// the service answers the same signed request sent again with its first answer,
    /// so only a fresh signature is a new attempt.
    pub fn sign(&self, call: &Call, method: Method, timestamp: u64, nonce: u32) -> SignedRequest {
        let mut params: Vec<(String, String)> = vec![
            ("Action".into(), call.action().into()),
            ("Region".into(), self.region.clone()),
            ("Timestamp".into(), timestamp.to_string()),
            ("Nonce".into(), nonce.max(1).to_string()),
            ("SecretId".into(), self.credentials.secret_id.clone()),
        ];
        if self.algorithm == Algorithm::HmacSha256 {
            params.push((sign::SIGNATURE_METHOD_PARAM.into(), self.algorithm.param_value().into()));
        }
        call.push_params(&mut params);
        let signature = sign::sign(
            &self.credentials.secret_key,
            method.as_str(),
            &self.endpoint.host,
            &self.endpoint.path,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .expect("the signer only selects known algorithms");
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            query.append_pair(k, v);
        }
        query.append_pair(sign::SIGNATURE_PARAM, &signature);
        SignedRequest { method, url: format!("{}{}?{}", self.endpoint.origin, self.endpoint.path, query.finish()) }
    }
}

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
                            .filter(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()))
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

    fn signer(algorithm: Algorithm) -> Signer {
        Signer {
            endpoint: Endpoint::parse("http://127.0.0.1:9000/v2/index.php").unwrap(),
            credentials: Credentials::new("AKIDtest", "secret"),
            region: "gz".into(),
            algorithm,
        }
    }

    fn query_of(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn endpoint_host_keeps_only_non_default_ports() {
        assert_eq!(Endpoint::parse("https://vod2.qcloud.com/v2/index.php").unwrap().host(), "vod2.qcloud.com");
        assert_eq!(Endpoint::parse("https://vod2.qcloud.com:443/v3/index.php").unwrap().host(), "vod2.qcloud.com");
        let e = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((e.host(), e.path()), ("127.0.0.1:9000", "/v2/index.php"));
        for bad in ["ftp://x/", "vod2.qcloud.com", "http:///p", "http://h/p?x=1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signed_request_verifies_and_encodes_values() {
        for algorithm in [Algorithm::HmacSha1, Algorithm::HmacSha256] {
            let s = signer(algorithm);
            let call = Call::InitUpload(InitUpload {
                file_name: "a b+c".into(),
                file_sha: "0".repeat(40),
                file_size: 10,
                data_size: 524_288,
                file_type: "mp4".into(),
                tags: vec!["x&y".into(), "z".into()],
                class_id: Some(3),
                is_transcode: true,
                ..Default::default()
            });
            let req = s.sign(&call, Method::Get, 1_700_000_000, 42);
            assert!(req.url.starts_with("http://127.0.0.1:9000/v2/index.php?Action=InitUpload&"));
            let params = query_of(&req.url);
            let sig = params.iter().find(|(k, _)| k == "Signature").unwrap().1.clone();
            let rest = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            assert!(sign::verify("secret", "GET", "127.0.0.1:9000", "/v2/index.php", rest.clone(), &sig).unwrap());
            assert!(params.contains(&("fileName".into(), "a b+c".into())));
            assert!(params.contains(&("tags.1".into(), "x&y".into())));
            assert!(params.contains(&("isTranscode".into(), "1".into())));
            assert!(!params.iter().any(|(k, _)| k == "isWatermark"));
            assert_eq!(params.iter().any(|(k, v)| k == "SignatureMethod" && v == "HmacSHA256"), algorithm == Algorithm::HmacSha256);
        }
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let text = format!("{:?}", signer(Algorithm::HmacSha1));
        assert!(text.contains("AKIDtest") && !text.contains("secret\""), "{text}");
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
