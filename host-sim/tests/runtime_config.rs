//! `host-sim up --runtime-config-file`: Spin's runtime-config.toml read as Spin 3.6
//! reads it (which store each label is, relative SQLite paths, the precedence over
//! `--state-dir` and `--kv`), and bad files refused with a message naming the problem,
//! by the library and by the real `host-sim up` process.

use host_sim::up::runtime_config::{Backend, RuntimeConfig};
use host_sim::up::stores::Stores;
use host_sim::up::StateDir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn parse(text: &str) -> anyhow::Result<RuntimeConfig> {
    RuntimeConfig::parse(text, Path::new("/etc/app/runtime-config.toml"))
}

fn error(text: &str) -> String {
    format!("{:#}", parse(text).expect_err("a bad runtime config"))
}

#[test]
fn a_redis_default_store() {
    let rc = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n").unwrap();
    assert_eq!(rc.stores.len(), 1);
    assert_eq!(rc.stores["default"], Backend::Redis { url: "redis://127.0.0.1:6379".into() });
    assert_eq!((rc.state_dir, rc.ignored.len()), (None, 0));
}

/// Spin's `type = "spin"`: a relative path from the file's directory, an absolute one
/// as it is, no path in memory; other labels beside `default`; fields a type does
/// not know ignored (serde ignores them for Spin).
#[test]
fn spin_stores_and_other_labels() {
    let rc = parse(
        "[key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n\
         [key_value_store.abs]\ntype = \"spin\"\npath = \"/var/kv.db\"\n\
         [key_value_store.mem]\ntype = \"spin\"\n\
         [key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://cache:6380/2\"\nextra = 1\n",
    )
    .unwrap();
    assert_eq!(rc.stores["default"], Backend::Spin { path: Some(PathBuf::from("/etc/app/data/kv.db")) });
    assert_eq!(rc.stores["abs"], Backend::Spin { path: Some(PathBuf::from("/var/kv.db")) });
    assert_eq!(rc.stores["mem"], Backend::Spin { path: None });
    assert!(matches!(rc.stores["cache"], Backend::Redis { .. }));
    // A file named without a directory: its directory is the working directory, so the
    // path stays relative (Spin joins it to `Path::parent`, which is empty).
    let rc = RuntimeConfig::parse("[key_value_store.default]\ntype = \"spin\"\npath = \"kv.db\"\n", Path::new("rc.toml")).unwrap();
    assert_eq!(rc.stores["default"], Backend::Spin { path: Some(PathBuf::from("kv.db")) });
}

#[test]
fn state_dir_and_keys_spin_reads_that_host_sim_ignores() {
    let rc = parse("state_dir = \"/tmp/state\"\n[sqlite_database.default]\ntype = \"spin\"\n[llm_compute]\ntype = \"spin\"\n").unwrap();
    assert_eq!(rc.state_dir.as_deref(), Some("/tmp/state"));
    assert_eq!(rc.ignored, vec!["llm_compute", "sqlite_database"]);
    assert!(rc.stores.is_empty());
}

#[test]
fn bad_files_are_refused_naming_the_problem() {
    for (text, needles) in [
        ("[key_value_store.default]\ntype = \"azure_cosmos\"\naccount = \"x\"\n", &["'default'", "'azure_cosmos'", "host-sim"][..]),
        ("[key_value_store.shared]\ntype = \"aws_dynamo\"\n", &["'shared'", "'aws_dynamo'"]),
        ("[key_value_store.default]\ntype = \"memcached\"\n", &["'memcached'", "not a key-value store type"]),
        ("[key_value_store.default]\nurl = \"redis://x\"\n", &["'default'", "missing field `type`"]),
        ("[key_value_store.default]\ntype = \"redis\"\n", &["missing field `url`"]),
        ("[key_value_store.default]\ntype = \"redis\"\nurl = \"http://127.0.0.1:6379\"\n", &["Invalid Redis URL"]),
        ("[key_value_store.default]\ntype = \"redis\"\nurl = 6379\n", &["`url`", "must be a string"]),
        ("[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://127.0.0.1:6379\"\n", &["rediss://", "TLS"]),
        ("[key_value_store.default]\ntype = 3\n", &["`type` must be a string"]),
        ("key_value_store = 1\n", &["key_value_store must be a table"]),
        ("[key_value_store]\ndefault = \"redis\"\n", &["'default'", "expected a table"]),
        ("[key_value_stores.default]\ntype = \"redis\"\n", &["unused runtime config key(s): key_value_stores"]),
        ("[key_value_store.default\ntype = \"redis\"\n", &["as toml"]),
    ] {
        let message = error(text);
        for needle in needles {
            assert!(message.contains(needle), "{text:?}: {message:?} should contain {needle:?}");
        }
        assert!(message.contains("runtime-config.toml"), "{message:?} names the file");
    }
}

