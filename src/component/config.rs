//! The deployment's configuration, from Spin variables. Errors name the variable,
//! never a value (values may be secrets or private bucket names).

use crate::api::{Config, EventsConfig};
use crate::engine::Settings;
use crate::events::Filters;
use crate::notify::NotifyTarget;
use crate::protocol::{Credentials, Endpoint, Signer, DEFAULT_ENDPOINT};
use crate::sign::Algorithm;
use crate::source::{origin_of, s3::S3Access, SourcePolicy};
use std::time::Duration;

/// A variable, `None` when undefined or empty.
pub(super) fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the configuration from Spin variables. Errors name the variable, never a value.
pub(super) fn config() -> Result<Config, String> {
    let required = |name: &str| variable(name).ok_or_else(|| format!("the {name} variable is not set"));
    let number = |name: &str, default: u64| -> Result<u64, String> {
        match variable(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| format!("the {name} variable must be a whole number")),
        }
    };
    let endpoint = variable("vod_endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let signer = Signer {
        endpoint: Endpoint::parse(&endpoint).map_err(|e| format!("the vod_endpoint variable: {e}"))?,
        credentials: Credentials::new(required("vod_secret_id")?, required("vod_secret_key")?),
        region: variable("vod_region").unwrap_or_else(|| "gz".to_owned()),
        algorithm: Algorithm::HmacSha1,
    };
    let mut settings = Settings::new(signer);
    settings.budget = Duration::from_millis(number("budget_ms", 20_000)?);
    // A lease's settling wait is nothing beside a platform's 20 s budget, but would be
    // all of a tiny one: at most a twentieth of the budget.
    settings.lease_settle = settings.lease_settle.min(settings.budget / 20);
    settings.concurrency = number("concurrency", 4)?.clamp(1, 32) as usize;
    // The whole file sits in linear memory (128 MiB on the platforms) next to the parts.
    let read_once = number("read_once_mib", settings.memory_threshold >> 20)?;
    if read_once > 64 {
        return Err("the read_once_mib variable must be at most 64".into());
    }
    settings.memory_threshold = read_once << 20;
    settings.backoff.give_up_secs = number("give_up_hours", settings.backoff.give_up_secs / 3600)?.saturating_mul(3600);
    settings.retention_secs = number("retention_hours", settings.retention_secs / 3600)?.saturating_mul(3600);
    let mut policy = SourcePolicy::from_variables(
        variable("source_origin").as_deref(),
        variable("other_source_origins").as_deref(),
        variable("local_dir").as_deref(),
    )?;
    let s3 =
        ["source_access_key_id", "source_secret_access_key", "source_session_token", "source_region", "source_addressing"].map(variable);
    let [id, secret, token, region, addressing] = s3.each_ref().map(Option::as_deref);
    settings.s3 = S3Access::from_variables(id, secret, token, region, addressing, variable("source_origin").as_deref())?;
    policy.s3 = settings.s3.is_some();
    settings.notify = notify_target()?;
    let quota = |name: &str| -> Result<Option<u64>, String> {
        match variable(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| format!("the {name} variable must be a whole number above 0 (or empty: unlimited)")),
        }
    };
    settings.quotas =
        crate::quota::Quotas { outbound_per_hour: quota("outbound_per_hour")?, kv_writes_per_second: quota("kv_writes_per_second")? };
    let mut events = EventsConfig { token: variable("events_token").unwrap_or_default(), ..EventsConfig::default() };
    events.filters = Filters::from_variables(
        variable("events_prefix").as_deref(),
        variable("events_suffixes").as_deref(),
        variable("events_min_bytes").as_deref(),
    )?;
    Ok(Config { api_token: variable("api_token").unwrap_or_default(), settings, policy, events })
}

/// The completion webhook from `notify_url` and `notify_secret`: both or neither (an
/// unsigned webhook would let anyone who finds the receiver's URL forge events).
fn notify_target() -> Result<Option<NotifyTarget>, String> {
    match (variable("notify_url"), variable("notify_secret")) {
        (None, None) => Ok(None),
        (Some(url), Some(secret)) => {
            if origin_of(&url).is_none() {
                return Err("the notify_url variable must be an http(s) URL".into());
            }
            let mut target = NotifyTarget::new(url.trim(), secret);
            if let Some(v) = variable("notify_retry_secs") {
                target.retry_secs = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or("the notify_retry_secs variable must be a whole number of seconds from 1 to 3600")?;
            }
            Ok(Some(target))
        }
        (Some(_), None) => Err("the notify_url variable is set but notify_secret is not: deliveries are signed with it".into()),
        (None, Some(_)) => Err("the notify_secret variable is set but notify_url is not".into()),
    }
}
