//! What `weed server` is configured with: the S3 identities (`s3.json`) and the filer's
//! webhook (`notification.toml`).

use std::fmt::Write as _;

/// An S3 key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key: String,
    /// The secret key: never logged.
    pub secret_key: String,
}

/// The identity with every right on every bucket.
pub fn admin() -> Credentials {
    Credentials { access_key: "hostsimadmin".into(), secret_key: "hostsim-admin-secret-7f3a".into() }
}

/// An identity SeaweedFS knows (its signatures verify) but that may do nothing: every
/// request is `403 AccessDenied` (a `source_denied` source).
pub fn no_rights() -> Credentials {
    Credentials { access_key: "hostsimnobody".into(), secret_key: "hostsim-nobody-secret-c41d".into() }
}

/// Where the filer pushes its events (`[notification.webhook]` of
/// `notification.toml`; the key names are those of `weed scaffold -config=notification`).
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL events are POSTed to.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <token>`; empty: none.
    pub bearer_token: String,
    /// Event types to send (`create`, `update`, `delete`, `rename`); empty: all.
    pub event_types: Vec<String>,
    /// Only events under these paths (`/buckets/<bucket>`); empty: all, including
    /// `/buckets/.system/...` and directories.
    pub path_prefixes: Vec<String>,
    /// Per attempt, seconds (1-300).
    pub timeout_seconds: u32,
    /// Attempts after the first (0-10); backoff starts at 1 s, doubling up to
    /// `max_backoff_seconds`.
    pub max_retries: u32,
    /// The longest backoff between attempts, seconds.
    pub max_backoff_seconds: u32,
    /// Concurrent deliveries (1-100).
    pub workers: u32,
}

impl Webhook {
    /// Every event to `endpoint` with `bearer_token`, 5 s per attempt, 3 retries at
    /// most 2 s apart, 2 workers.
    pub fn new(endpoint: impl Into<String>, bearer_token: impl Into<String>) -> Webhook {
        Webhook {
            endpoint: endpoint.into(),
            bearer_token: bearer_token.into(),
            event_types: vec![],
            path_prefixes: vec![],
            timeout_seconds: 5,
            max_retries: 3,
            max_backoff_seconds: 2,
            workers: 2,
        }
    }

    /// `notification.toml`'s text.
    pub(super) fn toml(&self) -> String {
        let list = |items: &[String]| items.iter().map(|i| toml::Value::from(i.as_str()).to_string()).collect::<Vec<_>>().join(", ");
        let mut text = String::from("[notification.webhook]\nenabled = true\n");
        let _ = writeln!(text, "endpoint = {}", toml::Value::from(self.endpoint.as_str()));
        let _ = writeln!(text, "bearer_token = {}", toml::Value::from(self.bearer_token.as_str()));
        let _ = writeln!(text, "timeout_seconds = {}", self.timeout_seconds);
        let _ = writeln!(text, "max_retries = {}", self.max_retries);
        let _ = writeln!(text, "backoff_seconds = 1");
        let _ = writeln!(text, "max_backoff_seconds = {}", self.max_backoff_seconds.max(1));
        let _ = writeln!(text, "workers = {}", self.workers);
        if !self.event_types.is_empty() {
            let _ = writeln!(text, "event_types = [{}]", list(&self.event_types));
        }
        if !self.path_prefixes.is_empty() {
            let _ = writeln!(text, "path_prefixes = [{}]", list(&self.path_prefixes));
        }
        text
    }
}

/// `s3.json`: the [`admin`] identity with every right, the [`no_rights`] one with none.
pub(super) fn s3_config() -> serde_json::Value {
    let identity = |name: &str, c: Credentials, actions: &[&str]| {
        serde_json::json!({
            "name": name,
            "credentials": [{ "accessKey": c.access_key, "secretKey": c.secret_key }],
            "actions": actions,
        })
    };
    serde_json::json!({
        "identities": [
            identity("admin", admin(), &["Admin", "Read", "List", "Tagging", "Write"]),
            identity("nobody", no_rights(), &[]),
        ]
    })
}
