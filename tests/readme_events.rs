//! The README's storage-event examples are requests the component accepts: every
//! ```` ```sh ```` block whose first line is `# events-example: NAME` is one `curl`
//! command, read here by a small, strict extractor (quoting as the shell does it, the
//! `-H` headers and the `-d` body), and its body must parse, with its headers, as the
//! format NAME says, naming bucket `videos` and key `in/clip.mp4`. The examples together
//! must cover every format the parser's module documentation lists.

use std::collections::BTreeSet;
use vod_uploader::api::events::sender_authorized;
use vod_uploader::events::{self, Parsed};

const README: &str = include_str!("../README.md");
const EVENTS_DOC: &str = include_str!("../src/events/mod.rs");
const MARK: &str = "# events-example: ";

/// One example: its name, and the request its `curl` command sends.
#[derive(Debug)]
struct Example {
    name: String,
    /// The README line the block starts on, for messages.
    line: usize,
    url: String,
    /// (lower-case name, value) pairs, as `events::parse` takes them.
    headers: Vec<(String, String)>,
    body: String,
}

/// Every `sh` block of `text` whose first line is the marker.
fn examples(text: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if line.trim_end() != "```sh" {
            continue;
        }
        let mut block = Vec::new();
        loop {
            match lines.next() {
                Some((_, l)) if l.trim_end() == "```" => break,
                Some((_, l)) => block.push(l),
                None => return Err(format!("README line {}: a ```sh block is never closed", i + 1)),
            }
        }
        let Some(name) = block.first().and_then(|first| first.strip_prefix(MARK)) else { continue };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(format!("README line {}: bad example name {name:?}", i + 2));
        }
        let command = block[1..].join("\n");
        let example = curl(name, i + 1, &command).map_err(|e| format!("README line {} (events-example {name}): {e}", i + 1))?;
        out.push(example);
    }
    Ok(out)
}

/// Splits a command into words as a POSIX shell does for the quoting used here:
/// `'...'` literally, `"..."` literally too (refusing `\`, `` ` `` and `$(` inside, which
/// would mean more than is read here), backslash-newline as a space. Anything else
/// (another backslash, a comment, `;`, `|`, `&`, a redirection) is refused.
fn words(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\\' => match chars.next() {
                Some('\n') => words.extend(word.take()),
                other => return Err(format!("a backslash outside quotes before {other:?}")),
            },
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("an unterminated '...'".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\' | '`') => return Err("an escape or backquote inside \"...\"".into()),
                        Some('$') if chars.peek() == Some(&'(') => return Err("a command substitution inside \"...\"".into()),
                        Some(c) => w.push(c),
                        None => return Err("an unterminated \"...\"".into()),
                    }
                }
            }
            '#' if word.is_none() => return Err("a comment inside the command".into()),
            ';' | '|' | '&' | '<' | '>' | '(' | ')' | '`' => return Err(format!("{c:?} outside quotes: one plain command only")),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The request of one `curl -X POST URL -H 'k: v'... -d 'BODY'` command.
fn curl(name: &str, line: usize, command: &str) -> Result<Example, String> {
    let words = words(command)?;
    let mut it = words.into_iter();
    if it.next().as_deref() != Some("curl") {
        return Err("the command is not curl".into());
    }
    let (mut method, mut url, mut body) = (None, None, None);
    let mut headers = Vec::new();
    while let Some(w) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} without a value"));
        match w.as_str() {
            "-s" | "-S" | "-sS" | "-Ss" | "--silent" | "--show-error" | "--fail" | "-f" | "-i" => {}
            "-X" | "--request" => method = Some(value(&w)?),
            "-H" | "--header" => {
                let h = value(&w)?;
                let (k, v) = h.split_once(':').ok_or_else(|| format!("header {h:?} has no ':'"))?;
                let k = k.trim();
                if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(format!("header {h:?} has a bad name"));
                }
                headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
            }
            "-d" | "--data" | "--data-raw" | "--data-binary" => {
                if body.replace(value(&w)?).is_some() {
                    return Err("more than one body".into());
                }
            }
            flag if flag.starts_with('-') => return Err(format!("unexpected option {flag}")),
            u => {
                if url.replace(u.to_owned()).is_some() {
                    return Err(format!("a second URL {u:?}"));
                }
            }
        }
    }
    if method.as_deref() != Some("POST") {
        return Err(format!("the method is {method:?}, not -X POST"));
    }
    let url = url.ok_or("no URL")?;
    let body = body.ok_or("no -d body")?;
    if body.starts_with('@') {
        return Err("the body is a file reference (@...), not the body itself".into());
    }
    Ok(Example { name: name.to_owned(), line, url, headers, body })
}

