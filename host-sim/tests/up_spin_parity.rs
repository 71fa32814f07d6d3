//! `host-sim up` behaves as the real Spin 3.6.3 does where the two used to differ:
//! the key-value file, invalid `allowed_outbound_hosts`, a guest trap, an undeclared
//! `--variable`, and outbound connections kept for the app's later requests.
//!
//! Each case runs `host-sim up` as a process over real HTTP on loopback, with the real
//! component (built by `make wasm`) or, for the trap, a guest written here. Where it
//! says what Spin does, the same scenario also runs on the real Spin CLI, when
//! `../shared/tools/spin` (next to the checkout) is there; otherwise that half prints
//! `SKIPPED` with the reason and the host-sim half still runs.
//!
//! `HOST_SIM_BIN=/path/to/host-sim` runs these against another build of host-sim (an
//! older commit, for one, to see them fail there).

mod common;

use bytes::Bytes;
use common::process::Served;
use host_sim::http;
use host_sim::stack::{Stack, StackOptions};
use http_body_util::BodyExt;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "parity-token";

/// The host-sim under test.
fn host_sim_bin() -> PathBuf {
    std::env::var_os("HOST_SIM_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_host-sim")), PathBuf::from)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The component spin.toml names, once it is known to be built.
fn component_wasm() -> PathBuf {
    let wasm = repo().join("target/wasm32-wasip1/release/vod_uploader.wasm");
    assert!(wasm.exists(), "{} is missing: build the component with `make wasm` (make test does) first", wasm.display());
    std::path::absolute(wasm).unwrap()
}

/// The real Spin CLI, or `None` after saying why this half of a test is skipped.
fn real_spin(test: &str) -> Option<PathBuf> {
    let spin = std::env::var_os("SPIN").map_or_else(|| repo().join("../shared/tools/spin"), PathBuf::from);
    if spin.exists() {
        Some(spin)
    } else {
        // Straight to the stream, not through println!, which the test harness keeps
        // to itself when the test passes: the skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED ({test}): the real Spin is not at {}; only host-sim was checked", spin.display());
        None
    }
}

/// A copy of the project's spin.toml in `dir`, naming the built component by its
/// absolute path (so that the copy's directory is the app's directory), changed by
/// `edit`.
fn app_copy(dir: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("spin.toml")).unwrap();
    let mut manifest: toml::Table = text.parse().unwrap();
    let component = manifest["component"]["vod-uploader"].as_table_mut().unwrap();
    component.insert("source".into(), component_wasm().display().to_string().into());
    component.remove("build");
    edit(&mut manifest);
    let path = dir.join("spin.toml");
    std::fs::write(&path, toml::to_string(&manifest).unwrap()).unwrap();
    path
}

/// The variables the component needs, talking to `vod` and reading from `source`
/// (both `host:port`), plus `extra`, as `--variable` values.
fn variables(vod: SocketAddr, source: SocketAddr, extra: &[(&str, &str)]) -> Vec<String> {
    host_sim::stack::variables(vod, source, TOKEN, extra).into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A runtime serving an app: `host-sim up` or `spin up`.
type Runtime = Served;

impl Runtime {
    /// `host-sim up` of `manifest` with `--variable`s `vars` and the flags `extra`, in
    /// the working directory `cwd`.
    fn host_sim(dir: &Path, manifest: &Path, vars: &[String], extra: &[&str], cwd: &Path) -> Runtime {
        let mut cmd = Command::new(host_sim_bin());
        cmd.args(["up", "--listen", "127.0.0.1:0", "--manifest"]).arg(manifest).args(extra);
        for v in vars {
            cmd.args(["--variable", v]);
        }
        cmd.current_dir(cwd).env("RUST_LOG", "info");
        Runtime::start("host-sim", dir, cmd, "host-sim up listening on ", false)
    }

    /// `spin up` of `manifest` with `--variable`s `vars` and the flags `extra`.
    fn spin(spin: &Path, dir: &Path, manifest: &Path, vars: &[String], extra: &[&str]) -> Runtime {
        let mut cmd = Command::new(spin);
        cmd.args(["up", "--listen", "127.0.0.1:0", "-f"]).arg(manifest).args(extra);
        for v in vars {
            cmd.args(["--variable", v]);
        }
        // Its own process group, to stop `spin up` and the `spin trigger http` it runs.
        cmd.process_group(0);
        Runtime::start("spin", dir, cmd, "Serving http://", true)
    }
}

/// A call to `addr` with the API token: status and body.
async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Bytes) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http::full(Bytes::from(body.to_owned())))
        .unwrap();
    let response = http::client().request(request).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