/// A password in a Redis URL is never repeated: not in an error, not in `Debug`.
#[test]
fn a_redis_password_stays_out_of_messages() {
    let rc = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://:s3cr3t-pw@127.0.0.1:6379\"\n").unwrap();
    let shown = format!("{rc:?}");
    assert!(!shown.contains("s3cr3t-pw") && shown.contains("127.0.0.1:6379"), "{shown}");
    let message = error("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://:s3cr3t-pw@[::1\"\n");
    assert!(message.contains("Invalid Redis URL") && !message.contains("s3cr3t-pw"), "{message}");
}

#[test]
fn an_unreadable_file_is_named() {
    let message = format!("{:#}", RuntimeConfig::load(Path::new("/nonexistent/rc.toml")).unwrap_err());
    assert!(message.contains("failed to read runtime config file '/nonexistent/rc.toml'"), "{message}");
}

/// Precedence as in Spin: the stores the file names are the file's, whatever
/// `--state-dir`/`--kv` say; `default` not named stays in the state directory (the
/// flag's, else the file's `state_dir`, else `.spin` next to the manifest).
#[test]
fn the_runtime_config_defines_the_stores_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app/spin.toml");
    let labels = vec!["default".to_owned()];
    let open = |rc: &RuntimeConfig, state: &StateDir| Stores::open(&labels, "app", &manifest, Some(rc), state).unwrap();
    let kv_file = dir.path().join("flag.sqlite");

    let redis = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n").unwrap();
    for state in [StateDir::KvFile(kv_file.clone()), StateDir::Dir(dir.path().join("s")), StateDir::Unset, StateDir::Default] {
        assert_eq!(open(&redis, &state).get("default").unwrap().summary(), "Redis at 127.0.0.1:1", "{state:?}");
    }
    assert!(!kv_file.exists(), "--kv's file is not the default store when the file names it");

    let sqlite_path = dir.path().join("rc-dir/kv.db");
    let spin =
        RuntimeConfig::parse("[key_value_store.default]\ntype = \"spin\"\npath = \"kv.db\"\n", &dir.path().join("rc-dir/rc.toml")).unwrap();
    assert_eq!(
        open(&spin, &StateDir::KvFile(kv_file.clone())).get("default").unwrap().summary(),
        format!("{:?}", sqlite_path.display().to_string())
    );
    assert!(sqlite_path.exists(), "the file's SQLite store is made, its directory too");

    let other = parse("state_dir = \"\"\n[key_value_store.cache]\ntype = \"spin\"\n").unwrap();
    let stores = open(&other, &StateDir::KvFile(kv_file.clone()));
    assert_eq!(stores.get("default").unwrap().summary(), format!("{:?}", kv_file.display().to_string()), "--kv still holds default");
    // The file's `state_dir = ""` applies without a flag: in memory, as Spin.
    assert_eq!(open(&other, &StateDir::Default).get("default").unwrap().summary(), "a temporary in-memory store");
    // The flag wins over the file's state_dir.
    let flagged = open(&other, &StateDir::Dir(dir.path().join("flag-state")));
    assert!(flagged.get("default").unwrap().summary().contains("flag-state/sqlite_key_value.db"));
    assert!(stores.get("cache").is_none(), "a store the component does not list is not opened");
}

#[test]
fn a_label_nothing_defines_stops_the_start() {
    let rc = parse("[key_value_store.cache]\ntype = \"spin\"\n").unwrap();
    let labels = vec!["default".to_owned(), "cache".to_owned(), "sessions".to_owned()];
    let error = Stores::open(&labels, "uploader", Path::new("/tmp/none/spin.toml"), Some(&rc), &StateDir::Unset).err().unwrap();
    assert_eq!(error.to_string(), "unknown key_value_stores label \"sessions\" for component \"uploader\"");
    let stores = Stores::open(&labels[..2], "uploader", Path::new("/tmp/none/spin.toml"), Some(&rc), &StateDir::Unset).unwrap();
    assert_eq!(stores.get("cache").unwrap().summary(), "a temporary in-memory store");
}

/// The real process: a bad file stops `host-sim up` before it listens, with the
/// problem named on stderr, and a bad `--outbound-mbps` is refused by the flag parser.
#[test]
fn host_sim_up_refuses_a_bad_runtime_config() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("runtime-config.toml");
    std::fs::write(&rc, "[key_value_store.default]\ntype = \"aws_dynamo\"\nregion = \"us-east-1\"\n").unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
    let nowhere = "127.0.0.1:9".parse().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-sim"));
        cmd.args(["up", "--listen", "127.0.0.1:0", "--manifest"]).arg(&manifest).args(args);
        for (name, value) in host_sim::stack::variables(nowhere, nowhere, "token", &[]) {
            cmd.arg("--variable").arg(format!("{name}={value}"));
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = run(&["--runtime-config-file", rc.to_str().unwrap()]);
    assert!(!ok && stderr.contains("'aws_dynamo'") && stderr.contains("'default'"), "{stderr}");
    let (ok, stderr) = run(&["--runtime-config-file", "/nonexistent/rc.toml"]);
    assert!(!ok && stderr.contains("failed to read runtime config file '/nonexistent/rc.toml'"), "{stderr}");
    let (ok, stderr) = run(&["--outbound-mbps", "0"]);
    assert!(!ok && stderr.contains("megabits per second"), "{stderr}");
}
