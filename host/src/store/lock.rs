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
    #[error("{holder}: {what} — the store {} has one writer; {hint}", .dir.display())]
    Held {
        holder: Holder,
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

/// Who holds a store: its pid and what it is (`node`, or the CLI command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub role: String,
}

/// The role a running node writes into the lock file.
pub const NODE: &str = "node";

impl Holder {
    pub fn is_node(&self) -> bool {
        self.role == NODE
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.is_node(), self.pid) {
            (true, Some(p)) => write!(f, "node is running (pid {p})"),
            (true, None) => f.write_str("node is running"),
            (false, Some(p)) => write!(
                f,
                "another parley command holds the store (pid {p}: {})",
                self.role
            ),
            (false, None) => write!(f, "another parley command holds the store ({})", self.role),
        }
    }
}

/// A process that only looks (`holder`) holds a shared lock for an instant: a writer
/// retries this many times, this far apart, before it refuses.
const TRIES: u32 = 10;
const RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// The exclusive lock on one store; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Take the lock of the store in `data_dir` as `role` ([`NODE`] or the command's name)
    /// for `what` (said in the refusal, e.g. "a second `parley node` is refused"), or say
    /// who holds it and what to do (`hint`).
    pub fn acquire(data_dir: &Path, role: &str, what: &str, hint: &str) -> Result<Self, LockError> {
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
        // The mutation twin (test builds only): the lock switched off, so the attack it
        // stops — a second writer beside a running node — must then succeed.
        #[cfg(feature = "sim-cheat")]
        let skip = std::env::var("PARLEY_MUTATION").as_deref() == Ok("no-store-lock");
        #[cfg(not(feature = "sim-cheat"))]
        let skip = false;
        if !skip {
            let mut tries = 0;
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) if tries + 1 < TRIES => {
                        tries += 1;
                        std::thread::sleep(RETRY);
                    }
                    Err(TryLockError::WouldBlock) => {
                        return Err(LockError::Held {
                            holder: read_holder(&mut file),
                            dir: data_dir.to_owned(),
                            what: what.to_owned(),
                            hint: hint.to_owned(),
                        });
                    }
                    Err(TryLockError::Error(e)) => return Err(io(e)),
                }
            }
        }
        // Ours: record who holds it, for the refusals of others.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{} {role}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StoreLock { file, path })
    }

    /// Who holds the store in `data_dir`, if anyone does (a command that would write
    /// uses this to go through a running node instead). It holds a shared lock for an
    /// instant, which writers retry past.
    pub fn holder(data_dir: &Path) -> Option<Holder> {
        let mut file = File::open(data_dir.join(LOCK_FILE)).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(TryLockError::WouldBlock) => Some(read_holder(&mut file)),
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

fn read_holder(file: &mut File) -> Holder {
    let mut s = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(256).read_to_string(&mut s));
    let mut parts = s.trim().splitn(2, ' ');
    let pid = parts.next().and_then(|p| p.parse().ok());
    let role = parts
        .next()
        .filter(|r| !r.is_empty())
        .unwrap_or(NODE)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    Holder { pid, role }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_refusal_names_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StoreLock::holder(dir.path()), None);
        let held = StoreLock::acquire(dir.path(), NODE, "first", "").unwrap();
        let me = Holder {
            pid: Some(std::process::id()),
            role: NODE.into(),
        };
        assert_eq!(StoreLock::holder(dir.path()), Some(me));
        let err = StoreLock::acquire(
            dir.path(),
            "x",
            "a second writer is refused",
            "stop it first",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("node is running (pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("a second writer is refused") && msg.contains("stop it first"));
        drop(held);
        assert_eq!(StoreLock::holder(dir.path()), None);
        let cli = StoreLock::acquire(dir.path(), "keys rotate", "again", "").unwrap();
        let msg = StoreLock::acquire(dir.path(), NODE, "a node is refused", "")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("another parley command holds the store")
                && msg.contains("keys rotate"),
            "{msg}"
        );
        drop(cli);
    }
}