async fn call_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, bytes) = call(addr, method, path, body).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Creates an upload of `source`: its id.
async fn create(addr: SocketAddr, source: &str) -> String {
    let (status, v) = call_json(addr, "POST", "/uploads", &serde_json::json!({ "source": source }).to_string()).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Advances upload `id` until it is done.
async fn drive(addr: SocketAddr, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, v) = call_json(addr, "POST", &format!("/uploads/{id}/advance"), "").await;
        assert_eq!(status, 200, "{v}");
        assert!(!matches!(v["state"].as_str(), Some("failed" | "cancelled")), "{v}");
        if v["state"] == "done" {
            return v;
        }
        host_sim::http::wait_for_leases(&v).await;
        assert!(Instant::now() < deadline, "not done: {v}");
    }
}

/// A TCP proxy to `upstream` that counts the connections it accepts: what a server
/// sees of a client's connection reuse.
struct CountingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingProxy { addr, accepted, task }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The VOD simulator and a file server, in this process.
async fn backends() -> Stack {
    Stack::start(StackOptions::default()).await.unwrap()
}

/// A sample file of `size` bytes at `name` under `b`'s file server: its URL through
/// `origin`.
fn sample_url(b: &Stack, origin: SocketAddr, name: &str, size: u64) -> String {
    b.write_sample(name, size, size ^ 17).unwrap();
    format!("http://{origin}/{name}")
}

/// The store file's `default` rows and whether host-sim's old table is still there.
fn kv_rows(path: &Path) -> (u64, bool) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let rows = conn.query_row("SELECT COUNT(*) FROM spin_key_value WHERE store = 'default'", [], |r| r.get(0)).unwrap();
    let old = conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'kv'", [], |r| r.get::<_, u64>(0)).unwrap() > 0;
    (rows, old)
}

/// 1. Without `--kv`, the `default` store is Spin's: `.spin/sqlite_key_value.db` next
///    to the manifest (not in the working directory), table `spin_key_value`, store
///    `default`; `--state-dir DIR` puts it at `DIR/sqlite_key_value.db`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_store_is_spins_file_next_to_the_manifest() {
    let b = backends().await;
    let (app_dir, cwd, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let manifest = app_copy(app_dir.path(), |_| {});
    let vars = variables(b.sim.addr, b.files.addr, &[]);
    let source = sample_url(&b, b.files.addr, "a.mp4", 1000);

    let host = Runtime::host_sim(app_dir.path(), &manifest, &vars, &[], cwd.path());
    let id = create(host.addr, &source).await;
    drop(host);
    let file = app_dir.path().join(".spin/sqlite_key_value.db");
    assert!(file.exists(), "no {}", file.display());
    assert!(!cwd.path().join(".spin").exists(), "the store went to the working directory");
    let (rows, old) = kv_rows(&file);
    assert!(rows > 0 && !old, "rows {rows}, old table {old}");

    // The same file under --state-dir: the same upload.
    std::fs::copy(&file, state.path().join("sqlite_key_value.db")).unwrap();
    let state_flag = state.path().display().to_string();
    let host = Runtime::host_sim(app_dir.path(), &manifest, &vars, &["--state-dir", &state_flag], cwd.path());
    let (status, v) = call_json(host.addr, "GET", &format!("/uploads/{id}"), "").await;
    assert_eq!((status, v["id"].as_str()), (200, Some(id.as_str())), "{v}");
    assert!(host.log().contains(&format!("{:?}", state.path().join("sqlite_key_value.db").display().to_string())), "{}", host.log());
}

