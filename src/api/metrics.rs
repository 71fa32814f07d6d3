//! `GET /metrics`: the deployment as Prometheus text (exposition format 0.0.4), read
//! from the store, so that any instance answers for all of them.
//!
//! Byte, request and write figures are sums over the uploads the store holds: they fall
//! when retention removes an upload, so they are gauges, not counters.

use super::ApiResponse;
use crate::engine::{self, Io, Settings};
use crate::quota;
use crate::upload::State;
use std::fmt::Write as _;

/// The metrics answer.
pub async fn answer<I: Io>(io: &I, settings: &Settings) -> ApiResponse {
    match render(io, settings).await {
        Ok(text) => {
            let mut response = ApiResponse::text(200, text);
            response.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
            response.headers.push(("content-type".into(), "text/plain; version=0.0.4; charset=utf-8".into()));
            response
        }
        Err(e) => ApiResponse::from_error(&e),
    }
}

fn family(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP vod_uploader_{name} {help}\n# TYPE vod_uploader_{name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "vod_uploader_{name}{labels} {value}");
    }
}

/// The metrics text.
pub async fn render<I: Io>(io: &I, settings: &Settings) -> Result<String, crate::error::Error> {
    let listing = engine::list(io).await?;
    let keys = listing.keys();
    let now = io.unix_now();
    let states = [State::Pending, State::Hashing, State::Uploading, State::Finishing, State::Done, State::Failed, State::Cancelled];
    let labels: Vec<String> = states
        .iter()
        .map(|s| format!("{{state=\"{}\"}}", serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()))
        .collect();
    let by_state: Vec<(&str, u64)> =
        states.iter().zip(&labels).map(|(s, l)| (l.as_str(), listing.uploads.iter().filter(|u| u.state() == *s).count() as u64)).collect();
    let sum = |f: &dyn Fn(&crate::upload::Upload) -> u64| listing.uploads.iter().map(f).sum::<u64>();
    let waiting = listing.uploads.iter().filter(|u| !u.state().is_final() && u.retry_after().is_some_and(|t| t > now)).count() as u64;
    let mut out = String::new();
    family(&mut out, "uploads", "Uploads in the store, by state.", &by_state);
    family(&mut out, "uploads_waiting", "Active uploads waiting out a retryable error or a quota window.", &[("", waiting)]);
    family(&mut out, "unreadable_records", "Upload records that cannot be read.", &[("", listing.unreadable.len() as u64)]);
    family(&mut out, "hashed_bytes", "Bytes hashed, over the uploads in the store.", &[("", sum(&|u| u.hashed_bytes()))]);
    family(
        &mut out,
        "uploaded_bytes",
        "Bytes in parts the VOD service holds, over the uploads in the store.",
        &[("", sum(&|u| u.uploaded_bytes()))],
    );
    family(&mut out, "source_bytes", "Bytes read from sources, over the uploads in the store.", &[("", sum(&|u| u.stats.source_bytes))]);
    family(
        &mut out,
        "requests",
        "Outbound requests by kind, over the uploads in the store.",
        &[("{kind=\"vod\"}", sum(&|u| u.stats.vod_requests)), ("{kind=\"source\"}", sum(&|u| u.stats.source_requests))],
    );
    family(
        &mut out,
        "retries",
        "VOD requests that were retries, over the uploads in the store.",
        &[("{kind=\"vod\"}", sum(&|u| u.stats.vod_retries))],
    );
    family(&mut out, "kv_writes", "Key-value writes, over the uploads in the store.", &[("", sum(&|u| u.stats.kv_writes))]);
    let mut leases = 0;
    let now_ms = io.unix_millis();
    for key in keys {
        if crate::checkpoint::lease_of_key(key).is_some() {
            if let Ok(Some(l)) = io.kv_get(key).await.map(|v| v.and_then(|b| crate::lease::Lease::decode(&b))) {
                leases += u64::from(l.live(now_ms));
            }
        }
    }
    family(&mut out, "leases_held", "Leases held on uploads' hashing passes and part ranges.", &[("", leases)]);
    let mut limits = Vec::new();
    let mut left = Vec::new();
    if let Some(per_hour) = settings.quotas.outbound_per_hour {
        let used = super::status::outbound_used(io, keys).await.map_err(crate::error::Error::Storage)?;
        limits.push(("{quota=\"outbound_per_hour\"}", per_hour));
        left.push(("{quota=\"outbound_per_hour\"}", per_hour.saturating_sub(used)));
    }
    if let Some(per_second) = settings.quotas.kv_writes_per_second {
        let mut claimed = 0;
        for key in keys.iter().filter(|k| quota::kv_rate_of_key(k).is_some_and(|(until, _)| until > now)) {
            if let Ok(Some(v)) = io.kv_get(key).await {
                claimed += quota::decode_count(&v);
            }
        }
        limits.push(("{quota=\"kv_writes_per_second\"}", per_second));
        left.push(("{quota=\"kv_writes_per_second\"}", per_second.saturating_sub(quota::kv_margin(per_second)).saturating_sub(claimed)));
    }
    if !limits.is_empty() {
        family(&mut out, "quota_limit", "The platform quotas set.", &limits);
        family(&mut out, "quota_left", "What is left of each quota in its current window, over every instance.", &left);
    }
    Ok(out)
}
