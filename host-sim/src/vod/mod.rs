//! `host-sim vod`: a faithful simulator of the VOD server-upload API (legacy v2).
//!
//! Layout: [`params`] reads and validates requests, [`auth`] checks signatures and
//! knows replays (the same signed request sent again gets the first answer and
//! changes nothing), [`store`] keeps sessions, parts and files, [`faults`] and
//! [`ratelimit`] shape the service's behaviour, [`notify`] sends upload-complete
//! events; this module is the HTTP handler that ties them together.

pub mod auth;
pub mod faults;
pub mod notify;
pub mod params;
pub mod ratelimit;
pub mod reply;
pub mod stats;
pub mod store;

use crate::http::{self, Body, Dropped};
use bytes::Bytes;
use faults::{FaultKind, Faults};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use md5::Digest as _;
use params::{Action, Query};
use reply::{success, Reject};
use serde_json::{json, Value};
pub use stats::SimStats;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use store::{Session, Store};
use vod_uploader::protocol::{codes, Credentials, PART_SIZES};

/// Built-in development key pair, used when none is configured: the simulator is a
/// local test double, and the demo must run with no set-up. Never a real credential.
pub const DEV_SECRET_ID: &str = "AKIDvodSimulatorDevelopmentKey";
/// The key of [`DEV_SECRET_ID`].
pub const DEV_SECRET_KEY: &str = "vod-simulator-development-secret";

/// Everything the simulator is started with.
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Data directory (SQLite database and part files).
    pub data: PathBuf,
    /// Accepted key pairs.
    pub credentials: Vec<Credentials>,
    /// Allowed distance of Timestamp from now, in seconds.
    pub timestamp_window_secs: u64,
    /// Per-SecretId rate limits.
    pub limits: ratelimit::Limits,
    /// Fault injection.
    pub faults: Faults,
    /// Where upload-complete events are POSTed.
    pub notify_url: Option<String>,
    /// The app id that appears in play URLs.
    pub app_id: u64,
}

impl Config {
    /// Defaults for a data directory: development credentials, documented limits, no
    /// faults, a free loopback port.
    pub fn new(data: PathBuf) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data,
            credentials: vec![Credentials::new(DEV_SECRET_ID, DEV_SECRET_KEY)],
            timestamp_window_secs: 300,
            limits: ratelimit::Limits::default(),
            faults: Faults::none(),
            notify_url: None,
            app_id: 10013,
        }
    }
}

/// Counts of protocol traffic since the simulator started, for tests and notes
/// (`GET /sim/stats`). Kept in memory: a restarted simulator counts from zero, so a
/// harness that restarts it adds up the stats it read before each restart (see
/// [`SimStats`]).
#[derive(Debug, Default)]
pub struct Counters {
    /// Protocol requests received, faulted ones included.
    pub requests: AtomicU64,
    /// UploadPart requests received, faulted ones included.
    pub part_requests: AtomicU64,
    /// Requests that met an injected fault.
    pub faults: AtomicU64,
    /// Parts stored (verified and written; a fault may still have lost the answer).
    pub parts_stored: AtomicU64,
    /// Parts stored at an offset the session already held: a part sent again.
    pub parts_resent: AtomicU64,
    /// UploadPart requests refused because the file was already finished.
    pub parts_after_finish: AtomicU64,
    /// Identical repeats of a signed request, answered with the first answer and
    /// changing nothing.
    pub repeats: AtomicU64,
    /// Bytes of UploadPart bodies stored (every stored part, sent again or not).
    pub part_bytes_stored: AtomicU64,
    /// Bytes of parts stored at an offset the session already held: bytes sent twice.
    pub part_bytes_resent: AtomicU64,
    /// FinishUpload calls that turned a session into a file, by fileSha: a number above
    /// one would be a file made twice.
    pub finishes: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// As `GET /sim/stats` shows them.
    pub fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "requests": n(&self.requests),
            "partRequests": n(&self.part_requests),
            "faults": n(&self.faults),
            "partsStored": n(&self.parts_stored),
            "partsResent": n(&self.parts_resent),
            "partsAfterFinish": n(&self.parts_after_finish),
            "repeats": n(&self.repeats),
            "partBytesStored": n(&self.part_bytes_stored),
            "partBytesResent": n(&self.part_bytes_resent),
            "finishes": serde_json::to_value(&*self.finishes.lock().unwrap_or_else(|p| p.into_inner())).expect("a map of counts"),
        })
    }
}

