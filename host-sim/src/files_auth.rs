//! `host-sim files --sigv4 KEYID:SECRET`: the file server as a private S3 bucket. Every
//! request (but `/_stats`) must carry an AWS SigV4 Authorization header by that key;
//! refusals are S3's XML errors with 403: `AccessDenied` (unsigned), `InvalidAccessKeyId`,
//! `RequestTimeTooSkewed` (`x-amz-date` more than 15 minutes off) and
//! `SignatureDoesNotMatch`. Paths stay as they are: `/BUCKET/KEY` is the file
//! `BUCKET/KEY` under the root, which is path-style addressing.
//!
//! The canonical request is rebuilt with the uploader's own
//! [`sigv4::canonical_request`], so a shared canonicalisation bug would cancel out here:
//! the AWS vectors and a real store (SeaweedFS) are what check that part. What this
//! checks is the rest: the right key and secret, a fresh date, and stricter than S3,
//! that `Range` and `If-Match` are signed whenever they are sent.

use crate::http::{self, Body};
use hyper::{HeaderMap, Response, StatusCode, Uri};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vod_uploader::source::sigv4::{self, SignInput};

/// How far a request's `x-amz-date` may be from the server's clock, as S3 allows.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The one key the server accepts.
#[derive(Clone)]
pub struct Auth {
    /// The access key id.
    pub key_id: String,
    secret: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl std::str::FromStr for Auth {
    type Err = String;

    /// `KEYID:SECRET` (the secret may contain `:`).
    fn from_str(text: &str) -> Result<Auth, String> {
        match text.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(Auth { key_id: id.into(), secret: secret.into() }),
            _ => Err("--sigv4 takes KEYID:SECRET".into()),
        }
    }
}

/// An S3 error answer.
fn refuse(code: &str, message: &str, resource: &str) -> Response<Body> {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource></Error>",
        escape(message),
        escape(resource)
    );
    let mut response = Response::new(http::full(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert("content-type", "application/xml".parse().expect("a valid header"));
    response
}

/// Unix seconds of an `x-amz-date` (`YYYYMMDDTHHMMSSZ`), by Hinnant's `days_from_civil`.
fn parse_amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || y < 1970 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A request header's value(s), joined with `,` as SigV4 joins repeated headers.
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(","))
}

impl Auth {
    /// Checks a request's signature at `now`: the 403 to answer, `None` when it is signed
    /// right by this key.
    pub fn refusal(&self, method: &str, uri: &Uri, headers: &HeaderMap, now: SystemTime) -> Option<Response<Body>> {
        self.verify(method, uri, headers, now).err().map(|(code, message)| refuse(code, &message, uri.path()))
    }

