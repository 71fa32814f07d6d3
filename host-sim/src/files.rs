//! `host-sim files`: a Range-capable file server standing in for object storage.
//!
//! - `GET /{path}` serves files under the root with `Accept-Ranges`, single byte
//!   ranges (206 + Content-Range), a strong `ETag` and `Last-Modified`, and honours
//!   `If-Match` / `If-Unmodified-Since` with 412, as S3 and its peers do.
//! - `GET /gen/{size}/{seed}` serves `size` deterministic pseudo-random bytes that are
//!   never stored (any range computed on the fly), for very large test sources.
//! - With an [`Auth`](crate::files_auth::Auth) (`--sigv4 KEYID:SECRET`) it is a private
//!   S3 bucket: every other request must be SigV4-signed by that key (see `files_auth`).
//! - `GET /_stats` reports requests (misbehaving ones too) and body bytes served, for
//!   benchmarks.
//!
//! # Misbehaviour
//!
//! A `fault` query parameter on `/{path}` or `/gen/...` makes that request misbehave the
//! way real servers and proxies do, so tests can point the uploader at a bad source.
//! Every other query parameter is ignored, as a presigned URL's own are; an unknown
//! fault or a bad parameter gets 400 naming it.
//!
//! | query | answer |
//! |---|---|
//! | `fault=stall-headers` | none: the request is held until the client leaves or the server is dropped |
//! | `fault=stall-body[&stall_after=N]` | the usual headers (Content-Length of the whole range) and the first N body bytes (default 65536), then nothing, the connection held open likewise |
//! | `fault=gzip` | the requested range gzipped, with `Content-Encoding: gzip` and the compressed length, whatever `Accept-Encoding` says (status and Content-Range as usual) |
//! | `fault=gzip-negotiated` | the same only when `Accept-Encoding` allows gzip (no such header allows any coding, RFC 9110), else the usual body; `Vary: Accept-Encoding` |
//! | `fault=no-range` | `Range` ignored: 200 and the whole file |
//! | `fault=bad-range[&shift=N]` | 206 for the requested range moved by N bytes (default 1, may be negative), kept inside the file |
//! | `fault=long-body[&extra=N]` | 206 with the right Content-Range, sent chunked (no Content-Length) with N zero bytes (default 1024) after the range |
//! | `fault=status&status=NNN[&after=K]` | NNN (200-599) with a small JSON body; with `after`, the first K requests for the same path and query answer normally |
//! | `fault=slow&bps=N` | the headers at once, the body at most N bytes a second |

use crate::files_auth::Auth;
use crate::http::{self, Body, Dropped};
use crate::sample::fill_generated;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Served-traffic counters.
#[derive(Default)]
pub struct Stats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Body bytes sent (as far as the client took them).
    pub bytes: AtomicU64,
}

/// A running file server.
pub struct Running {
    /// Its address.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
    /// Dropped with the server, which releases the requests that faults hold: aborting
    /// `task` stops accepting, but connections live on in tasks of their own.
    _held: watch::Sender<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts serving `root` on `listen`.
pub async fn start(root: PathBuf, listen: SocketAddr) -> std::io::Result<Running> {
    start_with(root, listen, None).await
}

/// Starts serving `root` on `listen`, as a private S3 bucket when `auth` is given.
pub async fn start_with(root: PathBuf, listen: SocketAddr, auth: Option<Auth>) -> std::io::Result<Running> {
    let stats = Arc::new(Stats::default());
    let (held, gone) = watch::channel(());
    let state = Arc::new(State { root, stats: stats.clone(), seen: Mutex::default(), gone, auth });
    let (addr, task) = http::serve(listen, move |req| {
        let state = state.clone();
        async move { handle(&state, req).await }
    })
    .await?;
    Ok(Running { addr, stats, task, _held: held })
}

/// What the requests to one server share.
struct State {
    root: PathBuf,
    stats: Arc<Stats>,
    /// Requests per path and query, for `fault=status&after=K`.
    seen: Mutex<HashMap<String, u64>>,
    /// Never changes; closes when the server is dropped.
    gone: watch::Receiver<()>,
    /// The key requests must be signed by, if any.
    auth: Option<Auth>,
}

impl State {
    /// Resolves when the server is dropped: what held requests wait for, so that none
    /// outlives it.
    fn gone(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut gone = self.gone.clone();
        async move {
            let _ = gone.changed().await;
        }
    }
}

/// A misbehaviour asked for in the query string (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    StallHeaders,
    StallBody { after: u64 },
    Gzip { negotiated: bool },
    NoRange,
    BadRange { shift: i64 },
    LongBody { extra: u64 },
    Status { status: StatusCode, after: u64 },
    Slow { bps: u64 },
}

