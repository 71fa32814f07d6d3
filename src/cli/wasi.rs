//! The command under WASI (`wasmtime run -S http`): its [`Io`] (wasi-http for the
//! service and URL sources, the checkpoint directory for the store, WASI files for
//! local sources) and its `main`.

use super::args::{self, Command, Env, HELP};
use super::dir_store::DirStore;
use super::exit::Exit;
use super::run::{self, Terminal};
use crate::engine::IoError;
use crate::wasi_platform::{KeyValue, WasiIo};
use std::cell::Cell;
use std::io::Write as _;

/// The command's platform.
pub(crate) type CliIo = WasiIo<DirKv>;

/// The checkpoint directory as the engine's store.
pub(crate) struct DirKv {
    store: DirStore,
    /// Makes temporary file names unique within this run (with the random part).
    writes: Cell<u64>,
    run_tag: u64,
}

impl KeyValue for DirKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.store.get(key).map_err(IoError::new)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.writes.set(self.writes.get() + 1);
        self.store.set(key, value, self.run_tag ^ self.writes.get()).map_err(IoError::new)
    }

    fn delete(&self, key: &str) -> Result<(), IoError> {
        self.store.delete(key).map_err(IoError::new)
    }

    fn keys(&self) -> Result<Vec<String>, IoError> {
        self.store.keys().map_err(IoError::new)
    }
}

/// The checkpoint directory: `--state`, else `VOD_STATE`, else `.vod-upload` in the
/// first directory the runtime granted (a WASI program has no working directory).
fn state_dir(inv: &args::Invocation, env: &Env) -> Result<String, String> {
    if let Some(dir) = inv.state.as_deref().or(env.get("VOD_STATE")) {
        return Ok(dir.to_owned());
    }
    let granted = wasi::filesystem::preopens::get_directories();
    match granted.first() {
        Some((_, path)) => Ok(format!("{}/.vod-upload", path.trim_end_matches('/'))),
        None => Err("no directory is granted for checkpoints: run wasmtime with --dir HOST_DIR::/data (or pass --state)".into()),
    }
}

/// The command: reads its arguments and environment, runs, and says how it ended.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::new(std::env::vars());
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let err_is_terminal = wasi::cli::terminal_stderr::get_terminal_stderr().is_some();
    let mut term = Terminal { out: &mut out, err: &mut err, err_is_terminal };
    let inv = match args::parse(&argv) {
        Ok(inv) => inv,
        Err(usage) => {
            term.say(&format!("error: {usage}"));
            return Exit::Usage.code();
        }
    };
    match inv.command {
        Command::Help => {
            let _ = std::io::Write::write_all(term.out, HELP.as_bytes());
            return Exit::Ok.code();
        }
        Command::Version => {
            let _ = writeln!(term.out, "vod-upload {}", env!("CARGO_PKG_VERSION"));
            return Exit::Ok.code();
        }
        _ => {}
    }
    let dir = match state_dir(&inv, &env) {
        Ok(dir) => dir,
        Err(problem) => {
            term.say(&format!("error: {problem}"));
            return Exit::Storage.code();
        }
    };
    let store = match DirStore::open(&dir) {
        Ok(store) => store,
        Err(e) => {
            term.say(&format!("error: cannot use the checkpoint directory {dir}: {e}"));
            return Exit::Storage.code();
        }
    };
    let tag = wasi::random::random::get_random_u64();
    let io = CliIo { store: DirKv { store, writes: Cell::new(0), run_tag: tag } };
    let exit = spin_executor::run(run::run(&io, &inv, &env, &mut term));
    exit.code()
}

/// Ends the program with `code`. `std::process::exit` would go through preview1's
/// `proc_exit`, which the command adapter reports as 1 for every nonzero code; WASI
/// 0.2.12's `exit-with-code` carries the code itself (wasmtime 48 serves it).
pub fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if code == 0 {
        std::process::exit(0)
    }
    wasip2::cli::exit::exit_with_code(code.clamp(1, 255) as u8);
    // Not reached on a host that serves exit-with-code.
    std::process::exit(code)
}
