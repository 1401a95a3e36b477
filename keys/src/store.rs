//! Where sealed blobs live: the [`BlobStore`] trait, an in-memory store and a file store.
//!
//! A store keeps opaque sealed bytes under a [`BlobId`] with a version number, plus a few
//! named metadata values (rotation progress). It never sees plaintext or keys. Every write
//! is a compare-and-swap against the record the writer read, so a background rotation and
//! a node writing the same blob never overwrite each other; every write is atomic, so a
//! crash leaves the old record or the new one. The node's SQLite store implements the same
//! trait (`UPDATE … WHERE id = ? AND version = ? AND sealed = ?`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

use crate::KeyError;
use crate::local::sync_dir;

/// The name of a stored blob: 1–200 bytes of `[A-Za-z0-9._/-]`, not starting with `/`
/// or `.`. Bound into each blob's associated data.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId(String);

impl BlobId {
    pub const MAX_LEN: usize = 200;

    pub fn new(id: &str) -> Result<BlobId, KeyError> {
        let bad = |reason| KeyError::InvalidBlobId {
            id: id.chars().take(Self::MAX_LEN).collect(),
            reason,
        };
        if id.is_empty() || id.len() > Self::MAX_LEN {
            return Err(bad("must be 1 to 200 bytes"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        {
            return Err(bad("allowed characters are A-Z a-z 0-9 . _ / -"));
        }
        if id.starts_with(['/', '.']) {
            return Err(bad("must not start with '/' or '.'"));
        }
        Ok(BlobId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.0)
    }
}

/// One stored record: the blob's version (bumped by every content change) and its sealed
/// bytes (see [`crate::envelope`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    pub sealed: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Record {{ version: {}, sealed: {} bytes }}",
            self.version,
            self.sealed.len()
        )
    }
}

/// Storage for sealed blobs and rotation metadata. See the module docs.
pub trait BlobStore: Send + Sync {
    fn get(&self, id: &BlobId) -> Result<Option<Record>, KeyError>;
    /// Store `new` if the current record equals `expected` (`None`: no record yet).
    /// Returns `false`, writing nothing, when another writer got there first.
    fn compare_and_swap(
        &self,
        id: &BlobId,
        expected: Option<&Record>,
        new: &Record,
    ) -> Result<bool, KeyError>;
    /// Every blob id, sorted.
    fn list(&self) -> Result<Vec<BlobId>, KeyError>;
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError>;
    /// Set (`Some`) or delete (`None`) a metadata value, atomically.
    fn put_meta(&self, name: &str, value: Option<&[u8]>) -> Result<(), KeyError>;
}

type Maps = (BTreeMap<BlobId, Record>, BTreeMap<String, Vec<u8>>);

/// An in-memory store, for tests and the demo.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Maps>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Maps>, KeyError> {
        self.inner
            .lock()
            .map_err(|_| KeyError::Crypto("memory store lock poisoned"))
    }
    /// Overwrite a record without checks: tests use it to tamper with or swap blobs.
    pub fn force_put(&self, id: &BlobId, record: Record) {
        if let Ok(mut g) = self.lock() {
            g.0.insert(id.clone(), record);
        }
    }
}

impl BlobStore for MemoryStore {
    fn get(&self, id: &BlobId) -> Result<Option<Record>, KeyError> {
        Ok(self.lock()?.0.get(id).cloned())
    }
    fn compare_and_swap(
        &self,
        id: &BlobId,
        expected: Option<&Record>,
        new: &Record,
    ) -> Result<bool, KeyError> {
        let mut g = self.lock()?;
        if g.0.get(id) != expected {
            return Ok(false);
        }
        g.0.insert(id.clone(), new.clone());
        Ok(true)
    }
    fn list(&self) -> Result<Vec<BlobId>, KeyError> {
        Ok(self.lock()?.0.keys().cloned().collect())
    }
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
        Ok(self.lock()?.1.get(name).cloned())
    }
    fn put_meta(&self, name: &str, value: Option<&[u8]>) -> Result<(), KeyError> {
        let mut g = self.lock()?;
        match value {
            Some(v) => g.1.insert(name.to_owned(), v.to_vec()),
            None => g.1.remove(name),
        };
        Ok(())
    }
}

/// A directory of files: `blobs/<hex id>` holds `version u64 ‖ sealed`, `meta/<hex name>`
/// a metadata value. Writes go to a temporary file that is fsynced and renamed; a lock file
/// (`flock`) serialises writers across processes, so `parley keys rotate-data` may run
/// beside a node. Leftover temporary files from a crash are ignored and cleaned up.
pub struct FileStore {
    dir: PathBuf,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileStore({})", self.dir.display())
    }
}

