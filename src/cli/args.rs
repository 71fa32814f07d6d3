//! The command line of `vod-upload`: subcommands, flags and environment variables,
//! read into plain data. Hand-written rather than clap: the command ships as one
//! `.wasm`, and four subcommands with a handful of flags do not pay for a parser's size.

use std::collections::BTreeMap;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Upload `source` (a path in a granted directory, or an `http(s)` URL), resuming an
    /// upload of the same unchanged source.
    Upload(UploadArgs),
    /// One upload's status, or every upload's.
    Status(Option<String>),
    /// Every upload, one line each.
    List,
    /// Stops an upload and forgets it.
    Cancel(String),
    /// The help text.
    Help,
    /// The version.
    Version,
}

/// `upload`'s arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadArgs {
    /// Where the bytes come from.
    pub source: String,
    /// The name the service gives the file (default: the source's).
    pub file_name: Option<String>,
    /// The file's type (default: the source's extension).
    pub file_type: Option<String>,
    /// Tags the service attaches.
    pub tags: Vec<String>,
    /// The service's category.
    pub class_id: Option<u64>,
    /// Ask the service to transcode, take screenshots, watermark.
    pub transcode: bool,
    /// See `transcode`.
    pub screenshot: bool,
    /// See `transcode`.
    pub watermark: bool,
}

/// The whole invocation: the command and the options every command takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The command.
    pub command: Command,
    /// `--state DIR` (else `VOD_STATE`, else `.vod-upload` in the first granted
    /// directory).
    pub state: Option<String>,
    /// `--budget-ms`: the time of one round of work between checkpoints of the whole
    /// upload (else `VOD_BUDGET_MS`; default [`super::run::DEFAULT_BUDGET_MS`]).
    pub budget_ms: Option<u64>,
    /// `--max-wait SECS`: the longest backoff waited out in this run before it exits
    /// with a retryable trouble (default 60).
    pub max_wait_secs: u64,
    /// `--json`: `list` prints one JSON status per line instead of a table.
    pub json: bool,
}

/// The default of `--max-wait`, seconds.
pub const DEFAULT_MAX_WAIT_SECS: u64 = 60;

/// The help text (`vod-upload --help`).
pub const HELP: &str = "\
vod-upload: resumable uploads of very large files into the VOD service, from a
sandboxed WebAssembly command. Kill it at any moment: the next run of the same
command resumes from its last checkpoint, without hashing again what it hashed.

USAGE (wasmtime 48):
  wasmtime run -S http --dir .::/data \\
      --env VOD_SECRET_ID --env VOD_SECRET_KEY \\
      vod-upload.wasm upload /data/clip.mp4

COMMANDS:
  upload SOURCE   Upload SOURCE (a path in a granted directory, or an http(s) URL)
                  and wait until the service has it. Runs again resume it.
  status [ID]     The status of upload ID (JSON), or of every upload.
  list            Every upload: id, state, progress, source.
  cancel ID       Stop upload ID and forget it (a done upload: forget it; the
                  service keeps the file).
  help            This text.

UPLOAD OPTIONS:
  --file-name NAME     The name the service gives the file (default: the source's).
  --file-type TYPE     The file's type, such as mp4 (default: the source's extension).
  --tags A,B           Tags for the file (comma-separated; the flag may repeat).
  --class-id N         The service's category for the file.
  --transcode, --screenshot, --watermark
                       Ask the service for these once it has the file.

OPTIONS:
  --state DIR          Where checkpoints live (default: .vod-upload in the first
                       granted directory; a WASI program has no working directory).
  --max-wait SECS      Longest retry wait this run sits out before it exits with
                       code 75 (default 60).
  --json               list: one JSON status per line instead of a table.
  --budget-ms MS       Work between two checkpoints of the whole upload (default 5000;
                       the engine checkpoints within it too, every 2 s).

