//! What the engine needs from its platform: HTTP, the key-value store, clocks,
//! randomness and local files, behind one trait ([`Io`]).

pub use crate::io_error::IoError;
use std::rc::Rc;
use std::time::Duration;

/// An outgoing HTTP request. The body is shared so a retry does not copy it (and
/// moved in whole, not copied, from the buffer a part was read into).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// GET or POST.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (empty for GET).
    pub body: Rc<Vec<u8>>,
    /// How long the engine will wait for this request; a host that can bound connect,
    /// first-byte and between-bytes times (wasi-http's request options) should use it.
    /// The engine bounds the wait itself either way.
    pub timeout: Option<Duration>,
}

impl HttpRequest {
    /// The URL's scheme (`http` or `https`, lower-case), authority, and path with query
    /// (starting with `/`), as an HTTP client's request head wants them.
    pub fn url_parts(&self) -> Result<(&'static str, &str, String), String> {
        let url = self.url.as_str();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("not an absolute URL: {url}"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => "http",
            "https" => "https",
            other => return Err(format!("unsupported URL scheme {other:?}")),
        };
        let at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(at);
        if authority.is_empty() {
            return Err(format!("no host in {url}"));
        }
        // A fragment is the client's, never sent.
        let path = path.split('#').next().unwrap_or_default();
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        Ok((scheme, authority, path))
    }
}

/// An HTTP response whose body is read as a stream.
pub struct HttpResponse<B> {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: B,
}

/// A response body, read chunk by chunk. `chunk` must be cancel-safe: a future of it
/// dropped before completion loses no bytes.
#[allow(async_fn_in_trait)]
pub trait Body {
    /// The next chunk; `None` at the end.
    async fn chunk(&mut self) -> Option<Result<Vec<u8>, IoError>>;
}

/// A local file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Whether it is a regular file.
    pub is_file: bool,
    /// Its size.
    pub size: u64,
    /// Its modification time, as text compared for equality.
    pub modified: Option<String>,
}

/// What the engine needs from its platform. Everything that touches the world goes
/// through here (clocks and local files included), so a simulation can run the engine
/// on virtual time and kill it at any call.
#[allow(async_fn_in_trait)]
pub trait Io {
    /// Response body type.
    type Body: Body;
    /// Sends a request; `Err` for transport failures (and refused destinations).
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<Self::Body>, IoError>;
    /// Reads a key.
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError>;
    /// Writes a key.
    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), IoError>;
    /// Removes a key.
    async fn kv_delete(&self, key: &str) -> Result<(), IoError>;
    /// Every key of the store.
    async fn kv_keys(&self) -> Result<Vec<String>, IoError>;
    /// Waits (a retry's backoff, a time limit).
    async fn sleep(&self, duration: Duration);
    /// Monotonic time since an origin of the platform's choosing.
    fn now(&self) -> Duration;
    /// Wall-clock Unix seconds.
    fn unix_now(&self) -> u64;
    /// Wall-clock Unix milliseconds (leases: a killed owner's lease frees itself a
    /// second after its time limit, not at a whole second's boundary). By default from
    /// [`Io::unix_now`].
    fn unix_millis(&self) -> u64 {
        self.unix_now().saturating_mul(1000)
    }
    /// A random number (nonces, jitter).
    fn random(&self) -> u32;
    /// A local file's metadata.
    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo>;
    /// Up to `len` bytes of a local file from `offset` (fewer only at its end).
    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
    /// The platform quota that stopped this invocation's requests, if one did (see
    /// [`super::Metered`]); a plain platform has none.
    fn quota_stop(&self) -> Option<QuotaStop> {
        None
    }
    /// Hears of one upload's invocation, for the platform's log (see [`super::Metered`]).
    fn observe(&self, _advanced: &Advanced) {}
}

/// What one invocation did to one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advanced {
    /// The upload.
    pub id: String,
    /// Its state when loaded.
    pub before: crate::upload::State,
    /// Its state when the invocation left it (`None`: the invocation failed).
    pub after: Option<crate::upload::State>,
    /// Bytes hashed by this invocation.
    pub hashed: u64,
    /// Bytes of parts the service took from this invocation (net).
    pub uploaded: u64,
    /// The stable code of the error it ended on or left the upload waiting on.
    pub error: Option<String>,
    /// Whether it left the upload as it found it (another invocation held the work).
    pub busy: bool,
}

/// A platform quota used up: no more requests of its kind until `retry_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStop {
    /// The variable that sets it (`outbound_per_hour`, `kv_writes_per_second`).
    pub quota: &'static str,
    /// Its value.
    pub limit: u64,
    /// Unix seconds when its window ends.
    pub retry_at: u64,
}

impl std::fmt::Display for QuotaStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the platform quota {} = {} is used up until unix time {}", self.quota, self.limit, self.retry_at)
    }
}

/// A request or write the quota refused fails with the [`QuotaStop`] itself as its
/// [`IoError`], so that it is told from the platform's failures where it is mapped.
impl std::error::Error for QuotaStop {}

impl QuotaStop {
    /// The quota stop a failure of the platform's I/O is, if it is one.
    pub fn of(e: &IoError) -> Option<&QuotaStop> {
        e.get_ref().downcast_ref::<QuotaStop>()
    }
}

/// Local files through `std::fs` (WASI preopens in the component), for the platform
/// adapters that have a real file system.
pub mod local {
    use super::FileInfo;
    use std::io::{Read, Seek};

    /// [`super::Io::file_info`] over `std::fs`.
    pub fn file_info(path: &str) -> std::io::Result<FileInfo> {
        let meta = std::fs::metadata(path)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|t| format!("{}.{:09}", t.as_secs(), t.subsec_nanos()));
        Ok(FileInfo { is_file: meta.is_file(), size: meta.len(), modified })
    }

    /// [`super::Io::read_file`] over `std::fs`.
    pub fn read_file(path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::HttpRequest;

    fn parts(url: &str) -> Result<(&'static str, String, String), String> {
        let request = HttpRequest { method: "GET", url: url.into(), headers: vec![], body: Default::default(), timeout: None };
        request.url_parts().map(|(s, a, p)| (s, a.to_owned(), p))
    }

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let at = |s: &'static str, a: &str, p: &str| Ok((s, a.to_owned(), p.to_owned()));
        assert_eq!(
            parts("https://vod.example.com:8443/v2/index.php?Action=InitUpload"),
            at("https", "vod.example.com:8443", "/v2/index.php?Action=InitUpload")
        );
        assert_eq!(parts("HTTP://h?x=1"), at("http", "h", "/?x=1"));
        assert_eq!(parts("http://h"), at("http", "h", "/"));
        assert_eq!(parts("http://h/a#frag"), at("http", "h", "/a"));
        assert!(parts("ftp://h/").is_err() && parts("/relative").is_err() && parts("http:///x").is_err());
    }
}
