//! `host-sim up` answers as soon as the guest sets its response, as Spin does, and the
//! guest goes on working after it, still under the invocation's limits: what the
//! component's "answer 202, then keep working" relies on.
//!
//! The guest (`guests/early_answer.wat`, built here into a component with
//! `guests/early_answer.wit`) sets a 200 response and writes the first bytes of its
//! body, then reads the request body to its end, then finishes the response body and
//! does what [`After`] says. The client sends only half of the request body until it
//! has the response's head and first bytes: so they provably went out while the guest
//! was still running (it cannot go on before the rest comes), with no timing involved.
//! When `../shared/tools/spin` (or `$SPIN`) is there, the same guest and client run on
//! the real Spin 3.6.3 too; otherwise that half prints `SKIPPED`.

mod common;

use common::process::Served;
use host_sim::up::{self, Limits, StateDir, UpConfig};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the guest does once its response is complete.
#[derive(Clone, Copy)]
enum After {
    /// Returns.
    Return,
    /// Traps.
    Trap,
    /// Loops until the platform kills it.
    LoopForever,
}

/// The guest as a component (see the module's documentation).
fn guest(after: After) -> Vec<u8> {
    let after = match after {
        After::Return => "",
        After::Trap => "unreachable",
        After::LoopForever => "(loop $forever (br $forever))",
    };
    let wat = include_str!("guests/early_answer.wat").replace("{AFTER}", after);
    let mut module = wat::parse_str(&wat).expect("the guest's WAT parses");
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("early_answer.wit", include_str!("guests/early_answer.wit")).expect("the guest's WIT parses");
    let world = resolve.select_world(&[package], Some("guest")).unwrap();
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    wit_component::ComponentEncoder::default().validate(true).module(&module).unwrap().encode().expect("the guest componentizes")
}

/// A Spin app in `dir` serving the guest on every route.
fn app(dir: &Path, after: After) -> PathBuf {
    std::fs::write(dir.join("early.wasm"), guest(after)).unwrap();
    let manifest = dir.join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"early\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"early\"\n\
         [component.early]\nsource = \"early.wasm\"\n",
    )
    .unwrap();
    manifest
}

/// `host-sim up` of the app in-process, with a time limit of `time`.
async fn host_sim(dir: &Path, after: After, time: Duration) -> up::Running {
    let config = UpConfig {
        manifest: app(dir, after),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        variables: vec![],
        dirs: vec![],
        state_dir: StateDir::KvFile(dir.join("kv.sqlite")),
        runtime_config: None,
        outbound_mbps: None,
        connection_pooling: true,
        limits: Limits { time, ..Limits::default() },
        chaos_kill_rate: 0.0,
        chaos_window: Duration::ZERO,
        seed: 0,
        tick: None,
    };
    up::server::start(config).await.unwrap()
}

/// The request body the client announces; it sends the first half at once.
const BODY: &[u8] = b"0123456789";

/// Reads from `conn` until what it read ends with `end` (bounded: 20 s).
async fn read_until(conn: &mut TcpStream, read: &mut Vec<u8>, end: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read.ends_with(end) {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(left, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!("nothing ending with {:?} within 20 s; got {:?}", String::from_utf8_lossy(end), String::from_utf8_lossy(read))
            })
            .unwrap();
        assert!(n > 0, "the connection closed: {:?}", String::from_utf8_lossy(read));
        read.extend_from_slice(&buf[..n]);
    }
}

/// A request to the guest: its head and the first half of [`BODY`] are sent at once,
/// the rest by [`Request::send_the_rest`].
struct Request {
    conn: TcpStream,
    read: Vec<u8>,
}

impl Request {
    /// Sends the head and half the body, and reads the response's head and first
    /// chunk, which the guest writes before it reads the request body.
    async fn start(addr: SocketAddr) -> Request {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let head = format!("POST /work HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n", BODY.len());
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&BODY[..BODY.len() / 2]).await.unwrap();
        let mut read = Vec::new();
        read_until(&mut conn, &mut read, b"\r\n6\r\nearly\n\r\n").await;
        let text = String::from_utf8_lossy(&read);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{text}");
        Request { conn, read }
    }

    /// Sends the rest of the body and reads the response to its end (its last chunk).
    async fn send_the_rest(mut self) -> String {
        self.conn.write_all(&BODY[BODY.len() / 2..]).await.unwrap();
        read_until(&mut self.conn, &mut self.read, b"\r\n0\r\n\r\n").await;
        String::from_utf8(self.read).unwrap()
    }
}

/// Polls `counter` of `host` until it is at least `n` (bounded: 20 s).
async fn wait_for(host: &up::Running, what: &str, counter: impl Fn(&up::HostStats) -> u64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter(&host.stats) < n {
        assert!(Instant::now() < deadline, "{what} did not reach {n} within 20 s: {:?}", host.stats);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_goes_out_before_the_guest_ends() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_sim(dir.path(), After::Return, Duration::from_secs(30)).await;
    let request = Request::start(host.addr).await;
    // The guest cannot have ended: it waits for the rest of the request body.
    assert_eq!(host.stats.ended.load(Ordering::Relaxed), 0, "{:?}", host.stats);
    request.send_the_rest().await;
    wait_for(&host, "ended", |s| s.ended.load(Ordering::Relaxed), 1).await;
    assert_eq!(host.stats.failures.load(Ordering::Relaxed), 0, "{:?}", host.stats);
    assert_eq!(host.stats.timeouts.load(Ordering::Relaxed), 0, "{:?}", host.stats);

    let Some(spin) = real_spin("the_response_goes_out_before_the_guest_ends") else { return };
    let spin_dir = tempfile::tempdir().unwrap();
    let manifest = app(spin_dir.path(), After::Return);
    let mut cmd = Command::new(spin);
    cmd.args(["up", "--listen", "127.0.0.1:0", "-f"]).arg(&manifest).arg("--state-dir").arg(spin_dir.path().join("state"));
    // Its own process group, to stop `spin up` and the `spin trigger http` it runs.
    cmd.process_group(0);
    let spin = Served::start("spin", spin_dir.path(), cmd, "Serving http://", true);
    Request::start(spin.addr).await.send_the_rest().await;
}

/// A guest that traps after answering: the client has its whole answer, the failure is
/// counted (and logged as Spin logs it, "Component error after response started").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_after_the_answer_is_counted_and_the_answer_stands() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_sim(dir.path(), After::Trap, Duration::from_secs(30)).await;
    Request::start(host.addr).await.send_the_rest().await;
    wait_for(&host, "ended", |s| s.ended.load(Ordering::Relaxed), 1).await;
    assert_eq!(host.stats.failures.load(Ordering::Relaxed), 1, "{:?}", host.stats);
}

/// The time limit holds for the work after the answer: a guest looping after it is
/// killed (here at 300 ms, which the test waits out, bounded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_applies_after_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_sim(dir.path(), After::LoopForever, Duration::from_millis(300)).await;
    Request::start(host.addr).await.send_the_rest().await;
    wait_for(&host, "ended", |s| s.ended.load(Ordering::Relaxed), 1).await;
    assert_eq!(host.stats.timeouts.load(Ordering::Relaxed), 1, "{:?}", host.stats);
}

/// The real Spin CLI, or `None` after saying why the Spin half is skipped.
fn real_spin(test: &str) -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spin = std::env::var_os("SPIN").map_or_else(|| repo.join("../shared/tools/spin"), PathBuf::from);
    if spin.exists() {
        Some(spin)
    } else {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED ({test}): the real Spin is not at {}; only host-sim was checked", spin.display());
        None
    }
}
