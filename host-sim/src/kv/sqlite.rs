//! The key-value store on SQLite in the layout of Spin's own default store, so that
//! `spin up` and `host-sim up` on one application see the same data: one table
//! `spin_key_value(store, key, value)` holding every store of the file, rows of the
//! `default` store labelled `default`. Used by the Spin-compatible host and by the
//! native driver of the engine (tests).
//!
//! host-sim once kept its data in a table `kv(key, value)`; a file still holding that
//! table has its rows moved into `spin_key_value` (store `default`) when it is opened.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

use super::DEFAULT_STORE;

/// Spin's table, exactly as Spin 3.x creates it (crates/key-value-spin/src/store.rs), so
/// that a file made by either runtime is the same file to the other.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,

    PRIMARY KEY (store, key)
)";

/// One store (a label) in one SQLite file.
pub struct SqliteKv {
    conn: Mutex<Connection>,
    store: String,
}

/// What opening a file did to host-sim's old `kv` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migration {
    /// Keys moved from `kv` into `spin_key_value` (store `default`).
    pub moved: u64,
    /// Keys of `kv` dropped because `spin_key_value` already held them (written since
    /// by Spin or by a newer host-sim: the newer value is kept).
    pub superseded: u64,
}

impl SqliteKv {
    /// Opens (or creates) the `default` store in the SQLite file at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Self::open_store(path, DEFAULT_STORE)
    }

    /// Opens (or creates) the store labelled `store` in the SQLite file at `path`.
    pub fn open_store(path: &Path, store: &str) -> rusqlite::Result<Self> {
        Self::init(Connection::open(path)?, store)
    }

    /// A `default` store that lives in memory and is gone with this value: Spin's store
    /// when it has no state directory (`--state-dir ""`).
    pub fn open_in_memory() -> rusqlite::Result<Self> {
        Self::open_store_in_memory(DEFAULT_STORE)
    }

    /// The store labelled `store`, in memory: Spin's `type = "spin"` store without a
    /// `path`.
    pub fn open_store_in_memory(store: &str) -> rusqlite::Result<Self> {
        Self::init(Connection::open_in_memory()?, store)
    }

    fn init(mut conn: Connection, store: &str) -> rusqlite::Result<Self> {
        // Several host processes may share one file (instances of one app): wait for
        // each other's writes rather than fail, and let readers run beside a writer.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL is a property of the file; a runtime holding the file open in another mode
        // makes the switch fail, which costs only concurrency, so it is not an error.
        let _ = conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()));
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(CREATE_TABLE)?;
        let migration = migrate_old_table(&mut conn)?;
        if migration != Migration::default() {
            tracing::info!(
                moved = migration.moved,
                superseded = migration.superseded,
                "moved {} keys from host-sim's old table `kv` into Spin's table `spin_key_value` (store `{DEFAULT_STORE}`){}; the old table is dropped",
                migration.moved,
                if migration.superseded > 0 {
                    format!(", and dropped {} keys that `spin_key_value` already held newer", migration.superseded)
                } else {
                    String::new()
                },
            );
        }
        Ok(SqliteKv { conn: Mutex::new(conn), store: store.to_owned() })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The label of this store.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
        self.conn()
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .query_row(params![self.store, key], |r| r.get(0))
            .optional()
    }

    /// Sets `key`.
    pub fn set(&self, key: &str, value: &[u8]) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![self.store, key, value])
            .map(|_| ())
    }

    /// Removes `key` (no error when absent).
    pub fn delete(&self, key: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .execute(params![self.store, key])
            .map(|_| ())
    }

    /// Every key, in key order (Spin gives no order; a fixed one keeps runs repeatable).
    pub fn keys(&self) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
        let keys = stmt.query_map([&self.store], |r| r.get(0))?.collect();
        keys
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> rusqlite::Result<bool> {
        self.conn().prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?.exists(params![self.store, key])
    }
}

/// Moves the rows of host-sim's old table `kv(key, value)` into `spin_key_value` under
/// the `default` store and drops `kv`, in one write transaction: of several processes
/// opening the file at once, exactly one finds the table and moves it.
fn migrate_old_table(conn: &mut Connection) -> rusqlite::Result<Migration> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let columns: Vec<String> = {
        let mut stmt = tx.prepare("SELECT name FROM pragma_table_info('kv') ORDER BY cid")?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        names
    };
    // Only host-sim's own old layout is touched: a table `kv` of some other shape
    // belongs to someone else.
    if columns != ["key", "value"] {
        return Ok(Migration::default());
    }
    let total: u64 = tx.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))?;
    let moved =
        tx.execute("INSERT OR IGNORE INTO spin_key_value (store, key, value) SELECT ?1, key, value FROM kv", [DEFAULT_STORE])? as u64;
    tx.execute_batch("DROP TABLE kv")?;
    tx.commit()?;
    Ok(Migration { moved, superseded: total - moved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_delete_keys_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite");
        let kv = SqliteKv::open(&path).unwrap();
        kv.set("a", b"1").unwrap();
        kv.set("a", b"2").unwrap();
        kv.set("b", b"").unwrap();
        drop(kv);
        let kv = SqliteKv::open(&path).unwrap();
        assert_eq!(kv.get("a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(kv.keys().unwrap(), vec!["a", "b"]);
        kv.delete("a").unwrap();
        kv.delete("zzz").unwrap();
        assert!(!kv.exists("a").unwrap() && kv.exists("b").unwrap());
    }

    /// The rows are Spin's: table `spin_key_value`, store `default`; other stores of the
    /// same file are separate.
    #[test]
    fn rows_are_in_spins_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqlite_key_value.db");
        let kv = SqliteKv::open(&path).unwrap();
        kv.set("k", b"v").unwrap();
        let other = SqliteKv::open_store(&path, "other").unwrap();
        other.set("k", b"w").unwrap();
        assert_eq!(kv.keys().unwrap(), vec!["k"]);
        drop((kv, other));
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(String, String, Vec<u8>)> = conn
            .prepare("SELECT store, key, value FROM spin_key_value ORDER BY store")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, vec![("default".into(), "k".into(), b"v".to_vec()), ("other".into(), "k".into(), b"w".to_vec())]);
    }

    /// A file of the old layout is moved once; a key Spin wrote since is kept.
    #[test]
    fn the_old_table_is_moved_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                 INSERT INTO kv VALUES ('a', x'01'), ('b', x'02');
                 CREATE TABLE spin_key_value (store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key));
                 INSERT INTO spin_key_value VALUES ('default', 'b', x'03');",
            )
            .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(CREATE_TABLE).unwrap();
        assert_eq!(migrate_old_table(&mut conn).unwrap(), Migration { moved: 1, superseded: 1 });
        assert_eq!(migrate_old_table(&mut conn).unwrap(), Migration::default());
        drop(conn);
        let kv = SqliteKv::open(&path).unwrap();
        assert_eq!(kv.get("a").unwrap(), Some(vec![1]));
        assert_eq!(kv.get("b").unwrap(), Some(vec![3]));
    }

    #[test]
    fn in_memory_store_works() {
        let kv = SqliteKv::open_in_memory().unwrap();
        kv.set("x", b"1").unwrap();
        assert_eq!(kv.keys().unwrap(), vec!["x"]);
    }
}
