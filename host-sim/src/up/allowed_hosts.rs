//! `allowed_outbound_hosts` with Spin 3.6's syntax and rules (learned from Spin's
//! `crates/outbound-networking-config/src/allowed_hosts.rs` and checked against the
//! real `spin up`): `scheme://host[:port]`, where the scheme is a word or `*`, the host
//! is a name, an IP address (`[v6]`), `*`, `*.domain`, a CIDR block (`10.0.0.0/8`) or
//! `self`, and the port is a number, a range `a..b` (end excluded), `*`, or absent for
//! a scheme with a well-known port. A trailing `/` is allowed, a path is not.
//!
//! Spin parses the entries of a component (templates expanded) together, and one
//! invalid entry makes the whole list invalid: every outbound request is then denied,
//! literal entries included, and the error is logged. [`Policy`] does the same.

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The outbound policy of a component: its parsed entries, or why they are invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Every entry parsed: a request is allowed when one of them allows it.
    Hosts(Vec<AllowedHost>),
    /// An entry did not parse: every request is denied, as Spin does.
    Invalid(String),
}

impl Policy {
    /// Parses expanded entries all together, as Spin does at the first outbound request.
    pub fn resolve<S: AsRef<str>>(entries: &[S]) -> Policy {
        match parse_all(entries) {
            Ok(hosts) => Policy::Hosts(hosts),
            Err(e) => Policy::Invalid(format!("{e:#}")),
        }
    }

    /// Whether a request to `scheme://host[:port]` is allowed (`port` absent: the
    /// scheme's well-known one).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        match self {
            Policy::Hosts(hosts) => {
                let Ok(host) = HostName::parse(host) else { return false };
                hosts.iter().any(|h| h.allows(scheme, &host, port))
            }
            Policy::Invalid(_) => false,
        }
    }

    /// Whether a relative ("self") request with one of `schemes` is allowed.
    pub fn allows_relative(&self, schemes: &[&str]) -> bool {
        match self {
            Policy::Hosts(hosts) => {
                hosts.iter().any(|h| schemes.iter().any(|s| h.scheme.allows(s)) && matches!(h.host, HostRule::Any | HostRule::ToSelf))
            }
            Policy::Invalid(_) => false,
        }
    }
}

/// Parses a list of expanded entries; the first invalid entry is the error. A list
/// that is only `insecure:allow-all` (Spin 1's spelling) is refused as Spin refuses it.
pub fn parse_all<S: AsRef<str>>(entries: &[S]) -> Result<Vec<AllowedHost>> {
    if entries.len() == 1 && entries[0].as_ref() == "insecure:allow-all" {
        bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic");
    }
    entries.iter().map(|e| AllowedHost::parse(e.as_ref())).collect()
}