/// The simulator's shared state.
pub struct State {
    /// Sessions, parts, files.
    pub store: Arc<Store>,
    /// Traffic counters.
    pub counters: Counters,
    auth: auth::Auth,
    limiter: ratelimit::RateLimiter,
    faults: Faults,
    notifier: Option<notify::Notifier>,
    app_id: u64,
    // Per-fileSha lock: InitUpload and UploadPart share it, FinishUpload holds it
    // alone, so nothing can write into a session's data file while it is verified and
    // turned into a file, nor open a new session beside a file just finished.
    locks: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

/// A running simulator; dropping it stops accepting connections.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its state, for in-process inspection.
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    /// `http://addr/v2/index.php`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v2/index.php", self.addr)
    }
}

/// Opens the store and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let store = Arc::new(Store::open(&config.data)?);
    let state = Arc::new(State {
        store,
        counters: Counters::default(),
        auth: auth::Auth::new(config.credentials, config.timestamp_window_secs),
        limiter: ratelimit::RateLimiter::new(config.limits),
        faults: config.faults,
        notifier: config.notify_url.map(notify::Notifier::new),
        app_id: config.app_id,
        locks: Mutex::new(HashMap::new()),
    });
    let served = state.clone();
    let (addr, task) = http::serve(config.listen, move |req| {
        let state = served.clone();
        async move { route(state, req).await }
    })
    .await?;
    Ok(Running { addr, state, task })
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/v2/index.php" | "/v3/index.php" => api(state, req).await,
        "/healthz" => Ok(http::text(StatusCode::OK, "ok\n")),
        _ => Ok(inspect(&state, req.method(), &path).await),
    }
}

/// The protocol endpoint, with fault injection around the real handler.
async fn api(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::POST {
        return Ok(http::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"code": codes::COMMON, "message": "use GET or POST", "canRetry": 0}),
        ));
    }
    let q = Query::parse(req.uri().query());
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    if q.get("Action") == Some("UploadPart") {
        state.counters.part_requests.fetch_add(1, Ordering::Relaxed);
    }
    let (action, file_sha, offset) = (q.get("Action").unwrap_or("-"), q.get("fileSha").unwrap_or("-"), q.get("offset").unwrap_or("-"));
    let identity = format!(
        "{}/{}/{}",
        q.get("Action").unwrap_or(""),
        q.get("fileSha").unwrap_or("").to_ascii_lowercase(),
        q.get("offset").unwrap_or("")
    );
    let fault = state.faults.decide(&identity);
    if fault.is_some() {
        state.counters.faults.fetch_add(1, Ordering::Relaxed);
    }
    // Faults that strike before the service acts never reach the "vod call" line below,
    // so each is logged here, with the same fields: what was asked, which fault, and
    // what the caller got instead. Never a secret: no SecretId, no Signature.
    let refused_before = |answer: &str| {
        tracing::info!(action, file_sha, offset, fault = ?fault, answer, "vod call not served: injected fault before the service acted");
    };
    match fault {
        Some(FaultKind::DropBefore) => {
            refused_before("connection closed, no answer");
            return Err(Dropped);
        }
        Some(FaultKind::Http503) => {
            refused_before("HTTP 503");
            return Ok(http::text(StatusCode::SERVICE_UNAVAILABLE, "<html><body>503 Service Unavailable</body></html>"));
        }
        Some(FaultKind::Error) => {
            let code = if q.get("Action") == Some("FinishUpload") { codes::READ_CACHE } else { codes::WRITE_CACHE };
            refused_before(&format!("code {code}, canRetry 1"));
            return Ok(http::json(StatusCode::OK, &Reject::cache(code, "injected fault: cache temporarily unavailable").to_json()));
        }
        Some(FaultKind::Slow) => tokio::time::sleep(state.faults.slow).await,
        _ => {}
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let served = handle(&state, &method, &host, &path, &q, req.into_body()).await;
    tracing::info!(
        action,
        file_sha,
        offset,
        code = served.code,
        ms = started.elapsed().as_millis() as u64,
        fault = ?fault,
        repeat = served.repeat,
        "vod call"
    );
    match fault {
        Some(FaultKind::DropAfter) => Err(Dropped),
        Some(FaultKind::Http500) => {
            Ok(http::text(StatusCode::INTERNAL_SERVER_ERROR, "<html><body>500 Internal Server Error</body></html>"))
        }
        _ => Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(http::full(served.body))
            .expect("valid response")),
    }
}

/// The service's answer to one protocol request.
struct Served {
    /// The answer's `code`.
    code: i64,
    /// The JSON as sent: a repeat's is the first answer's, byte for byte.
    body: Bytes,
    /// Whether this is an identical repeat answered with the first answer.
    repeat: bool,
}

