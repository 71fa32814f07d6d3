//! Reading and validating request parameters: the common ones (-10001) and each
//! action's own (-10003). Pure functions over the decoded query string.

use super::reply::Reject;
use vod_uploader::hex;
use vod_uploader::protocol::{InitUpload, UploadPart, FORBIDDEN_NAME_CHARS, MAX_FILE_NAME_BYTES, PART_SIZES};

/// The decoded query string, in order, names as sent.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// At most this many tags.
pub const MAX_TAGS: usize = 16;
/// A tag's limit in characters.
pub const MAX_TAG_CHARS: usize = 32;
/// The documented regions.
pub const REGIONS: &[&str] = &["bj", "gz", "sh", "hk", "ca"];

impl Query {
    /// Decodes a raw query string (`+` is a space, as PHP decoded it).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Query { pairs }
    }

    /// Every pair, as sent: the input of the signature.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name`; a name sent with `_` for `.` (PHP style) counts too.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name || (k.contains('_') && k.replace('_', ".") == name))
            .map(|(_, v)| v.as_str())
    }

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
    /// Nonce.
    pub nonce: u64,
    /// SecretId.
    pub secret_id: String,
    /// Signature, Base64.
    pub signature: String,
}

fn parse_uint(q: &Query, name: &str, code: fn(String) -> Reject) -> Result<u64, Reject> {
    let v = q.required(name, code)?;
    // Digits only: no sign, no spaces, no hex; u64 range.
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(code(format!("{name} must be a non-negative integer, got {v:?}")));
    }
    v.parse().map_err(|_| code(format!("{name} is out of range: {v:?}")))
}

/// Reads the common parameters, or says which one is wrong (-10001; a missing
/// `Signature` is -10002).
pub fn common(q: &Query) -> Result<Common, Reject> {
    let action = match q.required("Action", Reject::common)? {
        "InitUpload" => Action::InitUpload,
        "UploadPart" => Action::UploadPart,
        "FinishUpload" => Action::FinishUpload,
        other => return Err(Reject::common(format!("Action {other:?} is not one of InitUpload, UploadPart, FinishUpload"))),
    };
    let region = q.required("Region", Reject::common)?;
    if !REGIONS.contains(&region) {
        return Err(Reject::common(format!("Region {region:?} is not one of {}", REGIONS.join(", "))));
    }
    let mut timestamp = parse_uint(q, "Timestamp", Reject::common)?;
    if timestamp >= 100_000_000_000 {
        // Milliseconds (the Node.js SDK sent those).
        timestamp /= 1000;
    }
    let nonce = parse_uint(q, "Nonce", Reject::common)?;
    if nonce == 0 {
        return Err(Reject::common("Nonce must be a positive integer"));
    }
    let secret_id = q.required("SecretId", Reject::common)?.to_owned();
    if let Some(method) = q.get("SignatureMethod") {
        if method != "HmacSHA1" && method != "HmacSHA256" {
            return Err(Reject::common(format!("SignatureMethod {method:?} is not HmacSHA1 or HmacSHA256")));
        }
    }
    let signature = q.required("Signature", Reject::signature)?.to_owned();
    Ok(Common { action, region: region.to_owned(), timestamp: timestamp as i64, nonce, secret_id, signature })
}

/// `fileSha`: 40 hex digits, returned lower-cased (the C# SDK sent upper case).
pub fn file_sha(q: &Query) -> Result<String, Reject> {
    let v = q.required("fileSha", Reject::param)?;
    if !hex::is_hex(v, 40) {
        return Err(Reject::param(format!("fileSha must be 40 hex digits (the file's SHA-1), got {v:?}")));
    }
    Ok(v.to_ascii_lowercase())
}