/// One parsed `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: SchemeRule,
    host: HostRule,
    port: PortRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemeRule {
    Any,
    /// Compared as written: Spin does not lower-case it, so `HTTP://` matches nothing.
    Exactly(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Any,
    /// `*.domain`, kept as `.domain` and compared as written.
    AnySubdomain(String),
    /// `self` (or `self.alt`): relative requests to the app itself.
    ToSelf,
    Literal(HostName),
    Cidr(Cidr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    Any,
    Port(u16),
    /// `a..b`: from `a` up to `b`, `b` excluded (a Rust range, as Spin parses it).
    Range(u16, u16),
}

/// A host as a URL holds it: a lower-cased domain or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl AllowedHost {
    /// Parses one entry (templates already expanded). The checks run in Spin's order
    /// (port, scheme, host) so that an entry with several faults is reported alike.
    pub fn parse(entry: &str) -> Result<AllowedHost> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            match url {
                "*" | ":" | "" | "?" => bail!(
                    "{url:?} is not an allowed outbound host format: hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each ('*://*:*' allows all outbound networking)"
                ),
                _ => bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')"),
            }
        };
        // The last colon splits the port off, whatever the host is: `http://[::1]`
        // leaves `1]` as its port and fails, as in Spin.
        let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match rest.split_once('/') {
            Some((port, path)) => {
                ensure!(path.is_empty(), "{url:?} has a path but is not allowed to");
                port
            }
            None => rest,
        };
        let port = PortRule::parse(port, scheme).with_context(|| format!("Invalid allowed host port {port:?}"))?;
        let scheme = SchemeRule::parse(scheme).with_context(|| format!("Invalid allowed host scheme {scheme:?}"))?;
        let host = HostRule::parse(host).with_context(|| format!("Invalid allowed host {host:?}"))?;
        Ok(AllowedHost { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &HostName, port: Option<u16>) -> bool {
        self.scheme.allows(scheme) && self.host.allows(host) && self.port.allows(port, scheme)
    }
}

impl SchemeRule {
    fn parse(scheme: &str) -> Result<Self> {
        if scheme == "*" {
            return Ok(SchemeRule::Any);
        }
        ensure!(!scheme.starts_with('{'), "scheme lists are not supported");
        ensure!(scheme.chars().all(char::is_alphabetic), "only alphabetic characters are allowed");
        Ok(SchemeRule::Exactly(scheme.to_owned()))
    }

    fn allows(&self, scheme: &str) -> bool {
        match self {
            SchemeRule::Any => true,
            SchemeRule::Exactly(s) => s == scheme,
        }
    }
}

impl HostRule {
    fn parse(host: &str) -> Result<Self> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostRule::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostRule::ToSelf);
        }
        if host.starts_with('{') {
            ensure!(host.ends_with('}'), "unclosed host list");
            bail!("host lists are not yet supported");
        }
        if let Some(cidr) = Cidr::parse(host) {
            return Ok(HostRule::Cidr(cidr));
        }
        let host = host.trim_end_matches('/');
        ensure!(!host.contains('/'), "must not include a path");
        if let Some(domain) = host.strip_prefix("*.") {
            ensure!(!domain.contains('*'), "wildcards are allowed only as prefixes");
            return Ok(HostRule::AnySubdomain(format!(".{domain}")));
        }
        ensure!(!host.contains('*'), "wildcards are allowed only as subdomains");
        Ok(HostRule::Literal(HostName::parse(host)?))
    }

    fn allows(&self, host: &HostName) -> bool {
        match (self, host) {
            (HostRule::Any, _) => true,
            (HostRule::AnySubdomain(suffix), HostName::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostRule::Literal(l), h) => l == h,
            (HostRule::Cidr(c), HostName::V4(ip)) => c.contains(IpAddr::V4(*ip)),
            (HostRule::Cidr(c), HostName::V6(ip)) => c.contains(IpAddr::V6(*ip)),
            // Subdomain wildcards match only names, CIDR blocks only addresses, and
            // `self` only relative requests.
            (HostRule::AnySubdomain(_) | HostRule::Cidr(_) | HostRule::ToSelf, _) => false,
        }
    }
}

impl PortRule {
    fn parse(port: &str, scheme: &str) -> Result<Self> {
        if port.is_empty() {
            return well_known_port(scheme)
                .map(PortRule::Port)
                .ok_or_else(|| anyhow!("no port was provided and the scheme {scheme:?} does not have a known default port number"));
        }
        if port == "*" {
            return Ok(PortRule::Any);
        }
        ensure!(!port.starts_with('{'), "port lists are not yet supported");
        if let Some((start, end)) = port.split_once("..") {
            let start = start.parse().with_context(|| format!("port range {port:?} contains non-number"))?;
            let end = end.parse().with_context(|| format!("port range {port:?} contains non-number"))?;
            return Ok(PortRule::Range(start, end));
        }
        Ok(PortRule::Port(port.parse().with_context(|| format!("port {port:?} is not a number"))?))
    }

    fn allows(&self, port: Option<u16>, scheme: &str) -> bool {
        let Some(port) = port.or_else(|| well_known_port(scheme)) else {
            return matches!(self, PortRule::Any);
        };
        match self {
            PortRule::Any => true,
            PortRule::Port(p) => *p == port,
            PortRule::Range(start, end) => (*start..*end).contains(&port),
        }
    }
}

/// The default port of the schemes Spin knows.
fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostName {
    /// A host the way a URL parser reads it: `[v6]`, a dotted IPv4 address (a last
    /// label that is a number makes it one), or a domain without the characters URLs
    /// forbid in domains, lower-cased.
    fn parse(host: &str) -> Result<HostName> {
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(|| anyhow!("invalid IPv6 address"))?;
            return inner.parse().map(HostName::V6).map_err(|_| anyhow!("invalid IPv6 address"));
        }
        ensure!(!host.is_empty(), "empty host");
        let forbidden = |c: char| c.is_control() || " #%/:<>?@[\\]^|".contains(c);
        ensure!(!host.chars().any(forbidden), "invalid international domain name");
        let host = host.to_lowercase();
        let last = host.strip_suffix('.').unwrap_or(&host).rsplit('.').next().unwrap_or("");
        let numeric = !last.is_empty()
            && (last.bytes().all(|b| b.is_ascii_digit())
                || last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
        if numeric {
            return host.parse().map(HostName::V4).map_err(|_| anyhow!("invalid IPv4 address"));
        }
        Ok(HostName::Domain(host))
    }
}

