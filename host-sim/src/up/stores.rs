//! Which key-value store each label of the app is, decided as Spin decides it: the
//! runtime config file defines the stores it names ([`RuntimeConfig`]); the `default`
//! store it does not name is Spin's SQLite file in the application state directory
//! ([`StateDir`]: `--state-dir`, else the file's `state_dir`, else `.spin` next to the
//! manifest), or host-sim's own `--kv FILE`. A label the component lists in
//! `key_value_stores` that nothing defines stops the start, as in Spin.

use super::runtime_config::{Backend, RuntimeConfig};
use crate::kv::{RedisKv, SqliteKv, Store, DEFAULT_STORE};
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file Spin keeps the `default` key-value store in, inside the state directory.
pub const KV_FILE_NAME: &str = "sqlite_key_value.db";

/// Where the `default` key-value store lives when the runtime config does not define
/// it: the application state directory, as Spin's `--state-dir` sets it, or host-sim's
/// own `--kv` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateDir {
    /// No flag: the runtime config's `state_dir` if it has one, else `.spin` in the
    /// manifest's directory, Spin's default (whatever the working directory), so that
    /// `spin up` and `host-sim up` of one app share their state.
    #[default]
    Default,
    /// A directory given by the user; a relative one is taken from the working
    /// directory, as Spin takes it.
    Dir(PathBuf),
    /// No state directory (`--state-dir ""`): the `default` store lives in memory and
    /// is gone when the host stops, as in Spin.
    Unset,
    /// host-sim's `--kv FILE`: the `default` store's SQLite file itself, wherever the
    /// state directory is (tests and the demo keep their store in a temporary
    /// directory this way).
    KvFile(PathBuf),
}

impl StateDir {
    /// From the `--kv` and `--state-dir` flags: `--kv` wins; then an absent
    /// `--state-dir` is the default, an empty one unset.
    pub fn from_flags(kv: Option<PathBuf>, state_dir: Option<&str>) -> StateDir {
        match (kv, state_dir) {
            (Some(file), _) => StateDir::KvFile(file),
            (None, None) => StateDir::Default,
            (None, Some("")) => StateDir::Unset,
            (None, Some(dir)) => StateDir::Dir(PathBuf::from(dir)),
        }
    }

    /// The SQLite file of the `default` store for the app of `manifest`; `None`: in
    /// memory.
    pub fn kv_file(&self, manifest: &Path) -> Result<Option<PathBuf>> {
        Ok(match self {
            StateDir::Default => {
                let dir = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                Some(std::path::absolute(dir)?.join(".spin").join(KV_FILE_NAME))
            }
            StateDir::Dir(dir) => Some(std::path::absolute(dir)?.join(KV_FILE_NAME)),
            StateDir::Unset => None,
            StateDir::KvFile(file) => Some(file.clone()),
        })
    }

    /// Opens the `default` store for the app of `manifest` (creating its directory).
    pub fn open_kv(&self, manifest: &Path) -> Result<SqliteKv> {
        match self.kv_file(manifest)? {
            Some(path) => open_sqlite(&path, DEFAULT_STORE),
            None => Ok(SqliteKv::open_in_memory()?),
        }
    }
}

/// The SQLite store `label` in the file at `path`, its directory created.
fn open_sqlite(path: &Path, label: &str) -> Result<SqliteKv> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create the key-value store's directory {}", parent.display()))?;
    }
    SqliteKv::open_store(path, label).with_context(|| format!("cannot open the key-value store {}", path.display()))
}

/// The opened stores of an app, by label: those its component may open.
#[derive(Default)]
pub struct Stores {
    by_label: BTreeMap<String, Arc<Store>>,
}

impl Stores {
    /// The store of `label`, if the component may open it.
    pub fn get(&self, label: &str) -> Option<&Arc<Store>> {
        self.by_label.get(label)
    }

    /// Opens the stores `labels` (the component's `key_value_stores`) for the app of
    /// `manifest`, each where the runtime config (read already) or else `state_dir`
    /// puts it, and says where `default` is in the log, in Spin's words.
    pub fn open(
        labels: &[String],
        component: &str,
        manifest: &Path,
        runtime_config: Option<&RuntimeConfig>,
        state_dir: &StateDir,
    ) -> Result<Stores> {
        let defined = runtime_config.map(|rc| &rc.stores);
        let mut state_dir = state_dir.clone();
        if let (StateDir::Default, Some(Some(dir))) = (&state_dir, runtime_config.map(|rc| &rc.state_dir)) {
            state_dir = StateDir::from_flags(None, Some(dir));
        }
        if let Some(rc) = runtime_config {
            let kinds: Vec<String> = rc
                .stores
                .iter()
                .map(|(label, b)| {
                    format!("[key_value_store.{label}: {}]", if matches!(b, Backend::Redis { .. }) { "redis" } else { "spin" })
                })
                .collect();
            if !kinds.is_empty() {
                tracing::info!("Using runtime config {} from {:?}", kinds.join(", "), rc.path.display().to_string());
            }
            for key in &rc.ignored {
                tracing::warn!("runtime config key `{key}` is read by Spin but not by host-sim up: ignored");
            }
            if rc.stores.contains_key(DEFAULT_STORE) && matches!(state_dir, StateDir::KvFile(_) | StateDir::Dir(_)) {
                tracing::info!(
                    "the runtime config defines the default key-value store: the state directory (--state-dir, --kv) does not hold it"
                );
            }
        }
        let mut stores = Stores::default();
        for label in labels {
            let store = match defined.and_then(|d| d.get(label)) {
                Some(Backend::Redis { url }) => Store::Redis(RedisKv::new(url)?),
                Some(Backend::Spin { path: Some(path) }) => {
                    Store::Sqlite { kv: open_sqlite(path, label)?, summary: format!("{:?}", path.display().to_string()) }
                }
                Some(Backend::Spin { path: None }) => {
                    Store::Sqlite { kv: SqliteKv::open_store_in_memory(label)?, summary: "a temporary in-memory store".into() }
                }
                None if label == DEFAULT_STORE => {
                    let summary = match state_dir.kv_file(manifest)? {
                        Some(path) => format!("{:?}", path.display().to_string()),
                        None => "a temporary in-memory store".into(),
                    };
                    Store::Sqlite { kv: state_dir.open_kv(manifest)?, summary }
                }
                None => bail!("unknown key_value_stores label {label:?} for component {component:?}"),
            };
            if label == DEFAULT_STORE {
                tracing::info!("Storing default key-value data to {}.", store.summary());
            }
            stores.by_label.insert(label.clone(), Arc::new(store));
        }
        Ok(stores)
    }
}