impl Fault {
    /// The fault that `query` asks for, if any; `Err` says what is wrong with it.
    fn parse(query: &str) -> Result<Option<Fault>, String> {
        let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v);
        let number = |name: &str, default: Option<u64>| match param(name) {
            None => default.ok_or_else(|| format!("this fault needs {name}")),
            Some(v) => v.parse().map_err(|_| format!("bad {name}: {v:?}")),
        };
        let Some(fault) = param("fault") else { return Ok(None) };
        Ok(Some(match &*fault {
            "stall-headers" => Fault::StallHeaders,
            "stall-body" => Fault::StallBody { after: number("stall_after", Some(65536))? },
            "gzip" => Fault::Gzip { negotiated: false },
            "gzip-negotiated" => Fault::Gzip { negotiated: true },
            "no-range" => Fault::NoRange,
            "bad-range" => Fault::BadRange { shift: param("shift").map_or(Ok(1), |v| v.parse().map_err(|_| format!("bad shift: {v:?}")))? },
            "long-body" => Fault::LongBody { extra: number("extra", Some(1024))? },
            "status" => {
                let code = number("status", None)?;
                let status = u16::try_from(code)
                    .ok()
                    .filter(|code| (200..600).contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| format!("bad status: {code} (200-599)"))?;
                Fault::Status { status, after: number("after", Some(0))? }
            }
            "slow" => match number("bps", None)? {
                0 => return Err("bad bps: 0".into()),
                bps => Fault::Slow { bps },
            },
            other => return Err(format!("unknown fault {other:?}")),
        }))
    }
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110, 12.5.3): no such header allows any
/// coding; otherwise gzip, or failing it `*`, must be listed with a non-zero q.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(hyper::header::ACCEPT_ENCODING).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut star = false;
    for item in values.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

fn gzip(plain: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(plain).expect("writing to memory");
    encoder.finish().expect("writing to memory").into()
}

enum Content {
    File(PathBuf),
    Generated(u64),
}

/// Reads a source forward from an offset.
enum Reader {
    File(tokio::fs::File),
    Generated { seed: u64, pos: u64 },
}

impl Reader {
    async fn open(content: &Content, start: u64) -> std::io::Result<Reader> {
        use tokio::io::AsyncSeekExt;
        Ok(match content {
            Content::File(path) => {
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(std::io::SeekFrom::Start(start)).await?;
                Reader::File(file)
            }
            Content::Generated(seed) => Reader::Generated { seed: *seed, pos: start },
        })
    }

    /// The next `n` bytes.
    async fn read(&mut self, n: usize) -> std::io::Result<Bytes> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; n];
        match self {
            Reader::File(file) => {
                file.read_exact(&mut buf).await?;
            }
            Reader::Generated { seed, pos } => {
                fill_generated(*seed, *pos, &mut buf);
                *pos += n as u64;
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// Body chunks: 256 KiB.
const CHUNK: u64 = 256 * 1024;

/// Streams `[start, stop)` of `content` from a task through a two-chunk channel, paced
/// for `fault=slow`, followed by `fault=long-body`'s extra bytes.
fn stream(content: Content, start: u64, stop: u64, fault: Option<Fault>, stats: Arc<Stats>) -> Body {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(2);
    tokio::spawn(async move {
        let mut reader = match Reader::open(&content, start).await {
            Ok(reader) => reader,
            Err(e) => return tx.abort(e),
        };
        let began = tokio::time::Instant::now();
        let chunk = match fault {
            Some(Fault::Slow { bps }) => (bps / 20).clamp(1, CHUNK), // 20 steps a second
            _ => CHUNK,
        };
        let mut pos = start;
        while pos < stop {
            let n = (stop - pos).min(chunk);
            let buf = match reader.read(n as usize).await {
                Ok(buf) => buf,
                Err(e) => return tx.abort(e),
            };
            if let Some(Fault::Slow { bps }) = fault {
                // Before sending, so that the client never has more than bps × elapsed.
                let due = Duration::from_secs_f64((pos + n - start) as f64 / bps as f64);
                tokio::time::sleep_until(began + due).await;
            }
            if tx.send(Frame::data(buf)).await.is_err() {
                return; // the client went away
            }
            // Counted once the channel (two chunks deep) took it: what the client read,
            // give or take what is buffered.
            stats.bytes.fetch_add(n, Ordering::Relaxed);
            pos += n;
        }
        if let Some(Fault::LongBody { extra }) = fault {
            // Zeros: junk that a careful client must not take for the range's bytes.
            if tx.send(Frame::data(Bytes::from(vec![0; extra as usize]))).await.is_ok() {
                stats.bytes.fetch_add(extra, Ordering::Relaxed);
            }
        }
    });
    body.boxed()
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    http::json(status, &json!({ "error": message }))
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against `size`.
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: serve the whole file, as a server may
    }
    let (a, b) = spec.split_once('-')?;
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().ok()?, size),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if b < a {
                return None;
            }
            (a, (b + 1).min(size))
        }
    };
    Some(if range.0 >= size { Err(()) } else { Ok(range) })
}

