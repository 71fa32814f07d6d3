//! The fileName and fileType a source suggests, made valid for the protocol: the
//! document's fileName rule (`protocol::params`) and our fileType rule.

use super::Source;
use crate::protocol::params;

impl Source {
    /// The last path segment (query and fragment removed, percent-escapes decoded).
    fn last_segment(&self) -> String {
        let path = match self {
            Source::Url(url) => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
                let path = rest.split(['?', '#']).next().unwrap_or("");
                path.split_once('/').map(|(_, p)| p).unwrap_or("")
            }
            Source::Path(p) => p.as_str(),
            // An S3 key is written as it is, not percent-encoded.
            Source::S3(loc) => {
                let key = super::s3::parse_s3_url(loc).map(|(_, key)| key).unwrap_or("");
                return key.rsplit('/').find(|s| !s.is_empty()).unwrap_or("").to_owned();
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid_for_the_protocol() {
        let names = |s: &str| Source::Url(s.into()).default_names();
        assert_eq!(names("https://h/videos/My%20Clip.MOV?sig=1"), ("My Clip".into(), "mov".into()));
        assert_eq!(names("https://h/a:b*c?.mp4"), ("a_b_c".into(), "mp4".into()));
        assert_eq!(Source::Path("/data/a?b|c.MOV".into()).default_names(), ("a_b_c".into(), "mov".into()));
        assert_eq!(names("https://h/"), ("upload".into(), "mp4".into()));
        assert_eq!(names("https://h/%E4%B8%AD%zz%"), ("中%zz%".into(), "mp4".into()));
        assert_eq!(names("https://h/archive.tar.gz"), ("archive.tar".into(), "gz".into()));
        // An S3 key is not percent-encoded: `%20` is three characters of the name.
        let s3 = |key: &str| Source::s3("b", key).unwrap().default_names();
        assert_eq!(s3("in/my clip%20+1.MKV"), ("my clip%20+1".into(), "mkv".into()));
        assert_eq!(s3("in/dir/"), ("dir".into(), "mp4".into()));
        let long = Source::Path(format!("/data/{}.flv", "é".repeat(30))).default_names();
        assert!(long.0.len() <= 40 && long.0.chars().all(|c| c == 'é'));
        assert_eq!(long.1, "flv");
    }
}