/// 1. A store file of host-sim's old layout (`kv(key, value)`) is moved into
///    `spin_key_value` (store `default`) once, the log says how many keys, and the
///    old table is dropped: the uploads it held are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_store_file_is_moved_into_spins_table_once() {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_copy(dir.path(), |_| {});
    let vars = variables(b.sim.addr, b.files.addr, &[]);
    let kv = dir.path().join("old.sqlite");
    let kv_flag = kv.display().to_string();

    let host = Runtime::host_sim(dir.path(), &manifest, &vars, &["--kv", &kv_flag], dir.path());
    let id = create(host.addr, &sample_url(&b, b.files.addr, "b.mp4", 1000)).await;
    drop(host);
    // Back to the layout host-sim wrote before it used Spin's (a host-sim of before
    // wrote it that way already).
    let conn = rusqlite::Connection::open(&kv).unwrap();
    let spins: bool = conn.query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'spin_key_value'", [], |r| r.get(0)).unwrap();
    if spins {
        conn.execute_batch(
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             INSERT INTO kv SELECT key, value FROM spin_key_value WHERE store = 'default';
             DROP TABLE spin_key_value;",
        )
        .unwrap();
    }
    let keys: u64 = conn.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0)).unwrap();
    drop(conn);
    assert!(keys > 0);

    let host = Runtime::host_sim(dir.path(), &manifest, &vars, &["--kv", &kv_flag], dir.path());
    let (status, v) = call_json(host.addr, "GET", &format!("/uploads/{id}"), "").await;
    assert_eq!((status, v["id"].as_str()), (200, Some(id.as_str())), "{v}");
    let log = host.log();
    assert!(log.contains(&format!("moved {keys} keys from host-sim's old table `kv`")), "{log}");
    drop(host);
    assert_eq!(kv_rows(&kv), (keys, false));
    // Once: a second start has nothing to move.
    let host = Runtime::host_sim(dir.path(), &manifest, &vars, &["--kv", &kv_flag], dir.path());
    assert_eq!(call(host.addr, "GET", &format!("/uploads/{id}"), "").await.0, 200);
    assert!(!host.log().contains("moved"), "{}", host.log());
}

/// 1. With the real Spin: an upload created under `spin up` is seen by `host-sim up`
///    of the same app and the other way round, neither told where the store is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_shared_with_the_real_spin() {
    let Some(spin) = real_spin("the_store_is_shared_with_the_real_spin") else { return };
    let b = backends().await;
    let (app_dir, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let manifest = app_copy(app_dir.path(), |_| {});
    let vars = variables(b.sim.addr, b.files.addr, &[]);

    let runtime = Runtime::spin(&spin, app_dir.path(), &manifest, &vars, &[]);
    let by_spin = create(runtime.addr, &sample_url(&b, b.files.addr, "s.mp4", 1000)).await;
    drop(runtime);
    assert!(app_dir.path().join(".spin/sqlite_key_value.db").exists());

    let runtime = Runtime::host_sim(app_dir.path(), &manifest, &vars, &[], cwd.path());
    let (status, v) = call_json(runtime.addr, "GET", &format!("/uploads/{by_spin}"), "").await;
    assert_eq!((status, v["id"].as_str()), (200, Some(by_spin.as_str())), "host-sim does not see Spin's upload: {v}");
    let by_host_sim = create(runtime.addr, &sample_url(&b, b.files.addr, "h.mp4", 2000)).await;
    drop(runtime);

    let runtime = Runtime::spin(&spin, app_dir.path(), &manifest, &vars, &[]);
    let (status, v) = call_json(runtime.addr, "GET", &format!("/uploads/{by_host_sim}"), "").await;
    assert_eq!((status, v["id"].as_str()), (200, Some(by_host_sim.as_str())), "Spin does not see host-sim's upload: {v}");
    let done = drive(runtime.addr, &by_host_sim).await;
    assert_eq!(done["size"], 2000, "{done}");
}

