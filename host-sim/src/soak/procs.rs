//! Servers the soak runs as child processes (`host-sim up`, `host-sim vod`): started,
//! their address read from the line they print when ready, killed with `SIGKILL` when
//! the soak says so (or when dropped), and started again on the same port.

use anyhow::{anyhow, bail, Context as _};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// How long a start may take: `host-sim up` compiles the component first (seconds on
/// 2 busy cores).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// What the servers print, followed by their address, once they listen.
const READY: &str = " listening on ";

/// A `host-sim` subcommand in a child process, its stderr appended to a log file.
pub struct Proc {
    /// For messages: `up1`, `vod`, ...
    pub name: String,
    /// The address it listens on (kept across restarts).
    pub addr: SocketAddr,
    /// Its log (stderr of every run).
    pub log: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    rust_log: String,
    child: Option<Child>,
    /// Kept open: a closed pipe would make a later print fail.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    /// Starts `bin ARGS --listen 127.0.0.1:0` with `RUST_LOG=rust_log`, its log in
    /// `dir/name.log`, and waits (bounded) for its address.
    pub async fn start(name: &str, bin: &Path, args: Vec<String>, rust_log: &str, dir: &Path) -> anyhow::Result<Proc> {
        let mut proc = Proc {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: dir.join(format!("{name}.log")),
            bin: bin.to_owned(),
            args,
            rust_log: rust_log.to_owned(),
            child: None,
            _stdout: None,
        };
        proc.launch().await?;
        Ok(proc)
    }

    /// Kills it (`SIGKILL`: nothing is flushed or closed on its way out) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._stdout = None;
    }

    /// Starts it again on the address it had. The port was just freed, so a bind may
    /// fail for a moment: tried again for up to 10 s.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut last = None;
        for _ in 0..50 {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last.unwrap_or_else(|| anyhow!("never started")).context(format!("{} did not start again on {}", self.name, self.addr)))
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.bin);
        // A group of its own: a Ctrl-C in the terminal reaches only the soak, which
        // reports and then stops its children (dropping them), rather than children
        // dying under a soak that still reads their counters.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .args(&self.args)
            .args(["--listen", &self.addr.to_string()])
            .env("RUST_LOG", &self.rust_log)
            // Plain log lines (no colour escapes), which the soak reads back.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<(SocketAddr, BufReader<ChildStdout>)> {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    bail!("it exited before listening");
                }
                if let Some(at) = line.find(READY) {
                    let addr = line[at + READY.len()..].trim().parse().with_context(|| format!("{line:?}"))?;
                    return Ok((addr, reader));
                }
            }
        });
        let outcome = match tokio::time::timeout(START_TIMEOUT, reader).await {
            Ok(joined) => joined.map_err(anyhow::Error::from).and_then(|r| r),
            Err(_) => Err(anyhow!("no address printed within {START_TIMEOUT:?}")),
        };
        match outcome {
            Ok((addr, reader)) => {
                self.addr = addr;
                self.child = Some(child);
                self._stdout = Some(reader);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e.context(format!("{} did not start; the end of its log:\n{}", self.name, tail(&self.log_text(), 15))))
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
