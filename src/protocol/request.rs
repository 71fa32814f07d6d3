//! Signing: the caller's key pair, where requests go, one call with its parameters,
//! and the signed request ready to send.

use super::params::{FinishUpload, InitUpload, UploadPart};
use super::Method;
use crate::sign::{self, Algorithm};
use std::fmt;

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

    /// The URL every call goes to (origin and path, without a query).
    pub fn url(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
