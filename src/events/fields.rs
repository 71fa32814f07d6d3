//! Small readers over `serde_json::Value` shared by the format parsers: senders spell
//! the same thing as a number or a string, quote ETags or not, and encode keys or not,
//! so each quirk is handled once here.

use base64::Engine as _;
use serde_json::Value;

/// The string at `path` (object keys, outermost first), if every step exists and the
/// last is a string.
pub(crate) fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

/// The value at `path`, if every step exists.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(*k))
}

/// The non-empty string at `path`; `null`, `""` and the literal `"null"` (S3's
/// spelling of "no version" in some versions of the format) count as absent.
pub(crate) fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    str_at(value, path).filter(|s| !s.is_empty() && *s != "null").map(str::to_owned)
}

/// A size or generation: senders use JSON numbers (S3) or decimal strings (GCS's
/// proto-JSON int64s); anything else (negative, fractional, text) counts as absent.
pub(crate) fn u64_at(value: &Value, path: &[&str]) -> Option<u64> {
    match at(value, path)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An ETag without the quotes HTTP puts around it (Azure's events keep them).
pub(crate) fn unquote(etag: &str) -> String {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(t).to_owned()
}

/// Decodes an `application/x-www-form-urlencoded` key (`+` is a space, `%XX` a byte),
/// as S3 and MinIO write keys in their events. A `%` not followed by two hex digits is
/// kept as it is, like browsers do, rather than failing the whole event.
pub(crate) fn form_decode(encoded: &str) -> Result<String, String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("the key {encoded:?} decodes to bytes that are not UTF-8"))
}

fn hex_digit(b: Option<&u8>) -> Option<u8> {
    let c = *b?;
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Base64 (standard alphabet, padded or not) decoded, if it is valid.
pub(crate) fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    let e = &base64::engine::general_purpose::STANDARD;
    let t = text.trim();
    e.decode(t).ok().or_else(|| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t.trim_end_matches('=')).ok())
}

/// An MD5 given as base64 of its 16 raw bytes (GCS's `md5Hash`, SeaweedFS's `md5`) as
/// the lower-case hex an S3-style GET answers as its ETag.
pub(crate) fn md5_base64_to_hex(text: &str) -> Option<String> {
    base64_bytes(text).filter(|b| b.len() == 16).map(|b| crate::hex::encode(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_form_encoded_keys() {
        assert_eq!(form_decode("red+flower.jpg").unwrap(), "red flower.jpg");
        assert_eq!(form_decode("c%2B%2B+a%20b").unwrap(), "c++ a b");
        assert_eq!(form_decode("100%").unwrap(), "100%");
        assert_eq!(form_decode("%zz%4").unwrap(), "%zz%4");
        assert_eq!(form_decode("caf%C3%A9").unwrap(), "café");
        assert!(form_decode("%FF").unwrap_err().contains("%FF"));
    }

    #[test]
    fn reads_numbers_and_strings() {
        let v = json!({"a": {"n": 5, "s": "352", "neg": -1, "f": 1.5, "t": "x"}});
        assert_eq!(u64_at(&v, &["a", "n"]), Some(5));
        assert_eq!(u64_at(&v, &["a", "s"]), Some(352));
        assert_eq!(u64_at(&v, &["a", "neg"]), None);
        assert_eq!(u64_at(&v, &["a", "f"]), None);
        assert_eq!(u64_at(&v, &["a", "t"]), None);
        assert_eq!(u64_at(&v, &["b", "n"]), None);
    }

    #[test]
    fn unquotes_and_converts_etags() {
        assert_eq!(unquote("\"0x8D4BCC2E4835CD0\""), "0x8D4BCC2E4835CD0");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
        assert_eq!(unquote("\""), "\"");
        assert_eq!(md5_base64_to_hex("dFaBIM9VP5sbV+B9rf+kYw==").as_deref(), Some("74568120cf553f9b1b57e07dadffa463"));
        assert_eq!(md5_base64_to_hex("YWJj"), None, "not 16 bytes");
        assert_eq!(md5_base64_to_hex("!!"), None);
    }

    #[test]
    fn absent_versions() {
        let v = json!({"a": "null", "b": "", "c": null, "d": "v1"});
        assert_eq!(text_at(&v, &["a"]), None);
        assert_eq!(text_at(&v, &["b"]), None);
        assert_eq!(text_at(&v, &["c"]), None);
        assert_eq!(text_at(&v, &["d"]).as_deref(), Some("v1"));
    }
}