/// What `events::parse` must make of example NAME: the `Objects` format (`None` for
/// the handshakes), and a check of the rest.
fn check(e: &Example, parsed: &Parsed) -> Result<Option<&'static str>, String> {
    let object = |created: &[events::ObjectEvent], ignored: usize, bucket: &str| -> Result<(), String> {
        match created {
            [o] if ignored == 0 && o.bucket == bucket && o.key == "in/clip.mp4" && !o.version.is_empty() => Ok(()),
            _ => Err(format!("expected one created object {bucket}/in/clip.mp4 and nothing ignored, got {created:?}, {ignored} ignored")),
        }
    };
    let expect_format = |want: &'static str| -> Result<Option<&'static str>, String> {
        match parsed {
            Parsed::Objects { format, created, ignored } if *format == want => {
                let bucket = if want == "cos" { "videos-1250000000" } else { "videos" };
                object(created, *ignored, bucket)?;
                let url = created[0].url.as_deref();
                match want {
                    "cloudevents-azure" | "eventgrid" if url != Some("https://myaccount.blob.core.windows.net/videos/in/clip.mp4") => {
                        Err(format!("the blob URL is {url:?}"))
                    }
                    "cos" if url != Some("http://videos-1250000000.cos.ap-guangzhou.myqcloud.com/in/clip.mp4") => {
                        Err(format!("the COS object URL is {url:?}"))
                    }
                    _ => Ok(Some(want)),
                }
            }
            other => Err(format!("expected Objects {{ format: {want:?}, .. }}, got {other:?}")),
        }
    };
    let binary = e.headers.iter().any(|(k, _)| k.starts_with("ce-"));
    match e.name.as_str() {
        "s3-test" => match parsed {
            Parsed::Test => Ok(None),
            other => Err(format!("expected Test, got {other:?}")),
        },
        "sns-confirm" => match parsed {
            Parsed::SnsConfirm { subscribe_url, topic_arn }
                if subscribe_url.starts_with("https://sns.us-west-2.amazonaws.com/") && topic_arn.ends_with(":videos-created") =>
            {
                Ok(None)
            }
            other => Err(format!("expected SnsConfirm of topic videos-created, got {other:?}")),
        },
        "eventgrid-validation" => match parsed {
            Parsed::EventGridValidation { code, created } if code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6" && created.is_empty() => {
                Ok(None)
            }
            other => Err(format!("expected EventGridValidation with code 512d38b6-..., got {other:?}")),
        },
        "cloudevents-gcs" if !binary => Err("the GCS CloudEvents example must be binary mode (ce-* headers)".into()),
        "cloudevents-azure" if binary => Err("the Azure CloudEvents example must be structured mode (no ce-* headers)".into()),
        "s3" => expect_format("s3"),
        "sns" => expect_format("sns"),
        "eventbridge" => expect_format("eventbridge"),
        "cloudevents-gcs" => expect_format("cloudevents-gcs"),
        "cloudevents-azure" => expect_format("cloudevents-azure"),
        "pubsub-gcs" => expect_format("pubsub-gcs"),
        "eventgrid" => expect_format("eventgrid"),
        "cos" => expect_format("cos"),
        "minio" => expect_format("minio"),
        "seaweed" => expect_format("seaweed"),
        other => Err(format!("no expectation for an example named {other:?}: add it to this test")),
    }
}

/// The format names of `Parsed::Objects` listed in `src/events/mod.rs`'s module doc:
/// the paragraph that starts with "Formats", with parenthesized remarks removed, its
/// backquoted words.
fn documented_formats(source: &str) -> Result<BTreeSet<String>, String> {
    let doc: Vec<&str> = source.lines().map_while(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let start = doc.iter().position(|l| l.starts_with("Formats")).ok_or("the module doc has no paragraph starting with Formats")?;
    let paragraph = doc[start..].iter().take_while(|l| !l.is_empty()).copied().collect::<Vec<_>>().join(" ");
    let mut depth = 0usize;
    let mut outside = String::new();
    for c in paragraph.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced ')' in the Formats paragraph")?,
            c if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '(' in the Formats paragraph".into());
    }
    let formats: BTreeSet<String> = outside.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    if formats.len() < 5
        || !formats.iter().all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err(format!("the Formats paragraph does not read as a list of format names: {formats:?}"));
    }
    Ok(formats)
}

