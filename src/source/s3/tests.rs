use super::*;
use crate::source::header;
use proptest::prelude::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn access(addressing: &str, origin: Option<&str>) -> S3Access {
    S3Access::from_variables(Some("AKIAIOSFODNN7EXAMPLE"), Some(SECRET), None, None, Some(addressing), origin).unwrap().unwrap()
}

#[test]
fn variables_name_the_problem_never_the_value() {
    let vars = |id: Option<&str>, secret: Option<&str>, region: Option<&str>, addr: Option<&str>, origin: Option<&str>| {
        S3Access::from_variables(id, secret, Some(" "), region, addr, origin)
    };
    assert_eq!(vars(None, None, None, None, None), Ok(None));
    assert_eq!(vars(Some(" "), None, Some("eu-west-1"), Some("virtual"), None), Ok(None));
    let cases = [
        (vars(None, Some("hunter2-secret"), None, None, None), "source_access_key_id"),
        (vars(Some("AKID"), None, None, None, Some("http://h:1")), "source_secret_access_key"),
        (vars(Some("AKID"), Some("hunter2-secret"), None, None, None), "source_origin"),
        (vars(Some("AKID"), Some("hunter2-secret"), Some("US East"), None, Some("http://h:1")), "source_region"),
        (vars(Some("AKID"), Some("hunter2-secret"), None, Some("hunter2-secret"), Some("http://h:1")), "source_addressing"),
        (vars(Some("AKID"), Some("hunter2-secret"), None, None, Some("http://*.hunter2-secret")), "source_origin"),
        (vars(Some("AKID"), Some("hunter2-secret"), None, None, Some("hunter2-secret")), "source_origin"),
        (vars(Some("AK ID"), Some("hunter2-secret"), None, None, Some("http://h:1")), "source_access_key_id"),
    ];
    for (result, variable) in cases {
        let e = result.unwrap_err();
        assert!(e.contains(variable) && !e.contains("hunter2"), "{variable}: {e}");
    }
    let a = vars(Some(" AKID "), Some("s"), None, None, Some("HTTP://127.0.0.1:8333/")).unwrap().unwrap();
    assert_eq!((a.creds.access_key_id.as_str(), a.creds.region.as_str()), ("AKID", "us-east-1"));
    assert_eq!((a.endpoint.as_str(), a.addressing, a.creds.session_token.as_deref()), ("http://127.0.0.1:8333", Addressing::Path, None));
    let v = vars(Some("AKID"), Some("s"), Some("eu-west-3"), Some("Virtual"), None).unwrap().unwrap();
    assert_eq!(v.endpoint, "https://*.s3.eu-west-3.amazonaws.com");
    assert!(!format!("{a:?}").contains("\"s\""), "{a:?}");
}

#[test]
fn object_urls_encode_the_key_once() {
    let p = access("path", Some("http://127.0.0.1:8333"));
    assert_eq!(p.object_url("vids", "in/my clip+1%.mp4"), "http://127.0.0.1:8333/vids/in/my%20clip%2B1%25.mp4");
    let v = access("virtual", None);
    assert_eq!(v.object_url("vids", "a/é?.mp4"), "https://vids.s3.us-east-1.amazonaws.com/a/%C3%A9%3F.mp4");
    assert!(v.signs(&v.object_url("vids", "a")) && p.signs(&p.object_url("vids", "a")));
}

#[test]
fn presigned_urls_are_not_resigned() {
    let p = access("path", Some("https://store.example"));
    assert!(p.signs("https://store.example/b/k.mp4") && p.signs("HTTPS://Store.example:443/b/k.mp4?versionId=3"));
    for not in [
        "https://store.example/b/k.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Signature=b",
        "https://store.example/b/k.mp4?x-amz-signature=b",
        "https://store.example/b/k.mp4?AWSAccessKeyId=a&Signature=b&Expires=1",
        "https://other.example/b/k.mp4",
        "http://store.example/b/k.mp4",
    ] {
        assert!(!p.signs(not), "{not}");
    }
    let v = access("virtual", None);
    assert!(v.signs("https://vids.s3.us-east-1.amazonaws.com/k") && !v.signs("https://vids.s3.eu-west-1.amazonaws.com/k"));
}

