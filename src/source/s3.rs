//! Private objects in S3-compatible stores: where `s3://BUCKET/KEY` is read from, which
//! URLs are signed (SigV4, [`super::sigv4`]) and what a refusal says.
//!
//! Path addressing (`{source_origin}/BUCKET/KEY`) is the default: MinIO, Ceph, SeaweedFS,
//! R2 and GCS's interoperability API all take it. Virtual addressing
//! (`https://BUCKET.s3.REGION.amazonaws.com/KEY`) is AWS's own.

use super::sigv4::{self, Credentials, SignInput, EMPTY_SHA256};
use super::{origin_matches, origin_of, parse_origin};

/// How a bucket appears in an object's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `{origin}/BUCKET/KEY`.
    Path,
    /// `https://BUCKET.s3.REGION.amazonaws.com/KEY`.
    Virtual,
}

/// Signed access to one S3-compatible store. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Access {
    /// What requests are signed with (the region is in it).
    pub creds: Credentials,
    /// The store's origin (`https://*.s3.REGION.amazonaws.com` for virtual addressing):
    /// URL sources under it are signed.
    pub endpoint: String,
    /// How object URLs are built.
    pub addressing: Addressing,
}

/// Request headers signed besides `host` and `x-amz-*`: those that change which bytes
/// come back, so a proxy cannot alter them unnoticed. `accept-encoding` stays unsigned.
const SIGNED_HEADERS: [&str; 3] = ["range", "if-match", "if-unmodified-since"];

/// Query parameters that make a URL presigned: it carries its own signature.
const PRESIGNED_PARAMS: [&str; 3] = ["x-amz-signature", "x-amz-credential", "signature"];

/// S3 error codes that mean "these credentials may not read this", whatever the status.
const DENIED_CODES: [&str; 9] = [
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "RequestTimeTooSkewed",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "AccountProblem",
];

impl S3Access {
    /// Access from the deployment's variables: `source_access_key_id`,
    /// `source_secret_access_key`, `source_session_token`, `source_region` (default
    /// `us-east-1`), `source_addressing` (`path`, the default, or `virtual`) and, for path
    /// addressing, `source_origin`. `None` when no key id is set (sources are then read
    /// unsigned). Errors name the variable, never a value.
    pub fn from_variables(
        access_key_id: Option<&str>,
        secret: Option<&str>,
        session_token: Option<&str>,
        region: Option<&str>,
        addressing: Option<&str>,
        source_origin: Option<&str>,
    ) -> Result<Option<S3Access>, String> {
        fn set(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|t| !t.is_empty())
        }
        let Some(key_id) = set(access_key_id) else {
            if set(secret).is_some() {
                return Err("the source_secret_access_key variable is set but source_access_key_id is not: set both".into());
            }
            return Ok(None);
        };
        // The key id is shown in errors, so it must be one printable word.
        if key_id.len() > 128 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the source_access_key_id variable must be one word of printable ASCII (at most 128 characters)".into());
        }
        let secret = set(secret).ok_or("the source_secret_access_key variable is not set, but source_access_key_id is: set both")?;
        let region = set(region).unwrap_or("us-east-1");
        if region.len() > 32 || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("the source_region variable must be a region name such as us-east-1 (lower-case letters, digits, -)".into());
        }
        let addressing = match set(addressing).map(str::to_ascii_lowercase).as_deref() {
            None | Some("path") => Addressing::Path,
            Some("virtual") => Addressing::Virtual,
            Some(_) => return Err("the source_addressing variable must be path or virtual".into()),
        };
        let endpoint = match addressing {
            // Every bucket is its own host, all under one domain per region.
            Addressing::Virtual => format!("https://*.s3.{region}.amazonaws.com"),
            Addressing::Path => {
                let origin = set(source_origin).ok_or(
                    "with source_addressing path (the default) the source_origin variable must be the store's origin, \
                     such as http://127.0.0.1:8333",
                )?;
                let origin = parse_origin(origin).map_err(|e| format!("the source_origin variable {e}"))?;
                if origin.contains("://*.") {
                    return Err("with source_addressing path the source_origin variable must name one host, not *.domain \
                                (use source_addressing virtual for AWS's bucket.s3.region.amazonaws.com hosts)"
                        .into());
                }
                origin
            }
        };
        let token = set(session_token).map(str::to_owned);
        Ok(Some(S3Access { creds: Credentials::new(key_id.into(), secret.into(), token, region.into()), endpoint, addressing }))
    }

    /// The URL of an object; the key is URI-encoded once, its `/` kept.
    pub fn object_url(&self, bucket: &str, key: &str) -> String {
        let key = sigv4::uri_encode(key, false);
        match self.addressing {
            Addressing::Path => format!("{}/{bucket}/{key}", self.endpoint),
            Addressing::Virtual => format!("https://{bucket}.s3.{}.amazonaws.com/{key}", self.creds.region),
        }
    }

    /// Whether a URL source is read signed: it is under the store's origin and not
    /// presigned (a presigned URL is sent as it is, as before signing existed).
    pub fn signs(&self, url: &str) -> bool {
        !is_presigned(url) && origin_of(url).is_some_and(|origin| origin_matches(&self.endpoint, &origin))
    }

    /// Signs a GET (or other body-less request) to `url` at `unix_now`: adds `x-amz-date`,
    /// `x-amz-content-sha256`, the session token if any, and `authorization` to `headers`
    /// (replacing any earlier signature, so a request is signed afresh on every send).
    pub fn sign(&self, method: &str, url: &str, headers: &mut Vec<(String, String)>, unix_now: u64) {
        const ADDED: [&str; 4] = ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "authorization"];
        headers.retain(|(n, _)| !ADDED.iter().any(|a| n.eq_ignore_ascii_case(a)));
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let rest = rest.split('#').next().unwrap_or_default();
        let at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(at);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        // The host as the platform sends it: the URL's authority, as written.
        let mut signed = vec![("host".to_owned(), authority.to_owned())];
        signed.extend(
            headers
                .iter()
                .filter(|(n, _)| {
                    let n = n.to_ascii_lowercase();
                    SIGNED_HEADERS.contains(&n.as_str()) || n.starts_with("x-amz-")
                })
                .cloned(),
        );
        let input =
            SignInput { method, path, query, headers: &signed, payload_sha256: EMPTY_SHA256, service: "s3", send_payload_hash: true };
        headers.extend(sigv4::authorization(&self.creds, &input, unix_now));
    }
}

