//! The store layer: the node's database, its audit log ([`audit`]), datasets
//! ([`datasets`], schemas and CSV in [`data`]), the privacy rule's release ledger
//! ([`releases`]) and the budget ledger, with one writer per store ([`lock`]).
//!
//! The node's store: one SQLite database (WAL, `synchronous = FULL`) per node holding
//! sealed blobs (datasets, keys), dataset metadata, jobs and approvals, verdicts, the audit
//! log, the budget ledger and the tree heads peers gave us.
//!
//! Every state change that must be audited is written in the same transaction as its audit
//! entry, so a crash never leaves one without the other. Schema changes are numbered
//! migrations applied in order at open; a database from a newer build is refused.

pub mod audit;
pub mod data;
pub mod datasets;
pub mod lock;
pub mod releases;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use parley_keys::KeyError;
use parley_keys::store::{BlobId, BlobStore, Record};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE blobs (id TEXT PRIMARY KEY, version INTEGER NOT NULL, sealed BLOB NOT NULL);
     CREATE TABLE blob_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE datasets (name TEXT PRIMARY KEY, schema TEXT NOT NULL, version INTEGER NOT NULL,
                            rows INTEGER NOT NULL, sha256 TEXT NOT NULL, imported_at INTEGER NOT NULL);
     CREATE TABLE jobs (id TEXT PRIMARY KEY, hash TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
                        view TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL);
     CREATE TABLE approvals (job_id TEXT NOT NULL, party TEXT NOT NULL, approval TEXT NOT NULL,
                             at INTEGER NOT NULL, PRIMARY KEY (job_id, party));
     CREATE TABLE verdicts (seq INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL, gate INTEGER NOT NULL,
                            accepted INTEGER NOT NULL, record TEXT NOT NULL, at INTEGER NOT NULL);
     CREATE TABLE audit (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL);
     CREATE TABLE log_state (id INTEGER PRIMARY KEY CHECK (id = 0), log_id TEXT NOT NULL,
                             generation INTEGER NOT NULL, first_seq INTEGER NOT NULL);
     CREATE TABLE peer_heads (peer TEXT PRIMARY KEY, head TEXT NOT NULL, at INTEGER NOT NULL);
     CREATE TABLE ledger (seq INTEGER PRIMARY KEY, dataset TEXT NOT NULL, job_id TEXT NOT NULL,
                          kind TEXT NOT NULL, amount TEXT NOT NULL, at INTEGER NOT NULL);",
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Sqlite { path: String, message: String },
    #[error(
        "store {path} has schema version {found}, newer than this build understands ({known}): run the newer parley or restore a backup"
    )]
    TooNew {
        path: String,
        found: usize,
        known: usize,
    },
    #[error("store {path}: corrupt record: {message}")]
    Corrupt { path: String, message: String },
}

/// The node's database. Cheap to share (`Arc`); operations are short and serialised.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Open (creating if needed) and migrate.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let err = |e: rusqlite::Error| StoreError::Sqlite {
            path: name.clone(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // FULL: a committed transaction survives a crash or power loss, not just a process kill.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: name,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn sql_error(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn corrupt(&self, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    /// Run `f` in one transaction; it commits only if `f` succeeds.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.sql_error(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.sql_error(e))?;
        Ok(out)
    }

    /// Read-only access.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.lock();
        f(&conn)
    }
}

/// Jobs as persisted at each transition (the view the node last recorded).
impl Store {
    /// One job's last recorded view.
    pub fn job_view(
        &self,
        id: &crate::jobs::job::JobId,
    ) -> Result<Option<crate::jobs::job::JobView>, StoreError> {
        let text: Option<String> = self.read(|c| {
            c.query_row(
                "SELECT view FROM jobs WHERE id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql_error(e))
        })?;
        text.map(|t| self.parse_view(&t)).transpose()
    }

    /// The last `limit` jobs recorded, newest first.
    pub fn job_views(&self, limit: usize) -> Result<Vec<crate::jobs::job::JobView>, StoreError> {
        let texts: Vec<String> = self.read(|c| {
            let mut stmt = c
                .prepare("SELECT view FROM jobs ORDER BY created DESC, rowid DESC LIMIT ?1")
                .map_err(|e| self.sql_error(e))?;
            let rows = stmt
                .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    r.get(0)
                })
                .map_err(|e| self.sql_error(e))?;
            rows.map(|r| r.map_err(|e| self.sql_error(e))).collect()
        })?;
        texts.iter().map(|t| self.parse_view(t)).collect()
    }

    fn parse_view(&self, text: &str) -> Result<crate::jobs::job::JobView, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("a job's recorded view: {e}")))
    }
}

