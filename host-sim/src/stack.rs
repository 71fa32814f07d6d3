//! The stack the uploader runs against, started in one call: the VOD simulator, a
//! Range file server and, on demand, `host-sim up` running the real component with the
//! variables that point it at both, or the engine's native [`Settings`] for the same
//! simulator. Tests, `host-sim demo` and `host-sim bench` all start it here, each with
//! its own choices ([`StackOptions`]): the benchmark's figures depend on those
//! (tmpfs, no rate limits), the tests' on their faults and seeds.

use crate::files;
use crate::http::{self, HttpClient};
use crate::up::{self, StateDir, UpConfig};
use crate::vod::{self, faults::Faults, ratelimit};
use anyhow::Context as _;
use http_body_util::BodyExt as _;
use sha1::Digest as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tempfile::TempDir;
use vod_uploader::engine::Settings;
use vod_uploader::protocol::{Credentials, Endpoint, Signer};
use vod_uploader::sign::Algorithm;

/// How the stack's servers run.
#[derive(Debug)]
pub struct StackOptions {
    /// The simulator's injected faults.
    pub faults: Faults,
    /// The simulator's rate limits; `None` keeps the real service's (its defaults).
    pub vod_limits: Option<ratelimit::Limits>,
    /// Keep the simulator's data in `/dev/shm` when there is one: the benchmark
    /// measures the uploader, not the disk under the simulator.
    pub sim_data_on_tmpfs: bool,
    /// The directory the file server serves; `None`: a fresh temporary one.
    pub files_root: Option<PathBuf>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions { faults: Faults::none(), vod_limits: None, sim_data_on_tmpfs: false, files_root: None }
    }
}

/// The VOD simulator and a file server, with the temporary directories they use
/// (removed when the stack is dropped).
pub struct Stack {
    /// The VOD simulator (its `/sim/...` endpoints inspect what it holds).
    pub sim: vod::Running,
    /// The file server: the files under [`root`](Stack::root) and generated ones.
    pub files: files::Running,
    /// The directory the file server serves.
    pub root: PathBuf,
    /// Where each key-value store of this stack gets a file of its own.
    stores: TempDir,
    stores_made: AtomicU64,
    client: HttpClient,
    _dirs: Vec<TempDir>,
}

impl Stack {
    /// Starts the simulator and the file server on loopback, on free ports.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let shm = Path::new("/dev/shm");
        let sim_dir = if options.sim_data_on_tmpfs && shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
        let mut config = vod::Config::new(sim_dir.path().join("vod"));
        config.faults = options.faults;
        if let Some(limits) = options.vod_limits {
            config.limits = limits;
        }
        let sim = vod::start(config).await?;
        let mut dirs = vec![sim_dir];
        let root = match options.files_root {
            Some(root) => root,
            None => {
                let root = tempfile::tempdir()?;
                let path = root.path().to_owned();
                dirs.push(root);
                path
            }
        };
        let files = files::start(root.clone(), "127.0.0.1:0".parse()?).await?;
        Ok(Stack { sim, files, root, stores: tempfile::tempdir()?, stores_made: AtomicU64::new(0), client: http::client(), _dirs: dirs })
    }

    /// The standard variables for this stack (see [`variables`]).
    pub fn variables(&self, token: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        variables(self.sim.addr, self.files.addr, token, extra)
    }

    /// A fresh SQLite file for a key-value store, in the stack's temporary directory.
    pub fn kv_file(&self) -> PathBuf {
        let n = self.stores_made.fetch_add(1, Ordering::Relaxed);
        self.stores.path().join(format!("kv-{n}.sqlite"))
    }

    /// How to run `host-sim up` of `manifest` on loopback against this stack: the
    /// standard variables with `token` and `extra`, a store of its own, connection
    /// pooling and limits as Spin's, no chaos. Change what a caller needs, then
    /// [`start`](up::server::start) it.
    pub fn up_config(&self, manifest: &Path, token: &str, extra: &[(&str, &str)]) -> UpConfig {
        UpConfig {
            manifest: manifest.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            variables: self.variables(token, extra),
            dirs: vec![],
            state_dir: StateDir::KvFile(self.kv_file()),
            runtime_config: None,
            outbound_mbps: None,
            connection_pooling: true,
            limits: up::Limits::default(),
            chaos_kill_rate: 0.0,
            chaos_window: Duration::ZERO,
            seed: 0,
            tick: None,
        }
    }

    /// The native engine's settings for this simulator (the development key pair,
    /// HmacSHA1), at the engine's defaults otherwise.
    pub fn settings(&self) -> Settings {
        Settings::new(Signer {
            endpoint: Endpoint::parse(&self.sim.endpoint()).expect("the simulator's endpoint parses"),
            credentials: Credentials::new(vod::DEV_SECRET_ID, vod::DEV_SECRET_KEY),
            region: "gz".into(),
            algorithm: Algorithm::HmacSha1,
        })
    }

    /// The URL of `name` under the file server's root.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.files.addr)
    }

    /// The URL of a generated source of `size` bytes (see [`crate::sample::fill_generated`]).
    pub fn gen_url(&self, size: u64, seed: u64) -> String {
        format!("http://{}/gen/{size}/{seed}", self.files.addr)
    }

    /// Writes a sample file of `size` bytes under the file server's root: its path.
    pub fn write_sample(&self, name: &str, size: u64, seed: u64) -> std::io::Result<PathBuf> {
        let path = self.root.join(name);
        crate::sample::write_sample(&path, size, seed)?;
        Ok(path)
    }

    /// The size and SHA-1 of the simulator's stored copy of `file_id`.
    pub async fn stored_sha1(&self, file_id: &str) -> anyhow::Result<(u64, String)> {
        stored_sha1(&self.client, self.sim.addr, file_id).await
    }
}

/// The variables the component needs to talk to the simulator at `vod` and read
/// sources from the file server at `files` (`vod_secret_id`, `vod_secret_key`,
/// `vod_endpoint`, `vod_origin`, `source_origin`, `api_token`), then `extra`, which
/// replace those of the same name. For callers that start the servers as processes.
pub fn variables(vod: SocketAddr, files: SocketAddr, token: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("vod_secret_id".into(), vod::DEV_SECRET_ID.into()),
        ("vod_secret_key".into(), vod::DEV_SECRET_KEY.into()),
        ("vod_endpoint".into(), format!("http://{vod}/v2/index.php")),
        ("vod_origin".into(), format!("http://{vod}")),
        ("source_origin".into(), format!("http://{files}")),
        ("api_token".into(), token.into()),
    ];
    for (name, value) in extra {
        vars.retain(|(k, _)| k != name);
        vars.push((name.to_string(), value.to_string()));
    }
    vars
}

/// The size and SHA-1 of the copy of `file_id` that the simulator at `vod` holds
/// (`/sim/files/{fileId}`), streamed: what an upload must be checked against.
pub async fn stored_sha1(client: &HttpClient, vod: SocketAddr, file_id: &str) -> anyhow::Result<(u64, String)> {
    let response = client.get(format!("http://{vod}/sim/files/{file_id}").parse()?).await?;
    anyhow::ensure!(response.status() == 200, "the simulator has no file {file_id:?}: {}", response.status());
    let mut body = response.into_body();
    let (mut size, mut hasher) = (0u64, sha1::Sha1::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("reading the stored copy")?.into_data() {
            size += data.len() as u64;
            hasher.update(&data);
        }
    }
    Ok((size, vod_uploader::hex::encode(&hasher.finalize())))
}
