//! A key-value store on SQLite, like Spin's default store for local runs. Used by the
//! native driver of the engine (tests) and by the Spin-compatible host.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// One store in one SQLite file.
pub struct SqliteKv {
    conn: Mutex<Connection>,
}

impl SqliteKv {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        Ok(SqliteKv { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
        self.conn().query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0)).optional()
    }

    /// Sets `key`.
    pub fn set(&self, key: &str, value: &[u8]) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
            .execute(params![key, value])
            .map(|_| ())
    }

    /// Removes `key` (no error when absent).
    pub fn delete(&self, key: &str) -> rusqlite::Result<()> {
        self.conn().execute("DELETE FROM kv WHERE key = ?1", [key]).map(|_| ())
    }

    /// Every key.
    pub fn keys(&self) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT key FROM kv ORDER BY key")?;
        let keys = stmt.query_map([], |r| r.get(0))?.collect();
        keys
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> rusqlite::Result<bool> {
        Ok(self.get(key)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_get_delete_keys_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite");
        let kv = super::SqliteKv::open(&path).unwrap();
        kv.set("a", b"1").unwrap();
        kv.set("a", b"2").unwrap();
        kv.set("b", b"").unwrap();
        drop(kv);
        let kv = super::SqliteKv::open(&path).unwrap();
        assert_eq!(kv.get("a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(kv.keys().unwrap(), vec!["a", "b"]);
        kv.delete("a").unwrap();
        kv.delete("zzz").unwrap();
        assert!(!kv.exists("a").unwrap() && kv.exists("b").unwrap());
    }
}