/// 2. One invalid `allowed_outbound_hosts` entry (here a variable holding two
///    origins) makes the host deny every outbound request, the valid entries' too,
///    and log `Invalid allowed host`, as Spin does. The invalid entry is an extra one
///    of a copy of the manifest: `source_origin` stays one valid origin, so what is
///    tested is the host's policy, whatever the component thinks of its variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_allowed_host_denies_every_outbound_request() {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_copy(dir.path(), |m| {
        let required = toml::Table::from_iter([("required".to_owned(), toml::Value::from(true))]);
        m["variables"].as_table_mut().unwrap().insert("extra_origin".into(), required.into());
        let hosts = m["component"]["vod-uploader"]["allowed_outbound_hosts"].as_array_mut().unwrap();
        hosts.push("{{ extra_origin }}".into());
    });
    let files = CountingProxy::start(b.files.addr).await;
    let source = sample_url(&b, files.addr, "c.mp4", 1000);
    let two_origins = "http://127.0.0.1:1,http://127.0.0.1:2";
    let invalid = variables(b.sim.addr, files.addr, &[("extra_origin", two_origins)]);
    let valid = variables(b.sim.addr, files.addr, &[("extra_origin", "http://127.0.0.1:2")]);
    let kv = dir.path().join("kv.sqlite").display().to_string();

    // Control: with the extra entry valid, the source is read.
    let host = Runtime::host_sim(dir.path(), &manifest, &valid, &["--kv", &kv], dir.path());
    create(host.addr, &source).await;
    assert!(files.accepted() > 0);
    drop(host);

    let before = files.accepted();
    let host = Runtime::host_sim(dir.path(), &manifest, &invalid, &["--kv", &kv], dir.path());
    let (status, body) = call(host.addr, "POST", "/uploads", &serde_json::json!({ "source": source }).to_string()).await;
    assert_ne!(status, 201, "created although the source is unreachable: {}", String::from_utf8_lossy(&body));
    assert_eq!(files.accepted(), before, "the host let a request through");
    let (_, stats) = call_json(host.addr, "GET", "/.well-known/host-sim/stats", "").await;
    assert!(stats["outbound"].as_u64() >= Some(1), "the guest made no request: {stats}");
    let log = host.log();
    assert!(log.contains("Invalid allowed host \"127.0.0.1:1,http://127.0.0.1\""), "{log}");
    drop(host);

    let Some(spin) = real_spin("one_invalid_allowed_host_denies_every_outbound_request") else { return };
    let runtime = Runtime::spin(&spin, dir.path(), &manifest, &invalid, &[]);
    let (status, _) = call(runtime.addr, "POST", "/uploads", &serde_json::json!({ "source": source }).to_string()).await;
    assert_ne!(status, 201);
    assert_eq!(files.accepted(), before, "Spin let a request through");
    assert!(runtime.log().contains("Invalid allowed host \"127.0.0.1:1,http://127.0.0.1\""), "{}", runtime.log());
}

/// 2. An entry invalid as written (not through a variable's run-time value) stops the
///    app from loading, in Spin as in host-sim, with the same reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_literal_allowed_host_stops_the_load() {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_copy(dir.path(), |m| {
        let hosts = m["component"]["vod-uploader"]["allowed_outbound_hosts"].as_array_mut().unwrap();
        hosts.push("http://127.0.0.1:1,http://127.0.0.1:2".into());
    });
    let vars = variables(b.sim.addr, b.files.addr, &[]);
    // The runtime's error output; one that starts instead (it tells its address on
    // stdout) is stopped and the test fails.
    let refused = |mut cmd: Command| {
        for v in &vars {
            cmd.args(["--variable", v]);
        }
        let stderr = dir.path().join("refused.log");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr).unwrap()).process_group(0);
        let mut child = cmd.spawn().unwrap();
        let started = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("listening on") || l.contains("Serving http://"));
        if started {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        }
        let status = child.wait().unwrap();
        assert!(!started && !status.success(), "it started");
        std::fs::read_to_string(&stderr).unwrap()
    };
    let kv = dir.path().join("kv.sqlite");
    let mut cmd = Command::new(host_sim_bin());
    cmd.args(["up", "--listen", "127.0.0.1:0", "--manifest"]).arg(&manifest).arg("--kv").arg(&kv);
    let why = refused(cmd);
    assert!(
        why.contains("`allowed_outbound_hosts` is malformed") && why.contains("Invalid allowed host \"127.0.0.1:1,http://127.0.0.1\""),
        "{why}"
    );

    let Some(spin) = real_spin("an_invalid_literal_allowed_host_stops_the_load") else { return };
    let mut cmd = Command::new(spin);
    cmd.args(["up", "--listen", "127.0.0.1:0", "-f"]).arg(&manifest).arg("--state-dir").arg(dir.path().join("spin-state"));
    let why = refused(cmd);
    assert!(
        why.contains("`allowed_outbound_hosts` is malformed") && why.contains("Invalid allowed host \"127.0.0.1:1,http://127.0.0.1\""),
        "{why}"
    );
}