impl FileStore {
    /// Open (creating if needed, mode 0700) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        for sub in ["blobs", "meta"] {
            let p = dir.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|source| io("create", &p, source))?;
        }
        Ok(FileStore {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join("blobs").join(hex::encode(id.as_str()))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join("meta").join(hex::encode(name))
    }

    fn read_record(&self, id: &BlobId) -> Result<Option<Record>, KeyError> {
        let path = self.blob_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path, e)),
        };
        let (v, sealed) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| KeyError::BlobCorrupt {
                id: id.to_string(),
                version: 0,
                reason: format!("{} is shorter than its 8-byte header", path.display()),
            })?;
        Ok(Some(Record {
            version: u64::from_be_bytes(*v),
            sealed: sealed.to_vec(),
        }))
    }

    fn lock(&self) -> Result<Flock<fs::File>, KeyError> {
        FileLock::exclusive(&self.dir.join(".lock")).map(|l| l.0)
    }
}

impl BlobStore for FileStore {
    fn get(&self, id: &BlobId) -> Result<Option<Record>, KeyError> {
        self.read_record(id)
    }
    fn compare_and_swap(
        &self,
        id: &BlobId,
        expected: Option<&Record>,
        new: &Record,
    ) -> Result<bool, KeyError> {
        let _lock = self.lock()?;
        if self.read_record(id)?.as_ref() != expected {
            return Ok(false);
        }
        let mut bytes = Vec::with_capacity(8 + new.sealed.len());
        bytes.extend_from_slice(&new.version.to_be_bytes());
        bytes.extend_from_slice(&new.sealed);
        atomic_write(&self.blob_path(id), &bytes)?;
        Ok(true)
    }
    fn list(&self) -> Result<Vec<BlobId>, KeyError> {
        let dir = self.dir.join("blobs");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io("list", &dir, e))? {
            let entry = entry.map_err(|e| io("list", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                // A temporary file left by a crash mid-write: the rename never happened.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let id = hex::decode(name.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| BlobId::new(&s).ok());
            match id {
                Some(id) => out.push(id),
                None => {
                    tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a blob")
                }
            }
        }
        out.sort();
        Ok(out)
    }
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
        let path = self.meta_path(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }
    fn put_meta(&self, name: &str, value: Option<&[u8]>) -> Result<(), KeyError> {
        let _lock = self.lock()?;
        let path = self.meta_path(name);
        match value {
            Some(v) => atomic_write(&path, v),
            None => match fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.dir.join("meta")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("delete", &path, e)),
            },
        }
    }
}

/// An exclusive `flock` on a lock file, released on drop.
pub(crate) struct FileLock(Flock<fs::File>);

impl FileLock {
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock, KeyError> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io("open lock file", path, e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map(FileLock)
            .map_err(|(_, errno)| io("lock", path, std::io::Error::from(errno)))
    }
}

fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| io("write", path, e))?;
    sync_dir(dir)
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn BlobStore) {
        let a = BlobId::new("datasets/a").unwrap();
        let r1 = Record {
            version: 1,
            sealed: b"one".to_vec(),
        };
        let r2 = Record {
            version: 2,
            sealed: b"two".to_vec(),
        };
        assert!(store.get(&a).unwrap().is_none());
        assert!(store.compare_and_swap(&a, None, &r1).unwrap());
        assert!(!store.compare_and_swap(&a, None, &r2).unwrap());
        assert!(!store.compare_and_swap(&a, Some(&r2), &r2).unwrap());
        assert!(store.compare_and_swap(&a, Some(&r1), &r2).unwrap());
        assert_eq!(store.get(&a).unwrap(), Some(r2));
        assert_eq!(store.list().unwrap(), vec![a]);
        store.put_meta("job", Some(b"x")).unwrap();
        assert_eq!(store.get_meta("job").unwrap().as_deref(), Some(&b"x"[..]));
        store.put_meta("job", None).unwrap();
        assert!(store.get_meta("job").unwrap().is_none());
    }

    #[test]
    fn stores_compare_and_swap() {
        exercise(&MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
        let fs_store = FileStore::open(dir.path()).unwrap();
        exercise(&fs_store);
        // A leftover temporary file is not a blob.
        fs::write(dir.path().join("blobs/.zz.tmp"), b"junk").unwrap();
        assert_eq!(fs_store.list().unwrap().len(), 1);
        assert!(!dir.path().join("blobs/.zz.tmp").exists());
    }

    #[test]
    fn blob_ids_are_checked() {
        assert!(BlobId::new("identity/node-key").is_ok());
        for bad in ["", "/abs", ".hidden", "a b", "a\0b", &"x".repeat(201)] {
            assert!(BlobId::new(bad).is_err(), "{bad:?}");
        }
    }
}
