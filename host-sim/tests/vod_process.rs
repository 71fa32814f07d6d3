//! The `host-sim` binary as users run it: kill and restart, the command line, and
//! requests built by hand with curl.

mod common;

use common::*;
use host_sim::vod::{DEV_SECRET_ID, DEV_SECRET_KEY};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_host-sim");
const HALF: u64 = 524_288;

/// Starts `host-sim vod` on a free port; returns the child and the printed address.
fn spawn_vod(data: &Path, extra: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["vod", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("host-sim vod listening on ").unwrap_or_else(|| panic!("{line:?}"));
    (child, addr.parse().unwrap())
}

#[tokio::test]
async fn kill_and_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(7 * HALF as usize + 333, 21);
    let sha = sha1_hex(&bytes);
    let chunks: Vec<&[u8]> = bytes.chunks(HALF as usize).collect();

    let (mut first, addr) = spawn_vod(dir.path(), &[]);
    assert_eq!(Call::init(&sha, bytes.len() as u64, HALF).send(addr).await.code(), 0);
    for i in [0usize, 3, 7] {
        assert_eq!(Call::part(&sha, i as u64 * HALF, chunks[i]).send(addr).await.code(), 0);
    }
    first.kill().unwrap(); // SIGKILL: no shutdown code runs
    first.wait().unwrap();

    let (mut second, addr) = spawn_vod(dir.path(), &[]);
    let resumed = Call::init(&sha, bytes.len() as u64, 1_048_576).send(addr).await;
    assert_eq!(resumed.code(), 1, "{resumed:?}");
    assert_eq!(resumed.json["dataSize"], HALF);
    let listed: Vec<u64> = resumed.json["listParts"].as_array().unwrap().iter().map(|p| p["offset"].as_u64().unwrap()).collect();
    assert_eq!(listed, vec![0, 3 * HALF, 7 * HALF]);
    for i in [1usize, 2, 4, 5, 6] {
        assert_eq!(Call::part(&sha, i as u64 * HALF, chunks[i]).send(addr).await.code(), 0);
    }
    let done = Call::finish(&sha).send(addr).await;
    assert_eq!(done.code(), 0, "{done:?}");
    second.kill().unwrap();
    second.wait().unwrap();

    // The finished file survives a restart too.
    let (mut third, addr) = spawn_vod(dir.path(), &[]);
    let instant = Call::init(&sha, bytes.len() as u64, HALF).send(addr).await;
    assert_eq!((instant.code(), &instant.json["fileId"]), (2, &done.json["fileId"]));
    let (_, stored) = get(addr, &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
    assert!(stored == bytes);
    third.kill().unwrap();
    third.wait().unwrap();
}

#[tokio::test]
async fn credentials_and_fault_flags_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_vod(
        dir.path(),
        &[
            "--secret-id",
            "AKIDa",
            "--secret-key",
            "ka",
            "--secret-id",
            "AKIDb",
            "--secret-key",
            "kb",
            "--fault-rate",
            "1",
            "--fault-kinds",
            "http503",
        ],
    );
    let mut call = Call::init(&sha1_hex(b"x"), 1, HALF).with("SecretId", "AKIDb");
    call.key = "kb".into();
    assert_eq!(call.send(addr).await.status, 503);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr) = spawn_vod(dir.path(), &["--secret-id", "AKIDa", "--secret-key", "ka", "--timestamp-window", "5"]);
    let mut call = Call::init(&sha1_hex(b"x"), 1, HALF).with("SecretId", "AKIDa").with("Timestamp", &(now() - 60).to_string());
    call.key = "ka".into();
    call.send(addr).await.refused(-10002, "±5 s");
    child.kill().unwrap();
    child.wait().unwrap();

    // Unpaired credentials are a usage error, named.
    let out = Command::new(BIN).args(["vod", "--secret-id", "AKIDa", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in pairs"));
    let out = Command::new(BIN).args(["vod", "--fault-rate", "1.5"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("from 0 to 1"));
}

#[test]
fn sign_reproduces_the_documented_vectors() {
    let run = |params: &str| {
        let out = Command::new(BIN)
            .args([
                "sign",
                "--method",
                "GET",
                "--host",
                "cvm.api.qcloud.com",
                "--path",
                "/v2/index.php",
                "--key",
                "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA",
            ])
            .args(params.split('&'))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(
        run("Action=DescribeInstances&Nonce=11886&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&Timestamp=1465185768&instanceIds.0=ins-09dx96dg&limit=20&offset=0"),
        "NSI3UqqD99b/UJb4tbG/xZpRW64="
    );
    assert_eq!(
        run("Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&SignatureMethod=HmacSHA256&Timestamp=1465185768"),
        "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s="
    );
}

#[test]
fn vod_help_documents_every_flag() {
    let out = Command::new(BIN).args(["vod", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data",
        "--secret-id",
        "--secret-key",
        "--timestamp-window",
        "--rate-init",
        "--rate-part",
        "--rate-finish",
        "--fault-rate",
        "--fault-kinds",
        "--seed",
        "--slow-ms",
        "--notify-url",
        "--app-id",
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag)).unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        // Each flag has a description of its own (on the same or the next line).
        let next = help.lines().skip_while(|l| *l != line).nth(1).unwrap_or("");
        assert!(line.trim().len() > flag.len() + 10 || !next.trim().is_empty(), "{flag} is undocumented");
    }
    for kind in ["error", "http503", "http500", "drop-before", "drop-after", "slow"] {
        assert!(help.contains(kind), "fault kind {kind} not listed");
    }
}

#[test]
fn requests_built_by_hand_with_curl_and_host_sim_sign() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_vod(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/by_hand.sh");
    let out = Command::new("bash").arg(script).args([BIN, &addr.to_string(), DEV_SECRET_ID, DEV_SECRET_KEY]).output().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok: ")).count(), 11, "{stdout}");
}

/// `text` without ANSI colour sequences (ESC [ ... m), which the log may carry.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn every_injected_fault_is_logged_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vod.log");
    let mut child = Command::new(BIN)
        .args(["vod", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .args(["--fault-rate", "1", "--seed", "5", "--slow-ms", "1"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("host-sim vod listening on ").unwrap().parse().unwrap();
    // Every request meets a fault, of a kind drawn per request: 60 requests meet all six
    // (the draw is a function of the seed and the request, so this is the same every run).
    let mut signatures = Vec::new();
    for i in 0..60 {
        let call = Call::init(&sha1_hex(&data(10, i)), 10, HALF);
        let signed = call.signed(addr);
        signatures.push(signed.iter().find(|(k, _)| k == "Signature").unwrap().1.clone());
        let _ = send_raw("GET", &url_of(addr, "/v2/index.php", &signed), None).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    for kind in ["Error", "Http503", "Http500", "DropBefore", "DropAfter", "Slow"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("fault=Some({kind})")))
            .unwrap_or_else(|| panic!("no log line for fault kind {kind}:\n{log}"));
        assert!(line.contains("InitUpload") && line.contains("file_sha="), "{line}");
    }
    assert!(!log.contains(DEV_SECRET_KEY), "the secret key is logged");
    for signature in &signatures {
        assert!(!log.contains(signature.as_str()), "a signature is logged");
    }
}
