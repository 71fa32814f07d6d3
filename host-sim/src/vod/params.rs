//! Reading and validating request parameters: the common ones (-10001) and each
//! action's own (-10003). Pure functions over the decoded query string.
//!
//! Every rule here is one that `shared/docs/vod-upload-protocol.md` states (or that
//! follows from what it states), and each names its section there ("the document"
//! below). Rules the document does not state are not enforced: the simulator must
//! accept whatever a client following the document may send.

use super::reply::Reject;
use vod_uploader::protocol::params::{self as rules, InitUpload, UintProblem, UploadPart};

/// The decoded query string, in order, names as sent.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// The documented regions (the document, "Common parameters": Region).
pub const REGIONS: &[&str] = &["bj", "gz", "sh", "hk", "ca"];

impl Query {
    /// Decodes a raw query string (`+` is a space, as PHP decoded it).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Query { pairs }
    }

    /// Every pair, as sent: the input of the signature.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name`; a name sent with `_` for `.` (PHP style) counts too (the
    /// document, "Signature (API v2)", step 3).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name || (k.contains('_') && k.replace('_', ".") == name)).map(|(_, v)| v.as_str())
    }

    /// A parameter the document lists as required; an empty value gives nothing, so it
    /// counts as missing.
    fn required(&self, name: &str, code: fn(String) -> Reject) -> Result<&str, Reject> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(code(format!("{name} is required"))),
        }
    }
}

/// The three actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// InitUpload
    InitUpload,
    /// UploadPart
    UploadPart,
    /// FinishUpload
    FinishUpload,
}

impl Action {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::InitUpload => "InitUpload",
            Action::UploadPart => "UploadPart",
            Action::FinishUpload => "FinishUpload",
        }
    }
}

/// The validated common parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Action.
    pub action: Action,
    /// Region.
    pub region: String,
    /// Timestamp in Unix seconds (milliseconds, as the Node.js SDK sent, are converted).
    pub timestamp: i64,
    /// Nonce (any uint, 0 included).
    pub nonce: u64,
    /// SecretId.
    pub secret_id: String,
    /// Signature, Base64.
    pub signature: String,
}

/// A required parameter the document types as uint or Integer.
fn parse_uint(q: &Query, name: &str, code: fn(String) -> Reject) -> Result<u64, Reject> {
    let v = q.required(name, code)?;
    // Digits only: no sign, no spaces, no hex; u64 range (the document gives none, and
    // no client sends more than 64 bits).
    rules::uint(v).map_err(|problem| match problem {
        UintProblem::NotDigits => code(format!("{name} {problem}, got {v:?}")),
        UintProblem::TooLarge => code(format!("{name} {problem}: {v:?}")),
    })
}

/// Reads the common parameters, or says which one is wrong (-10001; a missing
/// `Signature` is -10002). The document, "Common parameters": all but SignatureMethod
/// are required.
pub fn common(q: &Query) -> Result<Common, Reject> {
    // Action: one of the three actions the document describes.
    let action = match q.required("Action", Reject::common)? {
        "InitUpload" => Action::InitUpload,
        "UploadPart" => Action::UploadPart,
        "FinishUpload" => Action::FinishUpload,
        other => return Err(Reject::common(format!("Action {other:?} is not one of InitUpload, UploadPart, FinishUpload"))),
    };
    // Region: "one of bj, gz, sh, hk, ca".
    let region = q.required("Region", Reject::common)?;
    if !REGIONS.contains(&region) {
        return Err(Reject::common(format!("Region {region:?} is not one of {}", REGIONS.join(", "))));
    }
    // Timestamp: uint, "Unix seconds (the Node.js SDK sent milliseconds)".
    let mut timestamp = parse_uint(q, "Timestamp", Reject::common)?;
    if timestamp >= 100_000_000_000 {
        // Milliseconds (the Node.js SDK sent those).
        timestamp /= 1000;
    }
    // Nonce: typed uint, so 0 is accepted. The document's "random positive integer"
    // says what a sender draws (the uploader sends at least 1); the simulator accepts
    // what clients send (the document's opening: "the simulator must accept what the
    // SDKs sent"), and no check here depends on the Nonce's value: replays are known
    // by their signature (see `auth`).
    let nonce = parse_uint(q, "Nonce", Reject::common)?;
    let secret_id = q.required("SecretId", Reject::common)?.to_owned();
    // SignatureMethod: "HmacSHA256 selects SHA-256; absent or HmacSHA1 means SHA-1";
    // under any other value the signature cannot be checked.
    if let Some(method) = q.get("SignatureMethod") {
        if method != "HmacSHA1" && method != "HmacSHA256" {
            return Err(Reject::common(format!("SignatureMethod {method:?} is not HmacSHA1 or HmacSHA256")));
        }
    }
    let signature = q.required("Signature", Reject::signature)?.to_owned();
    Ok(Common { action, region: region.to_owned(), timestamp: timestamp as i64, nonce, secret_id, signature })
}