/// A component that traps at once, its handler a function named after a secret (so
/// that the wasm backtrace in the log holds the secret, to be redacted).
const TRAP_WAT: &str = r#"(component
  (import "wasi:http/types@0.2.0" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))))
  (alias export $types "incoming-request" (type $incoming-request))
  (alias export $types "response-outparam" (type $response-outparam))
  (core module $guest
    (func $trap-secret-s3cr3t (export "handle") (param i32 i32)
      unreachable))
  (core instance $guest (instantiate $guest))
  (func $handle (param "request" (own $incoming-request)) (param "response-out" (own $response-outparam))
    (canon lift (core func $guest "handle")))
  (instance $incoming-handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $incoming-handler)))
"#;

/// 3. A guest that traps is answered `500` with an empty body; the error, wasm
///    backtrace included, goes to the log with secrets redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_500_with_an_empty_body_and_the_backtrace_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // wasmtime reads the component's text form as it reads its binary one.
    std::fs::write(dir.path().join("trap.wasm"), TRAP_WAT).unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        r#"spin_manifest_version = 2
[application]
name = "trap"
[variables]
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "trap"
[component.trap]
source = "trap.wasm"
[component.trap.variables]
token = "{{ token }}"
"#,
    )
    .unwrap();
    let kv = dir.path().join("kv.sqlite").display().to_string();
    let host = Runtime::host_sim(dir.path(), &manifest, &["token=trap-secret-s3cr3t".into()], &["--kv", &kv], dir.path());
    let (status, body) = call(host.addr, "GET", "/anything", "").await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (500, ""));
    let log = host.log();
    let line = log.lines().find(|l| l.contains("Error processing request")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("guest invocation failed"), "{log}");
    assert!(log.contains("wasm backtrace") && log.contains("unreachable"), "{log}");
    assert!(log.contains("<redacted>") && !log.contains("s3cr3t"), "{log}");
}

/// 3. The real component trapping (out of memory under a 2 MiB limit, reading a 3 MB
///    source whole) is answered alike by host-sim and Spin: `500`, no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_component_trapping_is_answered_as_spin_answers() {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_copy(dir.path(), |_| {});
    let vars = variables(b.sim.addr, b.files.addr, &[]);
    let source = sample_url(&b, b.files.addr, "big.mp4", 3_000_000);
    let create = serde_json::json!({ "source": source }).to_string();

    let kv = dir.path().join("kv.sqlite").display().to_string();
    let host = Runtime::host_sim(dir.path(), &manifest, &vars, &["--memory-limit-mib", "2", "--kv", &kv], dir.path());
    assert_eq!(call(host.addr, "GET", "/healthz", "").await.0, 200, "the limit stops the component from starting");
    let (status, body) = call(host.addr, "POST", "/uploads", &create).await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (500, ""));
    assert!(host.log().contains("wasm backtrace"), "{}", host.log());
    drop(host);

    let Some(spin) = real_spin("the_real_component_trapping_is_answered_as_spin_answers") else { return };
    let state = dir.path().join("spin-state").display().to_string();
    let runtime = Runtime::spin(&spin, dir.path(), &manifest, &vars, &["--max-instance-memory", "2097152", "--state-dir", &state]);
    assert_eq!(call(runtime.addr, "GET", "/healthz", "").await.0, 200);
    let (status, body) = call(runtime.addr, "POST", "/uploads", &create).await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (500, ""), "Spin answered otherwise");
    assert!(runtime.log().contains("wasm backtrace"), "{}", runtime.log());
}

/// 4. A `--variable` the manifest does not declare is ignored, as Spin ignores it;
///    the log names it (not its value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_variable_is_ignored_with_a_warning() {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_copy(dir.path(), |_| {});
    let vars = variables(b.sim.addr, b.files.addr, &[("no_such_variable", "its-value-xyzzy")]);

    let kv = dir.path().join("kv.sqlite").display().to_string();
    let host = Runtime::host_sim(dir.path(), &manifest, &vars, &["--kv", &kv], dir.path());
    let (status, v) = call_json(host.addr, "GET", "/healthz", "").await;
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)));
    let log = host.log();
    let warning = log.lines().find(|l| l.contains("WARN") && l.contains("no_such_variable")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("ignored"), "{warning}");
    assert!(!log.contains("xyzzy"), "the value was logged: {log}");
    drop(host);

    let Some(spin) = real_spin("an_undeclared_variable_is_ignored_with_a_warning") else { return };
    let state = dir.path().join("spin-state").display().to_string();
    let runtime = Runtime::spin(&spin, dir.path(), &manifest, &vars, &["--state-dir", &state]);
    assert_eq!(call(runtime.addr, "GET", "/healthz", "").await.0, 200);
}

