//! Small HTTP plumbing shared by host-sim's servers and clients (hyper 1).

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Response and request body type.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Returned by a handler to close the connection without an answer (a dropped
/// connection, for fault injection).
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(value).expect("JSON values serialize")))
        .expect("valid response")
}

/// A plain answer.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder().status(status).header("content-type", "text/html").body(full(body)).expect("valid response")
}

/// Streams the first `len` bytes of a file, 256 KiB at a time, never holding it whole.
pub fn file(path: PathBuf, len: u64) -> Response<Body> {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f.take(len),
            Err(e) => return tx.abort(e),
        };
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Frame::data(Bytes::from(buf))).await.is_err() {
                        return;
                    }
                }
                Err(e) => return tx.abort(e),
            }
        }
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .body(body.boxed())
        .expect("valid response")
}

/// Binds `addr` and serves every connection with `handler` (HTTP/1.1, keep-alive) on a
/// background task; returns the bound address. A handler's `Err(Dropped)` closes the
/// connection with no answer.
pub async fn serve<H, F>(addr: SocketAddr, handler: H) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Dropped>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(&handler);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((bound, task))
}

/// A plain-HTTP client with connection reuse.
pub type HttpClient = Client<HttpConnector, Body>;

/// Waits until the leases an upload's status shows (`leases[].untilMs`) have expired,
/// at most 5 s: a caller driving an upload after a killed invocation waits out the
/// leases it left, as the status says, instead of calling again and again meanwhile.
pub async fn wait_for_leases(status: &serde_json::Value) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let until = status["leases"].as_array().into_iter().flatten().filter_map(|l| l["untilMs"].as_u64()).max().unwrap_or(0);
    if until > now {
        tokio::time::sleep(std::time::Duration::from_millis((until - now).min(5000))).await;
    }
}

/// A new [`HttpClient`].
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Calls a JSON API on `addr` with an optional bearer token: status and parsed body
/// (`Null` when the body is not JSON).
pub async fn api_call(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use http_body_util::BodyExt as _;
    let mut builder = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = client.request(builder.body(full(Bytes::from(body.to_owned())))?).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
}
