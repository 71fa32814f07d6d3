//! The simulator's storage: sessions, held parts and finished files in SQLite; part
//! bytes in one sparse data file per session under the data directory.
//!
//! Kept apart from the HTTP handler (as tusd keeps its handler apart from its data
//! store) so that each can be read and tested alone. Every acknowledged change is
//! committed before the handler answers: a killed simulator loses nothing it
//! acknowledged (SQLite's WAL survives a process kill; the part bytes are in the page
//! cache before the row that vouches for them is committed).

use rusqlite::{params, Connection, OptionalExtension};
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A storage failure. The handler answers it as a retryable cache error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The data directory said no.
    #[error("data file: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of a storage call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// An open upload session, as InitUpload created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Lower-case SHA-1 of the whole file: the session's key.
    pub file_sha: String,
    /// fileName, without extension.
    pub file_name: String,
    /// fileType.
    pub file_type: String,
    /// fileSize.
    pub file_size: u64,
    /// The part size fixed by the first InitUpload.
    pub data_size: u64,
    /// tags.N values in N order.
    pub tags: Vec<String>,
    /// classId.
    pub class_id: Option<u64>,
    /// isTranscode, isScreenshot, isWatermark.
    pub flags: [bool; 3],
    /// Unix seconds.
    pub created_at: i64,
}

impl Session {
    /// How many parts the file has.
    pub fn part_count(&self) -> u64 {
        self.file_size.div_ceil(self.data_size)
    }

    /// The length the part at `offset` must have.
    pub fn part_len(&self, offset: u64) -> u64 {
        self.data_size.min(self.file_size - offset)
    }
}

/// A part the simulator holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    /// Start in the file.
    pub offset: u64,
    /// Length.
    #[serde(rename = "dataSize")]
    pub size: u64,
    /// Lower-case MD5 of its bytes.
    #[serde(rename = "dataMd5")]
    pub md5: String,
}

/// A finished file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    /// Decimal fileId.
    pub file_id: String,
    /// Its SHA-1.
    pub file_sha: String,
    /// fileName.
    pub file_name: String,
    /// fileType.
    pub file_type: String,
    /// Size in bytes.
    pub file_size: u64,
    /// Play URL.
    pub url: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Sessions, parts and files.
pub struct Store {
    conn: Mutex<Connection>,
    parts_dir: PathBuf,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS sessions (
    file_sha   TEXT PRIMARY KEY,
    file_name  TEXT NOT NULL,
    file_type  TEXT NOT NULL,
    file_size  INTEGER NOT NULL,
    data_size  INTEGER NOT NULL,
    tags       TEXT NOT NULL,
    class_id   INTEGER,
    flags      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    file_sha TEXT NOT NULL,
    offset   INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    md5      TEXT NOT NULL,
    PRIMARY KEY (file_sha, offset)
);
CREATE TABLE IF NOT EXISTS files (
    file_id    TEXT PRIMARY KEY,
    file_sha   TEXT NOT NULL UNIQUE,
    file_name  TEXT NOT NULL,
    file_type  TEXT NOT NULL,
    file_size  INTEGER NOT NULL,
    url        TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let tags: String = row.get(5)?;
    let flags: i64 = row.get(7)?;
    Ok(Session {
        file_sha: row.get(0)?,
        file_name: row.get(1)?,
        file_type: row.get(2)?,
        file_size: row.get::<_, i64>(3)? as u64,
        data_size: row.get::<_, i64>(4)? as u64,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        class_id: row.get::<_, Option<i64>>(6)?.map(|c| c as u64),
        flags: [flags & 1 != 0, flags & 2 != 0, flags & 4 != 0],
        created_at: row.get(8)?,
    })
}

fn file_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        file_id: row.get(0)?,
        file_sha: row.get(1)?,
        file_name: row.get(2)?,
        file_type: row.get(3)?,
        file_size: row.get::<_, i64>(4)? as u64,
        url: row.get(5)?,
        created_at: row.get(6)?,
    })
}

const FILE_COLUMNS: &str = "file_id, file_sha, file_name, file_type, file_size, url, created_at";