async fn handle(state: &State, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let stats = &state.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if req.uri().path() == "/_stats" {
        return Ok(http::json(
            StatusCode::OK,
            &json!({"requests": stats.requests.load(Ordering::Relaxed), "bytes": stats.bytes.load(Ordering::Relaxed)}),
        ));
    }
    if let Some(refused) = state.auth.as_ref().and_then(|a| a.refusal(req.method().as_str(), req.uri(), req.headers(), SystemTime::now())) {
        return Ok(refused);
    }
    match Fault::parse(req.uri().query().unwrap_or("")) {
        Err(why) => Ok(error(StatusCode::BAD_REQUEST, &why)),
        Ok(Some(Fault::StallHeaders)) => {
            // The client leaving ends the connection, and so this future, first if it does.
            state.gone().await;
            Err(Dropped)
        }
        Ok(Some(Fault::Status { status, after })) => {
            let key = req.uri().path_and_query().map_or("", |pq| pq.as_str()).to_owned();
            let seen = {
                let mut seen = state.seen.lock().expect("no panics while locked");
                let n = seen.entry(key).or_default();
                *n += 1;
                *n
            };
            if seen > after {
                Ok(error(status, &format!("fault=status: {}", status.as_u16())))
            } else {
                Ok(answer(state, req, None).await)
            }
        }
        Ok(fault) => Ok(answer(state, req, fault).await),
    }
}

