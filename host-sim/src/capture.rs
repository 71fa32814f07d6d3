//! A receiver that records every request as it came (method, path and query, headers,
//! body) and answers `200`: a webhook endpoint for SeaweedFS's filer events in tests,
//! or anything else whose requests a test wants to look at.

use crate::http::{self, Dropped};
use anyhow::Result;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The largest body kept (SeaweedFS's events are a few KB).
const MAX_BODY: usize = 4 << 20;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `POST`, ...
    pub method: String,
    /// The path with its query (`/events?token=...`).
    pub path_and_query: String,
    /// Every header, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// When it arrived.
    pub received_at: SystemTime,
}

impl Captured {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A running capture; dropping it stops it.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls (every 10 ms) until `pred` holds for the requests so far, and returns them;
    /// after `timeout`, an error listing what did arrive.
    pub async fn wait_for(&self, pred: impl Fn(&[Captured]) -> bool, timeout: Duration) -> Result<Vec<Captured>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if pred(&got) {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = got
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {}",
                            r.method,
                            r.path_and_query,
                            String::from_utf8_lossy(&r.body).chars().take(300).collect::<String>()
                        )
                    })
                    .collect();
                anyhow::bail!("the awaited requests did not come within {timeout:?}; received {}:\n{}", got.len(), seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts a capture on a free loopback port.
pub async fn start() -> Result<Running> {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let kept = requests.clone();
    let (addr, task) = http::serve(SocketAddr::from(([127, 0, 0, 1], 0)), move |req: hyper::Request<hyper::body::Incoming>| {
        let kept = kept.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = http_body_util::Limited::new(body, MAX_BODY).collect().await.map_err(|_| Dropped)?.to_bytes();
            let captured = Captured {
                method: parts.method.to_string(),
                path_and_query: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body,
                received_at: SystemTime::now(),
            };
            kept.lock().unwrap_or_else(|p| p.into_inner()).push(captured);
            Ok(hyper::Response::new(http::full(Bytes::new())))
        }
    })
    .await?;
    Ok(Running { addr, requests, task })
}
