//! The signer against the published vectors (`tests/fixtures/sigv4/`, see its SOURCES.md),
//! stage by stage, and its invariants as properties.

use super::*;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4")
}

/// One vector: the request, its context and the expected stages.
struct Case {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    creds: Credentials,
    service: String,
    sign_body: bool,
    unix: u64,
    creq: String,
    sts: String,
    signature: String,
    authorization: String,
}

/// Reads `request.txt`: `METHOD TARGET HTTP/1.1`, `Name:value` lines (a line starting
/// with white space continues the previous value), a blank line, the body.
fn parse_request(text: &str) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap();
    let (method, rest) = first.split_once(' ').unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            headers.last_mut().unwrap().1.push_str(&format!(" {line}"));
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    (method.to_owned(), target.to_owned(), headers, body.as_bytes().to_vec())
}

/// A timestamp `YYYY-MM-DDTHH:MM:SSZ` as Unix seconds, counted naively.
fn parse_timestamp(text: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| text[r].parse::<u64>().unwrap();
    naive_unix(n(0..4), n(5..7), n(8..10)) + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: u64, m: u64) -> u64 {
    [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1]
}

/// Unix seconds of a date's midnight, a year and a month at a time.
fn naive_unix(year: u64, month: u64, day: u64) -> u64 {
    let days: u64 =
        (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum::<u64>() + (1..month).map(|m| month_days(year, m)).sum::<u64>() + day - 1;
    days * 86_400
}

/// The reference for [`amz_date`]: whole years off, then whole months, then days.
fn naive_amz_date(unix: u64) -> String {
    let (mut days, secs) = (unix / 86_400, unix % 86_400);
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let mut month = 1;
    while days >= month_days(year, month) {
        days -= month_days(year, month);
        month += 1;
    }
    format!("{year:04}{month:02}{:02}T{:02}{:02}{:02}Z", days + 1, secs / 3600, secs / 60 % 60, secs % 60)
}

fn load(name: &str) -> Case {
    let dir = fixtures().join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
    let (method, target, headers, body) = parse_request(&read("request.txt"));
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let context: serde_json::Value = serde_json::from_str(&read("context.json")).unwrap();
    let c = &context["credentials"];
    let creds = Credentials::new(
        c["access_key_id"].as_str().unwrap().into(),
        c["secret_access_key"].as_str().unwrap().into(),
        c["token"].as_str().map(str::to_owned),
        context["region"].as_str().unwrap().into(),
    );
    let signed = read("header-signed-request.txt");
    let authorization = signed.lines().find_map(|l| l.strip_prefix("Authorization:")).unwrap().to_owned();
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body,
        creds,
        service: context["service"].as_str().unwrap().into(),
        sign_body: context["sign_body"].as_bool().unwrap(),
        unix: parse_timestamp(context["timestamp"].as_str().unwrap()),
        creq: read("header-canonical-request.txt"),
        sts: read("header-string-to-sign.txt"),
        signature: read("header-signature.txt").trim().to_owned(),
        authorization,
    }
}

/// Every vendored case (each a directory with a `request.txt`).
fn cases() -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("request.txt").exists())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 20, "the vectors are missing: {names:?}");
    names.iter().map(|n| load(n)).collect()
}

impl Case {
    fn payload(&self) -> String {
        crate::hex::encode(&Sha256::digest(&self.body))
    }

    /// The headers as signed: the request's, then what the signer adds.
    fn signed_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        h.push(("X-Amz-Date".into(), amz_date(self.unix)));
        if self.sign_body {
            h.push(("X-Amz-Content-Sha256".into(), self.payload()));
        }
        if let Some(t) = &self.creds.session_token {
            h.push(("X-Amz-Security-Token".into(), t.clone()));
        }
        h
    }

    fn input<'a>(&'a self, headers: &'a [(String, String)], payload: &'a str) -> SignInput<'a> {
        SignInput {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers,
            payload_sha256: payload,
            service: &self.service,
            send_payload_hash: self.sign_body,
        }
    }
}

#[test]
fn canonical_requests_match_the_vectors() {
    for case in cases() {
        let headers = case.signed_headers();
        let payload = case.payload();
        let (creq, _) = canonical_request(&case.input(&headers, &payload));
        assert_eq!(creq, case.creq, "{}", case.name);
    }
}

#[test]
fn strings_to_sign_match_the_vectors() {
    for case in cases() {
        let date = amz_date(case.unix);
        let scope = scope(&date, &case.creds.region, &case.service);
        assert_eq!(string_to_sign(&date, &scope, &case.creq), case.sts, "{}", case.name);
    }
}

