//! The commands, over any [`Io`]: what `vod-upload` does once its arguments are read.
//! The upload is the engine's, in rounds of `--budget-ms` each ending on a checkpoint,
//! until it is done, fails, or waits longer than `--max-wait` for a retry.

use super::args::{Command, Env, Invocation, UploadArgs};
use super::exit::Exit;
use crate::api::{answer::error_code, parse_create};
use crate::engine::{self, Io, Settings};
use crate::error::Error;
use crate::protocol::{Credentials, Endpoint, Signer, DEFAULT_ENDPOINT};
use crate::sign::Algorithm;
use crate::source::SourcePolicy;
use crate::upload::{self, State, Upload};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The default round of work between two checkpoints of the whole upload: short, so
/// that the progress line moves and a rerun after a kill finds recent checkpoints (the
/// engine checkpoints within a round too, every two seconds).
pub const DEFAULT_BUDGET_MS: u64 = 5_000;

/// Retryable errors in a row (without progress) before the command gives up its run.
const ERRORS_IN_A_ROW: u32 = 5;

/// Where the command writes: results on `out` (JSON for scripts, or short lines for
/// people), progress and errors on `err`.
pub struct Terminal<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Whether standard error is a terminal: a progress line redrawn in place, else a
    /// plain log line per round.
    pub err_is_terminal: bool,
}

impl Terminal<'_> {
    /// A line for people on standard error.
    pub fn say(&mut self, line: &str) {
        if self.err_is_terminal {
            // Clears a progress line first.
            let _ = write!(self.err, "\r\x1b[2K");
        }
        let _ = writeln!(self.err, "{line}");
    }

    fn result(&mut self, value: &Value) {
        let _ = writeln!(self.out, "{value}");
    }
}

/// The engine's settings from the environment. Errors name the variable, never a
/// value.
pub fn settings(env: &Env, inv: &Invocation) -> Result<Settings, String> {
    let required =
        |name: &str| env.get(name).map(str::to_owned).ok_or_else(|| format!("{name} is not set: pass it to wasmtime with --env {name}"));
    let endpoint = env.get("VOD_ENDPOINT").unwrap_or(DEFAULT_ENDPOINT);
    let signer = Signer {
        endpoint: Endpoint::parse(endpoint).map_err(|e| format!("VOD_ENDPOINT: {e}"))?,
        credentials: Credentials::new(required("VOD_SECRET_ID")?, required("VOD_SECRET_KEY")?),
        region: env.get("VOD_REGION").unwrap_or("gz").to_owned(),
        algorithm: Algorithm::HmacSha1,
    };
    let mut settings = Settings::new(signer);
    let budget = match (inv.budget_ms, env.get("VOD_BUDGET_MS")) {
        (Some(ms), _) => ms,
        (None, Some(text)) => text.trim().parse().map_err(|_| "VOD_BUDGET_MS must be a whole number of milliseconds".to_owned())?,
        (None, None) => DEFAULT_BUDGET_MS,
    };
    settings.budget = Duration::from_millis(budget.max(1));
    if let Some(text) = env.get("VOD_CONCURRENCY") {
        let n: usize = text.trim().parse().map_err(|_| "VOD_CONCURRENCY must be a whole number".to_owned())?;
        settings.concurrency = n.clamp(1, 32);
    }
    // One store on a local disk: a lease's write is visible at once.
    settings.lease_settle = Duration::from_millis(5);
    Ok(settings)
}

/// Where the checkpoint directory keeps its lease owner.
pub const OWNER_KEY: &str = "vod-upload/owner";

/// The lease owner of a checkpoint directory (see [`Settings::lease_owner`]): made by
/// the first upload, kept in the directory, so that a run takes back at once what a
/// killed run before it held.
pub async fn lease_owner<I: Io>(io: &I) -> Result<String, engine::IoError> {
    if let Some(bytes) = io.kv_get(OWNER_KEY).await? {
        if let Ok(owner) = String::from_utf8(bytes) {
            if !owner.is_empty() {
                return Ok(owner);
            }
        }
    }
    let owner = format!("cli-{:08x}{:08x}", io.random(), io.random());
    io.kv_set(OWNER_KEY, owner.as_bytes()).await?;
    Ok(owner)
}