impl Served {
    fn new(answer: &Value) -> Self {
        let body = Bytes::from(serde_json::to_vec(answer).expect("JSON values serialize"));
        Served { code: answer["code"].as_i64().unwrap_or(0), body, repeat: false }
    }
}

/// Whether an identical repeat of a refused request gets this refusal again. Not when
/// it says that nothing was done and retrying may succeed (canRetry 1: a rate limit, a
/// storage failure), since a repeat would then be refused for good while told to retry;
/// nor when the body that arrived is not the one signed for (-10006: cut short, too
/// long, or not matching the signed dataSize and dataMd5), since the body is not part
/// of the signature and a repeat may carry the right one. Either way the refused
/// request changed nothing, so running the repeat cannot do anything twice.
fn repeats_get(reject: &Reject) -> bool {
    !reject.can_retry && reject.code != codes::INVALID_BODY
}

async fn handle(state: &Arc<State>, method: &Method, host: &str, path: &str, q: &Query, body: Incoming) -> Served {
    let admitted = async {
        let common = params::common(q)?;
        // The document, "Transport": UploadPart is POST only (the others take GET or POST).
        if common.action == Action::UploadPart && method != Method::POST {
            return Err(Reject::common("UploadPart must be sent by POST with the part as the body"));
        }
        let admission = state.auth.admit(&common, method.as_str(), host, path, q, now_unix()).await?;
        Ok((common, admission))
    };
    match admitted.await {
        Err(reject) => Served::new(&reject.to_json()),
        Ok((_, auth::Admission::Repeat(first))) => {
            state.counters.repeats.fetch_add(1, Ordering::Relaxed);
            // The repeat's body is read and thrown away, so the connection stays usable
            // (an unread body would leave the client writing into a closed socket).
            let _ = read_body(body, PART_SIZES[PART_SIZES.len() - 1] as usize).await;
            Served { code: first.code, body: first.body, repeat: true }
        }
        Ok((common, auth::Admission::First(ticket))) => {
            let result = act(state, &common, q, body).await;
            let kept = result.as_ref().err().is_none_or(repeats_get);
            let served = Served::new(&result.unwrap_or_else(|reject| reject.to_json()));
            ticket.settle(kept.then(|| auth::Remembered { code: served.code, body: served.body.clone() }));
            served
        }
    }
}

/// Runs an admitted request: the rate limit, then the action.
async fn act(state: &Arc<State>, common: &params::Common, q: &Query, body: Incoming) -> Result<Value, Reject> {
    state.limiter.take(&common.secret_id, common.action, Instant::now()).map_err(|limit| {
        Reject::rate_limited(format!("rate limit exceeded: at most {limit} {} calls per minute per SecretId", common.action.as_str()))
    })?;
    match common.action {
        Action::InitUpload => init(state, q).await,
        Action::UploadPart => upload_part(state, q, body).await,
        Action::FinishUpload => finish(state, q).await,
    }
}

impl State {
    fn lock_for(&self, file_sha: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(file_sha.to_owned()).or_default().clone()
    }

    fn file_id_for(&self, file_sha: &str) -> String {
        // Deterministic per SHA-1 and app: 19 decimal digits, like the service's ids.
        let digest = sha1::Sha1::digest(format!("{}:{file_sha}", self.app_id));
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        (1_000_000_000_000_000_000 + n % 8_000_000_000_000_000_000).to_string()
    }

    fn url_for(&self, file_id: &str, file_type: &str) -> String {
        format!("http://{app}.vod2.myqcloud.com/vod{app}/{file_id}/f0.{file_type}", app = self.app_id)
    }
}

async fn init(state: &Arc<State>, q: &Query) -> Result<Value, Reject> {
    let p = params::init(q)?;
    let lock = state.lock_for(&p.file_sha);
    let _shared = lock.read().await;
    if let Some(file) = state.store.file_by_sha(&p.file_sha)? {
        return Ok(success(2, json!({ "fileId": file.file_id, "url": file.url })));
    }
    let (session, created) = state.store.create_session(&Session {
        file_sha: p.file_sha.clone(),
        file_name: p.file_name,
        file_type: p.file_type,
        file_size: p.file_size,
        data_size: p.data_size,
        tags: p.tags,
        class_id: p.class_id,
        flags: [p.is_transcode, p.is_screenshot, p.is_watermark],
        created_at: now_unix(),
    })?;
    // The document, "InitUpload": fileSha is "SHA-1 of the whole file", so one fileSha
    // names one file, of one size; code 1 resumes that file's session.
    if session.file_size != p.file_size {
        return Err(Reject::param(format!(
            "fileSize {} differs from fileSize {} of the open session for this fileSha",
            p.file_size, session.file_size
        )));
    }
    if created {
        return Ok(success(0, json!({})));
    }
    let parts = state.store.parts(&p.file_sha)?;
    Ok(success(1, json!({ "dataSize": session.data_size, "listParts": parts })))
}