#[test]
fn signatures_match_the_vectors() {
    for case in cases() {
        let date = amz_date(case.unix);
        let key = signing_key(case.creds.secret(), &date[..8], &case.creds.region, &case.service);
        assert_eq!(signature(&key, &case.sts), case.signature, "{}", case.name);
    }
}

#[test]
fn authorization_headers_match_the_vectors() {
    for case in cases() {
        let payload = case.payload();
        let added = authorization(&case.creds, &case.input(&case.headers, &payload), case.unix);
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        let mut want = vec!["x-amz-date"];
        if case.sign_body {
            want.push("x-amz-content-sha256");
        }
        if case.creds.session_token.is_some() {
            want.push("x-amz-security-token");
        }
        want.push("authorization");
        assert_eq!(names, want, "{}", case.name);
        assert_eq!(added.last().unwrap().1, case.authorization, "{}", case.name);
    }
}

/// The S3 API reference's GET Object example is exactly our read: a range, the empty
/// body's hash sent as `x-amz-content-sha256`, service `s3`.
#[test]
fn s3_get_object_example() {
    let case = load("s3-get-object");
    let payload = case.payload();
    assert_eq!(payload, EMPTY_SHA256);
    let added = authorization(&case.creds, &case.input(&case.headers, &payload), case.unix);
    assert_eq!(added[1], ("x-amz-content-sha256".into(), EMPTY_SHA256.into()));
    assert!(added[2].1.ends_with("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"), "{added:?}");
}

#[test]
fn dates_and_encodings() {
    assert_eq!(amz_date(0), "19700101T000000Z");
    assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
    assert_eq!(amz_date(951_782_400 + 86_399), "20000229T235959Z");
    assert_eq!(amz_date(4_107_542_400), "21000301T000000Z"); // 2100 is not a leap year
    assert!(amz_date(u64::MAX).ends_with('Z'));
    assert_eq!(uri_encode("in/my clip+1 é~.mp4", false), "in/my%20clip%2B1%20%C3%A9~.mp4");
    assert_eq!(uri_encode("a/b", true), "a%2Fb");
    // The server decodes the path before it signs it again: an escaped `/` is a `/`, and
    // a `%` that escapes nothing is a `%`.
    assert_eq!(canonical_uri("/a%2fb/c%20d%zz"), "/a/b/c%20d%25zz");
    assert_eq!(canonical_query("b=2&a=&c&a=1"), "a=&a=1&b=2&c=");
}

#[test]
fn debug_never_shows_the_secret() {
    let c = Credentials::new("AKID".into(), "s3cr3t-key".into(), Some("tok3n".into()), "eu-west-1".into());
    let shown = format!("{c:?}");
    assert!(shown.contains("AKID") && !shown.contains("s3cr3t") && !shown.contains("tok3n"), "{shown}");
}

proptest! {
    #[test]
    fn amz_date_matches_a_naive_count(unix in 0u64..(1 << 34)) {
        prop_assert_eq!(amz_date(unix), naive_amz_date(unix));
    }

    #[test]
    fn header_order_does_not_matter(
        headers in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9-]{0,8}", "[ -~]{0,12}", 0..8)
            .prop_map(|m| {
                // Names differing only in case are one header, whose values join in input order.
                let mut seen = std::collections::BTreeSet::new();
                m.into_iter().filter(|(k, _)| seen.insert(k.to_ascii_lowercase())).collect::<Vec<_>>()
            })
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        prop_assert_eq!(canonical_headers(&headers.0), canonical_headers(&headers.1));
    }

    #[test]
    fn encoding_round_trips(text in "\\PC{0,40}", slash in any::<bool>()) {
        let encoded = uri_encode(&text, slash);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%/".contains(&b)));
        prop_assert_eq!(percent_decode(&encoded), text.as_bytes().to_vec());
    }

    /// Whatever the request holds: no panic, and the header is well formed.
    #[test]
    fn any_request_signs(
        method in "\\PC{0,8}", path in "\\PC{0,30}", query in "\\PC{0,30}",
        headers in proptest::collection::vec(("\\PC{0,10}", "\\PC{0,20}"), 0..5),
        unix in any::<u64>(),
    ) {
        let creds = Credentials::new("AKID".into(), "secret".into(), None, "us-east-1".into());
        let input = SignInput { method: &method, path: &path, query: &query, headers: &headers,
            payload_sha256: EMPTY_SHA256, service: "s3", send_payload_hash: true };
        let added = authorization(&creds, &input, unix);
        prop_assert!(added.last().unwrap().1.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
    }
}