/// Runs one command.
pub async fn run<I: Io>(io: &I, inv: &Invocation, env: &Env, term: &mut Terminal<'_>) -> Exit {
    match &inv.command {
        Command::Help | Command::Version => Exit::Ok,
        Command::List => list(io, inv, term).await,
        Command::Status(id) => status(io, id.as_deref(), term).await,
        Command::Cancel(id) => cancel(io, id, term).await,
        Command::Upload(args) => match settings(env, inv) {
            Err(problem) => {
                term.say(&format!("error: {problem}"));
                Exit::Config
            }
            Ok(mut settings) => match lease_owner(io).await {
                Ok(owner) => {
                    settings.lease_owner = Some(owner);
                    upload(io, &settings, inv, args, term).await
                }
                Err(e) => {
                    term.say(&format!("error: cannot write in the checkpoint directory: {e}"));
                    Exit::Storage
                }
            },
        },
    }
}

/// The answer about an id the checkpoint directory does not hold.
fn no_upload(term: &mut Terminal<'_>, id: &str) -> Exit {
    term.say(&format!("error: no upload {id} in this checkpoint directory (see list)"));
    Exit::Usage
}

/// Says what went wrong and returns the exit that goes with it.
fn failed(term: &mut Terminal<'_>, what: &str, e: &Error) -> Exit {
    term.say(&format!("error: {what}: {} ({})", e, e.code()));
    Exit::of_code(e.code(), e.retryable())
}

async fn list<I: Io>(io: &I, inv: &Invocation, term: &mut Terminal<'_>) -> Exit {
    let listing = match engine::list(io).await {
        Ok(listing) => listing,
        Err(e) => return failed(term, "cannot read the checkpoint directory", &e),
    };
    for up in &listing.uploads {
        let status = upload::status(up);
        if inv.json {
            term.result(&status);
        } else {
            let (state, source) = (status["state"].as_str().unwrap_or("?"), status["source"].as_str().unwrap_or(""));
            let line = format!("{}  {state:<10} {}  {source}", up.id, progress_words(up));
            let _ = writeln!(term.out, "{line}");
        }
    }
    for id in &listing.unreadable {
        term.say(&format!("warning: the checkpoint of upload {id} cannot be read"));
    }
    Exit::Ok
}

async fn status<I: Io>(io: &I, id: Option<&str>, term: &mut Terminal<'_>) -> Exit {
    let Some(id) = id else {
        return match engine::list(io).await {
            Ok(listing) => {
                term.result(
                    &json!({ "uploads": listing.uploads.iter().map(upload::status).collect::<Vec<_>>(), "unreadable": listing.unreadable }),
                );
                Exit::Ok
            }
            Err(e) => failed(term, "cannot read the checkpoint directory", &e),
        };
    };
    match engine::load(io, id).await {
        Ok(Some(up)) => {
            term.result(&upload::status(&up));
            Exit::Ok
        }
        Ok(None) => no_upload(term, id),
        Err(e) => failed(term, &format!("cannot read upload {id}"), &e),
    }
}

async fn cancel<I: Io>(io: &I, id: &str, term: &mut Terminal<'_>) -> Exit {
    match engine::cancel(io, id).await {
        Ok(Some(up)) => {
            let done = up.state() == State::Done;
            term.say(&format!("upload {id} {}", if done { "forgotten (the service keeps its file)" } else { "cancelled" }));
            term.result(&upload::status(&up));
            Exit::Ok
        }
        Ok(None) => no_upload(term, id),
        Err(e) => failed(term, &format!("cannot cancel upload {id}"), &e),
    }
}

