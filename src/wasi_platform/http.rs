//! Outgoing HTTP over `wasi:http@0.2.0` and clock waits over `wasi:clocks`, on
//! spin-executor's loop (it polls any wasi pollable).
//!
//! Bodies are written and read as the streams take and give them, waiting on their
//! pollables, so that several parts go out at once; the request and response handles
//! live as long as their bodies (wasmtime cancels a request whose handle is dropped).

use crate::engine::{Body, HttpRequest, HttpResponse, IoError};
use std::task::Poll;
use std::time::Duration;
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasi::io::poll::Pollable;
use wasi::io::streams::{InputStream, StreamError};

/// Most bytes asked of a response stream at once. Each chunk may be held a while (by a
/// part being assembled, by the hasher's input), so a large one costs linear memory:
/// 256 KiB raised the 4 GiB upload's peak by 0.5 to 0.8 MiB over spin-sdk's 16 KiB,
/// for no speed measured.
const READ_CHUNK: u64 = 64 * 1024;

/// Waits until `pollable` is ready, on spin-executor's loop: other futures (other
/// parts) go on meanwhile. It may also return early: the executor polls the whole task
/// again whenever any of its pollables is ready, and this returns on that poll. Every
/// caller checks again what it waited for (a stream's room or bytes, a response, the
/// clock) and waits again.
async fn ready(pollable: Pollable) {
    let mut registered: Option<spin_executor::CancelOnDropToken> = None;
    let mut pollable = Some(pollable);
    std::future::poll_fn(|cx| match pollable.take() {
        Some(p) if !p.ready() => {
            // The token cancels the registration if this future is dropped first.
            registered = Some(spin_executor::push_waker_and_get_token(p, cx.waker().clone()).into());
            Poll::Pending
        }
        _ => Poll::Ready(()),
    })
    .await;
    drop(registered);
}

/// Waits `duration` on the monotonic clock: until its deadline, whatever wakes it
/// before.
pub(crate) async fn sleep(duration: Duration) {
    let nanos = duration.as_nanos().min(u64::MAX as u128) as u64;
    let deadline = monotonic_clock::now().saturating_add(nanos);
    while monotonic_clock::now() < deadline {
        ready(monotonic_clock::subscribe_instant(deadline)).await;
    }
}

/// The monotonic clock, as a duration since its origin.
pub(crate) fn now() -> Duration {
    Duration::from_nanos(monotonic_clock::now())
}

/// A response body as a stream. Field order is drop order: the stream before the body
/// it belongs to, the body before its response.
pub struct WasiBody {
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    _response: Option<IncomingResponse>,
}

impl WasiBody {
    /// The body of an incoming request or response, as its stream.
    pub(crate) fn of(body: IncomingBody, response: Option<IncomingResponse>) -> Result<WasiBody, IoError> {
        let stream = body.stream().map_err(|()| IoError::msg("the body stream was already taken"))?;
        Ok(WasiBody { stream: Some(stream), body: Some(body), _response: response })
    }

    fn end(&mut self) {
        self.stream = None;
        self.body = None;
    }
}

impl Body for WasiBody {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>> {
        loop {
            let stream = self.stream.as_ref()?;
            match stream.read(READ_CHUNK) {
                Ok(bytes) if !bytes.is_empty() => return Some(Ok(bytes)),
                // Nothing yet: wait for more (cancel-safe: nothing was taken).
                Ok(_) => ready(stream.subscribe()).await,
                Err(StreamError::Closed) => {
                    self.end();
                    return None;
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    self.end();
                    return Some(Err(IoError::msg(e.to_debug_string())));
                }
            }
        }
    }
}

/// Words for a transport error that a user can act on.
fn error_words(e: &ErrorCode) -> String {
    match e {
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "no answer in time".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::HttpRequestDenied => "the destination is not an allowed outbound host".into(),
        ErrorCode::DnsError(_) => "the host name could not be resolved".into(),
        other => format!("{other}"),
    }
}

