//! Spin's side of [`Io`]: outbound HTTP over wasi-http (with its time limits), the
//! `default` key-value store, clocks and randomness.

use crate::engine::{local, Body, FileInfo, HttpRequest, HttpResponse, Io, IoError};
use futures_util::stream::{Stream, StreamExt};
use spin_sdk::http::conversions::TryIntoOutgoingRequest;
use spin_sdk::http::{IncomingResponse, OutgoingBody, OutgoingRequest, Request};
use spin_sdk::key_value::Store;
use spin_sdk::wit::wasi::http0_2_0::{outgoing_handler, types::ErrorCode, types::RequestOptions};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasi::clocks::monotonic_clock;
use wasi::io::streams::StreamError;

/// Spin's outbound HTTP and key-value store.
pub(super) struct SpinIo {
    pub(super) store: Store,
}

/// A streamed body: of a response (kept alive while its body is read: wasmtime
/// cancels a request whose response handle is dropped), or of the incoming request.
pub(super) struct SpinBody {
    pub(super) _response: Option<IncomingResponse>,
    pub(super) stream: Pin<Box<dyn Stream<Item = Result<Vec<u8>, wasi::io::streams::Error>>>>,
}

impl Body for SpinBody {
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>> {
        // The host's own words, not the resource handle's Debug.
        self.stream.next().await.map(|r| r.map_err(|e| IoError::msg(e.to_debug_string())))
    }
}

/// Sends a request with wasi-http's time limits (connect, first byte, between bytes)
/// set to `timeout`, for hosts that honour them; the engine bounds the wait anyway.
/// What spin-sdk's `send` does, plus the options it does not take.
async fn send_with_timeout(request: OutgoingRequest, timeout: Option<Duration>) -> Result<IncomingResponse, String> {
    let options = timeout.map(|t| {
        let options = RequestOptions::new();
        let nanos = t.as_nanos().min(u64::MAX as u128) as u64;
        // A host that does not support one of them says so; the engine's own bound stays.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        options
    });
    let future = outgoing_handler::handle(request, options).map_err(|e| error_words(&e))?;
    let mut registered: Option<spin_executor::CancelOnDropToken> = None;
    std::future::poll_fn(|cx| match future.get() {
        Some(Ok(Ok(response))) => Poll::Ready(Ok(response)),
        Some(Ok(Err(e))) => Poll::Ready(Err(error_words(&e))),
        Some(Err(())) => Poll::Ready(Err("the response was already taken".into())),
        None => {
            registered.replace(spin_executor::push_waker_and_get_token(future.subscribe(), cx.waker().clone()).into());
            Poll::Pending
        }
    })
    .await
}

fn error_words(e: &ErrorCode) -> String {
    match e {
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "no answer in time".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::HttpRequestDenied => "the destination is not an allowed outbound host".into(),
        other => format!("{other}"),
    }
}

impl Io for SpinIo {
    type Body = SpinBody;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<SpinBody>, IoError> {
        let method = match request.method {
            "POST" => spin_sdk::http::Method::Post,
            _ => spin_sdk::http::Method::Get,
        };
        let mut builder = Request::builder();
        builder.method(method).uri(request.url);
        for (k, v) in request.headers {
            builder.header(k, v);
        }
        // The request without its body, which is written below straight from the shared
        // buffer: spin-sdk's own body path would want an owned copy of it per attempt.
        let (outgoing, _) = builder.build().try_into_outgoing_request().map_err(|e| IoError::msg(e.to_string()))?;
        let response = if request.body.is_empty() {
            send_with_timeout(outgoing, request.timeout).await
        } else {
            let body = outgoing.body().map_err(|()| IoError::msg("the request body was already taken"))?;
            let written = write_body(body, &request.body);
            let (response, written) = futures_util::future::join(send_with_timeout(outgoing, request.timeout), written).await;
            written?;
            response
        };
        let response = response.map_err(IoError::msg)?;
        let status = response.status();
        let headers = response.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
        let stream = Box::pin(response.take_body_stream());
        Ok(HttpResponse { status, headers, body: SpinBody { _response: Some(response), stream } })
    }

    // Spin's key-value store is synchronous in spin-sdk 5.2.
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.store.get(key).map_err(IoError::new)
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.store.set(key, value).map_err(IoError::new)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), IoError> {
        self.store.delete(key).map_err(IoError::new)
    }

    async fn kv_keys(&self) -> Result<Vec<String>, IoError> {
        self.store.get_keys().map_err(IoError::new)
    }

    async fn sleep(&self, duration: Duration) {
        // A monotonic-clock pollable on Spin's executor: other parts go on uploading
        // while one waits out its backoff.
        let deadline = monotonic_clock::now().saturating_add(duration.as_nanos().min(u64::MAX as u128) as u64);
        let mut registered: Option<spin_executor::CancelOnDropToken> = None;
        std::future::poll_fn(|cx| {
            if monotonic_clock::now() >= deadline {
                return Poll::Ready(());
            }
            let pollable = monotonic_clock::subscribe_instant(deadline);
            // Replacing the token drops (cancels) the previous registration.
            registered.replace(spin_executor::push_waker_and_get_token(pollable, cx.waker().clone()).into());
            Poll::Pending
        })
        .await
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(monotonic_clock::now())
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn unix_millis(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn random(&self) -> u32 {
        (wasi::random::random::get_random_u64() as u32).max(1)
    }

    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo> {
        local::file_info(path)
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        local::read_file(path, offset, len)
    }
}

/// Writes `bytes` as a request body and finishes it: as much as the stream takes at a
/// time (wasmtime takes up to 1 MiB a write), waiting on its pollable when it is full.
async fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body.write().map_err(|()| "the request body stream was already taken".to_owned())?;
    let mut left = bytes;
    let mut flushed = false;
    let mut registered: Option<spin_executor::CancelOnDropToken> = None;
    std::future::poll_fn(|cx| loop {
        let room = match stream.check_write() {
            Ok(room) => room,
            Err(StreamError::Closed) if left.is_empty() => return Poll::Ready(Ok(())),
            Err(StreamError::Closed) => return Poll::Ready(Err("the server closed the request body early".into())),
            Err(e) => return Poll::Ready(Err(format!("request body write failed: {e:?}"))),
        };
        if room == 0 {
            registered.replace(spin_executor::push_waker_and_get_token(stream.subscribe(), cx.waker().clone()).into());
            return Poll::Pending;
        }
        if !left.is_empty() {
            let n = left.len().min(room as usize);
            if let Err(e) = stream.write(&left[..n]) {
                return Poll::Ready(Err(format!("request body write failed: {e:?}")));
            }
            left = &left[n..];
        } else if !flushed {
            // Room again after a flush means the flush completed.
            if let Err(e) = stream.flush() {
                return Poll::Ready(Err(format!("request body flush failed: {e:?}")));
            }
            flushed = true;
        } else {
            return Poll::Ready(Ok(()));
        }
    })
    .await?;
    drop(stream);
    OutgoingBody::finish(body, None).map_err(|e| format!("request body could not be finished: {e:?}"))
}