/// Whether a URL's query carries a signature of its own (SigV4 or SigV2 presigned).
pub fn is_presigned(url: &str) -> bool {
    let query = url.split('#').next().unwrap_or_default().split_once('?').map_or("", |(_, q)| q);
    query.split('&').any(|p| {
        let name = p.split('=').next().unwrap_or_default();
        PRESIGNED_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s))
    })
}

/// The bucket and key of `s3://BUCKET/KEY`. The key is taken as written (not
/// percent-decoded: `%` is a character of keys like any other).
pub fn parse_s3_url(text: &str) -> Result<(&str, &str), String> {
    let rest = text
        .get(..5)
        .filter(|s| s.eq_ignore_ascii_case("s3://"))
        .map(|_| &text[5..])
        .ok_or("an S3 source must look like s3://BUCKET/KEY")?;
    let (bucket, key) = rest.split_once('/').ok_or("an S3 source must look like s3://BUCKET/KEY: the key is missing")?;
    if bucket.is_empty() || bucket.len() > 255 || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err("the bucket of an s3:// source must be letters, digits, '.', '-' or '_'".into());
    }
    if key.is_empty() || key.len() > 1024 || key.chars().any(char::is_control) {
        return Err("the key of an s3:// source must be 1 to 1024 bytes without control characters".into());
    }
    Ok((bucket, key))
}

/// The `<Code>` of an S3 XML error body, when it is a plain word.
pub fn error_code(body_head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body_head);
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    let code = code.trim();
    (!code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')).then(|| code.to_owned())
}

/// Whether an error body's code means the credentials may not read the object (S3 answers
/// some of these, `ExpiredToken` among them, with 400).
pub fn is_denied_code(body_head: &[u8]) -> bool {
    error_code(body_head).is_some_and(|c| DENIED_CODES.contains(&c.as_str()))
}

/// The message of a signed read refused by the store: the key id and, from the error
/// body's `<Code>`, what is likely wrong. Never the secret (which no store sends back).
pub fn denied_message(key_id: &str, body_head: &[u8]) -> String {
    let code = error_code(body_head);
    let hint = match code.as_deref() {
        Some("AccessDenied") => "the key may not read this object (check the bucket's policy and the key's permissions)",
        Some("SignatureDoesNotMatch") => {
            "the signature does not match: source_secret_access_key is not this key's secret, or source_region is wrong"
        }
        Some("InvalidAccessKeyId") => "the store knows no such access key id (check source_access_key_id)",
        Some("RequestTimeTooSkewed") => "this platform's clock and the store's differ by more than 15 minutes",
        Some("ExpiredToken" | "TokenRefreshRequired") => "the session token (source_session_token) has expired",
        Some("InvalidToken") => "the session token (source_session_token) is not valid",
        _ => "access denied",
    };
    match code {
        Some(code) => format!("the source store refused access key id {key_id}: {code}: {hint}"),
        None => format!("the source store refused access key id {key_id}: {hint}"),
    }
}

#[cfg(test)]
mod tests;
