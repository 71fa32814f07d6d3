//! One JSON line per invocation, for the platform's log (Spin forwards a component's
//! stderr): what was asked, what it did to which uploads, what it cost. Never a secret:
//! paths only (a query may carry the events token), ids, states, counts and codes.

use crate::api::ApiResponse;
use crate::engine::{QuotaStop, Usage};
use serde_json::json;
use std::time::Duration;

/// The route of a request, with upload ids as `{id}` (one log line per route shape).
pub fn route(method: &str, path: &str) -> String {
    let shape: Vec<&str> =
        path.split('/').map(|seg| if seg.len() == 20 && seg.bytes().all(|b| b.is_ascii_hexdigit()) { "{id}" } else { seg }).collect();
    format!("{method} {}", shape.join("/"))
}

/// The stable error code of an answer, if it is an error.
pub fn error_code(response: &ApiResponse) -> Option<String> {
    crate::api::answer::error_code(response).map(str::to_owned)
}

/// The log line.
pub fn line(route: &str, status: u16, code: Option<&str>, usage: &Usage, stop: Option<&QuotaStop>, took: Duration) -> String {
    let uploads: Vec<_> = usage
        .uploads
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "before": a.before, "after": a.after, "hashedBytes": a.hashed,
                "uploadedBytes": a.uploaded, "error": a.error, "busy": a.busy,
            })
        })
        .collect();
    let mut line = json!({
        "route": route,
        "status": status,
        "code": code,
        "uploads": uploads,
        "requests": { "vod": usage.vod_requests, "source": usage.source_requests, "other": usage.other_requests },
        "kvWrites": usage.kv_writes,
        "kvReads": usage.kv_reads,
        "durationMs": took.as_millis() as u64,
    });
    if usage.kv_throttled_ms > 0 {
        line["kvThrottledMs"] = usage.kv_throttled_ms.into();
    }
    if let Some(stop) = stop {
        line["quota"] = json!({ "quota": stop.quota, "limit": stop.limit, "retryAt": stop.retry_at });
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_ids_and_queries_never_reach_them() {
        assert_eq!(route("POST", "/uploads/0123456789abcdef0123/advance"), "POST /uploads/{id}/advance");
        assert_eq!(route("GET", "/metrics"), "GET /metrics");
        let l = line("POST /tick", 200, None, &Usage::default(), None, Duration::from_millis(12));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["durationMs"], 12);
        assert!(!l.contains('\n'));
    }
}
