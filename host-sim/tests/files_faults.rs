//! The file server's misbehaviour modes (`?fault=...`), over real loopback HTTP: each
//! answers exactly as its module doc says, and no test waits more than about a second.

use bytes::Bytes;
use host_sim::files::{self, Running};
use host_sim::http::{self, HttpClient};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::io::Read as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::timeout;

/// The sample's size: above the default `stall_after` (65536).
const SIZE: usize = 200_000;
/// How long a stall is watched for.
const STALL: Duration = Duration::from_millis(300);

struct Server {
    running: Running,
    client: HttpClient,
    data: Vec<u8>,
    _root: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("video.mp4");
        host_sim::sample::write_sample(&path, SIZE as u64, 7).unwrap();
        let data = std::fs::read(&path).unwrap();
        let running = files::start(root.path().to_owned(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Server { running, client: http::client(), data, _root: root }
    }

    /// Sends `GET {target}` with `headers`; the answer once its headers are in.
    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let mut request = Request::get(format!("http://{}{target}", self.running.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.client.request(request.body(http::full(Bytes::new())).unwrap()).await.unwrap()
    }

    /// `get` and the whole body.
    async fn fetch(&self, target: &str, headers: &[(&str, &str)]) -> (Response<()>, Bytes) {
        let (parts, body) = self.get(target, headers).await.into_parts();
        (Response::from_parts(parts, ()), body.collect().await.unwrap().to_bytes())
    }
}

fn header<'a, T>(response: &'a Response<T>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut plain).unwrap();
    plain
}

/// Reads body frames until the body stalls for [`STALL`]: the bytes it gave.
async fn read_until_stall(body: &mut Incoming) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        match timeout(STALL, body.frame()).await {
            Err(_) => return got,
            Ok(Some(frame)) => got.extend_from_slice(frame.unwrap().data_ref().unwrap_or(&Bytes::new())),
            Ok(None) => panic!("the body ended after {} bytes instead of stalling", got.len()),
        }
    }
}

#[tokio::test]
async fn no_fault_serves_ranges_and_ignores_other_query_parameters() {
    let s = Server::start().await;
    let target = "/video.mp4?X-Amz-Expires=60&X-Amz-Signature=abc&fault_not=gzip";
    let (response, body) = s.fetch(target, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), Some("bytes 1000-1999/200000"));
    assert_eq!(header(&response, "content-length"), Some("1000"));
    assert_eq!(header(&response, "content-encoding"), None);
    assert_eq!(&body[..], &s.data[1000..2000]);
}

#[tokio::test]
async fn unknown_fault_or_bad_parameter_is_refused_with_400() {
    let s = Server::start().await;
    for (target, named) in [
        ("/video.mp4?fault=teapot", "teapot"),
        ("/video.mp4?fault=status", "status"),
        ("/video.mp4?fault=status&status=99", "99"),
        ("/video.mp4?fault=slow&bps=0", "bps"),
        ("/video.mp4?fault=stall-body&stall_after=lots", "stall_after"),
        ("/gen/1000/1?fault=bad-range&shift=x", "shift"),
    ] {
        let (response, body) = s.fetch(target, &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{target}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(named), "{target}: {body}");
    }
}

#[tokio::test]
async fn stall_headers_never_answers() {
    let s = Server::start().await;
    let request = s.get("/video.mp4?fault=stall-headers", &[("range", "bytes=0-99")]);
    assert!(timeout(STALL, request).await.is_err(), "headers arrived");
    // Counted all the same.
    let (_, stats) = s.fetch("/_stats", &[]).await;
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["requests"], 2);
}