fn key_err(e: rusqlite::Error) -> KeyError {
    KeyError::Crypto(if matches!(e, rusqlite::Error::SqliteFailure(..)) {
        "the node store refused a blob operation"
    } else {
        "the node store failed"
    })
}

/// Sealed blobs for `parley-keys`: compare-and-swap is one conditional UPDATE/INSERT.
impl BlobStore for Store {
    fn get(&self, id: &BlobId) -> Result<Option<Record>, KeyError> {
        self.lock()
            .query_row(
                "SELECT version, sealed FROM blobs WHERE id = ?1",
                params![id.as_str()],
                |r| {
                    Ok(Record {
                        version: r.get::<_, i64>(0)? as u64,
                        sealed: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(key_err)
    }

    fn compare_and_swap(
        &self,
        id: &BlobId,
        expected: Option<&Record>,
        new: &Record,
    ) -> Result<bool, KeyError> {
        let conn = self.lock();
        let n = match expected {
            None => conn.execute(
                "INSERT INTO blobs (id, version, sealed) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO NOTHING",
                params![id.as_str(), new.version as i64, new.sealed],
            ),
            Some(old) => conn.execute(
                "UPDATE blobs SET version = ?2, sealed = ?3 WHERE id = ?1 AND version = ?4 AND sealed = ?5",
                params![id.as_str(), new.version as i64, new.sealed, old.version as i64, old.sealed],
            ),
        }
        .map_err(key_err)?;
        Ok(n == 1)
    }

    fn list(&self) -> Result<Vec<BlobId>, KeyError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id FROM blobs ORDER BY id")
            .map_err(key_err)?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(key_err)?;
        ids.map(|r| r.map_err(key_err).and_then(|s| BlobId::new(&s)))
            .collect()
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, KeyError> {
        self.lock()
            .query_row(
                "SELECT value FROM blob_meta WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(key_err)
    }

    fn put_meta(&self, name: &str, value: Option<&[u8]>) -> Result<(), KeyError> {
        let conn = self.lock();
        match value {
            Some(v) => conn.execute(
                "INSERT INTO blob_meta (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2",
                params![name, v],
            ),
            None => conn.execute("DELETE FROM blob_meta WHERE name = ?1", params![name]),
        }
        .map_err(key_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_blob_cas_is_conditional() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.db");
        let s = Store::open(&path).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        let id = BlobId::new("dataset/patients").unwrap();
        let r1 = Record {
            version: 1,
            sealed: vec![1, 2, 3],
        };
        assert!(s.compare_and_swap(&id, None, &r1).unwrap());
        assert!(
            !s.compare_and_swap(&id, None, &r1).unwrap(),
            "insert over an existing blob"
        );
        let r2 = Record {
            version: 2,
            sealed: vec![4],
        };
        let stale = Record {
            version: 1,
            sealed: vec![9],
        };
        assert!(!s.compare_and_swap(&id, Some(&stale), &r2).unwrap());
        assert!(s.compare_and_swap(&id, Some(&r1), &r2).unwrap());
        assert_eq!(s.get(&id).unwrap(), Some(r2));
        assert_eq!(s.list().unwrap(), vec![id]);
        s.put_meta("m", Some(b"x")).unwrap();
        assert_eq!(s.get_meta("m").unwrap().as_deref(), Some(&b"x"[..]));
        s.put_meta("m", None).unwrap();
        assert_eq!(s.get_meta("m").unwrap(), None);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.db");
        Store::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
