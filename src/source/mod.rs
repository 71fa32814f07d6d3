//! Where a file comes from: an HTTP(S) URL (read with ranged GETs), an object of an
//! S3-compatible store (`s3://BUCKET/KEY`, ranged GETs signed with SigV4) or a local path
//! (read through the WASI filesystem). Plain data: which source is allowed, what names
//! it suggests, and how to probe, request and check ranges. The reading itself
//! happens in the engine, through the platform adapter.

mod error;
mod names;
mod range;
pub mod s3;
pub mod sigv4;

pub use error::SourceError;
pub use names::{is_plain_file_type, sanitize_file_name, MAX_FILE_TYPE_LEN};
pub use range::{
    check_range_response, header, identity_from_probe, probe_headers, range_request_headers, Identity, RangeAnswer, PROBE_RANGE,
};

use serde::{Deserialize, Serialize};

/// A file's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "location")]
pub enum Source {
    /// `http://` or `https://` URL, e.g. a presigned object-storage URL.
    Url(String),
    /// An absolute path under the allowed local directory.
    Path(String),
    /// `s3://BUCKET/KEY` (the key as written, not percent-encoded), read signed through
    /// the deployment's S3 access. Build it with [`Source::s3`].
    S3(String),
}

/// What the deployment allows as sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Allowed `scheme://host[:port]` origins for URL sources (Spin's
    /// `allowed_outbound_hosts` for the object store). `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The directory local paths must be under; `None` refuses local paths.
    pub local_root: Option<String>,
    /// Whether `s3://` sources are allowed: only when S3 access is configured
    /// (`source_access_key_id` and the rest, see [`s3::S3Access::from_variables`]).
    pub s3: bool,
}

impl SourcePolicy {
    /// The policy from the deployment's variables: `source_origin` (exactly one
    /// origin, since Spin uses it as one `allowed_outbound_hosts` entry),
    /// `other_source_origins` (more origins, comma-separated; each must also be its
    /// own `allowed_outbound_hosts` entry) and `local_dir`. An error names the
    /// variable and what is wrong, never the value (it may be a private bucket).
    pub fn from_variables(
        source_origin: Option<&str>,
        other_origins: Option<&str>,
        local_dir: Option<&str>,
    ) -> Result<SourcePolicy, String> {
        let mut allowed_origins = Vec::new();
        if let Some(text) = source_origin.map(str::trim).filter(|t| !t.is_empty()) {
            if text.contains(',') || text.split_whitespace().nth(1).is_some() {
                return Err("the source_origin variable must be exactly one origin (scheme://host[:port]), but it holds several: \
                     Spin uses it as one allowed_outbound_hosts entry, and one invalid entry makes Spin deny every outbound \
                     request. To read from several origins, list each as its own entry of allowed_outbound_hosts in \
                     spin.toml and in the component variable other_source_origins (comma-separated)"
                    .into());
            }
            allowed_origins.push(parse_origin(text).map_err(|e| format!("the source_origin variable {e}"))?);
        }
        for text in other_origins.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
            allowed_origins.push(parse_origin(text).map_err(|e| format!("an entry of the other_source_origins variable {e}"))?);
        }
        let local_root = local_dir.map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned);
        Ok(SourcePolicy { allowed_origins, local_root, s3: false })
    }

    /// Whether URL sources at `origin` (as [`origin_of`] gives it) may be read.
    fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| origin_matches(allowed, origin))
    }
}

/// Whether `origin` (as [`origin_of`] gives it) is `allowed` (as [`parse_origin`] gives
/// it, or `*` for any).
pub(crate) fn origin_matches(allowed: &str, origin: &str) -> bool {
    if allowed == "*" {
        return true;
    }
    // `scheme://*.domain[:port]` allows every subdomain, as in allowed_outbound_hosts.
    if let Some((scheme, rest)) = allowed.split_once("://*.") {
        return origin
            .strip_prefix(scheme)
            .and_then(|o| o.strip_prefix("://"))
            .is_some_and(|authority| authority.split_once('.').is_some_and(|(label, domain)| !label.is_empty() && domain == rest));
    }
    origin_of(allowed).as_deref() == Some(origin)
}