/// Reads InitUpload's parameters, or names the one that is wrong (-10003). The
/// result is the protocol's own [`InitUpload`]: one definition for both sides.
pub fn init(q: &Query) -> Result<InitUpload, Reject> {
    let file_name = q.required("fileName", Reject::param)?;
    if file_name.len() > MAX_FILE_NAME_BYTES {
        return Err(Reject::param(format!(
            "fileName is {} bytes; at most {MAX_FILE_NAME_BYTES} bytes are allowed",
            file_name.len()
        )));
    }
    if let Some(c) = file_name.chars().find(|c| FORBIDDEN_NAME_CHARS.contains(c) || c.is_control()) {
        return Err(Reject::param(format!(
            "fileName must not contain {c:?} (forbidden: \\ / : * ? \" < > | and control characters)"
        )));
    }
    let file_sha = file_sha(q)?;
    let file_size = parse_uint(q, "fileSize", Reject::param)?;
    if file_size == 0 {
        return Err(Reject::param("fileSize must be greater than 0"));
    }
    let data_size = parse_uint(q, "dataSize", Reject::param)?;
    if !PART_SIZES.contains(&data_size) {
        return Err(Reject::param(format!("dataSize must be 524288 or 1048576, got {data_size}")));
    }
    let file_type = q.required("fileType", Reject::param)?;
    if file_type.len() > 16 || !file_type.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Reject::param(format!(
            "fileType must be 1 to 16 ASCII letters or digits (an extension such as mp4), got {file_type:?}"
        )));
    }
    let tags = tags(q)?;
    let class_id = match q.get("classId") {
        None => None,
        Some(_) => Some(parse_uint(q, "classId", Reject::param)?),
    };
    let mut flags = [false; 3];
    for (flag, name) in flags.iter_mut().zip(["isTranscode", "isScreenshot", "isWatermark"]) {
        *flag = match q.get(name) {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(Reject::param(format!("{name} must be 0 or 1, got {other:?}"))),
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

/// `tags.N` (or `tag.N`, as the official SDKs sent), ordered by N.
fn tags(q: &Query) -> Result<Vec<String>, Reject> {
    let mut tags: Vec<(u32, String)> = Vec::new();
    for (name, value) in q.pairs() {
        let name = name.replace('_', ".");
        let Some(index) = name.strip_prefix("tags.").or_else(|| name.strip_prefix("tag.")) else {
            continue;
        };
        let Ok(n) = index.parse::<u32>() else {
            return Err(Reject::param(format!("{name} is not a tag parameter: use tags.1, tags.2, ...")));
        };
        if tags.iter().any(|(m, _)| *m == n) {
            return Err(Reject::param(format!("{name} is given twice")));
        }
        if value.is_empty() || value.chars().count() > MAX_TAG_CHARS || value.chars().any(char::is_control) {
            return Err(Reject::param(format!(
                "{name} must be 1 to {MAX_TAG_CHARS} characters without control characters"
            )));
        }
        tags.push((n, value.to_owned()));
    }
    if tags.len() > MAX_TAGS {
        return Err(Reject::param(format!("at most {MAX_TAGS} tags.N are allowed, got {}", tags.len())));
    }
    tags.sort();
    Ok(tags.into_iter().map(|(_, v)| v).collect())
}

/// Reads UploadPart's parameters, or names the one that is wrong (-10003).
pub fn part(q: &Query) -> Result<UploadPart, Reject> {
    let file_sha = file_sha(q)?;
    let offset = parse_uint(q, "offset", Reject::param)?;
    let data_size = parse_uint(q, "dataSize", Reject::param)?;
    if data_size == 0 {
        return Err(Reject::param("dataSize must be greater than 0"));
    }
    let md5 = q.required("dataMd5", Reject::param)?;
    if !hex::is_hex(md5, 32) {
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
        assert!(init(&init_q("").clone_with("fileType", &"a".repeat(16))).is_ok());
        assert!(init(&init_q("").clone_with("fileType", &"a".repeat(17))).is_err());
        assert!(init(&init_q(&format!("&tags.1={}", "é".repeat(32)))).is_ok());
        assert!(init(&init_q(&format!("&tags.1={}", "é".repeat(33)))).is_err());
        assert!(init(&init_q("&tags.1=a%07b")).is_err());
        let sixteen: String = (1..=16).map(|i| format!("&tags.{i}=t")).collect();
        assert_eq!(init(&init_q(&sixteen)).unwrap().tags.len(), 16);
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
        let p = init(&q(&format!(
            "fileName=t&fileSha={}&fileSize=1&dataSize=524288&fileType=flv&tag.2=b&tags_1=a",
            SHA.to_uppercase()
        )))
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
            ("fileSize=0", "fileSize"),
            ("fileSize=-1", "fileSize"),
            ("dataSize=1000", "dataSize"),
            ("fileType=m.p4", "fileType"),
            ("classId=x", "classId"),
            ("isTranscode=2", "isTranscode"),
            ("tags.x=1", "tags.x"),
            ("tags.1=", "tags.1"),
        ];
        for (override_, named) in cases {
            let (key, _) = override_.split_once('=').unwrap();
            let base = format!("fileName=test&fileSha={SHA}&fileSize=20350000&dataSize=1048576&fileType=mp4");
            let mut pairs: Vec<String> =
                base.split('&').filter(|kv| !kv.starts_with(&format!("{key}="))).map(String::from).collect();
            pairs.push(override_.to_string());
            let err = init(&q(&pairs.join("&"))).unwrap_err();
            assert_eq!(err.code, -10003, "{override_}");
            assert!(err.message.contains(named), "{override_}: {}", err.message);
        }
        let many: String = (1..=17).map(|i| format!("&tags.{i}=t")).collect();
        assert!(init(&init_q(&many)).unwrap_err().message.contains("tags"));
    }

    #[test]
    fn missing_required_parameters_are_named() {
        for name in ["fileName", "fileSha", "fileSize", "dataSize", "fileType"] {
            let all = init_q("");
            let pairs: Vec<String> =
                all.pairs().filter(|(k, _)| *k != name).map(|(k, v)| format!("{k}={v}")).collect();
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
        for (from, to, named, code) in [
            ("Action=InitUpload", "Action=Upload", "Action", -10001),
            ("Region=gz", "Region=mars", "Region", -10001),
            ("Timestamp=1700000000", "Timestamp=17e8", "Timestamp", -10001),
            ("Nonce=5", "Nonce=0", "Nonce", -10001),
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
