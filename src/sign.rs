//! Request signing for the VOD server API (API v2 signature).
//!
//! The signed string is `METHOD + host + path + "?" + params`, where `params` are all
//! request parameters but `Signature`, names with `_` turned into `.`, sorted byte-wise
//! by name and joined as raw (un-encoded) `name=value` pairs with `&`. The signature is
//! Base64(HMAC(SecretKey, string)), with SHA-1 unless the parameters carry
//! `SignatureMethod=HmacSHA256`.
//!
//! This module is shared: the component signs with it, and `host-sim` verifies with it,
//! so both sides always agree on one definition.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, KeyInit, Mac};

/// Name of the parameter that carries the signature; never itself signed.
pub const SIGNATURE_PARAM: &str = "Signature";
/// Name of the parameter that selects the HMAC hash.
pub const SIGNATURE_METHOD_PARAM: &str = "SignatureMethod";

/// The HMAC variant of a request, as selected by its `SignatureMethod` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `HmacSHA1`: the default when `SignatureMethod` is absent.
    HmacSha1,
    /// `HmacSHA256`.
    HmacSha256,
}

/// A signing failure: the only way to fail is an unknown `SignatureMethod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSignatureMethod(pub String);

impl core::fmt::Display for UnknownSignatureMethod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SignatureMethod {:?} is not supported (use HmacSHA1 or HmacSHA256)", self.0)
    }
}

impl std::error::Error for UnknownSignatureMethod {}

impl Algorithm {
    /// The value of `SignatureMethod` that selects this algorithm.
    pub fn param_value(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "HmacSHA1",
            Algorithm::HmacSha256 => "HmacSHA256",
        }
    }

    /// The algorithm a parameter list asks for (`HmacSHA1` when it does not say).
    pub fn from_params<'a, I>(params: I) -> Result<Self, UnknownSignatureMethod>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        match params.into_iter().find(|(name, _)| *name == SIGNATURE_METHOD_PARAM).map(|(_, value)| value) {
            None | Some("HmacSHA1") => Ok(Algorithm::HmacSha1),
            Some("HmacSHA256") => Ok(Algorithm::HmacSha256),
            Some(other) => Err(UnknownSignatureMethod(other.to_owned())),
        }
    }
}

/// The canonical parameter string: every parameter but `Signature`, `_` in names turned
/// into `.`, sorted byte-wise by name (then value, so duplicates are deterministic),
/// joined as raw `name=value` pairs with `&`.
pub fn canonical_params<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(String, &str)> =
        params.into_iter().filter(|(name, _)| *name != SIGNATURE_PARAM).map(|(name, value)| (name.replace('_', "."), value)).collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(pairs.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The exact string that is signed: `METHOD host path ? canonical params`, with the
/// method upper-cased.
pub fn string_to_sign<'a, I>(method: &str, host: &str, path: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    format!("{}{}{}?{}", method.to_ascii_uppercase(), host, path, canonical_params(params))
}