/// `hashed 1.2 of 4.0 GiB, uploaded 0 B`.
fn progress_words(up: &Upload) -> String {
    let size = up.identity.size;
    format!("hashed {} of {}, uploaded {}", bytes(up.hashed_bytes()), bytes(size), bytes(up.uploaded_bytes()))
}

/// Bytes for people: `512 B`, `3.2 MiB`, `1.05 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration for people: `42s`, `3m07s`, `2h05m`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The request body `parse_create` reads, from the command line: one set of rules for
/// the API and the command.
fn create_body(args: &UploadArgs) -> Vec<u8> {
    let mut body = json!({ "source": args.source });
    let map = body.as_object_mut().expect("object");
    if let Some(name) = &args.file_name {
        map.insert("fileName".into(), json!(name));
    }
    if let Some(t) = &args.file_type {
        map.insert("fileType".into(), json!(t));
    }
    if !args.tags.is_empty() {
        map.insert("tags".into(), json!(args.tags));
    }
    if let Some(class) = args.class_id {
        map.insert("classId".into(), json!(class));
    }
    for (name, on) in [("isTranscode", args.transcode), ("isScreenshot", args.screenshot), ("isWatermark", args.watermark)] {
        if on {
            map.insert(name.into(), json!(true));
        }
    }
    body.to_string().into_bytes()
}

/// What this run has done, for the progress line: bytes hashed and uploaded since it
/// started, over its time.
struct Rate {
    started: Duration,
    first: (u64, u64),
}

impl Rate {
    /// The progress line of a file of `size` bytes, `hashed` and `uploaded` so far.
    fn line(&self, now: Duration, size: u64, hashed: u64, uploaded: u64) -> String {
        let secs = now.saturating_sub(self.started).as_secs_f64().max(0.001);
        let (phase, done, first) = if hashed < size { ("hashing", hashed, self.first.0) } else { ("uploading", uploaded, self.first.1) };
        let rate = done.saturating_sub(first) as f64 / secs;
        // What is left of both passes, at this run's rate of the current one.
        let left = 2 * size - hashed.min(size) - uploaded.min(size);
        let eta = if rate > 0.0 { format!(", ETA {}", duration((left as f64 / rate) as u64)) } else { String::new() };
        format!(
            "{phase} {:>3}%  hashed {} / uploaded {} of {}  {}/s{eta}",
            100 * done / size.max(1),
            bytes(hashed),
            bytes(uploaded),
            bytes(size),
            bytes(rate as u64)
        )
    }
}

/// Cancels the unfinished uploads of the same source made before it changed (another
/// size or modification time, so another upload): their bytes are gone, and a later
/// run would only fail them as `source_changed`.
async fn cancel_changed<I: Io>(io: &I, new: &Upload, term: &mut Terminal<'_>) {
    let Ok(listing) = engine::list(io).await else { return };
    let stale = listing.uploads.iter().filter(|old| old.id != new.id && old.spec.source == new.spec.source && !old.state().is_final());
    for old in stale {
        term.say(&format!(
            "upload {}: its source changed since it began ({} then, {} now); it is cancelled, and {} starts over",
            old.id,
            bytes(old.identity.size),
            bytes(new.identity.size),
            new.id
        ));
        if let Err(e) = engine::cancel(io, &old.id).await {
            term.say(&format!("warning: upload {} could not be cancelled: {e} (cancel it with `cancel {}`)", old.id, old.id));
        }
    }
}