/// Sends `request`: its head, then its body from the shared buffer as the stream takes
/// it, while the response is awaited. wasi-http's time limits (connect, first byte,
/// between bytes) are set to its timeout for hosts that honour them; the engine bounds
/// the wait anyway.
pub(crate) async fn send(request: HttpRequest) -> Result<HttpResponse<WasiBody>, IoError> {
    let (scheme, authority, path) = request.url_parts().map_err(IoError::msg)?;
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    let entries: Vec<(String, Vec<u8>)> = request.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into_bytes())).collect();
    let fields = Fields::from_list(&entries).map_err(|e| IoError::msg(format!("a request header was refused: {e:?}")))?;
    let outgoing = OutgoingRequest::new(fields);
    let method = if request.method == "POST" { Method::Post } else { Method::Get };
    let refused = |what: &str| IoError::msg(format!("the host refused the request's {what}"));
    outgoing.set_method(&method).map_err(|()| refused("method"))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| refused("scheme"))?;
    outgoing.set_authority(Some(authority)).map_err(|()| refused("authority"))?;
    outgoing.set_path_with_query(Some(&path)).map_err(|()| refused("path"))?;
    // A request without a body (GET) never takes its body: the host then sends none
    // (no chunked encoding of nothing, which some servers refuse on a GET).
    let body = match request.body.is_empty() {
        true => None,
        false => Some(outgoing.body().map_err(|()| IoError::msg("the request body was already taken"))?),
    };
    let options = request.timeout.map(|t| {
        let options = RequestOptions::new();
        let nanos = t.as_nanos().min(u64::MAX as u128) as u64;
        // A host that does not support one of them says so; the engine's own bound stays.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        options
    });
    let future = outgoing_handler::handle(outgoing, options).map_err(|e| IoError::msg(error_words(&e)))?;
    let answer = async {
        loop {
            match future.get() {
                Some(Ok(Ok(response))) => return Ok(response),
                Some(Ok(Err(e))) => return Err(IoError::msg(error_words(&e))),
                Some(Err(())) => return Err(IoError::msg("the response was already taken")),
                None => ready(future.subscribe()).await,
            }
        }
    };
    let written = async {
        match body {
            Some(body) => write_body(body, &request.body).await,
            None => Ok(()),
        }
    };
    let (response, written) = futures_util::future::join(answer, written).await;
    let response = response?;
    // A server may answer before it took the whole body (a refusal): the answer counts.
    if let Err(e) = written {
        if response.status() < 400 {
            return Err(e);
        }
    }
    let status = response.status();
    let headers = response.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
    let incoming = response.consume().map_err(|()| IoError::msg("the response body was already taken"))?;
    Ok(HttpResponse { status, headers, body: WasiBody::of(incoming, Some(response))? })
}

/// Writes `bytes` as a request body and finishes it: as much as the stream takes at a
/// time (wasmtime takes up to 1 MiB a write), waiting on its pollable when it is full.
async fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), IoError> {
    let stream = body.write().map_err(|()| IoError::msg("the request body stream was already taken"))?;
    let mut left = bytes;
    loop {
        let room = match stream.check_write() {
            Ok(room) => room,
            Err(StreamError::Closed) if left.is_empty() => break,
            Err(StreamError::Closed) => return Err(IoError::msg("the server closed the request body early")),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(IoError::msg(format!("request body write failed: {}", e.to_debug_string())))
            }
        };
        if room == 0 {
            ready(stream.subscribe()).await;
            continue;
        }
        if left.is_empty() {
            break;
        }
        let n = left.len().min(room as usize);
        stream.write(&left[..n]).map_err(|e| IoError::msg(format!("request body write failed: {e:?}")))?;
        left = &left[n..];
    }
    // Flushed once every byte is written: room again after the flush means it is done.
    if stream.flush().is_ok() {
        while let Ok(0) = stream.check_write() {
            ready(stream.subscribe()).await;
        }
    }
    drop(stream);
    OutgoingBody::finish(body, None).map_err(|e| IoError::msg(format!("request body could not be finished: {}", error_words(&e))))
}
