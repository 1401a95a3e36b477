//! One writer per store: an advisory lock (`flock`) on `parley.lock` beside the node's
//! database, holding the pid of whoever has it.
//!
//! A running node holds the lock for its whole life; a CLI command that changes the store
//! (a key rotation, a recovery) takes it for its own run, so it never writes beside a node,
//! and a second `parley node` on the same store is refused before it writes anything.
//! Read-only commands take no lock: SQLite (WAL) lets them read beside the writer. The
//! kernel drops the lock when its holder exits, however it exits, so a crash leaves no stale
//! lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the node's data directory.
pub const LOCK_FILE: &str = "parley.lock";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the store.
    #[error("{}: {what} — the store {} has one writer; {hint}", held_by(*.pid), .dir.display())]
    Held {
        pid: Option<u32>,
        dir: PathBuf,
        what: String,
        hint: String,
    },
    #[error("cannot open the store's lock file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn held_by(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("node is running (pid {p})"),
        None => "node is running".to_owned(),
    }
}

/// The exclusive lock on one store; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Take the lock of the store in `data_dir` for `what` (said in the refusal, e.g. "a
    /// second `parley node` is refused"), or say who holds it and what to do (`hint`).
    pub fn acquire(data_dir: &Path, what: &str, hint: &str) -> Result<Self, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    pid: read_pid(&mut file),
                    dir: data_dir.to_owned(),
                    what: what.to_owned(),
                    hint: hint.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours: record who holds it, for the refusals of others.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StoreLock { file, path })
    }

    /// The pid of the process holding the store in `data_dir`, if one does (read-only
    /// commands use this to say they run beside a node; it takes no lock).
    pub fn holder(data_dir: &Path) -> Option<Option<u32>> {
        let mut file = File::open(data_dir.join(LOCK_FILE)).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(TryLockError::WouldBlock) => Some(read_pid(&mut file)),
            Err(TryLockError::Error(_)) => None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_refusal_names_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StoreLock::holder(dir.path()), None);
        let held = StoreLock::acquire(dir.path(), "first", "").unwrap();
        assert_eq!(
            StoreLock::holder(dir.path()),
            Some(Some(std::process::id()))
        );
        let err = StoreLock::acquire(dir.path(), "a second writer is refused", "stop it first")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("node is running (pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("a second writer is refused") && msg.contains("stop it first"));
        drop(held);
        assert_eq!(StoreLock::holder(dir.path()), None);
        StoreLock::acquire(dir.path(), "again", "").unwrap();
    }
}