/// `fileSha`: 40 hex digits, returned lower-cased (the document, "InitUpload": "SHA-1
/// of the whole file, 40 lower-case hex digits"; upper case is accepted because the C#
/// SDK sent it, "What the vendor's SDKs did").
pub fn file_sha(q: &Query) -> Result<String, Reject> {
    let v = q.required("fileSha", Reject::param)?;
    if !rules::is_file_sha(v) {
        return Err(Reject::param(format!("fileSha must be 40 hex digits (the file's SHA-1), got {v:?}")));
    }
    Ok(v.to_ascii_lowercase())
}

/// Reads InitUpload's parameters, or names the one that is wrong (-10003). The
/// result is the protocol's own [`InitUpload`]: one definition for both sides.
///
/// The document, "InitUpload": fileName, fileSha, fileSize, dataSize and fileType are
/// required. fileType and tags.N have no rules beyond that: any fileType ("usually the
/// extension"), any number of tags of any content.
pub fn init(q: &Query) -> Result<InitUpload, Reject> {
    // fileName: "at most 40 bytes, without the extension; must not contain
    // \ / : * ? " < > |".
    let file_name = q.required("fileName", Reject::param)?;
    rules::file_name(file_name).map_err(|problem| Reject::param(problem.to_string()))?;
    let file_sha = file_sha(q)?;
    // fileSize: bytes (the seed page: Integer). An empty file is not excluded.
    let file_size = parse_uint(q, "fileSize", Reject::param)?;
    // dataSize: "524288 or 1048576 only".
    let data_size = parse_uint(q, "dataSize", Reject::param)?;
    rules::data_size(data_size).map_err(|problem| Reject::param(problem.to_string()))?;
    // fileType: "usually the extension: mp4, flv, ...", and nothing more.
    let file_type = q.required("fileType", Reject::param)?;
    let tags = tags(q);
    // classId: "integer category id". Negative ids are refused: the protocol's shared
    // `InitUpload` holds it as u64.
    let class_id = match q.get("classId") {
        None => None,
        Some(_) => Some(parse_uint(q, "classId", Reject::param)?),
    };
    // isTranscode, isScreenshot, isWatermark: "0 or 1, default 0".
    let mut flags = [false; 3];
    for (flag, name) in flags.iter_mut().zip(["isTranscode", "isScreenshot", "isWatermark"]) {
        *flag = match q.get(name) {
            None => false,
            Some(value) => rules::flag(value).map_err(|problem| Reject::param(format!("{name} {problem}, got {value:?}")))?,
        };
    }
    let [is_transcode, is_screenshot, is_watermark] = flags;
    Ok(InitUpload {
        file_name: file_name.to_owned(),
        file_sha,
        file_size,
        data_size,
        file_type: file_type.to_owned(),
        tags,
        class_id,
        is_transcode,
        is_screenshot,
        is_watermark,
    })
}