/// Reads at most `limit` bytes of body; `Err` if it is longer.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Reject> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Reject::body(format!("body is longer than the largest part size ({limit} bytes)")))
        }
        Err(e) => Err(Reject::body(format!("body could not be read: {e}"))),
    }
}

async fn upload_part(state: &Arc<State>, q: &Query, body: Incoming) -> Result<Value, Reject> {
    // No part is longer than the largest dataSize the document allows ("InitUpload").
    let max_part = PART_SIZES[PART_SIZES.len() - 1] as usize;
    let bytes = read_body(body, max_part).await?;
    let p = params::part(q)?;
    let lock = state.lock_for(&p.file_sha);
    let _shared = lock.read().await;
    let Some(session) = state.store.session(&p.file_sha)? else {
        return Err(match state.store.file_by_sha(&p.file_sha)? {
            Some(file) => {
                state.counters.parts_after_finish.fetch_add(1, Ordering::Relaxed);
                Reject::param(format!("fileSha {} is already finished as fileId {}", p.file_sha, file.file_id))
            }
            None => Reject::param(format!("fileSha {} has no upload session: call InitUpload first", p.file_sha)),
        });
    };
    // The document, "UploadPart": offset is "a multiple of the session's dataSize",
    // dataSize is "this part's length: the session's dataSize, except the last part
    // which may be shorter", and "the body is exactly the part's bytes", whose MD5
    // dataMd5 is. A part starts inside the file (its example: 6,000,000 bytes, parts at
    // 0 ... 5242880).
    if p.offset >= session.file_size {
        return Err(Reject::param(format!("offset {} is not inside the file (fileSize {})", p.offset, session.file_size)));
    }
    if p.offset % session.data_size != 0 {
        return Err(Reject::param(format!("offset {} is not a multiple of the session's dataSize {}", p.offset, session.data_size)));
    }
    let expected = session.part_len(p.offset);
    if p.data_size != expected {
        return Err(Reject::param(format!(
            "dataSize {} is wrong for the part at offset {}: it must be {expected} (session dataSize {}, fileSize {})",
            p.data_size, p.offset, session.data_size, session.file_size
        )));
    }
    if bytes.len() as u64 != p.data_size {
        return Err(Reject::body(format!("body is {} bytes but dataSize is {}", bytes.len(), p.data_size)));
    }
    let md5 = vod_uploader::hex::encode(&md5::Md5::digest(&bytes));
    if md5 != p.data_md5 {
        return Err(Reject::body(format!("body MD5 {md5} does not match dataMd5 {}", p.data_md5)));
    }
    let store = state.store.clone();
    let sha = p.file_sha.clone();
    let resent = tokio::task::spawn_blocking(move || store.put_part(&sha, p.offset, &bytes, &md5))
        .await
        .map_err(|e| Reject::cache(codes::WRITE_CACHE, format!("part write failed: {e}")))?
        .map_err(|e| Reject::cache(codes::WRITE_CACHE, format!("part write failed: {e}")))?;
    state.counters.parts_stored.fetch_add(1, Ordering::Relaxed);
    state.counters.part_bytes_stored.fetch_add(p.data_size, Ordering::Relaxed);
    if resent {
        state.counters.parts_resent.fetch_add(1, Ordering::Relaxed);
        state.counters.part_bytes_resent.fetch_add(p.data_size, Ordering::Relaxed);
    }
    Ok(success(0, json!({})))
}

