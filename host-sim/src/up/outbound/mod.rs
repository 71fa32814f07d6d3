//! Outbound HTTP of `host-sim up` (`wasi:http/outgoing-handler`), as Spin 3.6 does it:
//! the component's `allowed_outbound_hosts` decide ([`Policy`]), and plain-HTTP
//! requests go over a pool of HTTP/1.1 connections that every invocation of the app
//! shares ([`Pool`]), so that a connection opened by one request is used again by the
//! next, in the same invocation or a later one. Spin keeps such a pool per app
//! (`crates/factor-outbound-http/src/wasi.rs`, a hyper-util client built once; runtime
//! config `connection_pooling`, on by default); without it, every request opens a
//! connection of its own (wasmtime-wasi-http's `default_send_request`), which host-sim
//! still does with `--no-connection-pooling`.
//!
//! HTTPS requests always take `default_send_request` (webpki roots, one connection
//! each): host-sim has no TLS stack of its own to keep connections in a pool with.
//!
//! With `--outbound-mbps`, request and response bodies are paced by the instance's
//! buckets ([`bandwidth`]), and every request is counted in its unix hour
//! ([`super::usage`]).

pub mod bandwidth;

use super::allowed_hosts::Policy;
use super::usage::Usage;
use super::InvocationStats;
use bandwidth::{Bandwidth, Throttled};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// What wasi-http waits when the guest sets no time limit (wasmtime's and Spin's 600 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an unused connection stays in the pool (hyper-util's default, which Spin
/// keeps).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The future `send_request` hooks return.
type SendFuture = Box<dyn Future<Output = Result<(hyper::Response<WasiBody>, IoFuture), Error>> + Send>;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The outbound side of one instance: the app's policy and pool, this invocation's
/// counters.
pub(super) struct Hooks {
    /// The component's `allowed_outbound_hosts`, parsed once for the app.
    pub(super) policy: Arc<Policy>,
    /// The app's pool; `None` opens a connection per request.
    pub(super) pool: Option<Arc<Pool>>,
    /// This invocation's counters.
    pub(super) stats: Arc<InvocationStats>,
    /// Connections opened by the app, all invocations.
    pub(super) connections: Arc<AtomicU64>,
    /// Requests sent by the app, all invocations: counted here rather than when the
    /// invocation ends, which may be long after its answer.
    pub(super) requests: Arc<AtomicU64>,
    /// Secret values to keep out of log lines.
    pub(super) secrets: Arc<Vec<String>>,
    /// The instance's bandwidth cap, if any.
    pub(super) bandwidth: Option<Bandwidth>,
    /// The instance's counters by time window.
    pub(super) usage: Arc<Usage>,
}

impl wasmtime_wasi_http::WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        // An error the guest meets while reading the response is the guest's to
        // handle; there is nothing for the host to do with it (Spin ignores it too).
        _ = fut;
        self.stats.outbound.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Counted as `requests` is (a refused request too), so that the windows add up
        // to the total: a quota check errs on the side of counting.
        self.usage.outbound();
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_owned();
        let host = uri.host().unwrap_or("").to_owned();
        let port = uri.port_u16();
        let decision = match &*self.policy {
            // Spin logs the parse error at each request it denies because of it.
            Policy::Invalid(error) => Err(format!(
                "Error parsing allowed outbound hosts: {}; every outbound request is denied",
                super::redact(error, &self.secrets)
            )),
            // A relative URL is a request to the app itself, which host-sim does not
            // route (Spin does, when `self` is allowed).
            policy if host.is_empty() => Err(if policy.allows_relative(&["http", "https"]) {
                "outbound request refused: host-sim does not route requests to the app itself (`self`)".to_owned()
            } else {
                "outbound request refused: relative URL and `self` is not in allowed_outbound_hosts".to_owned()
            }),
            policy if !policy.allows(&scheme, &host, port) => Err(format!(
                "outbound request refused: {scheme}://{host}{} is not in allowed_outbound_hosts",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            )),
            _ => Ok(()),
        };
        let pool = self.pool.clone().filter(|_| scheme == "http");
        let connections = self.connections.clone();
        let bandwidth = self.bandwidth.clone();
        let request = match &bandwidth {
            Some(b) => request.map(|body| Throttled::new(body, b.up.clone()).boxed_unsync()),
            None => request,
        };
        let pace = move |response: hyper::Response<WasiBody>| match &bandwidth {
            Some(b) => response.map(|body| Throttled::new(body, b.down.clone()).boxed_unsync()),
            None => response,
        };
        Box::new(async move {
            if let Err(message) = decision {
                if message.starts_with("Error parsing") {
                    tracing::error!("{message}");
                } else {
                    tracing::warn!("{message}");
                }
                return Err(Error::HttpRequestDenied);
            }
            match pool {
                Some(pool) => {
                    let response = pool.send(request, options).await?;
                    Ok((pace(response), Box::new(async { Ok(()) }) as IoFuture))
                }
                None => {
                    connections.fetch_add(1, Ordering::Relaxed);
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((pace(response.map(BodyExt::boxed_unsync)), Box::new(io) as IoFuture))
                }
            }
        })
    }
}