impl Cidr {
    /// `address/prefix`, host bits cleared; `None` when `s` is not one.
    fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        let unmasked = Cidr { network: ip, prefix };
        let network = match ip {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & unmasked.mask() as u32).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & unmasked.mask()).into()),
        };
        Some(Cidr { network, prefix })
    }

    /// The network mask in the low bits (32 of them for IPv4).
    fn mask(&self) -> u128 {
        let bits = if self.network.is_ipv4() { 32 } else { 128 };
        let ones = if bits == 32 { u128::from(u32::MAX) } else { u128::MAX };
        // `prefix` ones followed by `bits - prefix` zeros; a zero prefix is no ones.
        ones.checked_shl(u32::from(bits - self.prefix)).map_or(0, |m| m & ones)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u128::from(u32::from(a)) & self.mask() == u128::from(u32::from(n)),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & self.mask() == u128::from(n),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(entry: &str) -> AllowedHost {
        AllowedHost::parse(entry).unwrap_or_else(|e| panic!("{entry:?} should parse: {e:#}"))
    }

    fn err(entry: &str) -> String {
        match AllowedHost::parse(entry) {
            Ok(h) => panic!("{entry:?} should not parse, got {h:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn allows(entries: &[&str], url: (&str, &str, Option<u16>)) -> bool {
        Policy::resolve(entries).allows(url.0, url.1, url.2)
    }

    /// The syntax Spin 3.6.3 accepts.
    #[test]
    fn accepted_entries() {
        assert_eq!(ok("http://spin.fermyon.dev").port, PortRule::Port(80));
        assert_eq!(ok("http://spin.fermyon.dev/"), ok("http://spin.fermyon.dev"));
        assert_eq!(ok("https://spin.fermyon.dev").port, PortRule::Port(443));
        assert_eq!(ok("http://spin.fermyon.dev:4444/").port, PortRule::Port(4444));
        assert_eq!(ok("http://spin.fermyon.dev:4444..5555").port, PortRule::Range(4444, 5555));
        assert_eq!(ok("*://spin.fermyon.dev:7777").scheme, SchemeRule::Any);
        assert_eq!(ok("http://self").host, HostRule::ToSelf);
        assert_eq!(ok("http://self.alt").host, HostRule::ToSelf);
        assert_eq!(ok("http://localhost:3001").host, HostRule::Literal(HostName::Domain("localhost".into())));
        assert_eq!(ok("http://*.example.com").host, HostRule::AnySubdomain(".example.com".into()));
        assert_eq!(ok("http://192.168.1.1:3002").host, HostRule::Literal(HostName::V4(Ipv4Addr::new(192, 168, 1, 1))));
        assert_eq!(ok("http://[::1]:8001").host, HostRule::Literal(HostName::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ok("*://127.0.0.1/24:80").host, HostRule::Cidr(Cidr { network: "127.0.0.0".parse().unwrap(), prefix: 24 }));
        assert_eq!(ok("*://ff00::/8:80").host, HostRule::Cidr(Cidr { network: "ff00::".parse().unwrap(), prefix: 8 }));
        let all = ok("*://*:*");
        assert_eq!((all.scheme, all.host, all.port), (SchemeRule::Any, HostRule::Any, PortRule::Any));
        assert_eq!(ok("  mysql://db.example.com  ").port, PortRule::Port(3306));
        assert_eq!(ok("redis://cache:*").port, PortRule::Any);
    }

    /// What Spin 3.6.3 refuses, with its words.
    #[test]
    fn refused_entries() {
        assert!(err("spin.fermyon.dev").contains("does not contain a scheme"));
        assert!(err("spin.fermyon.dev:80").contains("does not contain a scheme"));
        assert!(err("*").contains("is not an allowed outbound host format"));
        assert!(err("").contains("is not an allowed outbound host format"));
        assert!(err("http://[::1]").contains("Invalid allowed host port"));
        assert!(err("*://127.0.0.0/24").contains("Invalid allowed host port"));
        assert!(err("*://example.com").contains("does not have a known default port number"));
        assert!(err("http://spin.fermyon.dev/a").contains("must not include a path"));
        assert!(err("http://spin.fermyon.dev:6666/a/b").contains("has a path"));
        assert!(err("http://*.fermyon.dev/a").contains("must not include a path"));
        assert!(err("h2c://x:1").contains("Invalid allowed host scheme"));
        assert!(err("{http,https}://x:1").contains("scheme lists are not supported"));
        assert!(err("http://{a,b}:1").contains("host lists are not yet supported"));
        assert!(err("http://x:{1,2}").contains("port lists are not yet supported"));
        assert!(err("http://x:1..y").contains("contains non-number"));
        assert!(err("http://a.*.com").contains("wildcards are allowed only as subdomains"));
        assert!(err("http://*.a.*.com").contains("wildcards are allowed only as prefixes"));
        assert!(err("https://invalid host").starts_with("Invalid allowed host \"invalid host\""));
        // Two origins in one variable: the last colon takes `2` as the port and leaves
        // a host with a path in it (what the real `spin up` logged for the project's
        // manifest with source_origin=http://127.0.0.1:18081,http://127.0.0.1:18083).
        assert_eq!(
            err("http://127.0.0.1:18081,http://127.0.0.1:18083"),
            "Invalid allowed host \"127.0.0.1:18081,http://127.0.0.1\": must not include a path"
        );
        assert!(parse_all(&["insecure:allow-all"]).is_err());
    }

    #[test]
    fn matching() {
        let specific = ["*://spin.fermyon.dev:443", "http://example.com:8383"];
        assert!(allows(&specific, ("http", "example.com", Some(8383))));
        assert!(allows(&specific, ("https", "spin.fermyon.dev", None)));
        assert!(allows(&specific, ("https", "SPIN.fermyon.dev", Some(443))));
        assert!(!allows(&specific, ("http", "example.com", None)));
        assert!(!allows(&specific, ("http", "google.com", None)));
        let subdomains = ["http://*.example.com", "http://*.example2.com:8383"];
        assert!(allows(&subdomains, ("http", "a.example.com", None)));
        assert!(allows(&subdomains, ("http", "a.b.example.com", None)));
        assert!(allows(&subdomains, ("http", "a.b.example2.com", Some(8383))));
        assert!(!allows(&subdomains, ("http", "a.b.example2.com", None)));
        assert!(!allows(&subdomains, ("http", "example.com", None)));
        assert!(!allows(&subdomains, ("http", "myexample.com", None)));
        assert!(allows(&["*://127.0.0.1/24:63551"], ("http", "127.0.0.200", Some(63551))));
        assert!(!allows(&["*://127.0.0.1/24:63551"], ("http", "127.0.1.1", Some(63551))));
        assert!(!allows(&["*://127.0.0.1/24:63551"], ("http", "localhost", Some(63551))));
        assert!(allows(&["http://[::1]:8001"], ("http", "[::1]", Some(8001))));
        assert!(allows(&["http://h:10..20"], ("http", "h", Some(19))));
        assert!(!allows(&["http://h:10..20"], ("http", "h", Some(20))));
        assert!(!allows(&["HTTP://h"], ("http", "h", None)), "Spin compares the scheme as written");
        assert!(!allows(&["http://self"], ("http", "self", None)));
        assert!(Policy::resolve(&["http://self"]).allows_relative(&["http", "https"]));
        assert!(!Policy::resolve(&["http://h"]).allows_relative(&["http", "https"]));
    }

    /// One bad entry denies everything, the good entries included.
    #[test]
    fn one_invalid_entry_denies_all() {
        let policy = Policy::resolve(&["https://vod2.qcloud.com", "http://127.0.0.1:1,http://127.0.0.1:2"]);
        assert!(matches!(&policy, Policy::Invalid(e) if e.starts_with("Invalid allowed host")), "{policy:?}");
        assert!(!policy.allows("https", "vod2.qcloud.com", None));
        assert!(!policy.allows("http", "127.0.0.1", Some(1)));
        assert!(!policy.allows_relative(&["http"]));
        assert!(Policy::resolve(&["https://vod2.qcloud.com"]).allows("https", "vod2.qcloud.com", None));
    }
}
