//! What an upload's status says beyond its record: where its completion event's
//! delivery stands, the leases invocations hold on it, and when it can finish under a
//! request quota.

use super::ApiResponse;
use crate::engine::{self, Io, Settings};
use crate::error::{Error, Refusal};
use crate::quota;
use crate::upload::{self, Upload};
use serde_json::{json, Value};

/// An upload's status with what the store says about it besides its record. Each
/// addition is bookkeeping: a store that cannot say leaves the field out.
pub(crate) async fn status_of<I: Io>(io: &I, settings: &Settings, keys: Option<&[String]>, up: &Upload) -> Value {
    let mut status = upload::status(up);
    if let Ok(Some(delivery)) = engine::delivery(io, settings, up).await {
        status["notified"] = delivery.status();
    }
    let listed;
    let keys = match keys {
        Some(keys) => keys,
        None => match io.kv_keys().await {
            Ok(k) => {
                listed = k;
                &listed
            }
            Err(_) => return status,
        },
    };
    if let Ok(leases) = engine::leases(io, keys, &up.id).await {
        if !leases.is_empty() {
            status["leases"] =
                leases.iter().map(|(name, l)| json!({ "lease": name, "owner": l.owner, "untilMs": l.until_ms })).collect::<Vec<_>>().into();
        }
    }
    if let (Some(per_hour), false) = (settings.quotas.outbound_per_hour, up.state().is_final()) {
        if let Ok(used) = outbound_used(io, keys).await {
            let now = io.unix_now();
            let left = up.requests_left(settings.range_bytes);
            status["quota"] = json!({
                "outboundPerHour": per_hour,
                "usedThisHour": used,
                "requestsLeft": left,
                "eta": quota::eta(now, left, per_hour.saturating_sub(used), per_hour),
            });
        }
    }
    status
}

/// Outbound requests claimed in the current hour over every instance.
pub(crate) async fn outbound_used<I: Io>(io: &I, keys: &[String]) -> Result<u64, crate::io_error::IoError> {
    Ok(crate::engine::outbound_hour(io, keys, quota::hour(io.unix_now()), "").await?.used)
}

/// The answer about upload `id`: its status, or why there is none.
pub(crate) async fn status_answer<I: Io>(io: &I, settings: &Settings, found: Result<Option<Upload>, Error>, id: &str) -> ApiResponse {
    match found {
        Ok(Some(up)) => ApiResponse::json(200, status_of(io, settings, None, &up).await),
        Ok(None) => ApiResponse::refused(Refusal::NotFound, format!("no upload {id}")),
        Err(e) => ApiResponse::from_error(&e),
    }
}
