//! Spin's `runtime-config.toml` (`spin up --runtime-config-file FILE`), read as Spin
//! 3.6 reads it (crates/runtime-config/src/lib.rs, crates/factor-key-value/src/
//! runtime_config/spin.rs, crates/key-value-spin/src/lib.rs,
//! crates/key-value-redis/src/lib.rs):
//!
//! ```toml
//! state_dir = ".spin"                # optional; --state-dir wins over it
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//! [key_value_store.cache]            # any label; a store the component may open
//! type = "spin"
//! path = "cache.db"                  # relative: from the file's own directory
//! ```
//!
//! - Each `[key_value_store.LABEL]` defines the store of that label, `default`
//!   included: a store the file names is the file's, whatever `--state-dir` says; the
//!   `default` store it does not name stays Spin's SQLite file in the state directory.
//! - `type = "spin"`: SQLite at `path`, a relative path taken from the directory of
//!   the runtime config file as given (`Path::parent`, so `rc.toml` means the working
//!   directory); no `path`: in memory. `type = "redis"`: `url` (checked now).
//!   `azure_cosmos` and `aws_dynamo` are Spin's too but not host-sim's: an error says
//!   so. Fields a type does not know are ignored, as serde ignores them for Spin.
//! - Spin refuses a top-level key no part of it reads (`unused runtime config
//!   key(s): ...`); host-sim does the same, and warns about the keys Spin reads but
//!   host-sim does not act on (`sqlite_database`, `llm_compute`, ...).

use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The top-level keys Spin 3.6.3 reads that host-sim does not act on (a warning each).
const IGNORED_KEYS: &[&str] = &[
    "sqlite_database",
    "log_dir",
    "max_instance_memory",
    "variables_provider",
    "config_provider",
    "llm_compute",
    "outbound_http",
    "outbound_networking",
    "client_tls",
];

/// The backend of one store.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// Spin's SQLite store (`type = "spin"`): the file, resolved as Spin resolves it;
    /// `None`: in memory.
    Spin {
        /// The SQLite file.
        path: Option<PathBuf>,
    },
    /// A Redis server (`type = "redis"`).
    Redis {
        /// The URL as written: it may hold a password, so it is never logged (the
        /// `Debug` form shows only the address).
        url: String,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Spin { path } => f.debug_struct("Spin").field("path", path).finish(),
            Backend::Redis { url } => {
                let addr = crate::kv::RedisKv::new(url).map(|r| r.summary()).unwrap_or_else(|_| "an invalid URL".into());
                f.debug_struct("Redis").field("at", &addr).finish()
            }
        }
    }
}

/// What host-sim takes from a runtime config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The file, as given.
    pub path: PathBuf,
    /// The stores it defines, by label.
    pub stores: BTreeMap<String, Backend>,
    /// Its `state_dir` (`""`: unset), used when no `--state-dir` is given.
    pub state_dir: Option<String>,
    /// The keys Spin reads that host-sim ignores, found in the file.
    pub ignored: Vec<String>,
}

impl RuntimeConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<RuntimeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("failed to read runtime config file '{}'", path.display()))?;
        RuntimeConfig::parse(&text, path)
    }

    /// Checks `text`, the content of the runtime config file at `path` (which relative
    /// SQLite paths are resolved against).
    pub fn parse(text: &str, path: &Path) -> Result<RuntimeConfig> {
        let table: toml::Table =
            toml::from_str(text).with_context(|| format!("failed to parse runtime config file '{}' as toml", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut config = RuntimeConfig { path: path.to_owned(), stores: BTreeMap::new(), state_dir: None, ignored: vec![] };
        let mut unused = Vec::new();
        for (key, value) in &table {
            match key.as_str() {
                "key_value_store" => config.stores = stores(value, base).with_context(|| in_file(path))?,
                // Spin reads it as a string and ignores any other kind of value.
                "state_dir" => config.state_dir = value.as_str().map(str::to_owned),
                k if IGNORED_KEYS.contains(&k) => config.ignored.push(key.clone()),
                _ => unused.push(key.clone()),
            }
        }
        if !unused.is_empty() {
            bail!("{}: unused runtime config key(s): {}", in_file(path), unused.join(", "));
        }
        Ok(config)
    }
}

fn in_file(path: &Path) -> String {
    format!("runtime config file '{}'", path.display())
}

/// `[key_value_store.*]`: every label's backend.
fn stores(value: &toml::Value, base: &Path) -> Result<BTreeMap<String, Backend>> {
    let table = value.as_table().ok_or_else(|| anyhow!("key_value_store must be a table of stores by label"))?;
    let mut stores = BTreeMap::new();
    for (label, config) in table {
        let backend = backend(config, base).with_context(|| format!("could not configure key-value store with label '{label}'"))?;
        stores.insert(label.clone(), backend);
    }
    Ok(stores)
}

fn backend(config: &toml::Value, base: &Path) -> Result<Backend> {
    let table = config.as_table().ok_or_else(|| anyhow!("expected a table with a `type`, found {}", config.type_str()))?;
    let kind = match table.get("type") {
        Some(toml::Value::String(kind)) => kind.as_str(),
        Some(other) => bail!("`type` must be a string, found {}", other.type_str()),
        None => bail!("missing field `type`"),
    };
    let string = |field: &str| -> Result<Option<String>> {
        match table.get(field) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => bail!("`{field}` of a {kind:?} store must be a string, found {}", other.type_str()),
        }
    };
    match kind {
        "spin" => {
            // Spin joins a relative path to the file's directory (an absolute one
            // stays as it is); no path is an in-memory store.
            let path = string("path")?.map(|p| base.join(p));
            Ok(Backend::Spin { path })
        }
        "redis" => {
            let url = string("url")?.ok_or_else(|| anyhow!("missing field `url` (type \"redis\" needs url = \"redis://host:port\")"))?;
            crate::kv::RedisKv::new(&url)?;
            Ok(Backend::Redis { url })
        }
        "azure_cosmos" | "aws_dynamo" => bail!(
            "the store type '{kind}' is one of Spin's, but host-sim up does not provide it: use type \"redis\" or \"spin\" to run locally"
        ),
        other => bail!("the store type '{other}' is not a key-value store type (Spin 3.6 knows spin, redis, azure_cosmos and aws_dynamo)"),
    }
}