    /// `Err` holds S3's error code and message.
    fn verify(&self, method: &str, uri: &Uri, headers: &HeaderMap, now: SystemTime) -> Result<(), (&'static str, String)> {
        let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return Err(("AccessDenied", "Access Denied (no Authorization header: the bucket is private)".to_string()));
        };
        let Some(fields) = auth.strip_prefix(sigv4::ALGORITHM).map(str::trim) else {
            return Err(("AccessDenied", "only AWS4-HMAC-SHA256 is supported".to_string()));
        };
        let field = |name: &str| fields.split(',').map(str::trim).find_map(|f| f.strip_prefix(name)).unwrap_or("");
        let (credential, signed, signature) = (field("Credential="), field("SignedHeaders="), field("Signature="));
        let scope: Vec<&str> = credential.splitn(5, '/').collect();
        if scope.len() != 5 || scope[4] != "aws4_request" {
            return Err(("AccessDenied", "the Credential of the Authorization header is malformed".to_string()));
        }
        if scope[0] != self.key_id {
            return Err(("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.".to_string()));
        }
        let date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(at) = parse_amz_date(date) else {
            return Err(("AccessDenied", "x-amz-date is missing or malformed".to_string()));
        };
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if at.abs_diff(now) > MAX_SKEW.as_secs() {
            return Err(("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.".to_string()));
        }
        let names: Vec<&str> = signed.split(';').collect();
        for must in ["host", "x-amz-date", "x-amz-content-sha256"] {
            if !names.contains(&must) {
                return Err(("AccessDenied", format!("{must} must be signed")));
            }
        }
        for sent in ["range", "if-match", "if-unmodified-since"] {
            if headers.contains_key(sent) && !names.contains(&sent) {
                return Err(("AccessDenied", format!("{sent} is sent but not signed")));
            }
        }
        let mut signed_headers = Vec::new();
        for name in &names {
            let Some(value) = header_value(headers, name) else {
                return Err(("AccessDenied", format!("signed header {name} is missing")));
            };
            signed_headers.push((name.to_string(), value));
        }
        let payload = header_value(headers, "x-amz-content-sha256").unwrap_or_default();
        let input = SignInput {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &signed_headers,
            payload_sha256: &payload,
            service: scope[3],
            send_payload_hash: true,
        };
        let (creq, _) = sigv4::canonical_request(&input);
        let sts = sigv4::string_to_sign(date, &format!("{}/{}/{}/aws4_request", scope[1], scope[2], scope[3]), &creq);
        let key = sigv4::signing_key(&self.secret, scope[1], scope[2], scope[3]);
        if sigv4::signature(&key, &sts) != signature || !date.starts_with(scope[1]) {
            return Err((
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method."
                    .to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vod_uploader::source::s3::S3Access;

    fn request(access: &S3Access, url: &str, at: u64, extra: &[(&str, &str)]) -> (Uri, HeaderMap) {
        let mut headers: Vec<(String, String)> = extra.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        access.sign("GET", url, &mut headers, at);
        let uri: Uri = url.parse().unwrap();
        let mut map = HeaderMap::new();
        map.insert("host", uri.authority().unwrap().as_str().parse().unwrap());
        for (n, v) in headers {
            map.append(hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        (uri, map)
    }

    fn code(result: Option<Response<Body>>) -> String {
        match result {
            None => "ok".into(),
            Some(r) => {
                assert_eq!(r.status(), StatusCode::FORBIDDEN);
                "refused".into()
            }
        }
    }

    #[test]
    fn accepts_the_uploaders_signature_and_refuses_the_rest() {
        let auth: Auth = "AKID:secret:with:colons".parse().unwrap();
        let access = |secret: &str, id: &str| {
            S3Access::from_variables(Some(id), Some(secret), None, None, None, Some("http://127.0.0.1:9")).unwrap().unwrap()
        };
        let good = access("secret:with:colons", "AKID");
        let now = 1_700_000_000;
        let at = UNIX_EPOCH + Duration::from_secs(now);
        let url = good.object_url("vids", "in/my clip+1.mp4");
        let (uri, h) = request(&good, &url, now, &[("range", "bytes=0-0"), ("accept-encoding", "identity")]);
        assert_eq!(code(auth.refusal("GET", &uri, &h, at)), "ok");
        assert_eq!(code(auth.refusal("HEAD", &uri, &h, at)), "refused", "the method is signed");
        let (uri, h) = request(&access("wrong", "AKID"), &url, now, &[]);
        assert_eq!(code(auth.refusal("GET", &uri, &h, at)), "refused");
        let (uri, h) = request(&access("secret:with:colons", "OTHER"), &url, now, &[]);
        assert_eq!(code(auth.refusal("GET", &uri, &h, at)), "refused");
        let (uri, h) = request(&good, &url, now - 16 * 60, &[]);
        assert_eq!(code(auth.refusal("GET", &uri, &h, at)), "refused", "a stale date");
        let (uri, mut h) = request(&good, &url, now, &[("range", "bytes=0-0")]);
        h.insert("range", "bytes=0-99".parse().unwrap());
        assert_eq!(code(auth.refusal("GET", &uri, &h, at)), "refused", "a changed range");
        h.remove("authorization");
        assert_eq!(code(auth.refusal("GET", &uri, &h, at)), "refused");
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date(&sigv4::amz_date(4_107_542_400)), Some(4_107_542_400));
        for bad in ["", "2015-08-30T12:36", "20151330T123600Z", "19600101T000000Z", "2015083OT123600Z"] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