fn mac_bytes(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    match algorithm {
        Algorithm::HmacSha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::HmacSha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// Signs a request: Base64 of the HMAC of [`string_to_sign`], with the algorithm the
/// parameters select.
pub fn sign<'a, I>(secret_key: &str, method: &str, host: &str, path: &str, params: I) -> Result<String, UnknownSignatureMethod>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let algorithm = Algorithm::from_params(params.clone())?;
    let text = string_to_sign(method, host, path, params);
    Ok(BASE64.encode(mac_bytes(algorithm, secret_key.as_bytes(), text.as_bytes())))
}

/// Checks a Base64 `signature` against the request, in constant time. A signature
/// that is not valid Base64 is simply wrong.
pub fn verify<'a, I>(
    secret_key: &str,
    method: &str,
    host: &str,
    path: &str,
    params: I,
    signature: &str,
) -> Result<bool, UnknownSignatureMethod>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let algorithm = Algorithm::from_params(params.clone())?;
    let Ok(given) = BASE64.decode(signature) else {
        return Ok(false);
    };
    let text = string_to_sign(method, host, path, params);
    let key = secret_key.as_bytes();
    Ok(match algorithm {
        Algorithm::HmacSha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(text.as_bytes());
            mac.verify_slice(&given).is_ok()
        }
        Algorithm::HmacSha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(text.as_bytes());
            mac.verify_slice(&given).is_ok()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA";

    fn pairs(query: &str) -> Vec<(&str, &str)> {
        query.split('&').map(|kv| kv.split_once('=').unwrap()).collect()
    }

    #[test]
    fn documented_hmac_sha1_vector() {
        let params = pairs("Action=DescribeInstances&Nonce=11886&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&Timestamp=1465185768&instanceIds.0=ins-09dx96dg&limit=20&offset=0");
        let sig = sign(KEY, "GET", "cvm.api.qcloud.com", "/v2/index.php", params.iter().copied()).unwrap();
        assert_eq!(sig, "NSI3UqqD99b/UJb4tbG/xZpRW64=");
        assert!(verify(KEY, "GET", "cvm.api.qcloud.com", "/v2/index.php", params.iter().copied(), &sig).unwrap());
    }

    #[test]
    fn documented_hmac_sha256_vector() {
        let params = pairs("Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&SignatureMethod=HmacSHA256&Timestamp=1465185768");
        let sig = sign(KEY, "GET", "cvm.api.qcloud.com", "/v2/index.php", params.iter().copied()).unwrap();
        assert_eq!(sig, "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s=");
    }

    #[test]
    fn order_underscore_and_signature_param() {
        let s =
            string_to_sign("post", "h", "/p", [("tags_2", "b"), ("Signature", "x"), ("tags.10", "a"), ("Action", "A"), ("fileName", "f")]);
        assert_eq!(s, "POSTh/p?Action=A&fileName=f&tags.10=a&tags.2=b");
    }

    #[test]
    fn unknown_method_is_an_error() {
        let err = sign(KEY, "GET", "h", "/", [("SignatureMethod", "HmacMD5")]).unwrap_err();
        assert!(err.to_string().contains("HmacMD5"));
    }

    #[test]
    fn garbage_signature_is_false_not_an_error() {
        assert!(!verify(KEY, "GET", "h", "/", [("a", "b")], "***").unwrap());
    }

    fn it(list: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> + Clone {
        list.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }

    proptest! {
        /// Order of the input never matters; a change to any value, the method, host
        /// or path, or the key always breaks verification.
        #[test]
        fn sign_verify_roundtrip(
            params in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9.]{0,8}", "[ -~]{0,12}", 1..8),
            sha256 in any::<bool>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let mut list: Vec<(String, String)> = params.into_iter().filter(|(n, _)| n != "Signature" && n != "SignatureMethod").collect();
            prop_assume!(!list.is_empty());
            let unsigned_len = list.len();
            if sha256 { list.push(("SignatureMethod".into(), "HmacSHA256".into())); }
            let sig = sign(KEY, "GET", "vod2.qcloud.com", "/v2/index.php", it(&list)).unwrap();
            let mut rev = list.clone();
            rev.reverse();
            prop_assert_eq!(&sig, &sign(KEY, "GET", "vod2.qcloud.com", "/v2/index.php", it(&rev)).unwrap());
            prop_assert!(verify(KEY, "GET", "vod2.qcloud.com", "/v2/index.php", it(&list), &sig).unwrap());

            let mut changed = list.clone();
            changed[flip.index(unsigned_len)].1.push('x');
            prop_assert!(!verify(KEY, "GET", "vod2.qcloud.com", "/v2/index.php", it(&changed), &sig).unwrap());
            prop_assert!(!verify(KEY, "POST", "vod2.qcloud.com", "/v2/index.php", it(&list), &sig).unwrap());
            prop_assert!(!verify(KEY, "GET", "vod2.qcloud.com", "/v3/index.php", it(&list), &sig).unwrap());
            prop_assert!(!verify(KEY, "GET", "vod2.qcloud.com:8080", "/v2/index.php", it(&list), &sig).unwrap());
            prop_assert!(!verify("other", "GET", "vod2.qcloud.com", "/v2/index.php", it(&list), &sig).unwrap());
        }
    }
}