/// `sign` on the S3 reference's GET Object example gives its published signature.
#[test]
fn signs_the_s3_reference_example() {
    let a = access("virtual", None);
    let mut headers = vec![("Range".to_owned(), "bytes=0-9".to_owned()), ("accept-encoding".to_owned(), "identity".to_owned())];
    a.sign("GET", "https://examplebucket.s3.amazonaws.com/test.txt", &mut headers, 1_369_353_600);
    let auth = header(&headers, "authorization").unwrap();
    assert!(auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"), "accept-encoding stays unsigned: {auth}");
    assert!(auth.ends_with("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"), "{auth}");
    assert_eq!(header(&headers, "x-amz-content-sha256"), Some(EMPTY_SHA256));
}

/// Every send is signed at its own time, a re-sign replaces the earlier signature, and
/// `Range` and `If-Match` are covered.
#[test]
fn every_read_is_signed_fresh() {
    let a = S3Access::from_variables(Some("AKID"), Some("sec"), Some("tok"), None, None, Some("http://127.0.0.1:9")).unwrap().unwrap();
    let url = a.object_url("b", "k.mp4");
    let mut headers = vec![("range".to_owned(), "bytes=5-9".to_owned()), ("if-match".to_owned(), "\"e1\"".to_owned())];
    a.sign("GET", &url, &mut headers, 1_700_000_000);
    let first = header(&headers, "authorization").unwrap().to_owned();
    assert!(first.contains("SignedHeaders=host;if-match;range;x-amz-content-sha256;x-amz-date;x-amz-security-token,"), "{first}");
    a.sign("GET", &url, &mut headers, 1_700_000_001);
    assert_eq!(headers.len(), 6, "signed again, not twice: {headers:?}");
    assert_eq!(header(&headers, "x-amz-date"), Some("20231114T221321Z"));
    assert_ne!(header(&headers, "authorization").unwrap(), first);
    assert_eq!(header(&headers, "x-amz-security-token"), Some("tok"));
    // A verifier rebuilding the request from what is sent finds the same signature.
    let sent: Vec<(String, String)> = std::iter::once(("host".to_owned(), "127.0.0.1:9".to_owned()))
        .chain(headers.iter().filter(|(n, _)| n != "authorization").cloned())
        .collect();
    let input = SignInput {
        method: "GET",
        path: "/b/k.mp4",
        query: "",
        headers: &sent,
        payload_sha256: EMPTY_SHA256,
        service: "s3",
        send_payload_hash: true,
    };
    let (creq, _) = sigv4::canonical_request(&input);
    let date = "20231114T221321Z";
    let sig = sigv4::signature(
        &sigv4::signing_key("sec", "20231114", "us-east-1", "s3"),
        &sigv4::string_to_sign(date, &sigv4::scope(date, "us-east-1", "s3"), &creq),
    );
    assert!(header(&headers, "authorization").unwrap().ends_with(&sig));
}

#[test]
fn s3_urls() {
    assert_eq!(parse_s3_url("s3://vids/in/my clip+1.mp4"), Ok(("vids", "in/my clip+1.mp4")));
    assert_eq!(parse_s3_url("S3://b/k?#"), Ok(("b", "k?#")));
    for bad in ["s3://", "s3://b", "s3://b/", "s3:///k", "s3://b c/k", "http://b/k", "s3://b/k\n", "s"] {
        assert!(parse_s3_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn refusals_name_the_key_id_and_the_cause() {
    let seaweed = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message><Resource>/vids/in/my clip+1.mp4</Resource></Error>"#;
    let m = denied_message("AKID1", seaweed);
    assert!(m.contains("AKID1") && m.contains("AccessDenied") && m.contains("permissions"), "{m}");
    let m = denied_message("AKID1", b"<Error><Code>SignatureDoesNotMatch</Code><StringToSign>AWS4</StringToSign></Error>");
    assert!(m.contains("SignatureDoesNotMatch") && m.contains("source_secret_access_key"), "{m}");
    assert!(denied_message("K", b"<Code>RequestTimeTooSkewed</Code>").contains("15 minutes"));
    assert!(denied_message("K", b"<Code>InvalidAccessKeyId</Code>").contains("source_access_key_id"));
    assert!(denied_message("K", b"<Code>ExpiredToken</Code>").contains("expired"));
    assert_eq!(denied_message("K", b"<Code><script></Code>"), "the source store refused access key id K: access denied");
    assert!(is_denied_code(b"<Code>ExpiredToken</Code>") && !is_denied_code(b"<Code>InvalidRange</Code>") && !is_denied_code(b""));
}

proptest! {
    #[test]
    fn any_body_or_url_is_handled(body in proptest::collection::vec(any::<u8>(), 0..200), url in "\\PC{0,60}") {
        let m = denied_message("AKID", &body);
        prop_assert!(m.starts_with("the source store refused access key id AKID: "));
        let a = access("path", Some("http://127.0.0.1:9"));
        let mut headers = Vec::new();
        a.sign("GET", &url, &mut headers, 0);
        let _ = (a.signs(&url), is_presigned(&url), parse_s3_url(&url));
    }
}