async fn finish(state: &Arc<State>, q: &Query) -> Result<Value, Reject> {
    let sha = params::file_sha(q)?;
    let lock = state.lock_for(&sha);
    let _exclusive = lock.write().await;
    if let Some(file) = state.store.file_by_sha(&sha)? {
        return Ok(success(0, json!({ "fileId": file.file_id, "url": file.url, "sessionInfo": {} })));
    }
    let Some(session) = state.store.session(&sha)? else {
        return Err(Reject::param(format!("fileSha {sha} has no upload session: call InitUpload first")));
    };
    // The document, "FinishUpload" ends the upload of the file fileSha names ("SHA-1 of
    // the whole file", "InitUpload"): every part must be held, and together they must be
    // that file.
    let held: HashMap<u64, u64> = state.store.parts(&sha)?.into_iter().map(|p| (p.offset, p.size)).collect();
    let missing: Vec<u64> = (0..session.part_count())
        .map(|i| i * session.data_size)
        .filter(|offset| held.get(offset) != Some(&session.part_len(*offset)))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(8).map(u64::to_string).collect();
        return Err(Reject::param(format!(
            "{} of {} parts are missing (offsets {}{}); upload them before FinishUpload",
            missing.len(),
            session.part_count(),
            shown.join(", "),
            if missing.len() > shown.len() { ", ..." } else { "" }
        )));
    }
    let store = state.store.clone();
    let (hash_sha, size) = (sha.clone(), session.file_size);
    let actual = tokio::task::spawn_blocking(move || store.hash_data(&hash_sha, size))
        .await
        .map_err(|e| Reject::cache(codes::READ_CACHE, format!("reading the parts failed: {e}")))??;
    if actual != sha {
        return Err(Reject::param(format!(
            "fileSha {sha} does not match the SHA-1 of the uploaded parts ({actual}); the session stays open"
        )));
    }
    let file_id = state.file_id_for(&sha);
    let url = state.url_for(&file_id, &session.file_type);
    let file = state.store.finish(&session, &file_id, &url, now_unix())?;
    *state.counters.finishes.lock().unwrap_or_else(|p| p.into_inner()).entry(sha.clone()).or_default() += 1;
    if let Some(notifier) = &state.notifier {
        notifier.upload_complete(&file);
    }
    Ok(success(0, json!({ "fileId": file.file_id, "url": file.url, "sessionInfo": {} })))
}

/// Inspection endpoints for tests and users, outside the protocol's paths.
async fn inspect(state: &State, method: &Method, path: &str) -> Response<Body> {
    let not_found = |what: String| http::json(StatusCode::NOT_FOUND, &json!({"error": {"code": "not_found", "message": what}}));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // One write among the inspection endpoints: a caller that checked a file's bytes
    // gives their room back (the record stays; see `Store::release_data`).
    if let (&Method::DELETE, ["sim", "files", id, "data"]) = (method, segments.as_slice()) {
        return match state.store.release_data(id) {
            Ok(Some(file)) => http::json(StatusCode::OK, &json!({ "released": file })),
            Ok(None) => not_found(format!("no finished file with fileId {id}")),
            Err(e) => http::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": {"code": "storage", "message": e.to_string()}})),
        };
    }
    if method != Method::GET {
        return http::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": {"code": "method_not_allowed", "message": "inspection endpoints are GET only, but for DELETE /sim/files/{fileId}/data"}}),
        );
    }
    let result: Result<Response<Body>, Reject> = (|| match segments.as_slice() {
        ["sim", "files"] => Ok(http::json(StatusCode::OK, &json!({ "files": state.store.files()? }))),
        ["sim", "stats"] => Ok(http::json(StatusCode::OK, &state.counters.to_json())),
        ["sim", "files", id] => Ok(match state.store.file_by_id(id)? {
            Some(file) if state.store.holds_data(&file) => http::file(state.store.data_path(&file.file_sha), file.file_size),
            Some(file) => http::json(
                StatusCode::GONE,
                &json!({"error": {"code": "released", "message": format!("the bytes of fileId {} were released (DELETE /sim/files/{}/data); its record stays", file.file_id, file.file_id)}}),
            ),
            None => not_found(format!("no finished file with fileId {id}")),
        }),
        ["sim", "sessions", sha] => {
            let sha = sha.to_ascii_lowercase();
            if let Some(file) = state.store.file_by_sha(&sha)? {
                return Ok(http::json(StatusCode::OK, &json!({"fileSha": sha, "state": "finished", "file": file})));
            }
            Ok(match state.store.session(&sha)? {
                Some(s) => {
                    let parts = state.store.parts(&sha)?;
                    http::json(
                        StatusCode::OK,
                        &json!({
                            "fileSha": sha, "state": "open", "fileName": s.file_name, "fileType": s.file_type,
                            "fileSize": s.file_size, "dataSize": s.data_size, "tags": s.tags, "classId": s.class_id,
                            "isTranscode": s.flags[0] as u8, "isScreenshot": s.flags[1] as u8, "isWatermark": s.flags[2] as u8,
                            "partsTotal": s.part_count(), "partsHeld": parts.len(), "parts": parts,
                        }),
                    )
                }
                None => not_found(format!("no session or file for fileSha {sha}")),
            })
        }
        _ => Ok(not_found(format!("no route {path}"))),
    })();
    result.unwrap_or_else(|e| http::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": {"code": "storage", "message": e.message}})))
}