/// Serves a file or generated source, misbehaving in the ways of `fault` that shape an
/// answer.
async fn answer(state: &State, req: Request<Incoming>, fault: Option<Fault>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (content, size, etag, modified) = if segments.first() == Some(&"gen") && segments.len() == 3 {
        let (Ok(size), Ok(seed)) = (segments[1].parse::<u64>(), segments[2].parse::<u64>()) else {
            return error(StatusCode::NOT_FOUND, "use /gen/{size}/{seed}");
        };
        (Content::Generated(seed), size, format!("\"gen-{size}-{seed}\""), UNIX_EPOCH)
    } else {
        let decoded: String = form_urlencoded::parse(format!("p={}", path.trim_start_matches('/')).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let relative = Path::new(&decoded);
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) || decoded.is_empty() {
            return error(StatusCode::NOT_FOUND, "no such file");
        }
        let full = state.root.join(relative);
        let meta = match tokio::fs::metadata(&full).await {
            Ok(m) if m.is_file() => m,
            _ => return error(StatusCode::NOT_FOUND, "no such file"),
        };
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let nanos = modified.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        (Content::File(full), meta.len(), format!("\"{:x}-{:x}\"", meta.len(), nanos), modified)
    };
    let last_modified = http_date(modified);
    let headers = req.headers();
    if let Some(want) = headers.get("if-match").and_then(|v| v.to_str().ok()) {
        if want.trim() != "*" && !want.split(',').any(|t| t.trim() == etag) {
            return error(StatusCode::PRECONDITION_FAILED, "If-Match failed");
        }
    }
    if let Some(since) = headers.get("if-unmodified-since").and_then(|v| v.to_str().ok()) {
        match httpdate::parse_http_date(since) {
            // HTTP dates have whole seconds.
            Ok(since) if modified.duration_since(since).map(|d| d.as_secs() >= 1).unwrap_or(false) => {
                return error(StatusCode::PRECONDITION_FAILED, "If-Unmodified-Since failed");
            }
            _ => {}
        }
    }
    let range = match fault {
        Some(Fault::NoRange) => None,
        _ => headers.get("range").and_then(|v| v.to_str().ok()).and_then(|r| parse_range(r, size)),
    };
    let (status, mut start, mut end) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("content-range", format!("bytes */{size}"))
                .body(http::full(Bytes::new()))
                .expect("valid response");
        }
    };
    if let (Some(Fault::BadRange { shift }), StatusCode::PARTIAL_CONTENT) = (fault, status) {
        let len = end - start;
        start = start.saturating_add_signed(shift).min(size - len);
        end = start + len;
    }
    let gzipped = match fault {
        Some(Fault::Gzip { negotiated }) if !negotiated || accepts_gzip(headers) => {
            // Whole, to state its compressed length.
            match async { Reader::open(&content, start).await?.read((end - start) as usize).await }.await {
                Ok(plain) => Some(gzip(&plain)),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        _ => None,
    };
    let mut builder = Response::builder()
        .status(status)
        .header("accept-ranges", "bytes")
        .header("etag", &etag)
        .header("last-modified", last_modified)
        .header("content-type", "application/octet-stream");
    match (&gzipped, fault) {
        (Some(body), _) => builder = builder.header("content-length", body.len()),
        // As a broken proxy does: chunked, nothing tells where the range should end.
        (None, Some(Fault::LongBody { .. })) => {}
        (None, _) => builder = builder.header("content-length", end - start),
    }
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header("content-range", format!("bytes {start}-{}/{size}", end - 1));
    }
    if gzipped.is_some() {
        builder = builder.header("content-encoding", "gzip");
    }
    if fault == Some(Fault::Gzip { negotiated: true }) {
        builder = builder.header("vary", "accept-encoding");
    }
    if req.method() == hyper::Method::HEAD {
        return builder.body(http::full(Bytes::new())).expect("valid response");
    }
    let stats = state.stats.clone();
    let body = match (gzipped, fault) {
        (Some(body), _) => {
            stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            http::full(body)
        }
        (None, Some(Fault::StallBody { after })) => {
            // Ends, short of its Content-Length, only when the server is dropped; the
            // client leaving drops it with the connection.
            let gone = state.gone();
            stream(content, start, end.min(start.saturating_add(after)), fault, stats)
                .with_trailers(async move {
                    gone.await;
                    None
                })
                .boxed()
        }
        (None, _) => stream(content, start, end, fault, stats),
    };
    builder.body(body).expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_parse_reads_the_fault_and_its_parameters_only() {
        assert_eq!(Fault::parse(""), Ok(None));
        assert_eq!(Fault::parse("X-Amz-Signature=abc&faults=gzip"), Ok(None));
        assert_eq!(Fault::parse("a=1&fault=stall-body"), Ok(Some(Fault::StallBody { after: 65536 })));
        assert_eq!(Fault::parse("fault=bad-range&shift=-3"), Ok(Some(Fault::BadRange { shift: -3 })));
        assert_eq!(Fault::parse("fault=long-body"), Ok(Some(Fault::LongBody { extra: 1024 })));
        assert_eq!(Fault::parse("fault=status&status=410&after=3"), Ok(Some(Fault::Status { status: StatusCode::GONE, after: 3 })));
        assert_eq!(Fault::parse("fault=gzip-negotiated"), Ok(Some(Fault::Gzip { negotiated: true })));
        assert!(Fault::parse("fault=slow").unwrap_err().contains("bps"));
        assert!(Fault::parse("fault=status&status=600").unwrap_err().contains("600"));
        assert!(Fault::parse("fault=Gzip").unwrap_err().contains("Gzip"));
    }

    #[test]
    fn accepts_gzip_follows_rfc_9110() {
        let with = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(hyper::header::ACCEPT_ENCODING, v.parse().unwrap());
            }
            accepts_gzip(&headers)
        };
        assert!(with(&[]));
        assert!(with(&["gzip, deflate, br"]));
        assert!(with(&["identity", "x-gzip;q=0.1"]));
        assert!(with(&["*;q=0.5"]));
        assert!(!with(&[""]));
        assert!(!with(&["identity"]));
        assert!(!with(&["gzip;q=0"]));
        assert!(!with(&["*;q=0"]));
        assert!(!with(&["*, gzip;q=0.000"]));
    }
}
