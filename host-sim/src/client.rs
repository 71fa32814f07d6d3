//! A minimal native client of the VOD server-upload protocol, on top of the shared
//! sans-IO [`vod_uploader::protocol`]. It drives the simulator in tests, the demo and
//! the ingest benchmark; it is not the product (the product is the component).

use crate::http::{self, HttpClient};
use bytes::Bytes;
use http_body_util::BodyExt;
use md5::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vod_uploader::protocol::{
    self, AnswerError, ApiError, Call, Credentials, Endpoint, FinishUpload, Finished, InitAnswer, InitUpload, Method, Signer, UploadPart,
};
use vod_uploader::sign::Algorithm;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with a negative code.
    #[error("{0}")]
    Api(ApiError),
    /// Not an answer: connection failure, HTTP error status, unreadable body.
    #[error("transport: {0}")]
    Transport(String),
    /// A 200 whose body was not a protocol answer.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl CallError {
    /// Whether sending the call again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Api(e) => e.retryable,
            CallError::Transport(_) => true,
            CallError::Malformed(_) => false,
        }
    }
}

impl From<AnswerError> for CallError {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Api(api) => CallError::Api(api),
            AnswerError::Malformed(why) => CallError::Malformed(why),
        }
    }
}

/// A client that signs every call with its credentials and retries what may succeed
/// when sent again.
#[derive(Clone)]
pub struct VodClient {
    http: HttpClient,
    signer: Arc<Signer>,
    /// Attempts per call for retryable failures (1 = no retries).
    pub attempts: u32,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl VodClient {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:9000/v2/index.php`).
    pub fn new(endpoint: &str, credentials: Credentials, algorithm: Algorithm) -> anyhow::Result<Self> {
        Ok(VodClient {
            http: http::client(),
            signer: Arc::new(Signer { endpoint: Endpoint::parse(endpoint)?, credentials, region: "gz".into(), algorithm }),
            attempts: 8,
        })
    }

    /// Signs `call` now with a fresh nonce and sends it once; the body of a 200.
    pub async fn send_once(&self, call: &Call, method: Method, body: Option<Bytes>) -> Result<Vec<u8>, CallError> {
        let signed = self.signer.sign(call, method, now_unix(), rand::random::<u32>().max(1));
        let mut builder = hyper::Request::builder().method(method.as_str()).uri(&signed.url);
        if body.is_some() {
            builder = builder.header("content-type", "application/octet-stream");
        }
        let request = builder.body(http::full(body.unwrap_or_default())).map_err(|e| CallError::Transport(e.to_string()))?;
        let response = self.http.request(request).await.map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| CallError::Transport(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(CallError::Transport(format!("HTTP {status}")));
        }
        Ok(bytes.to_vec())
    }

    /// Sends `call` and parses the answer with `parse`, retrying retryable failures
    /// with a short exponential backoff (re-signed each time: nonces are single-use).
    async fn call<T>(&self, call: &Call, body: Option<Bytes>, parse: fn(&[u8]) -> Result<T, AnswerError>) -> Result<T, CallError> {
        let mut delay = Duration::from_millis(5);
        let mut attempt = 1;
        loop {
            let result = match self.send_once(call, call.documented_method(), body.clone()).await {
                Ok(bytes) => parse(&bytes).map_err(CallError::from),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.retryable() && attempt < self.attempts => {
                    tracing::debug!(action = call.action(), attempt, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// InitUpload: whether the service starts a new session, resumes one (with the
    /// parts it holds) or already has the file.
    pub async fn init(&self, params: InitUpload) -> Result<InitAnswer, CallError> {
        self.call(&Call::InitUpload(params), None, protocol::parse_init).await
    }

    /// UploadPart with `bytes` at `offset`.
    pub async fn part(&self, file_sha: &str, offset: u64, bytes: Bytes) -> Result<(), CallError> {
        let md5 = vod_uploader::hex::encode(&md5::Md5::digest(&bytes));
        self.part_with_md5(file_sha, offset, bytes, md5).await
    }

    /// UploadPart with `bytes` at `offset` whose MD5 the caller already knows.
    pub async fn part_with_md5(&self, file_sha: &str, offset: u64, bytes: Bytes, md5: String) -> Result<(), CallError> {
        let call = Call::UploadPart(UploadPart { file_sha: file_sha.to_owned(), offset, data_size: bytes.len() as u64, data_md5: md5 });
        self.call(&call, Some(bytes), protocol::parse_part).await
    }

    /// FinishUpload: the file's id and play URL once every part is in.
    pub async fn finish(&self, file_sha: &str) -> Result<Finished, CallError> {
        self.call(&Call::FinishUpload(FinishUpload { file_sha: file_sha.to_owned() }), None, protocol::parse_finish).await
    }

    /// Uploads a whole file: SHA-1 pass, InitUpload, the parts the service lacks
    /// (`concurrency` at a time), FinishUpload. `progress` counts bytes sent.
    pub async fn upload_file(
        &self,
        path: &Path,
        data_size: u64,
        concurrency: usize,
        progress: Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<Finished> {
        let owned: PathBuf = path.to_owned();
        let (file_sha, file_size) = tokio::task::spawn_blocking(move || crate::sample::sha1_of_file(&owned)).await??;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("upload");
        let file_name: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
        let file_type = path.extension().and_then(|s| s.to_str()).unwrap_or("mp4").to_owned();
        let answer = self
            .init(InitUpload {
                file_name: if file_name.is_empty() { "upload".into() } else { file_name },
                file_sha: file_sha.clone(),
                file_size,
                data_size,
                file_type,
                ..Default::default()
            })
            .await?;
        let (part_size, held) = match answer {
            InitAnswer::Exists(done) => return Ok(done),
            InitAnswer::New => (data_size, Vec::new()),
            InitAnswer::Resume { data_size, parts } => (data_size, parts),
        };
        let file = Arc::new(std::fs::File::open(path)?);
        let mut tasks = tokio::task::JoinSet::new();
        for offset in (0..file_size).step_by(part_size as usize) {
            let len = part_size.min(file_size - offset);
            if tasks.len() >= concurrency.max(1) {
                tasks.join_next().await.expect("tasks running")??;
            }
            let (client, file, sha, listed, progress) =
                (self.clone(), file.clone(), file_sha.clone(), held.iter().find(|p| p.offset == offset).cloned(), progress.clone());
            tasks.spawn(async move {
                let bytes = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, offset).map(|_| Bytes::from(buf))
                })
                .await??;
                let md5 = vod_uploader::hex::encode(&md5::Md5::digest(&bytes));
                let already = listed.is_some_and(|p| p.size == len && p.md5.as_deref() == Some(md5.as_str()));
                if !already {
                    client.part(&sha, offset, bytes).await?;
                }
                if let Some(bar) = progress {
                    bar.inc(len);
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(self.finish(&file_sha).await?)
    }
}