/// Idle HTTP/1.1 connections by origin, shared by every invocation of the app.
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Connections opened, for the host's counters.
    connections: Arc<AtomicU64>,
}

struct Idle {
    sender: SendRequest<WasiBody>,
    since: Instant,
}

impl Pool {
    /// An empty pool counting the connections it opens in `connections`.
    pub fn new(connections: Arc<AtomicU64>) -> Pool {
        Pool { idle: Mutex::new(HashMap::new()), connections }
    }

    /// A ready connection to `origin`, if the pool holds one.
    fn checkout(&self, origin: &str) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(origin)?;
        // Newest first: the one least likely to have been closed by the server.
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.sender.is_ready() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Puts `sender` back once its connection can take the next request, that is once
    /// the response body has been read to its end; a connection that closes instead
    /// (the body dropped half read, the server hanging up) is forgotten.
    fn checkin(self: &Arc<Self>, origin: String, mut sender: SendRequest<WasiBody>) {
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idle.entry(origin).or_default();
                list.retain(|entry| !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT);
                list.push(Idle { sender, since: Instant::now() });
            }
        });
    }

    /// Opens a connection to `authority` (`host:port`) within `timeout`.
    async fn connect(&self, authority: &str, timeout: Duration) -> Result<SendRequest<WasiBody>, Error> {
        let connecting = async {
            let stream = tokio::net::TcpStream::connect(authority).await.map_err(Error::Connect)?;
            self.connections.fetch_add(1, Ordering::Relaxed);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // The connection's end (closed by either side) is not an error of any
                // request: a request in flight on it gets its own error.
                let _ = connection.await;
            });
            Ok(sender)
        };
        tokio::time::timeout(timeout, connecting).await.map_err(|_| Error::ConnectionTimeout)?
    }

    /// Sends a plain-HTTP request on a pooled connection (a new one when none is
    /// idle), honouring the guest's connect, first-byte and between-bytes timeouts.
    pub async fn send(
        self: Arc<Self>,
        mut request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<hyper::Response<WasiBody>, Error> {
        let options = options.unwrap_or_default();
        let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_TIMEOUT);
        let first_byte_timeout = options.first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT);
        let between_bytes_timeout = options.between_bytes_timeout.unwrap_or(DEFAULT_TIMEOUT);
        let authority = request.uri().authority().ok_or(Error::HttpRequestUriInvalid)?;
        let authority = if authority.port().is_some() { authority.to_string() } else { format!("{}:80", authority.host()) };
        let origin = format!("http://{authority}");
        // On the wire, HTTP/1.1 to a server (not a proxy) names the path only; the
        // Host header carries the authority (wasi-http sets it).
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
        loop {
            let (mut sender, reused) = match self.checkout(&origin) {
                Some(sender) => (sender, true),
                None => (self.connect(&authority, connect_timeout).await?, false),
            };
            let sent = tokio::time::timeout(first_byte_timeout, sender.try_send_request(request)).await;
            match sent {
                // Dropping the request's future closes its connection: it never
                // returns to the pool.
                Err(_) => return Err(Error::ConnectionReadTimeout),
                Ok(Ok(response)) => {
                    self.checkin(origin, sender);
                    return Ok(response.map(|body| BetweenBytes { body, timeout: between_bytes_timeout, sleep: None }.boxed_unsync()));
                }
                Ok(Err(mut failed)) => match failed.take_message() {
                    // A pooled connection the server had closed before the request
                    // went out: send it again on a new connection (hyper-util does).
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }
}

/// A response body that fails with `ConnectionReadTimeout` when the next piece takes
/// longer than the guest's between-bytes timeout to arrive (the time it waits, as
/// Spin measures it).
struct BetweenBytes {
    body: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(|e| if e.is_timeout() { Error::HttpResponseTimeout } else { Error::from(e) })))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