impl Store {
    /// Opens (or creates) the store under `dir`: `dir/vod.sqlite` and `dir/parts/`.
    pub fn open(dir: &Path) -> Result<Store> {
        let parts_dir = dir.join("parts");
        fs::create_dir_all(&parts_dir)?;
        let conn = Connection::open(dir.join("vod.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn: Mutex::new(conn), parts_dir })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (every change
        // is one statement or one transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the bytes of `file_sha` live, for a session and after it finished.
    pub fn data_path(&self, file_sha: &str) -> PathBuf {
        self.parts_dir.join(format!("{file_sha}.bin"))
    }

    /// The open session for `file_sha`.
    pub fn session(&self, file_sha: &str) -> Result<Option<Session>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT file_sha, file_name, file_type, file_size, data_size, tags, class_id, flags, created_at
                 FROM sessions WHERE file_sha = ?1",
                [file_sha],
                session_from_row,
            )
            .optional()?)
    }

    /// Creates `session` unless one exists for its SHA-1; returns the session in force
    /// (the earlier one wins, so its part size stays fixed) and whether it is new.
    pub fn create_session(&self, session: &Session) -> Result<(Session, bool)> {
        // The data file exists from the start (without truncating one already there),
        // so that a file of 0 bytes, which has no parts, can be hashed and served too.
        OpenOptions::new().create(true).write(true).truncate(false).open(self.data_path(&session.file_sha))?;
        let flags = session.flags.iter().enumerate().map(|(i, f)| (*f as i64) << i).sum::<i64>();
        let created = self.conn().execute(
            "INSERT OR IGNORE INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                session.file_sha,
                session.file_name,
                session.file_type,
                session.file_size as i64,
                session.data_size as i64,
                serde_json::to_string(&session.tags).expect("strings serialize"),
                session.class_id.map(|c| c as i64),
                flags,
                session.created_at,
            ],
        )?;
        Ok((self.session(&session.file_sha)?.expect("just inserted or already there"), created == 1))
    }

    /// The parts held for `file_sha`, by offset.
    pub fn parts(&self, file_sha: &str) -> Result<Vec<Part>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT offset, size, md5 FROM parts WHERE file_sha = ?1 ORDER BY offset")?;
        let rows = stmt.query_map([file_sha], |row| {
            Ok(Part { offset: row.get::<_, i64>(0)? as u64, size: row.get::<_, i64>(1)? as u64, md5: row.get(2)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes a verified part's bytes at its offset, then records it. Both happen under
    /// one lock, so two writers of the same offset can never leave the row describing
    /// one body and the disk holding the other. Returns whether the session already
    /// held a part at this offset (the part was sent again).
    pub fn put_part(&self, file_sha: &str, offset: u64, bytes: &[u8], md5: &str) -> Result<bool> {
        let conn = self.conn();
        let held =
            conn.prepare_cached("SELECT 1 FROM parts WHERE file_sha = ?1 AND offset = ?2")?.exists(params![file_sha, offset as i64])?;
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(self.data_path(file_sha))?;
        file.write_all_at(bytes, offset)?;
        conn.prepare_cached("INSERT OR REPLACE INTO parts VALUES (?1, ?2, ?3, ?4)")?.execute(params![
            file_sha,
            offset as i64,
            bytes.len() as i64,
            md5
        ])?;
        Ok(held)
    }

    /// SHA-1 (lower-case hex) of the first `len` bytes of `file_sha`'s data file, read
    /// in a streaming pass. Slow for big files: call it off the async executor.
    pub fn hash_data(&self, file_sha: &str, len: u64) -> Result<String> {
        let file = fs::File::open(self.data_path(file_sha))?.take(len);
        let (sha, seen) = crate::sample::sha1_of_reader(file)?;
        if seen < len {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("data file holds {seen} of {len} bytes"),
            )));
        }
        Ok(sha)
    }

    /// Turns the session into a finished file, in one transaction: the file row is
    /// added and the session and its part rows removed. The bytes stay where they are.
    pub fn finish(&self, session: &Session, file_id: &str, url: &str, now: i64) -> Result<FileRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO files VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![file_id, session.file_sha, session.file_name, session.file_type, session.file_size as i64, url, now],
        )?;
        tx.execute("DELETE FROM parts WHERE file_sha = ?1", [&session.file_sha])?;
        tx.execute("DELETE FROM sessions WHERE file_sha = ?1", [&session.file_sha])?;
        tx.commit()?;
        Ok(FileRecord {
            file_id: file_id.to_owned(),
            file_sha: session.file_sha.clone(),
            file_name: session.file_name.clone(),
            file_type: session.file_type.clone(),
            file_size: session.file_size,
            url: url.to_owned(),
            created_at: now,
        })
    }

    /// Removes the bytes of a finished file and keeps its record, so the service still
    /// answers for its fileSha as for a finished file (InitUpload code 2, FinishUpload
    /// its fileId, UploadPart refused). For callers that checked the bytes and need the
    /// room back, such as a soak that sends gigabytes to a simulator on tmpfs. Returns
    /// the file, `None` when no finished file has this fileId; removing bytes already
    /// removed is not an error.
    pub fn release_data(&self, file_id: &str) -> Result<Option<FileRecord>> {
        let Some(file) = self.file_by_id(file_id)? else { return Ok(None) };
        match fs::remove_file(self.data_path(&file.file_sha)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        Ok(Some(file))
    }

    /// Whether the bytes of a finished file are all still held (not released).
    pub fn holds_data(&self, file: &FileRecord) -> bool {
        fs::metadata(self.data_path(&file.file_sha)).is_ok_and(|m| m.len() >= file.file_size)
    }

    /// The finished file with this SHA-1.
    pub fn file_by_sha(&self, file_sha: &str) -> Result<Option<FileRecord>> {
        Ok(self.conn().query_row(&format!("SELECT {FILE_COLUMNS} FROM files WHERE file_sha = ?1"), [file_sha], file_from_row).optional()?)
    }

    /// The finished file with this fileId.
    pub fn file_by_id(&self, file_id: &str) -> Result<Option<FileRecord>> {
        Ok(self.conn().query_row(&format!("SELECT {FILE_COLUMNS} FROM files WHERE file_id = ?1"), [file_id], file_from_row).optional()?)
    }

    /// Every finished file, oldest first.
    pub fn files(&self) -> Result<Vec<FileRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {FILE_COLUMNS} FROM files ORDER BY created_at, file_id"))?;
        let rows = stmt.query_map([], file_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(size: u64) -> Session {
        Session {
            file_sha: "ab".repeat(20),
            file_name: "clip".into(),
            file_type: "mp4".into(),
            file_size: size,
            data_size: 524_288,
            tags: vec!["a".into()],
            class_id: Some(7),
            flags: [true, false, true],
            created_at: 1,
        }
    }

    #[test]
    fn first_session_wins_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (first, created) = store.create_session(&session(1_000_000)).unwrap();
        assert!(created);
        assert_eq!(first, session(1_000_000), "every field, flags included, reads back as written");
        let mut other = session(1_000_000);
        other.data_size = 1_048_576;
        assert_eq!(store.create_session(&other).unwrap(), (first.clone(), false));
        assert!(!store.put_part(&first.file_sha, 524_288, &[7u8; 475_712], "m").unwrap(), "a new part");
        assert!(store.put_part(&first.file_sha, 524_288, &[7u8; 475_712], "m").unwrap(), "the same part again");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.session(&first.file_sha).unwrap(), Some(session(1_000_000)));
        let mut other_flags = session(1_000_000);
        other_flags.file_sha = "cd".repeat(20);
        other_flags.flags = [false, true, false];
        assert_eq!(store.create_session(&other_flags).unwrap().0.flags, [false, true, false]);
        assert_eq!(store.parts(&first.file_sha).unwrap(), vec![Part { offset: 524_288, size: 475_712, md5: "m".into() }]);
    }

    #[test]
    fn an_empty_file_has_a_data_file_to_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (s, _) = store.create_session(&session(0)).unwrap();
        assert_eq!(s.part_count(), 0);
        assert_eq!(store.hash_data(&s.file_sha, 0).unwrap(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn finish_moves_session_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (s, _) = store.create_session(&session(3)).unwrap();
        store.put_part(&s.file_sha, 0, b"abc", "m").unwrap();
        assert_eq!(store.hash_data(&s.file_sha, 3).unwrap(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(store.hash_data(&s.file_sha, 4).is_err());
        let f = store.finish(&s, "123", "http://u", 9).unwrap();
        assert_eq!(store.session(&s.file_sha).unwrap(), None);
        assert!(store.parts(&s.file_sha).unwrap().is_empty());
        assert_eq!(store.file_by_sha(&s.file_sha).unwrap(), Some(f.clone()));
        assert_eq!(store.file_by_id("123").unwrap(), Some(f.clone()));
        assert_eq!(store.files().unwrap(), vec![f.clone()]);
        assert!(store.holds_data(&f));
        assert_eq!(store.release_data("123").unwrap(), Some(f.clone()));
        assert!(!store.holds_data(&f), "released");
        assert_eq!(store.release_data("123").unwrap(), Some(f.clone()), "twice is fine");
        assert_eq!(store.release_data("124").unwrap(), None);
        assert_eq!(store.file_by_sha(&s.file_sha).unwrap(), Some(f), "the record stays");
    }
}
