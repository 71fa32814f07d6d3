//! Helpers for driving the simulator over real HTTP on loopback, and (in [`process`])
//! servers run as child processes.
#![allow(dead_code)]

pub mod process;

use bytes::Bytes;
use host_sim::vod::{self, Config, Running, DEV_SECRET_ID, DEV_SECRET_KEY};
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

// Re-exported for the tests' `use common::*`; a test crate that uses none of them
// (one that came for `process`) would otherwise warn.
#[allow(unused_imports)]
pub use host_sim::sample::{data, md5_hex, sha1_hex};

/// A simulator with its own data directory.
pub struct Sim {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl Sim {
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }
}

pub async fn sim() -> Sim {
    sim_with(|_| {}).await
}

pub async fn sim_with(configure: impl FnOnce(&mut Config)) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    configure(&mut config);
    let running = vod::start(config).await.unwrap();
    Sim { running, dir }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// One protocol request, built by hand so tests can break any part of it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: &'static str,
    pub path: &'static str,
    pub params: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub key: String,
    /// Host to sign with; the request's own Host header when None.
    pub sign_host: Option<String>,
    /// Method to sign with; `method` when None.
    pub sign_method: Option<&'static str>,
}

/// An answer: HTTP status and the JSON body (Null when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

impl Answer {
    pub fn code(&self) -> i64 {
        self.json["code"].as_i64().unwrap_or_else(|| panic!("no code in {self:?}"))
    }
    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or("")
    }
    /// Asserts a refusal with `code` whose message mentions `needle`.
    pub fn refused(&self, code: i64, needle: &str) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
        assert!(self.message().contains(needle), "message {:?} should mention {needle:?}", self.message());
    }
}

impl Call {
    pub fn new(action: &str) -> Self {
        let params = vec![
            ("Action".into(), action.into()),
            ("Region".into(), "gz".into()),
            ("Timestamp".into(), now().to_string()),
            ("Nonce".into(), rand::random::<u32>().max(1).to_string()),
            ("SecretId".into(), DEV_SECRET_ID.into()),
        ];
        Call {
            method: if action == "UploadPart" { "POST" } else { "GET" },
            path: "/v2/index.php",
            params,
            body: None,
            key: DEV_SECRET_KEY.into(),
            sign_host: None,
            sign_method: None,
        }
    }

    pub fn init(sha: &str, size: u64, data_size: u64) -> Self {
        Call::new("InitUpload")
            .with("fileName", "clip")
            .with("fileSha", sha)
            .with("fileSize", &size.to_string())
            .with("dataSize", &data_size.to_string())
            .with("fileType", "mp4")
    }

    pub fn part(sha: &str, offset: u64, bytes: &[u8]) -> Self {
        Call::new("UploadPart")
            .with("fileSha", sha)
            .with("offset", &offset.to_string())
            .with("dataSize", &bytes.len().to_string())
            .with("dataMd5", &md5_hex(bytes))
            .body(bytes.to_vec())
    }

    pub fn finish(sha: &str) -> Self {
        Call::new("FinishUpload").with("fileSha", sha)
    }

    /// Sets (or replaces) a parameter.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// The parameters with a valid `Signature` appended (unless one is present).
    pub fn signed(&self, addr: SocketAddr) -> Vec<(String, String)> {
        let mut params = self.params.clone();
        if !params.iter().any(|(k, _)| k == "Signature") {
            let host = self.sign_host.clone().unwrap_or_else(|| addr.to_string());
            let signature = vod_uploader::sign::sign(
                &self.key,
                self.sign_method.unwrap_or(self.method),
                &host,
                self.path,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            params.push(("Signature".into(), signature));
        }
        params
    }

    pub fn url(&self, addr: SocketAddr) -> String {
        url_of(addr, self.path, &self.signed(addr))
    }

    pub async fn send(&self, addr: SocketAddr) -> Answer {
        send_raw(self.method, &self.url(addr), self.body.clone()).await.expect("connection")
    }
}

pub fn url_of(addr: SocketAddr, path: &str, params: &[(String, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    format!("http://{addr}{path}?{}", query.finish())
}

/// Sends a request; `Err` when the connection fails or is dropped.
pub async fn send_raw(method: &str, url: &str, body: Option<Vec<u8>>) -> Result<Answer, String> {
    let request =
        hyper::Request::builder().method(method).uri(url).body(host_sim::http::full(Bytes::from(body.unwrap_or_default()))).unwrap();
    let response = host_sim::http::client().request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status, json: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
}

/// GET of an inspection endpoint: status and raw bytes.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let response = host_sim::http::client().get(format!("http://{addr}{path}").parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

pub async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, bytes) = get(addr, path).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Uploads `bytes` whole with hand-built calls; returns FinishUpload's answer.
pub async fn upload(addr: SocketAddr, bytes: &[u8], data_size: u64) -> Answer {
    let sha = sha1_hex(bytes);
    let init = Call::init(&sha, bytes.len() as u64, data_size).send(addr).await;
    assert_eq!(init.code(), 0, "{init:?}");
    for (i, chunk) in bytes.chunks(data_size as usize).enumerate() {
        let answer = Call::part(&sha, i as u64 * data_size, chunk).send(addr).await;
        assert_eq!(answer.code(), 0, "{answer:?}");
    }
    Call::finish(&sha).send(addr).await
}
