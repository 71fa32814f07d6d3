//! A receiver of the component's completion webhooks, in-process on a free loopback
//! port, for tests (and `host-sim hooks`): it checks each delivery's signature itself,
//! records every delivery, and can fail a seeded share of them (`500`) or lose its
//! answer (the connection dropped after the delivery was taken), to test retries.
//!
//! The component POSTs JSON (`{"type": "upload.done" | "upload.failed", "id",
//! "deliveryId", ...}`) with `vod-uploader-event`, `vod-uploader-delivery` and
//! `vod-uploader-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (Stripe's scheme). A signature off by more than [`TOLERANCE`] is answered `400`, as
//! any unverifiable delivery is.

use crate::http::{self, Dropped};
use crate::sample::splitmix64;
use anyhow::Result;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::BodyExt as _;
use hyper::StatusCode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How far a signature's timestamp may be from the receiver's clock.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// The largest delivery body taken (the component's are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

/// Faults the receiver injects, each decided per delivery from `seed`.
#[derive(Debug, Clone, Default)]
pub struct HookOptions {
    /// Share of verified deliveries answered `500` (recorded all the same).
    pub fail_rate: f64,
    /// Seed of the decisions.
    pub seed: u64,
    /// Share of verified deliveries whose answer is lost: recorded, then the
    /// connection is closed without an answer, so the sender cannot know it arrived.
    pub lose_answer_rate: f64,
}

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `vod-uploader-event` (empty when absent).
    pub event: String,
    /// `vod-uploader-delivery` (empty when absent).
    pub delivery_id: String,
    /// The body parsed (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// The signature verified, its timestamp within [`TOLERANCE`].
    pub signature_ok: bool,
    /// Why it was refused (`400`), if it was.
    pub rejected: Option<String>,
    /// What the sender was answered: `200`, `400`, `500`, or `0` when the answer was lost.
    pub answered: u16,
    /// When it arrived.
    pub received_at: SystemTime,
}

/// Why a signature header does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No `t=` or `v1=`, or a `t` that is not a number.
    Malformed,
    /// `t` is more than [`TOLERANCE`] from now (seconds off).
    Stale(u64),
    /// No `v1` matches the body.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Malformed => f.write_str("malformed signature header"),
            SignatureError::Stale(off) => write!(f, "signature timestamp {off} s from now (tolerance {} s)", TOLERANCE.as_secs()),
            SignatureError::Mismatch => f.write_str("signature does not match the body"),
        }
    }
}

/// The `v1` of a delivery: lowercase hex of HMAC-SHA256(`secret`, `"<t>.<body>"`).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    vod_uploader::hex::encode(&mac.finalize().into_bytes())
}

/// Checks a `vod-uploader-signature` header (`t=...,v1=...[,v1=...]`, any order) for
/// `body` at `now` (Unix seconds), as a receiver should: any `v1` may match (a sender
/// rotating its secret sends two), compared in constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64) -> Result<(), SignatureError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<u64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if t.abs_diff(now) > TOLERANCE.as_secs() {
        return Err(SignatureError::Stale(t.abs_diff(now)));
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures.iter().any(|s| decode_hex(s).is_some_and(|s| constant_time_eq(&s, &expected)));
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Equality whose time does not depend on where the inputs differ (no timing oracle
/// on the signature).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct State {
    secret: Vec<u8>,
    options: HookOptions,
    received: AtomicU64,
    deliveries: Mutex<Vec<Delivery>>,
}

/// A running receiver; dropping it stops it.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    /// The URL to give the component as `notify_url` (any path is taken).
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls (every 10 ms) until `pred` holds for the deliveries so far, and returns
    /// them; after `timeout`, an error listing what did arrive.
    pub async fn wait_for(&self, pred: impl Fn(&[Delivery]) -> bool, timeout: Duration) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.deliveries();
            if pred(&got) {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> =
                    got.iter().map(|d| format!("{} {} answered {} {}", d.event, d.delivery_id, d.answered, d.body)).collect();
                anyhow::bail!("the awaited deliveries did not come within {timeout:?}; received {}:\n{}", got.len(), seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts a receiver on a free loopback port checking signatures with `secret`.
pub async fn start(secret: &str, options: HookOptions) -> Result<Running> {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0)), secret, options).await
}

