//! The command's key-value store: one file per key in a checkpoint directory, each
//! write atomic (the value written to a temporary name, synced, then renamed over the
//! key's file), so that a kill at any instant leaves every key either as it was or as
//! written, never torn. The engine's records and their single commit point are the
//! same as in the Spin component's store.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files that are a key's value end with this; anything else in the directory is not
/// a key (temporary files of interrupted writes, a user's own files).
const SUFFIX: &str = ".kv";
/// The start of a temporary file's name.
const TEMP: &str = ".tmp-";

/// A directory of keys.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

/// A key as a file name: bytes other than ASCII letters, digits, `-` and `_` as `%XX`
/// (keys hold `/` and `:`), so that every key has one name and every name one key.
pub fn file_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + SUFFIX.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(SUFFIX);
    out
}

/// The key a file name stands for, `None` for a file that is not a key's.
pub fn key_of(name: &str) -> Option<String> {
    let encoded = name.strip_suffix(SUFFIX)?;
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            bytes.push(b);
            rest = tail;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

impl DirStore {
    /// The store in `dir`, created if missing; temporary files of writes a kill cut
    /// short are removed.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<DirStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(TEMP)) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(DirStore { dir })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a key: all of `value` or nothing, whenever the process dies.
    pub fn set(&self, key: &str, value: &[u8], unique: u64) -> std::io::Result<()> {
        let temp = self.dir.join(format!("{TEMP}{unique:016x}-{}", file_name(key)));
        let written = (|| {
            let mut file = fs::File::create(&temp)?;
            file.write_all(value)?;
            // On disk before the rename makes it the key's: a crash of the machine then
            // leaves the old value or the new one.
            file.sync_all()?;
            fs::rename(&temp, self.path(key))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Removes a key (a missing one is not an error).
    pub fn delete(&self, key: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every key.
    pub fn keys(&self) -> std::io::Result<Vec<String>> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            if let Some(key) = entry?.file_name().to_str().and_then(key_of) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_round_trip_through_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path().join("state")).unwrap();
        assert_eq!(store.get("vu/abc").unwrap(), None);
        store.set("vu/abc", b"one", 1).unwrap();
        store.set("vu/abc", b"two", 2).unwrap();
        store.set("vuq/out/1/2/x:y", b"", 3).unwrap();
        assert_eq!(store.get("vu/abc").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(store.keys().unwrap(), vec!["vu/abc".to_owned(), "vuq/out/1/2/x:y".to_owned()]);
        store.delete("vu/abc").unwrap();
        store.delete("vu/abc").unwrap();
        assert_eq!(store.keys().unwrap(), vec!["vuq/out/1/2/x:y".to_owned()]);
    }

    #[test]
    fn a_write_cut_short_is_no_key_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        store.set("k", b"whole", 1).unwrap();
        // What a kill between create and rename leaves, and a user's own file.
        fs::write(dir.path().join(format!("{TEMP}0000000000000002-{}", file_name("k"))), b"ha").unwrap();
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        assert_eq!(store.keys().unwrap(), vec!["k".to_owned()]);
        assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"whole"[..]));
        let store = DirStore::open(dir.path()).unwrap();
        let mut names: Vec<String> = fs::read_dir(store.dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["k.kv".to_owned(), "notes.txt".to_owned()]);
    }

    proptest! {
        #[test]
        fn every_key_has_one_file_name_and_back(key in "\\PC{0,40}") {
            let name = file_name(&key);
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_%.".contains(&b)), "{}", name);
            prop_assert_eq!(key_of(&name), Some(key));
        }
    }
}