/// What the servers saw of one upload.
#[derive(Debug)]
struct Traffic {
    /// Connections the VOD simulator and the file server accepted.
    connections: u64,
    /// Of those, the VOD simulator's.
    vod_connections: u64,
    /// Protocol requests the VOD simulator received.
    vod_requests: u64,
}

/// Uploads a 32 MiB file (32 parts of 1 MiB, the source read in ranges) through the
/// runtime `start` starts (given the manifest and the variables), the VOD simulator and
/// the file server behind counting proxies.
async fn upload_counting_connections(start: impl FnOnce(&Path, &Path, &[String]) -> Runtime) -> (Traffic, Runtime) {
    let b = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_copy(dir.path(), |_| {});
    let (vod, files) = (CountingProxy::start(b.sim.addr).await, CountingProxy::start(b.files.addr).await);
    let vars = variables(vod.addr, files.addr, &[("budget_ms", "2000")]);
    let source = sample_url(&b, files.addr, "pool.mp4", 32 << 20);
    let runtime = start(dir.path(), &manifest, &vars);
    let id = create(runtime.addr, &source).await;
    let done = drive(runtime.addr, &id).await;
    assert_eq!(done["size"], 32 << 20, "{done}");
    let vod_requests = b.sim.state.counters.requests.load(Ordering::Relaxed);
    let traffic = Traffic { connections: vod.accepted() + files.accepted(), vod_connections: vod.accepted(), vod_requests };
    (traffic, runtime)
}

/// host-sim's counters: (outbound requests, connections it opened).
async fn outbound_stats(host: &Runtime) -> (u64, u64) {
    let (_, stats) = call_json(host.addr, "GET", "/.well-known/host-sim/stats", "").await;
    (stats["outbound"].as_u64().unwrap(), stats["outboundConnections"].as_u64().unwrap_or(0))
}

/// 5. Outbound connections are kept and used again across the app's requests, as
///    Spin does by default: far fewer connections than requests. (The component sends
///    up to 4 parts at once: about 5 connections to the simulator, 1 or 2 to the
///    source, for some 40 requests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_are_pooled_across_requests() {
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("kv.sqlite").display().to_string();
    let (traffic, host) = upload_counting_connections(|d, m, v| Runtime::host_sim(d, m, v, &["--kv", &kv], d)).await;
    let (requests, opened) = outbound_stats(&host).await;
    println!("host-sim, pooled: {traffic:?}, {requests} outbound requests");
    assert!(requests >= 36, "{requests} requests");
    assert!(traffic.connections * 4 <= requests, "{traffic:?} for {requests} requests");
    assert!(traffic.vod_connections * 4 <= traffic.vod_requests, "{traffic:?}");
    assert_eq!(opened, traffic.connections, "host-sim's own count of connections");
    drop(host);

    let Some(spin) = real_spin("outbound_connections_are_pooled_across_requests") else { return };
    let state = dir.path().join("spin-state").display().to_string();
    let (traffic, _spin) = upload_counting_connections(|d, m, v| Runtime::spin(&spin, d, m, v, &["--state-dir", &state])).await;
    println!("Spin: {traffic:?}");
    assert!(traffic.vod_connections * 4 <= traffic.vod_requests, "Spin: {traffic:?}");
}

/// 5. `--no-connection-pooling`: one connection per request, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pooling_every_request_has_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("kv.sqlite").display().to_string();
    let (traffic, host) =
        upload_counting_connections(|d, m, v| Runtime::host_sim(d, m, v, &["--kv", &kv, "--no-connection-pooling"], d)).await;
    let (requests, opened) = outbound_stats(&host).await;
    println!("host-sim, not pooled: {traffic:?}, {requests} outbound requests");
    assert!(requests >= 36, "{requests} requests");
    assert_eq!(traffic.connections, requests);
    assert_eq!(traffic.vod_connections, traffic.vod_requests);
    assert_eq!(opened, traffic.connections);
}