async fn upload<I: Io>(io: &I, settings: &Settings, inv: &Invocation, args: &UploadArgs, term: &mut Terminal<'_>) -> Exit {
    // The sandbox is the limit: any path it grants, any http(s) origin.
    let policy = SourcePolicy { allowed_origins: vec!["*".into()], local_root: Some(String::new()), s3: false };
    let spec = match parse_create(&create_body(args), &policy) {
        Ok(spec) => spec,
        Err(refused) => {
            let code = error_code(&refused).unwrap_or("bad_request").to_owned();
            let message = refused.body["error"]["message"].as_str().unwrap_or_default().to_owned();
            term.say(&format!("error: {message} ({code})"));
            return Exit::of_code(&code, false);
        }
    };
    // As the status shows it: a presigned URL's query is a credential, never printed.
    let shown = upload::display_source(&spec.source);
    let (up, created) = match engine::create(io, settings, spec).await {
        Ok(found) => found,
        Err(e) => return failed(term, &format!("cannot start the upload of {shown}"), &e),
    };
    let id = up.id.clone();
    if created {
        term.say(&format!("upload {id}: {shown} ({}), new", bytes(up.identity.size)));
        cancel_changed(io, &up, term).await;
    } else {
        term.say(&format!("upload {id}: {shown} resumed: {}", progress_words(&up)));
    }
    let rate = Rate { started: io.now(), first: (up.hashed_bytes(), up.uploaded_bytes()) };
    let mut errors_in_a_row = 0u32;
    let mut last = (up.hashed_bytes(), up.uploaded_bytes());
    loop {
        let started = io.now();
        let up = match engine::advance(io, settings, &id, started).await {
            Ok(Some(up)) => up,
            Ok(None) => {
                term.say(&format!("error: upload {id} is gone: another run cancelled it"));
                return Exit::Failed;
            }
            Err(e) if e.retryable() && errors_in_a_row + 1 < ERRORS_IN_A_ROW => {
                errors_in_a_row += 1;
                term.say(&format!("trouble ({}), trying again: {e}", e.code()));
                io.sleep(Duration::from_secs(1 << errors_in_a_row)).await;
                continue;
            }
            Err(e) => return failed(term, &format!("upload {id}"), &e),
        };
        errors_in_a_row = 0;
        match up.state() {
            State::Done => {
                term.say(&format!("upload {id}: done: fileId {}", up.file_id().unwrap_or("?")));
                term.result(&upload::status(&up));
                return Exit::Ok;
            }
            State::Cancelled => {
                term.say(&format!("upload {id}: cancelled by another run"));
                return Exit::Failed;
            }
            State::Failed => {
                let (code, message) = up.error().map(|e| (e.code.clone(), e.message.clone())).unwrap_or_default();
                term.say(&format!("upload {id} failed: {message} ({code})"));
                term.result(&upload::status(&up));
                let exit = Exit::of_code(&code, false);
                // A failed upload is not retryable as such: its trouble was given up on.
                return if exit == Exit::TryAgain { Exit::Failed } else { exit };
            }
            _ => {}
        }
        let line = rate.line(io.now(), up.identity.size, up.hashed_bytes(), up.uploaded_bytes());
        if term.err_is_terminal {
            let _ = write!(term.err, "\r\x1b[2K{line}");
            let _ = term.err.flush();
        } else {
            term.say(&format!("upload {id}: {line}"));
        }
        // No progress and nothing to wait for: another process holds the work (its
        // lease), so ask again in a while rather than at once.
        let now = (up.hashed_bytes(), up.uploaded_bytes());
        if now == last && up.retry_after().is_none() {
            io.sleep(Duration::from_millis(500)).await;
        }
        last = now;
        if let (Some(at), Some(error)) = (up.retry_after(), up.error()) {
            let wait = at.saturating_sub(io.unix_now());
            if wait > inv.max_wait_secs {
                term.say(&format!(
                    "upload {id}: {} ({}); the next attempt is due in {}: run the same command again then",
                    error.message,
                    error.code,
                    duration(wait)
                ));
                return Exit::TryAgain;
            }
            if wait > 0 {
                term.say(&format!("upload {id}: {} ({}); trying again in {}", error.message, error.code, duration(wait)));
                io.sleep(Duration::from_secs(wait)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_text_says_the_defaults() {
        assert!(crate::cli::HELP.contains(&format!("(default {DEFAULT_BUDGET_MS};")), "--budget-ms");
        assert!(crate::cli::HELP.contains(&format!("(default {DEFAULT_ENDPOINT})")), "VOD_ENDPOINT");
        let max_wait = format!("code 75 (default {})", super::super::args::DEFAULT_MAX_WAIT_SECS);
        assert!(crate::cli::HELP.contains(&max_wait), "--max-wait");
    }

    #[test]
    fn figures_for_people() {
        assert_eq!(
            (bytes(0), bytes(1023), bytes(1536), bytes(300 << 20), bytes(5 << 30)),
            ("0 B".into(), "1023 B".into(), "1.5 KiB".into(), "300 MiB".into(), "5.0 GiB".into())
        );
        assert_eq!((duration(42), duration(187), duration(7500)), ("42s".into(), "3m07s".into(), "2h05m".into()));
    }

    #[test]
    fn the_progress_line_says_phase_share_rate_and_eta() {
        const MIB: u64 = 1 << 20;
        // Resumed at 1 MiB hashed, 2 MiB more in 2 s: 1 MiB/s, 4 + 10 MiB left.
        let rate = Rate { started: Duration::from_secs(10), first: (MIB, 0) };
        let line = rate.line(Duration::from_secs(12), 10 * MIB, 3 * MIB, 0);
        assert_eq!(line, "hashing  30%  hashed 3.0 MiB / uploaded 0 B of 10.0 MiB  1.0 MiB/s, ETA 17s");
        // Hashed; the upload pass's own rate: 5 MiB in 5 s, 5 MiB left.
        let rate = Rate { started: Duration::ZERO, first: (10 * MIB, 0) };
        let line = rate.line(Duration::from_secs(5), 10 * MIB, 10 * MIB, 5 * MIB);
        assert_eq!(line, "uploading  50%  hashed 10.0 MiB / uploaded 5.0 MiB of 10.0 MiB  1.0 MiB/s, ETA 5s");
        // Nothing moved yet (another run holds the work): no rate, no ETA, no division by zero.
        let line = rate.line(Duration::ZERO, 1, 0, 0);
        assert_eq!(line, "hashing   0%  hashed 0 B / uploaded 0 B of 1 B  0 B/s");
    }

    #[test]
    fn the_command_line_makes_the_api_body() {
        let args = UploadArgs {
            source: "/data/My Clip.mp4".into(),
            tags: vec!["a".into()],
            class_id: Some(3),
            transcode: true,
            ..Default::default()
        };
        let policy = SourcePolicy { allowed_origins: vec!["*".into()], local_root: Some(String::new()), s3: false };
        let spec = parse_create(&create_body(&args), &policy).unwrap();
        assert_eq!((spec.file_name.as_str(), spec.file_type.as_str(), spec.class_id), ("My Clip", "mp4", Some(3)));
        assert!(spec.is_transcode && !spec.is_watermark);
        assert!(matches!(spec.source, crate::source::Source::Path(ref p) if p == "/data/My Clip.mp4"));
    }

    #[test]
    fn credentials_are_required_and_never_shown() {
        let inv = super::super::args::parse(&["upload".into(), "/x".into()]).unwrap();
        let env = Env::new([("VOD_SECRET_ID".to_owned(), "AKIDsecretid".to_owned())]);
        let problem = settings(&env, &inv).unwrap_err();
        assert!(problem.contains("VOD_SECRET_KEY is not set") && problem.contains("--env VOD_SECRET_KEY"), "{problem}");
        let env = Env::new([("VOD_SECRET_ID".to_owned(), "AKIDsecretid".to_owned()), ("VOD_SECRET_KEY".to_owned(), "k".to_owned())]);
        let s = settings(&env, &inv).unwrap();
        assert_eq!(s.budget, Duration::from_millis(DEFAULT_BUDGET_MS));
        let bad = Env::new([
            ("VOD_SECRET_ID".into(), "AKIDsecretid".into()),
            ("VOD_SECRET_KEY".into(), "k".into()),
            ("VOD_ENDPOINT".into(), "nope".into()),
        ]);
        let problem = settings(&bad, &inv).unwrap_err();
        assert!(problem.starts_with("VOD_ENDPOINT") && !problem.contains("AKIDsecretid"), "{problem}");
    }
}