/// `tags.N` (or `tag.N`, as the official SDKs sent), ordered by N; values with the same N
/// in the order sent. A name such as `tags.x` is not a tag but an unknown parameter,
/// which the document says a server must ignore ("Common parameters").
fn tags(q: &Query) -> Vec<String> {
    let mut tags: Vec<(u64, String)> = Vec::new();
    for (name, value) in q.pairs() {
        let name = name.replace('_', ".");
        let Some(index) = name.strip_prefix("tags.").or_else(|| name.strip_prefix("tag.")) else {
            continue;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Digits only, so this fails only past u64, where every N is the same "last".
        tags.push((index.parse().unwrap_or(u64::MAX), value.to_owned()));
    }
    tags.sort_by_key(|(n, _)| *n);
    tags.into_iter().map(|(_, v)| v).collect()
}

/// Reads UploadPart's parameters, or names the one that is wrong (-10003). The
/// document, "UploadPart": fileSha, offset, dataSize and dataMd5 are its parameters.
pub fn part(q: &Query) -> Result<UploadPart, Reject> {
    let file_sha = file_sha(q)?;
    let offset = parse_uint(q, "offset", Reject::param)?;
    let data_size = parse_uint(q, "dataSize", Reject::param)?;
    // dataSize is "this part's length": the session's dataSize or, for the last part,
    // what is left of the file; never 0.
    if data_size == 0 {
        return Err(Reject::param("dataSize must be greater than 0"));
    }
    // dataMd5: "MD5 of this part's bytes, 32 lower-case hex digits" (upper case is
    // accepted, as for fileSha).
    let md5 = q.required("dataMd5", Reject::param)?;
    if !rules::is_md5(md5) {
        return Err(Reject::param(format!("dataMd5 must be 32 hex digits (the part's MD5), got {md5:?}")));
    }
    Ok(UploadPart { file_sha, offset, data_size, data_md5: md5.to_ascii_lowercase() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    const SHA: &str = "b4a5c70c76e79e01ab3a5c306de3d9eedeadeca9";

    fn init_q(extra: &str) -> Query {
        q(&format!("fileName=test&fileSha={SHA}&fileSize=20350000&dataSize=1048576&fileType=mp4{extra}"))
    }

    #[test]
    fn the_documented_example_is_valid() {
        let p = init(&init_q("&tags.1=foo&tags.2=bar&isTranscode=1&isScreenshot=1&isWatermark=1")).unwrap();
        assert_eq!(p.tags, vec!["foo", "bar"]);
        assert!(p.is_transcode && p.is_screenshot && p.is_watermark);
    }

    #[test]
    fn limits_are_inclusive() {
        let name40 = "n".repeat(40);
        assert!(init(&q(&format!("fileName={name40}&fileSha={SHA}&fileSize=1&dataSize=524288&fileType=mp4"))).is_ok());
        let name40 = "é".repeat(20);
        assert!(init(&q(&format!("fileName={name40}&fileSha={SHA}&fileSize=1&dataSize=524288&fileType=mp4"))).is_ok());
        assert!(init(&q(&format!("fileName={name40}n&fileSha={SHA}&fileSize=1&dataSize=524288&fileType=mp4"))).is_err());
    }

    #[test]
    fn rules_the_document_does_not_state_are_not_enforced() {
        // Any number of tags, of any length and content (the document: "tags.N | no |
        // tags.1, tags.2, ...").
        let many: String = (1..=40).map(|i| format!("&tags.{i}=t{i}")).collect();
        let p = init(&init_q(&many)).unwrap();
        assert_eq!((p.tags.len(), p.tags[39].as_str()), (40, "t40"));
        let long = "é".repeat(200);
        assert_eq!(init(&init_q(&format!("&tags.1={long}&tags.2=&tags.3=a%07b"))).unwrap().tags, vec![long.as_str(), "", "a\u{7}b"]);
        // The same N twice keeps both, in the order sent; `tags.x` is an unknown
        // parameter, ignored.
        assert_eq!(init(&init_q("&tags.2=b&tag.1=a&tags.1=c&tags.x=1&tags.=2")).unwrap().tags, vec!["a", "c", "b"]);
        // Any fileType ("usually the extension").
        for file_type in ["mp4-hd", "m3u8", "MP4", "a".repeat(17).as_str(), "tar.gz", "视频"] {
            assert_eq!(init(&init_q("").clone_with("fileType", file_type)).unwrap().file_type, file_type);
        }
        // An empty file; a fileName with control characters (only \ / : * ? " < > |
        // are forbidden).
        assert_eq!(init(&init_q("").clone_with("fileSize", "0")).unwrap().file_size, 0);
        assert_eq!(init(&init_q("").clone_with("fileName", "a\tb")).unwrap().file_name, "a\tb");
    }

    impl Query {
        fn clone_with(&self, name: &str, value: &str) -> Query {
            let mut pairs: Vec<(String, String)> = self.pairs.iter().filter(|(k, _)| k != name).cloned().collect();
            pairs.push((name.into(), value.into()));
            Query { pairs }
        }
    }

    #[test]
    fn sdk_spellings_are_accepted() {
        let p = init(&q(&format!("fileName=t&fileSha={}&fileSize=1&dataSize=524288&fileType=flv&tag.2=b&tags_1=a", SHA.to_uppercase())))
            .unwrap();
        assert_eq!((p.file_sha.as_str(), p.tags), (SHA, vec!["a".to_string(), "b".to_string()]));
    }

    #[test]
    fn every_bad_init_parameter_is_named() {
        let name41 = "x".repeat(41);
        let cases: &[(&str, &str)] = &[
            ("fileName=", "fileName"),
            (&format!("fileName={name41}"), "fileName"),
            ("fileName=a%2Fb", "fileName"),
            ("fileName=a%7Cb", "fileName"),
            ("fileSha=abc", "fileSha"),
            ("fileSize=-1", "fileSize"),
            ("dataSize=1000", "dataSize"),
            ("fileType=", "fileType"),
            ("classId=x", "classId"),
            ("isTranscode=2", "isTranscode"),
            ("fileName=a%3Fb", "fileName"),
            ("fileName=a%22b", "fileName"),
            ("dataSize=524289", "dataSize"),
            ("isWatermark=01", "isWatermark"),
        ];
        for (override_, named) in cases {
            let (key, _) = override_.split_once('=').unwrap();
            let base = format!("fileName=test&fileSha={SHA}&fileSize=20350000&dataSize=1048576&fileType=mp4");
            let mut pairs: Vec<String> = base.split('&').filter(|kv| !kv.starts_with(&format!("{key}="))).map(String::from).collect();
            pairs.push(override_.to_string());
            let err = init(&q(&pairs.join("&"))).unwrap_err();
            assert_eq!(err.code, -10003, "{override_}");
            assert!(err.message.contains(named), "{override_}: {}", err.message);
        }
    }

    #[test]
    fn missing_required_parameters_are_named() {
        for name in ["fileName", "fileSha", "fileSize", "dataSize", "fileType"] {
            let all = init_q("");
            let pairs: Vec<String> = all.pairs().filter(|(k, _)| *k != name).map(|(k, v)| format!("{k}={v}")).collect();
            let err = init(&q(&pairs.join("&"))).unwrap_err();
            assert_eq!(err.message, format!("{name} is required"));
        }
    }

    #[test]
    fn common_parameters() {
        let ok = "Action=InitUpload&Region=gz&Timestamp=1700000000&Nonce=5&SecretId=id&Signature=s";
        let c = common(&q(ok)).unwrap();
        assert_eq!((c.action, c.timestamp, c.nonce), (Action::InitUpload, 1_700_000_000, 5));
        assert_eq!(common(&q(&ok.replace("1700000000", "1700000000123"))).unwrap().timestamp, 1_700_000_000);
        // Nonce is a uint: 0 is one.
        assert_eq!(common(&q(&ok.replace("Nonce=5", "Nonce=0"))).unwrap().nonce, 0);
        assert_eq!(common(&q(&ok.replace("Nonce=5", "Nonce=18446744073709551615"))).unwrap().nonce, u64::MAX);
        for (from, to, named, code) in [
            ("Action=InitUpload", "Action=Upload", "Action", -10001),
            ("Region=gz", "Region=mars", "Region", -10001),
            ("Timestamp=1700000000", "Timestamp=17e8", "Timestamp", -10001),
            ("Nonce=5", "Nonce=", "Nonce", -10001),
            ("Nonce=5", "Nonce=0x5", "Nonce", -10001),
            ("Nonce=5", "Nonce=-5", "Nonce", -10001),
            ("SecretId=id", "SecretId=", "SecretId", -10001),
            ("&Signature=s", "", "Signature", -10002),
            ("Region=gz", "Region=gz&SignatureMethod=HmacMD5", "SignatureMethod", -10001),
        ] {
            let err = common(&q(&ok.replace(from, to))).unwrap_err();
            assert_eq!(err.code, code, "{to}");
            assert!(err.message.contains(named), "{to}: {}", err.message);
        }
    }

    #[test]
    fn part_parameters() {
        let ok = format!("fileSha={SHA}&offset=1048576&dataSize=10&dataMd5=0BEE89B07A248E27C83FC3D5951213C1");
        assert_eq!(part(&q(&ok)).unwrap().data_md5, "0bee89b07a248e27c83fc3d5951213c1");
        for (from, to) in [("offset=1048576", "offset=x"), ("dataSize=10", "dataSize=0"), ("dataMd5=0B", "dataMd5=zz")] {
            let err = part(&q(&ok.replace(from, to))).unwrap_err();
            assert!(err.message.contains(to.split('=').next().unwrap()), "{}", err.message);
        }
    }
}

/// The API's rules are a subset of the document's: whatever `POST /uploads` accepts, the
/// simulator (which enforces only the document's rules) accepts when signed as
/// InitUpload, and reads back as sent.
#[cfg(test)]
mod api_agrees {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};
    use vod_uploader::protocol::{params as rules, Call, Credentials, Endpoint, Method, Signer};
    use vod_uploader::sign::Algorithm;
    use vod_uploader::source::{is_plain_file_type, sanitize_file_name, Source, SourcePolicy};

    /// Text that is mostly plain, with the document's forbidden characters, control
    /// characters, spaces and any other character mixed in.
    fn text(max: usize) -> impl Strategy<Value = String> {
        let c = prop_oneof![
            40 => prop::char::range('a', 'z'),
            1 => prop::sample::select(rules::FORBIDDEN_NAME_CHARS.to_vec()),
            1 => prop::sample::select(vec!['\t', '\n', '\u{7f}', ' ', '%', '.', 'é', '中', '_', '+', '&', '=']),
            1 => any::<char>(),
        ];
        prop::collection::vec(c, 0..=max).prop_map(|cs| cs.into_iter().collect())
    }

    fn flag() -> impl Strategy<Value = Option<Value>> {
        prop::option::of(prop_oneof![any::<bool>().prop_map(Value::from), (0u8..3).prop_map(Value::from)])
    }

    /// A create body: each field absent, valid or not, so that many are accepted.
    fn create_body() -> impl Strategy<Value = Value> {
        let source = prop_oneof![
            text(30).prop_map(|t| format!("https://bucket.example/in/{}", t.replace(['?', '#', ' '], "%20"))),
            text(30).prop_map(|t| format!("/data/{}", t.replace(['/', ' '], "_"))),
        ];
        let file_type = prop_oneof![3 => "[a-zA-Z0-9]{1,16}", 1 => text(18)];
        let tags = prop_oneof![4 => prop::collection::vec(text(33), 0..6), 1 => prop::collection::vec(text(34), 0..18)];
        let data_size = prop::sample::select(vec![524_288u64, 1_048_576, 1000]);
        (
            source,
            prop::option::of(text(44)),
            prop::option::of(file_type),
            prop::option::of(tags),
            prop::option::of(any::<u64>()),
            (flag(), flag(), flag()),
            prop::option::of(data_size),
        )
            .prop_map(|(source, file_name, file_type, tags, class_id, (t, s, w), data_size)| {
                let mut body = Map::new();
                body.insert("source".into(), source.into());
                let fields = [
                    ("fileName", file_name.map(Value::from)),
                    ("fileType", file_type.map(Value::from)),
                    ("tags", tags.map(Value::from)),
                    ("classId", class_id.map(Value::from)),
                    ("isTranscode", t),
                    ("isScreenshot", s),
                    ("isWatermark", w),
                    ("dataSize", data_size.map(Value::from)),
                ];
                for (name, value) in fields {
                    if let Some(value) = value {
                        body.insert(name.into(), value);
                    }
                }
                Value::Object(body)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn what_the_api_accepts_the_simulator_accepts(body in create_body(), size in 1u64..=u64::MAX, sha in "[0-9a-f]{40}") {
            let policy = SourcePolicy { allowed_origins: vec!["https://bucket.example".into()], local_root: Some("/data".into()), s3: false };
            let Ok(spec) = vod_uploader::api::parse_create(body.to_string().as_bytes(), &policy) else {
                return Ok(());
            };
            // As the engine sends it.
            let sent = InitUpload {
                file_name: spec.file_name,
                file_sha: sha,
                file_size: size,
                data_size: spec.data_size,
                file_type: spec.file_type,
                tags: spec.tags,
                class_id: spec.class_id,
                is_transcode: spec.is_transcode,
                is_screenshot: spec.is_screenshot,
                is_watermark: spec.is_watermark,
            };
            let signer = Signer {
                endpoint: Endpoint::parse("http://127.0.0.1:9000/v2/index.php").unwrap(),
                credentials: Credentials::new("AKIDtest", "secret"),
                region: "gz".into(),
                algorithm: Algorithm::HmacSha1,
            };
            let request = signer.sign(&Call::InitUpload(sent.clone()), Method::Get, 1_700_000_000, 7);
            let q = Query::parse(request.url.split_once('?').map(|(_, q)| q));
            prop_assert!(common(&q).is_ok());
            match init(&q) {
                Ok(read) => prop_assert_eq!(read, sent),
                Err(e) => prop_assert!(false, "{} refused by the simulator: {}", json!(body), e),
            }
        }

        #[test]
        fn suggested_names_follow_the_document(text in text(60)) {
            let name = sanitize_file_name(&text);
            prop_assert_eq!(rules::file_name(&name), Ok(()));
            prop_assert!(!name.is_empty());
            let (name, file_type) = Source::Path(format!("/data/{text}")).default_names();
            prop_assert_eq!(rules::file_name(&name), Ok(()));
            prop_assert!(is_plain_file_type(&file_type));
        }
    }
}