#[test]
fn every_readme_event_example_parses_as_its_format() {
    let examples = examples(README).unwrap_or_else(|e| panic!("{e}"));
    let mut names = BTreeSet::new();
    let mut formats = BTreeSet::new();
    let mut failures = Vec::new();
    for e in &examples {
        if !names.insert(e.name.clone()) {
            failures.push(format!("README line {}: a second example named {}", e.line, e.name));
            continue;
        }
        let (path, query) = e.url.split_once('?').unwrap_or((&e.url, ""));
        if path != "$APP/events" {
            failures.push(format!("README line {} ({}): the URL {} is not $APP/events", e.line, e.name, e.url));
        }
        // The token in one of the three forms (the shell variable stands for it).
        if !sender_authorized(&e.headers, query, "$EVENTS_TOKEN") {
            failures.push(format!("README line {} ({}): no events token (Authorization or ?token=)", e.line, e.name));
        }
        match events::parse(&e.headers, e.body.as_bytes()).map_err(|m| format!("does not parse: {m}")).and_then(|p| check(e, &p)) {
            Ok(format) => formats.extend(format.map(str::to_owned)),
            Err(m) => failures.push(format!("README line {} ({}): {m}\n  headers: {:?}\n  body: {}", e.line, e.name, e.headers, e.body)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let documented = documented_formats(EVENTS_DOC).unwrap_or_else(|e| panic!("{e}"));
    let missing: Vec<_> = documented.difference(&formats).collect();
    assert!(missing.is_empty(), "the README has no events-example for the documented formats {missing:?} (examples: {names:?})");
    for handshake in ["s3-test", "sns-confirm", "eventgrid-validation"] {
        assert!(names.contains(handshake), "the README has no events-example {handshake}");
    }
}

#[test]
fn the_extractor_is_strict() {
    let ok = words("curl -X POST \"$APP/events\" \\\n  -H 'a: b' -d '{\"x\":\"\\\"\"}'").unwrap();
    assert_eq!(ok, ["curl", "-X", "POST", "$APP/events", "-H", "a: b", "-d", r#"{"x":"\""}"#]);
    assert_eq!(words("a'b'\"c\"d").unwrap(), ["abcd"]);
    for bad in ["curl 'open", "curl \"open", "curl a; rm x", "curl a | b", "curl \\x", "curl # c", "curl \"$(x)\"", "curl \"a\\\"b\""] {
        assert!(words(bad).is_err(), "{bad}");
    }
    for bad in [
        "wget -X POST u -d '{}'",
        "curl -X GET u -d '{}'",
        "curl -X POST u",
        "curl -X POST u -d '{}' -d '{}'",
        "curl -X POST u v -d '{}'",
        "curl -X POST u -H 'nocolon' -d '{}'",
        "curl -X POST u --form a=b -d '{}'",
        "curl -X POST u -d @body.json",
        "curl -X POST u -d",
    ] {
        assert!(curl("t", 1, bad).is_err(), "{bad}");
    }
    let text = "```sh\n# events-example: t\ncurl -X POST u -H 'K-A: v ' -d '[]'\n```\n```sh\necho other\n```\n";
    let found = examples(text).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].url.as_str(), found[0].headers.as_slice(), found[0].body.as_str()),
        ("u", &[("k-a".to_owned(), "v".to_owned())][..], "[]")
    );
    assert!(examples("```sh\n# events-example: t\ncurl -X POST u -d '{}'\n").is_err(), "an unclosed block");
    assert!(examples("```sh\n# events-example: Bad Name\ncurl -X POST u -d '{}'\n```\n").is_err());
    let formats =
        documented_formats("//! x\n//!\n//! Formats (the `format`): `a1` (`x` (`y`)), `b-c` and\n//! `d` (z), `e`, `f`.\n//!\n//! `g`\n")
            .unwrap();
    assert_eq!(formats.into_iter().collect::<Vec<_>>(), ["a1", "b-c", "d", "e", "f"]);
}
