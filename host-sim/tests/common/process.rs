//! Servers that a test runs as child processes (`host-sim up`, `host-sim vod`,
//! `host-sim files`, the real `spin up`): started, their address read from the line
//! they print when ready, stopped with the test, and their log shown when it fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// A server in a child process, its log (stderr) in a file. Dropping it stops it (the
/// whole process group when `group`) and reaps it; when the test is failing, the end
/// of its log is printed.
pub struct Served {
    pub name: String,
    pub addr: SocketAddr,
    pub child: Child,
    pub log: PathBuf,
    /// `spin up` runs the app in a child process of its own: the whole process group
    /// is stopped.
    group: bool,
    /// Kept open: the server may print more.
    _stdout: BufReader<ChildStdout>,
}

impl Served {
    /// Starts `cmd` with its stderr in a new file under `dir` and reads its stdout up
    /// to the line holding `ready`: the address follows it.
    pub fn start(name: &str, dir: &Path, mut cmd: Command, ready: &str, group: bool) -> Served {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let log = dir.join(format!("{name}-{}-{}.log", std::process::id(), STARTED.fetch_add(1, Ordering::Relaxed)));
        cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!("{name} did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if let Some(at) = line.find(ready) {
                break line[at + ready.len()..].trim().parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
            }
        };
        Served { name: name.to_owned(), addr, child, log, group, _stdout: stdout }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.group {
            // SIGTERM to the group ends `spin up` and its trigger process cleanly (the
            // key-value file closed); SIGKILL afterwards leaves nothing behind.
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = self.child.wait();
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- last lines of {} ({}) ----\n{}",
                self.name,
                self.log.display(),
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

/// `BIN up` of `manifest` on a free loopback port, with `--variable`s `vars`.
pub fn up_command(bin: &Path, manifest: &Path, vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["up", "--listen", "127.0.0.1:0", "--manifest"]).arg(manifest);
    for (name, value) in vars {
        cmd.arg("--variable").arg(format!("{name}={value}"));
    }
    cmd
}

/// Starts `host-sim up` as `cmd` made it, logging at `RUST_LOG` level `log_level`.
pub fn host_sim_up(dir: &Path, mut cmd: Command, log_level: &str) -> Served {
    cmd.env("RUST_LOG", log_level);
    Served::start("host-sim", dir, cmd, "host-sim up listening on ", false)
}