ENVIRONMENT (pass each with wasmtime's --env NAME or --env NAME=VALUE):
  VOD_SECRET_ID, VOD_SECRET_KEY   The service's credentials (required to upload;
                                  never printed).
  VOD_ENDPOINT    The service's endpoint (default https://vod2.qcloud.com/v2/index.php).
  VOD_REGION      The region parameter (default gz).
  VOD_CONCURRENCY Parts in flight at once (default 4, at most 32).
  VOD_STATE       As --state.
  VOD_BUDGET_MS   As --budget-ms.

EXIT CODES:
  0   done: the service has the file (upload), or the command did what it said
  1   the upload failed for good (the service refused it, or it was cancelled)
  3   the source changed while it was being uploaded (run again to upload the
      new content)
  64  bad command line
  65  refused input: a source or parameter the uploader or the service refuses
  66  the source cannot be found or read
  74  the checkpoint directory cannot be used
  75  retryable trouble (network, service unavailable): run the same command again
  78  missing or wrong configuration (credentials, endpoint)
";

/// A command line the uploader refuses: the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (see vod-upload --help)", self.0)
    }
}

/// Reads the arguments after the program's name.
pub fn parse(args: &[String]) -> Result<Invocation, Usage> {
    let usage = |m: String| Usage(m);
    let mut positional: Vec<&str> = Vec::new();
    let mut upload = UploadArgs::default();
    let mut inv = Invocation { command: Command::Help, state: None, budget_ms: None, max_wait_secs: DEFAULT_MAX_WAIT_SECS, json: false };
    let mut upload_flags: Vec<&str> = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(arg) = it.next() {
        // `--name=value` or `--name value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        let mut value = |what: &str| -> Result<String, Usage> {
            match inline {
                Some(v) => Ok(v.to_owned()),
                None => it.next().map(str::to_owned).ok_or_else(|| usage(format!("{name} needs {what}"))),
            }
        };
        let number = |name: &str, text: String| -> Result<u64, Usage> {
            text.trim().parse().map_err(|_| usage(format!("{name} must be a whole number, got {text:?}")))
        };
        match name {
            "-h" | "--help" => return Ok(Invocation { command: Command::Help, ..inv }),
            "-V" | "--version" => return Ok(Invocation { command: Command::Version, ..inv }),
            "--state" => inv.state = Some(value("a directory")?),
            "--budget-ms" => inv.budget_ms = Some(number(name, value("milliseconds")?)?.max(1)),
            "--max-wait" => inv.max_wait_secs = number(name, value("seconds")?)?,
            "--json" => inv.json = true,
            "--file-name" => {
                upload.file_name = Some(value("a name")?);
                upload_flags.push(name);
            }
            "--file-type" => {
                upload.file_type = Some(value("a type such as mp4")?);
                upload_flags.push(name);
            }
            "--tags" => {
                let text = value("tags, comma-separated")?;
                upload.tags.extend(text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned));
                upload_flags.push(name);
            }
            "--class-id" => {
                upload.class_id = Some(number(name, value("a number")?)?);
                upload_flags.push(name);
            }
            "--transcode" | "--screenshot" | "--watermark" if inline.is_none() => {
                match name {
                    "--transcode" => upload.transcode = true,
                    "--screenshot" => upload.screenshot = true,
                    _ => upload.watermark = true,
                }
                upload_flags.push(name);
            }
            flag if flag.starts_with('-') && flag.len() > 1 => return Err(usage(format!("unknown option {flag}"))),
            _ => positional.push(arg),
        }
    }
    let (command, rest) = match positional.split_first() {
        None => return Ok(inv),
        Some((command, rest)) => (*command, rest),
    };
    let extra = |n: usize| -> Result<(), Usage> {
        match rest.get(n) {
            Some(more) => {
                Err(usage(format!("{command} takes {n} argument{}; {:?} is one too many", if n == 1 { "" } else { "s" }, shown(more))))
            }
            None => Ok(()),
        }
    };
    inv.command = match command {
        "upload" => {
            let source =
                rest.first().ok_or_else(|| usage("upload needs a SOURCE: a path in a granted directory, or an http(s) URL".into()))?;
            extra(1)?;
            upload.source = source.to_string();
            Command::Upload(upload)
        }
        "status" => {
            extra(1)?;
            Command::Status(rest.first().map(|id| id.to_string()))
        }
        "list" => {
            extra(0)?;
            Command::List
        }
        "cancel" => {
            let id = rest.first().ok_or_else(|| usage("cancel needs the ID of an upload (see list)".into()))?;
            extra(1)?;
            Command::Cancel(id.to_string())
        }
        "help" => Command::Help,
        other => return Err(usage(format!("unknown command {:?}: use upload, status, list or cancel", shown(other)))),
    };
    if let (Some(flag), false) = (upload_flags.first(), matches!(inv.command, Command::Upload(_))) {
        return Err(usage(format!("{flag} is an option of upload only")));
    }
    Ok(inv)
}

