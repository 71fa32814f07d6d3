//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) in the Authorization header, hand-written
//! on hmac/sha2: a signing crate (rusty-s3, aws-sigv4) would pull in URL, time and XML
//! crates the component otherwise does without.
//!
//! Each stage is public so a verifier (host-sim's signed file server) can rebuild the
//! canonical request the same way: [`canonical_request`] → [`string_to_sign`] →
//! [`signing_key`] → [`signature`]; [`authorization`] does them all for a request about to
//! be sent. The path is encoded once and never normalised (S3's rule: `a//b` and `a/./b`
//! are keys of their own), which the generic test suite's `*-unnormalized` cases share.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

/// SHA-256 of the empty body, the payload hash of a GET.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The payload hash that leaves the body unsigned (allowed by S3 over TLS).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The algorithm's name, first in the string to sign and the Authorization header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a request is signed with. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (not a secret: it names the key in errors and logs).
    pub access_key_id: String,
    secret: String,
    /// A temporary credential's session token, sent as `x-amz-security-token`.
    pub session_token: Option<String>,
    /// The region in the credential scope, e.g. `us-east-1`.
    pub region: String,
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(access_key_id: String, secret: String, session_token: Option<String>, region: String) -> Self {
        Credentials { access_key_id, secret, session_token, region }
    }

    /// The secret access key, for signing (and a verifier's comparison) only.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .field("region", &self.region)
            .finish()
    }
}

/// A request as it will be sent, to sign or to verify.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as sent (percent-escapes allowed; decoded, then encoded once).
    pub path: &'a str,
    /// The query as sent, without `?` (empty for none).
    pub query: &'a str,
    /// The headers to sign, `host` included; names in any case, values untrimmed.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub payload_sha256: &'a str,
    /// The service in the scope: `s3` for object stores.
    pub service: &'a str,
    /// Whether to send (and sign) the payload hash as `x-amz-content-sha256`, which S3
    /// requires and the generic suite omits.
    pub send_payload_hash: bool,
}

/// Percent-encodes bytes the way SigV4 wants: every byte but the RFC 3986 unreserved
/// `A-Z a-z 0-9 - . _ ~` becomes `%XX` (upper-case hex); `/` is kept unless `encode_slash`.
pub fn uri_encode_bytes(bytes: &[u8], encode_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// [`uri_encode_bytes`] of a text's UTF-8: an object key (`encode_slash` false) or a
/// query name or value (true).
pub fn uri_encode(text: &str, encode_slash: bool) -> String {
    uri_encode_bytes(text.as_bytes(), encode_slash)
}

/// Decodes `%XX` escapes (a `%` not followed by two hex digits stays as it is; `+` stays
/// `+`, since in a path and in S3's canonical query it is not a space).
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The canonical URI: the path as the server will decode it, encoded once, `/` kept,
/// never normalised. An empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    uri_encode_bytes(&percent_decode(path), false)
}

/// The canonical query: each name and value decoded then encoded (`/` too), sorted by
/// name then value, joined with `&`; a parameter without `=` has an empty value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        let pair = (uri_encode_bytes(&percent_decode(name), true), uri_encode_bytes(&percent_decode(value), true));
        // Kept sorted as it grows: a handful of parameters, and no sort routine in the .wasm.
        let at = pairs.partition_point(|q| *q <= pair);
        pairs.insert(at, pair);
    }
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// The canonical headers (`name:value\n` each, names lower-cased, values trimmed with
/// inner runs of white space made one space, repeated names joined with `,` in the order
/// given, sorted by name) and the signed header names (`a;b;c`).
pub fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    // Kept sorted by name as it grows (a handful of headers, and no sort routine in the
    // .wasm); a repeated name joins its entry, so the input's order cannot show through.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        let value = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        let at = merged.partition_point(|(n, _)| *n < name);
        match merged.get_mut(at).filter(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => merged.insert(at, (name, value)),
        }
    }
    let block = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let names = merged.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    (block, names)
}

/// The canonical request and the signed header names, over exactly `input.headers`
/// (the caller adds `x-amz-date` and the rest first; [`authorization`] does).
pub fn canonical_request(input: &SignInput) -> (String, String) {
    let (block, names) = canonical_headers(input.headers);
    let creq = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        canonical_uri(input.path),
        canonical_query(input.query),
        block,
        names,
        input.payload_sha256
    );
    (creq, names)
}

/// `DATE/REGION/SERVICE/aws4_request`, where DATE is the `YYYYMMDD` of `amz_date`.
pub fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", amz_date.get(..8).unwrap_or(amz_date))
}

/// The string to sign: algorithm, time, scope and the canonical request's SHA-256.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", crate::hex::encode(&Sha256::digest(canonical_request.as_bytes())))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The day's key: HMAC chained over `AWS4`+secret, the date (`YYYYMMDD`), region,
/// service and `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// Hex HMAC-SHA256 of the string to sign under the day's key.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    crate::hex::encode(&hmac(signing_key, string_to_sign.as_bytes()))
}

/// Signs a request at `unix_secs`: the headers to add to it, in this order:
/// `x-amz-date`, `x-amz-content-sha256` (if `send_payload_hash`), `x-amz-security-token`
/// (with a session token), `authorization`. All but the last are signed too.
pub fn authorization(creds: &Credentials, input: &SignInput, unix_secs: u64) -> Vec<(String, String)> {
    let date = amz_date(unix_secs);
    let mut added = vec![("x-amz-date".to_owned(), date.clone())];
    if input.send_payload_hash {
        added.push(("x-amz-content-sha256".to_owned(), input.payload_sha256.to_owned()));
    }
    if let Some(token) = &creds.session_token {
        added.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    let signed: Vec<(String, String)> = input.headers.iter().chain(&added).cloned().collect();
    let (creq, names) = canonical_request(&SignInput { headers: &signed, ..*input });
    let scope = scope(&date, &creds.region, input.service);
    let key = signing_key(&creds.secret, &date[..8], &creds.region, input.service);
    let sig = signature(&key, &string_to_sign(&date, &scope, &creq));
    let value = format!("{ALGORITHM} Credential={}/{scope}, SignedHeaders={names}, Signature={sig}", creds.access_key_id);
    added.push(("authorization".to_owned(), value));
    added
}

/// `YYYYMMDDTHHMMSSZ` (UTC) of Unix seconds. Days become a civil date by Howard Hinnant's
/// `civil_from_days` (proleptic Gregorian, eras of 400 years), all in unsigned
/// arithmetic since the input is never before 1970.
pub fn amz_date(unix_secs: u64) -> String {
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests;
