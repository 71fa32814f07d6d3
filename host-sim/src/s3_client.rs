//! An S3 client for tests, on the real `curl --aws-sigv4` (curl 7.75+): PUT of a file
//! (streamed by curl, any size) or of bytes, GET (with a range), DELETE, bucket
//! creation. An independent signer on purpose: the component signs its reads with our
//! own SigV4 code, and a bug shared by the writer and the reader would cancel out.
//!
//! The key pair goes to curl on its stdin (`--config -`), never on its command line
//! (which `ps` shows) nor in an error message.

use crate::seaweed::{Credentials, REGION};
use anyhow::{Context as _, Result};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt as _;

/// What a request got: the status and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status (`0`: no answer).
    pub status: u16,
    /// The body (an S3 error's XML, a GET's bytes).
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Ok` on a 2xx, else an error with the status and the body.
    pub fn ok(self, what: &str) -> Result<Answer> {
        anyhow::ensure!((200..300).contains(&self.status), "{what}: {} {}", self.status, self.text());
        Ok(self)
    }
}

/// A client of one S3 endpoint (path-style) with one key pair; `None`: unsigned.
#[derive(Debug, Clone)]
pub struct S3Client {
    endpoint: String,
    credentials: Option<Credentials>,
}

/// S3's URI encoding of an object key: every byte but the unreserved ones and `/`
/// percent-encoded (so `my clip+1.mp4` is `my%20clip%2B1.mp4`), as SigV4 wants it once.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl S3Client {
    /// A client of `endpoint` (`http://127.0.0.1:8333`) signing with `credentials`.
    pub fn new(endpoint: impl Into<String>, credentials: Credentials) -> S3Client {
        S3Client { endpoint: endpoint.into().trim_end_matches('/').to_owned(), credentials: Some(credentials) }
    }

    /// A client of `endpoint` that signs nothing (anonymous requests).
    pub fn unsigned(endpoint: impl Into<String>) -> S3Client {
        S3Client { endpoint: endpoint.into().trim_end_matches('/').to_owned(), credentials: None }
    }

    /// The URL of `key` in `bucket`, the key percent-encoded ([`encode_key`]).
    pub fn object_url(&self, bucket: &str, key: &str) -> String {
        format!("{}/{bucket}/{}", self.endpoint, encode_key(key))
    }

    /// Creates `bucket` (`PUT /bucket`).
    pub async fn create_bucket(&self, bucket: &str) -> Result<Answer> {
        self.curl(&["-X", "PUT"], &format!("{}/{bucket}", self.endpoint)).await?.ok("create bucket")
    }

    /// Uploads the file at `path` as `key`; curl streams it, so its size is not limited
    /// by memory.
    pub async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<Answer> {
        let path = path.to_str().context("a file path curl can take must be UTF-8")?;
        self.curl(&["-T", path], &self.object_url(bucket, key)).await?.ok("PUT")
    }

    /// Uploads `bytes` as `key` (through a temporary file: curl signs a body it knows).
    pub async fn put_bytes(&self, bucket: &str, key: &str, bytes: &[u8]) -> Result<Answer> {
        let file = tempfile::NamedTempFile::new()?;
        tokio::fs::write(file.path(), bytes).await?;
        self.put_file(bucket, key, file.path()).await
    }

    /// Deletes `key`.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<Answer> {
        self.curl(&["-X", "DELETE"], &self.object_url(bucket, key)).await?.ok("DELETE")
    }

    /// GETs `key`, bytes `first..=last` of it when `range` is given; any status is an
    /// `Ok` answer (a test checks 206, 403, 404 alike).
    pub async fn get(&self, bucket: &str, key: &str, range: Option<(u64, u64)>) -> Result<Answer> {
        let range = range.map(|(first, last)| format!("range: bytes={first}-{last}"));
        let args: Vec<&str> = range.iter().flat_map(|r| ["-H", r.as_str()]).collect();
        self.curl(&args, &self.object_url(bucket, key)).await
    }

    /// Runs curl with `args` on `url`: the status (`-w`) and the body (from a file).
    async fn curl(&self, args: &[&str], url: &str) -> Result<Answer> {
        let body = tempfile::NamedTempFile::new()?;
        let mut cmd = tokio::process::Command::new("curl");
        // --globoff: `[` and `{` in keys are characters, not curl's URL patterns.
        cmd.args(["--silent", "--show-error", "--globoff", "--max-time", "600", "--write-out", "%{http_code}", "--output"])
            .arg(body.path())
            .args(args)
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.credentials.is_some() {
            cmd.args(["--config", "-"]);
        }
        let mut child = cmd.spawn().context("cannot run curl (is it installed?)")?;
        let mut stdin = child.stdin.take().expect("piped");
        if let Some(c) = &self.credentials {
            // curl's config syntax: a quoted string with \\ and \" escaped.
            let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            let config = format!("aws-sigv4 = \"aws:amz:{REGION}:s3\"\nuser = \"{}:{}\"\n", quote(&c.access_key), quote(&c.secret_key));
            stdin.write_all(config.as_bytes()).await?;
        }
        drop(stdin);
        let out = child.wait_with_output().await?;
        let status: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        // curl's own errors name the URL, never the key pair (it is not on the command line).
        anyhow::ensure!(out.status.success(), "curl {url} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        Ok(Answer { status, body: tokio::fs::read(body.path()).await? })
    }
}