/// An argument as an error message shows it: a URL's query cut off, since a presigned
/// URL's signature is a credential (an `upload` forgotten before one, two URLs given).
fn shown(arg: &str) -> String {
    match arg.split_once('?') {
        Some((base, _)) if arg.contains("://") => format!("{base}?<redacted>"),
        _ => arg.to_owned(),
    }
}

/// The configuration from the environment, as `--env` passes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// From `(name, value)` pairs (`std::env::vars()` in the command).
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Env {
        Env { vars: vars.into_iter().collect() }
    }

    /// A variable, `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Invocation, Usage> {
        parse(&args.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn upload_with_its_options() {
        let inv = p("upload /data/clip.mp4 --file-name Clip --tags a,b --tags c --class-id 7 --transcode --state=/data/st").unwrap();
        let Command::Upload(u) = inv.command else { panic!("{inv:?}") };
        assert_eq!(u.source, "/data/clip.mp4");
        assert_eq!((u.file_name.as_deref(), u.tags.clone(), u.class_id), (Some("Clip"), vec!["a".into(), "b".into(), "c".into()], Some(7)));
        assert!(u.transcode && !u.screenshot && !u.watermark);
        assert_eq!(inv.state.as_deref(), Some("/data/st"));
        assert!(p("--json upload x").unwrap().json, "options go anywhere");
    }

    #[test]
    fn other_commands() {
        assert_eq!(p("status").unwrap().command, Command::Status(None));
        assert_eq!(p("status abc").unwrap().command, Command::Status(Some("abc".into())));
        assert_eq!(p("list").unwrap().command, Command::List);
        assert_eq!(p("cancel abc").unwrap().command, Command::Cancel("abc".into()));
        assert_eq!(p("").unwrap().command, Command::Help);
        assert_eq!(p("upload x --help").unwrap().command, Command::Help);
        assert_eq!(p("--max-wait 5 list").unwrap().max_wait_secs, 5);
    }

    #[test]
    fn bad_command_lines_are_named() {
        let err = |args: &str| p(args).unwrap_err().0;
        assert!(err("upload").contains("needs a SOURCE"));
        assert!(err("upload a b").contains("\"b\" is one too many"));
        assert!(err("frobnicate").contains("unknown command \"frobnicate\""));
        assert!(err("upload a --bogus").contains("unknown option --bogus"));
        assert!(err("upload a --class-id x").contains("--class-id must be a whole number"));
        assert!(err("upload a --file-name").contains("--file-name needs a name"));
        assert!(err("list --tags a").contains("--tags is an option of upload only"));
        assert!(err("cancel").contains("needs the ID"));
        assert!(err("status a b").contains("one too many"));
        // A presigned URL where it does not belong: named without its signature.
        let url = "https://b.s3.amazonaws.com/clip.mp4?X-Amz-Signature=s3cr3t";
        for line in [url.to_owned(), format!("upload {url} {url}")] {
            let message = err(&line);
            assert!(message.contains("clip.mp4?<redacted>") && !message.contains("s3cr3t"), "{message}");
        }
    }

    #[test]
    fn environment_blank_is_unset() {
        let env = Env::new([("A".to_owned(), " ".to_owned()), ("B".to_owned(), "x".to_owned())]);
        assert_eq!((env.get("A"), env.get("B"), env.get("C")), (None, Some("x"), None));
    }
}
