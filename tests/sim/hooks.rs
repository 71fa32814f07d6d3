//! A model of the completion webhook's receiver: it checks each delivery's signature
//! and body, fails a seeded fraction of them (500, a dropped connection, or silence),
//! and records what it took, for the checks that every ended upload's event arrives,
//! signed, with one delivery id, and never before the upload's end is stored.

use super::world::{Answer, BodyKind, Delivery, Rng};
use std::collections::BTreeMap;
use std::time::Duration;
use vod_uploader::engine::HttpRequest;
use vod_uploader::notify::signature_header;

/// The receiver's host in the simulation.
pub const HOOKS_HOST: &str = "hooks.sim";

/// The secret deliveries are signed with.
pub const HOOKS_SECRET: &str = "sim-hook-secret";

/// One delivery the receiver took (answered 2xx, or acted on before a failure).
#[derive(Debug, Clone)]
pub struct Taken {
    pub delivery_id: String,
    pub kind: String,
    pub body: serde_json::Value,
}

/// The receiver.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Fraction of deliveries that fail.
    pub fail: f64,
    /// Every delivery taken, by upload id, in order.
    pub taken: BTreeMap<String, Vec<Taken>>,
    /// Deliveries refused for a wrong signature or body (must stay empty).
    pub bad: Vec<String>,
    /// Attempts, taken or not.
    pub attempts: u64,
}

impl Hooks {
    /// Handles a delivery at `unix` seconds.
    pub fn handle(&mut self, request: &HttpRequest, unix: u64, rng: &mut Rng) -> Delivery {
        self.attempts += 1;
        let header = |name: &str| request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let (Some(signature), Some(delivery_id), Some(kind)) =
            (header("vod-uploader-signature"), header("vod-uploader-delivery"), header("vod-uploader-event"))
        else {
            self.bad.push(format!("a delivery without its headers: {:?}", request.headers));
            return answer(400);
        };
        let t: u64 = signature.strip_prefix("t=").and_then(|r| r.split(',').next()).and_then(|t| t.parse().ok()).unwrap_or(0);
        if signature != signature_header(HOOKS_SECRET.as_bytes(), t, &request.body) || t.abs_diff(unix) > 300 {
            self.bad.push(format!("delivery {delivery_id}: a wrong or stale signature {signature}"));
            return answer(400);
        }
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(e) => {
                self.bad.push(format!("delivery {delivery_id}: body is not JSON: {e}"));
                return answer(400);
            }
        };
        if body["deliveryId"] != delivery_id.as_str() || body["type"] != kind.as_str() {
            self.bad.push(format!("delivery {delivery_id}: headers and body disagree: {body}"));
        }
        // A failure before the receiver acted, or after (it took it but the sender
        // does not hear so, and delivers again).
        let fail = rng.chance(self.fail);
        let before = fail && rng.chance(0.5);
        if !before {
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            self.taken.entry(id).or_default().push(Taken { delivery_id, kind, body });
        }
        if !fail {
            return answer(200);
        }
        match rng.range(0, 2) {
            0 => answer(500),
            1 => Delivery::Dropped,
            _ => Delivery::Silence,
        }
    }
}

fn answer(status: u16) -> Delivery {
    Delivery::Answer(Answer { status, headers: vec![], chunks: vec![], skip: 0, gap: Duration::ZERO, stall: false, kind: BodyKind::Other })
}