/// Checks one origin as a deployment names it: `http(s)://host[:port]`, a trailing
/// `/` allowed, `*.` before the host for every subdomain; lower-cased, default port
/// dropped. The error completes a sentence naming where the origin came from.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let shape = "must be one origin such as https://bucket.s3.amazonaws.com (scheme://host[:port], no path)";
    let text = text.trim().strip_suffix('/').unwrap_or(text.trim());
    let Some((scheme, authority)) = text.split_once("://") else {
        return Err(format!("{shape}: the scheme is missing"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("{shape}: only http and https are supported"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!("{shape}: it has a path"));
    }
    if authority.contains('@') {
        return Err(format!("{shape}: it has a user name or password"));
    }
    let (host, wildcard) = match authority.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (authority, false),
    };
    // A port follows the last `:`, unless that colon is inside an IPv6 address `[...]`.
    let host_only = match host.rsplit_once(':') {
        Some((h, port)) if !host.ends_with(']') && (!host.starts_with('[') || h.ends_with(']')) => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{shape}: the port is not a number from 1 to 65535"));
            }
            h
        }
        _ => host,
    };
    let bracketed = host_only.starts_with('[') && host_only.ends_with(']');
    if host_only.is_empty()
        || (!bracketed && !host_only.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        || (bracketed && !host_only[1..host_only.len() - 1].chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'))
    {
        return Err(format!("{shape}: the host is not a host name or address"));
    }
    let origin = origin_of(&format!("{scheme}://{host}")).ok_or_else(|| format!("{shape}: it is not an origin"))?;
    Ok(if wildcard { origin.replacen("://", "://*.", 1) } else { origin })
}

/// `scheme://host[:port]` of a URL, lower-cased, default ports dropped.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') || authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

impl Source {
    /// Reads a user's `source` string and checks it against the policy.
    pub fn parse(text: &str, policy: &SourcePolicy) -> Result<Source, SourceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SourceError::Invalid("source is empty".into()));
        }
        if text.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("s3://")) {
            return Source::parse_s3(text, policy);
        }
        if text.chars().any(char::is_control) {
            return Err(SourceError::Invalid("source must not contain control characters".into()));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            // A path may hold spaces ("My Clip.mp4"); a URL holds them percent-encoded.
            if text.contains(' ') {
                return Err(SourceError::Invalid("a source URL must not contain spaces (write them as %20)".into()));
            }
            if rest.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@')) {
                return Err(SourceError::Invalid(
                    "source URL must not carry a user name or password (user:password@host): use a presigned URL".into(),
                ));
            }
            let Some(origin) = origin_of(text) else {
                return Err(SourceError::Invalid(format!(
                    "source scheme {scheme:?} is not supported: use an http(s) URL or an absolute path"
                )));
            };
            if !policy.allows(&origin) {
                return Err(SourceError::NotAllowed(format!(
                    "source origin {origin} is not an allowed outbound host of this deployment \
                     (set the source_origin variable, or see other_source_origins for several)"
                )));
            }
            return Ok(Source::Url(text.to_owned()));
        }
        if !text.starts_with('/') {
            return Err(SourceError::Invalid("source must be an http(s) URL or an absolute path".into()));
        }
        let Some(root) = &policy.local_root else {
            return Err(SourceError::NotAllowed("local path sources are disabled in this deployment".into()));
        };
        if text.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(SourceError::Invalid("source path must not contain . or .. segments".into()));
        }
        let root = root.trim_end_matches('/');
        if !text.starts_with(&format!("{root}/")) {
            return Err(SourceError::NotAllowed(format!("source path must be under {root}/")));
        }
        Ok(Source::Path(text.to_owned()))
    }

    /// `s3://BUCKET/KEY` (checked as [`Source::parse`] does, but not against a policy).
    pub fn s3(bucket: &str, key: &str) -> Result<Source, SourceError> {
        let text = format!("s3://{bucket}/{key}");
        s3::parse_s3_url(&text).map_err(SourceError::Invalid)?;
        Ok(Source::S3(text))
    }

    /// An `s3://` source: allowed only with S3 access configured. Keys may hold spaces.
    fn parse_s3(text: &str, policy: &SourcePolicy) -> Result<Source, SourceError> {
        if !policy.s3 {
            return Err(SourceError::NotAllowed(
                "s3:// sources need S3 credentials in this deployment: set the source_access_key_id and \
                 source_secret_access_key variables (and source_region, source_addressing, source_origin as needed)"
                    .into(),
            ));
        }
        let (bucket, key) = s3::parse_s3_url(text).map_err(SourceError::Invalid)?;
        Source::s3(bucket, key)
    }

    /// Whether reading it sends HTTP requests (a URL or an S3 object; a local path is
    /// read through the filesystem): what a source request counts.
    pub fn is_remote(&self) -> bool {
        matches!(self, Source::Url(_) | Source::S3(_))
    }

    /// The source as the user wrote it (`s3://` lower-cased).
    pub fn location(&self) -> &str {
        match self {
            Source::Url(s) | Source::Path(s) | Source::S3(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> SourcePolicy {
        SourcePolicy { allowed_origins: vec!["https://bucket.s3.amazonaws.com".into()], local_root: Some("/data".into()), s3: false }
    }

    #[test]
    fn sources_are_checked_against_the_policy() {
        let p = policy();
        assert_eq!(
            Source::parse("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz=1", &p).unwrap(),
            Source::Url("https://bucket.s3.amazonaws.com/a/b.mp4?X-Amz=1".into())
        );
        assert!(Source::parse("HTTPS://Bucket.S3.amazonaws.com:443/x", &p).is_ok());
        assert!(matches!(Source::parse("https://evil.example.com/x", &p), Err(SourceError::NotAllowed(_))));
        assert!(matches!(Source::parse("ftp://bucket.s3.amazonaws.com/x", &p), Err(SourceError::Invalid(_))));
        assert_eq!(Source::parse("/data/in/clip.mov", &p).unwrap(), Source::Path("/data/in/clip.mov".into()));
        assert!(matches!(Source::parse("/etc/passwd", &p), Err(SourceError::NotAllowed(_))));
        assert!(matches!(Source::parse("/data/../etc/passwd", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("data/x", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("", &p), Err(SourceError::Invalid(_))));
        let userinfo = Source::parse("https://user:pw@bucket.s3.amazonaws.com/x", &p).unwrap_err();
        assert!(matches!(&userinfo, SourceError::Invalid(m) if m.contains("user name or password")), "{userinfo}");
        let any = SourcePolicy { allowed_origins: vec!["*".into()], local_root: None, s3: false };
        assert!(Source::parse("http://127.0.0.1:8080/x", &any).is_ok());
        assert!(matches!(Source::parse("/data/x", &any), Err(SourceError::NotAllowed(_))));
    }

    #[test]
    fn s3_sources_need_s3_access() {
        let mut p = policy();
        let e = Source::parse("s3://vids/in/my clip.mp4", &p).unwrap_err();
        assert!(
            matches!(&e, SourceError::NotAllowed(m) if m.contains("source_access_key_id") && m.contains("source_secret_access_key")),
            "{e}"
        );
        p.s3 = true;
        assert_eq!(Source::parse(" S3://vids/in/my clip.mp4 ", &p).unwrap(), Source::S3("s3://vids/in/my clip.mp4".into()));
        assert!(matches!(Source::parse("s3://vids/", &p), Err(SourceError::Invalid(_))));
        assert!(matches!(Source::parse("s3://vids/a\tb", &p), Err(SourceError::Invalid(_))));
        let s = Source::s3("vids", "a/b.mov").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"kind":"s3","location":"s3://vids/a/b.mov"}"#);
        assert_eq!(serde_json::from_str::<Source>(r#"{"kind":"s3","location":"s3://vids/a/b.mov"}"#).unwrap(), s);
        // The older kinds serialize as before (upload ids and stored records depend on it).
        assert_eq!(serde_json::to_string(&Source::Url("u".into())).unwrap(), r#"{"kind":"url","location":"u"}"#);
        assert_eq!(serde_json::to_string(&Source::Path("/p".into())).unwrap(), r#"{"kind":"path","location":"/p"}"#);
    }

    #[test]
    fn source_origin_is_exactly_one_origin_and_others_are_listed_apart() {
        let policy = |origin: &str, others: &str| SourcePolicy::from_variables(Some(origin), Some(others), None);
        let p = policy("https://Bucket.S3.amazonaws.com:443/", "").unwrap();
        assert_eq!(p.allowed_origins, vec!["https://bucket.s3.amazonaws.com"]);
        // Two origins in one variable: Spin would deny every outbound request.
        for several in ["http://127.0.0.1:1,http://127.0.0.1:2", "https://a.example https://b.example", "https://a.example,"] {
            let e = policy(several, "").unwrap_err();
            assert!(e.contains("exactly one origin") && e.contains("other_source_origins") && e.contains("allowed_outbound_hosts"), "{e}");
            assert!(!e.contains("127.0.0.1") && !e.contains("a.example"), "the value is never echoed: {e}");
        }
        for (bad, why) in [
            ("bucket.s3.amazonaws.com", "scheme is missing"),
            ("ftp://h", "http and https"),
            ("https://h/videos", "has a path"),
            ("https://u:p@h", "user name or password"),
            ("https://h:0", "port"),
            ("https://h:99999", "port"),
            ("https://h_h!", "host"),
            ("https://", "host"),
        ] {
            let e = policy(bad, "").unwrap_err();
            assert!(e.starts_with("the source_origin variable must be one origin") && e.contains(why), "{bad}: {e}");
        }
        let e = policy("https://a.example", "https://b.example,https://c.example/x").unwrap_err();
        assert!(e.starts_with("an entry of the other_source_origins variable") && e.contains("has a path"), "{e}");

        assert_eq!(policy("http://[::1]", "").unwrap().allowed_origins, vec!["http://[::1]"]);
        assert_eq!(policy("http://[::1]:9000/", "").unwrap().allowed_origins, vec!["http://[::1]:9000"]);
        assert!(policy("http://[::1]:x", "").is_err() && policy("http://[zz]", "").is_err());
        let p = policy("https://a.example", " https://b.example:8443 , http://*.bucket.example ,").unwrap();
        assert_eq!(p.allowed_origins, vec!["https://a.example", "https://b.example:8443", "http://*.bucket.example"]);
        assert!(Source::parse("https://b.example:8443/x.mp4", &p).is_ok());
        assert!(Source::parse("http://v1.bucket.example/x.mp4", &p).is_ok());
        for refused in ["https://b.example/x", "http://bucket.example/x", "http://a.b.bucket.example.evil/x", "https://v1.bucket.example/x"]
        {
            assert!(matches!(Source::parse(refused, &p), Err(SourceError::NotAllowed(_))), "{refused}");
        }
        assert_eq!(SourcePolicy::from_variables(None, None, Some(" ")).unwrap(), SourcePolicy::default());
    }

    proptest! {
        /// Whatever a variable holds: no panic, and an accepted origin reads back as itself.
        #[test]
        fn any_origin_variable_is_refused_or_one_origin(text in "[a-zA-Z:/*.,@\\[\\]0-9 _-]{0,40}") {
            if let Ok(p) = SourcePolicy::from_variables(Some(&text), Some(&text), None) {
                for origin in &p.allowed_origins {
                    prop_assert!(!origin.contains([',', ' ']) && origin.matches('/').count() == 2, "{}", origin);
                    prop_assert_eq!(parse_origin(origin), Ok(origin.clone()));
                }
            }
        }
    }
}