#[tokio::test]
async fn stall_headers_lets_go_when_the_server_is_dropped() {
    let s = Server::start().await;
    let mut conn = tokio::net::TcpStream::connect(s.running.addr).await.unwrap();
    conn.write_all(b"GET /video.mp4?fault=stall-headers HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(200), conn.read(&mut buf)).await.is_err(), "answered");
    drop(s);
    // Closed with no answer, rather than held for as long as the client waits.
    let read = timeout(STALL, conn.read(&mut buf)).await.expect("still held after the server was dropped");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn stall_body_sends_the_headers_and_the_first_bytes_then_stalls() {
    let s = Server::start().await;
    // Default stall_after (65536), whole file.
    let (parts, mut body) = s.get("/video.mp4?fault=stall-body", &[]).await.into_parts();
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-length"], "200000");
    assert_eq!(read_until_stall(&mut body).await, &s.data[..65536]);

    // A range, stall_after given.
    let (parts, mut body) = s.get("/video.mp4?fault=stall-body&stall_after=1000", &[("range", "bytes=5000-9999")]).await.into_parts();
    assert_eq!(parts.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(parts.headers["content-length"], "5000");
    assert_eq!(parts.headers["content-range"], "bytes 5000-9999/200000");
    assert_eq!(read_until_stall(&mut body).await, &s.data[5000..6000]);

    // Dropping the server breaks the body off instead of holding it.
    drop(s);
    let end = timeout(STALL, body.collect()).await.expect("still held after the server was dropped");
    assert!(end.is_err(), "the body must end short of its Content-Length");
}

#[tokio::test]
async fn gzip_compresses_the_range_whatever_accept_encoding_says() {
    let s = Server::start().await;
    let (response, body) = s.fetch("/video.mp4?fault=gzip", &[("range", "bytes=1000-5999"), ("accept-encoding", "identity")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-encoding"), Some("gzip"));
    assert_eq!(header(&response, "content-range"), Some("bytes 1000-5999/200000"));
    assert_eq!(header(&response, "content-length"), Some(body.len().to_string().as_str()));
    assert_eq!(gunzip(&body), &s.data[1000..6000]);

    // The whole file without a Range, and generated sources too.
    let (response, body) = s.fetch("/video.mp4?fault=gzip", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(gunzip(&body), s.data);
    let (response, body) = s.fetch("/gen/5000/3?fault=gzip", &[("range", "bytes=-100")]).await;
    assert_eq!(header(&response, "content-range"), Some("bytes 4900-4999/5000"));
    let mut want = vec![0u8; 100];
    host_sim::sample::fill_generated(3, 4900, &mut want);
    assert_eq!(gunzip(&body), want);
}

#[tokio::test]
async fn gzip_negotiated_compresses_only_when_accept_encoding_allows_it() {
    let s = Server::start().await;
    let target = "/video.mp4?fault=gzip-negotiated";
    let range = ("range", "bytes=1000-5999");
    for (accept, gzipped) in [
        (None, true), // no header: any coding will do (RFC 9110)
        (Some("gzip"), true),
        (Some("br, GZIP;q=0.5"), true),
        (Some("*"), true),
        (Some("identity"), false),
        (Some("gzip;q=0"), false),
        (Some("*;q=0"), false),
        (Some("gzip;q=0, *"), false),
        (Some("br"), false),
    ] {
        let headers: Vec<_> = [range].into_iter().chain(accept.map(|a| ("accept-encoding", a))).collect();
        let (response, body) = s.fetch(target, &headers).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{accept:?}");
        assert_eq!(header(&response, "content-range"), Some("bytes 1000-5999/200000"), "{accept:?}");
        assert_eq!(header(&response, "vary"), Some("accept-encoding"));
        assert_eq!(header(&response, "content-length"), Some(body.len().to_string().as_str()));
        if gzipped {
            assert_eq!(header(&response, "content-encoding"), Some("gzip"), "{accept:?}");
            assert_eq!(gunzip(&body), &s.data[1000..6000], "{accept:?}");
        } else {
            assert_eq!(header(&response, "content-encoding"), None, "{accept:?}");
            assert_eq!(&body[..], &s.data[1000..6000], "{accept:?}");
        }
    }
}

#[tokio::test]
async fn no_range_answers_200_with_the_whole_file() {
    let s = Server::start().await;
    let (response, body) = s.fetch("/video.mp4?fault=no-range", &[("range", "bytes=1000-1999")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), Some("200000"));
    assert_eq!(header(&response, "content-range"), None);
    assert_eq!(body, s.data);
}

#[tokio::test]
async fn bad_range_answers_a_shifted_range() {
    let s = Server::start().await;
    for (query, range, answered) in [
        ("fault=bad-range", "bytes=1000-1999", (1001, 2001)),
        ("fault=bad-range&shift=-500", "bytes=1000-1999", (500, 1500)),
        ("fault=bad-range&shift=4096", "bytes=0-99", (4096, 4196)),
        // Kept inside the file.
        ("fault=bad-range&shift=-5000", "bytes=1000-1999", (0, 1000)),
        ("fault=bad-range&shift=100", "bytes=199000-199989", (199010, 200000)),
    ] {
        let (response, body) = s.fetch(&format!("/video.mp4?{query}"), &[("range", range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{query}");
        let content_range = format!("bytes {}-{}/200000", answered.0, answered.1 - 1);
        assert_eq!(header(&response, "content-range"), Some(content_range.as_str()), "{query}");
        assert_ne!(content_range, format!("{}/200000", range.replace('=', " ")));
        assert_eq!(&body[..], &s.data[answered.0..answered.1], "{query}");
    }
}

#[tokio::test]
async fn long_body_sends_extra_bytes_chunked() {
    let s = Server::start().await;
    for (query, extra) in [("fault=long-body", 1024), ("fault=long-body&extra=10", 10)] {
        let (response, body) = s.fetch(&format!("/video.mp4?{query}"), &[("range", "bytes=1000-1999")]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&response, "content-range"), Some("bytes 1000-1999/200000"));
        assert_eq!(header(&response, "content-length"), None);
        assert_eq!(header(&response, "transfer-encoding"), Some("chunked"));
        assert_eq!(body.len(), 1000 + extra, "{query}");
        assert_eq!(&body[..1000], &s.data[1000..2000]);
        assert!(body[1000..].iter().all(|&b| b == 0));
    }
}

#[tokio::test]
async fn status_answers_that_status_to_every_request() {
    let s = Server::start().await;
    for code in [403u16, 404, 410, 429, 500, 503] {
        for path in ["/video.mp4", "/missing.mp4", "/gen/100/1"] {
            let (response, body) = s.fetch(&format!("{path}?fault=status&status={code}"), &[("range", "bytes=0-9")]).await;
            assert_eq!(response.status().as_u16(), code, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(body["error"].as_str().unwrap().contains(&code.to_string()));
        }
    }
}

#[tokio::test]
async fn status_after_k_requests_for_the_same_url() {
    let s = Server::start().await;
    let target = "/video.mp4?X-Amz-Signature=abc&fault=status&status=403&after=2";
    let range = [("range", "bytes=0-9")];
    for _ in 0..2 {
        let (response, body) = s.fetch(target, &range).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(&body[..], &s.data[..10]);
    }
    for _ in 0..2 {
        assert_eq!(s.fetch(target, &range).await.0.status(), StatusCode::FORBIDDEN);
    }
    // Another query is another URL, with a count of its own.
    let other = "/video.mp4?X-Amz-Signature=def&fault=status&status=403&after=2";
    assert_eq!(s.fetch(other, &range).await.0.status(), StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn slow_paces_the_body_but_not_the_headers() {
    let s = Server::start().await;
    let began = Instant::now();
    let response = s.get("/video.mp4?fault=slow&bps=10000", &[("range", "bytes=0-2047")]).await;
    let headers_in = began.elapsed();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-length"), Some("2048"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let elapsed = began.elapsed();
    assert_eq!(&body[..], &s.data[..2048]);
    assert!(headers_in < Duration::from_millis(100), "headers took {headers_in:?}");
    // 2048 bytes at 10,000 bytes a second: 204.8 ms at least.
    assert!(elapsed >= Duration::from_micros(204_800), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}