/// [`start`] on `addr` (`host-sim hooks --port`).
pub async fn start_on(addr: SocketAddr, secret: &str, options: HookOptions) -> Result<Running> {
    let state =
        Arc::new(State { secret: secret.as_bytes().to_vec(), options, received: AtomicU64::new(0), deliveries: Mutex::new(Vec::new()) });
    let served = state.clone();
    let (addr, task) = http::serve(addr, move |req| {
        let state = served.clone();
        async move { receive(&state, req).await }
    })
    .await?;
    Ok(Running { addr, state, task })
}

async fn receive(state: &State, req: hyper::Request<hyper::body::Incoming>) -> Result<hyper::Response<http::Body>, Dropped> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (event, delivery_id, signature) = (header("vod-uploader-event"), header("vod-uploader-delivery"), header("vod-uploader-signature"));
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    let n = state.received.fetch_add(1, Ordering::Relaxed);
    let verified = verify(&state.secret, &signature, &body, unix_now());
    // Two independent draws per delivery, from the seed and its arrival number.
    let draw = |salt: u64| (splitmix64(state.options.seed ^ splitmix64(n ^ salt)) >> 11) as f64 / (1u64 << 53) as f64;
    let (answered, rejected) = match &verified {
        Err(e) => (400, Some(e.to_string())),
        Ok(()) if draw(1) < state.options.lose_answer_rate => (0, None),
        Ok(()) if draw(2) < state.options.fail_rate => (500, None),
        Ok(()) => (200, None),
    };
    let delivery = Delivery {
        event,
        delivery_id,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        signature_ok: verified.is_ok(),
        rejected: rejected.clone(),
        answered,
        received_at: SystemTime::now(),
    };
    state.deliveries.lock().unwrap_or_else(|p| p.into_inner()).push(delivery);
    match answered {
        0 => Err(Dropped),
        400 => Ok(http::json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": rejected }))),
        500 => Ok(http::json(StatusCode::INTERNAL_SERVER_ERROR, &serde_json::json!({ "error": "injected failure" }))),
        _ => Ok(hyper::Response::new(http::full(Bytes::new()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently of this code, with Python's hmac module:
    //   python3 -c "import hmac,hashlib;print(hmac.new(b'whsec',b'1700000000.{\"a\":1}',hashlib.sha256).hexdigest())"
    const VECTOR: &str = "8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032";

    #[test]
    fn signs_as_python_does() {
        assert_eq!(sign(b"whsec", 1_700_000_000, br#"{"a":1}"#), VECTOR);
    }

    #[test]
    fn verifies_the_fixed_vector_and_nothing_else() {
        let header = format!("t=1700000000,v1={VECTOR}");
        let body = br#"{"a":1}"#;
        assert_eq!(verify(b"whsec", &header, body, 1_700_000_000), Ok(()));
        // Within the tolerance either way; any v1 of several; order of parts free.
        assert_eq!(verify(b"whsec", &header, body, 1_700_000_300), Ok(()));
        assert_eq!(verify(b"whsec", &header, body, 1_699_999_700), Ok(()));
        assert_eq!(verify(b"whsec", &format!("v1={},v1={VECTOR},t=1700000000", "00".repeat(32)), body, 1_700_000_000), Ok(()));
        // Too old, too new; another body, secret or timestamp; broken headers.
        assert_eq!(verify(b"whsec", &header, body, 1_700_000_301), Err(SignatureError::Stale(301)));
        assert_eq!(verify(b"whsec", &header, body, 1_699_999_699), Err(SignatureError::Stale(301)));
        assert_eq!(verify(b"whsec", &header, br#"{"a":2}"#, 1_700_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsed", &header, body, 1_700_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsec", &format!("t=1700000001,v1={VECTOR}"), body, 1_700_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsec", &format!("t=1700000000,v1={}", VECTOR.to_uppercase()), body, 1_700_000_000), Ok(()));
        assert_eq!(verify(b"whsec", &format!("t=1700000000,v1={}", &VECTOR[1..]), body, 1_700_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"whsec", &format!("v1={VECTOR}"), body, 1_700_000_000), Err(SignatureError::Malformed));
        assert_eq!(verify(b"whsec", "t=1700000000", body, 1_700_000_000), Err(SignatureError::Malformed));
        assert_eq!(verify(b"whsec", "t=soon,v1=00", body, 1_700_000_000), Err(SignatureError::Malformed));
        assert_eq!(verify(b"whsec", "", body, 1_700_000_000), Err(SignatureError::Malformed));
    }
}
