//! Datasets at rest: each imported dataset is one sealed blob in the node's store
//! (`dataset/<name>`, AES-256-GCM under a data key wrapped by the key backend), with its
//! schema, version, row count and digest in the `datasets` table and an audit entry.
//!
//! Import streams and validates the whole CSV first; nothing is stored unless every row is
//! valid. A re-import bumps the version, which every job binds (a job approved for
//! version 3 is refused once version 4 exists).

use std::collections::BTreeMap;

use parley_keys::envelope::EnvelopeStore;
use parley_keys::store::BlobId;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::audit::Journal;
use crate::store::data::{DataError, Dataset, Population, Schema};

/// A dataset's public description (no values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetMeta {
    pub name: String,
    pub schema: Schema,
    pub version: u64,
    pub rows: u64,
    /// SHA-256 of the canonical encoding of the values (not shared with peers).
    pub sha256: String,
    pub imported_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("dataset name {0:?} must be 1-64 characters of a-z, 0-9, '-' and '_'")]
    Name(String),
    #[error("cannot store dataset {name}: {source}")]
    Keys {
        name: String,
        source: parley_keys::KeyError,
    },
    #[error("cannot store dataset {name}: {source}")]
    Store {
        name: String,
        source: crate::store::StoreError,
    },
    #[error("stored dataset {name} is corrupt: {message}")]
    Corrupt { name: String, message: String },
}

/// A dataset version at rest: its rows and who they are.
#[derive(Serialize, Deserialize)]
struct Stored {
    schema: Schema,
    columns: Vec<Vec<i64>>,
    population: Population,
}

/// The format before populations (read only): rows 0 … n − 1 as the first version.
#[derive(Deserialize)]
struct StoredV1 {
    schema: Schema,
    columns: Vec<Vec<i64>>,
}

fn decode(bytes: &[u8]) -> Result<Stored, postcard::Error> {
    postcard::from_bytes::<Stored>(bytes).or_else(|e| {
        let v1: StoredV1 = postcard::from_bytes(bytes).map_err(|_| e)?;
        let rows = v1.columns.first().map_or(0, Vec::len);
        Ok(Stored {
            schema: v1.schema,
            columns: v1.columns,
            population: Population::fresh(rows),
        })
    })
}

fn blob_id(name: &str) -> Result<BlobId, DatasetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(DatasetError::Name(name.to_owned()));
    }
    BlobId::new(&format!("dataset/{name}")).map_err(|_| DatasetError::Name(name.to_owned()))
}

/// Store an in-memory dataset sealed as the next version of its name, its individuals
/// followed from the previous version ([`Population::follow`]).
pub async fn store(
    es: &EnvelopeStore,
    journal: &Journal,
    ds: &mut Dataset,
) -> Result<DatasetMeta, DatasetError> {
    let id = blob_id(&ds.name)?;
    let st = |source| DatasetError::Store {
        name: ds.name.clone(),
        source,
    };
    if let Some(prev_meta) = get_meta(journal, &ds.name).map_err(st)? {
        let prev = open(es, &prev_meta).await?;
        // A changed schema follows nobody: every row is new, every old one removed.
        let same = prev.schema == ds.schema;
        let prev_cols: &[Vec<i64>] = if same { &prev.columns } else { &[] };
        ds.population = prev.population.follow(prev_cols, &ds.columns);
    } else {
        ds.population = Population::fresh(ds.rows());
    }
    let bytes = zeroize::Zeroizing::new(
        postcard::to_allocvec(&Stored {
            schema: ds.schema.clone(),
            columns: ds.columns.clone(),
            population: ds.population.clone(),
        })
        .map_err(|e| DatasetError::Corrupt {
            name: ds.name.clone(),
            message: e.to_string(),
        })?,
    );
    let sha256 = hex::encode(Sha256::digest(&bytes[..]));
    es.put(&id, &bytes)
        .await
        .map_err(|source| DatasetError::Keys {
            name: ds.name.clone(),
            source,
        })?;
    let st = |source| DatasetError::Store {
        name: ds.name.clone(),
        source,
    };
    let previous = get_meta(journal, &ds.name).map_err(st)?;
    let meta = DatasetMeta {
        name: ds.name.clone(),
        schema: ds.schema.clone(),
        version: previous.map_or(1, |m| m.version + 1),
        rows: ds.rows() as u64,
        sha256,
        imported_at: crate::util::unix_now(),
    };
    let schema_json = serde_json::to_string(&meta.schema).unwrap_or_default();
    let detail = serde_json::json!({
        "dataset": meta.name, "version": meta.version, "rows": meta.rows, "sha256": meta.sha256,
        "schema": meta.schema.name,
    });
    let m = meta.clone();
    journal
        .record_with("dataset-import", detail, |tx| {
            tx.execute(
                "INSERT INTO datasets (name, schema, version, rows, sha256, imported_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET schema = ?2, version = ?3, rows = ?4, sha256 = ?5, imported_at = ?6",
                params![m.name, schema_json, m.version as i64, m.rows as i64, m.sha256, m.imported_at],
            )
            .map_err(|e| journal.store.sql_error(e))?;
            Ok(())
        })
        .map_err(st)?;
    Ok(meta)
}

fn get_meta(
    journal: &Journal,
    name: &str,
) -> Result<Option<DatasetMeta>, crate::store::StoreError> {
    let store = &journal.store;
    store.read(|c| {
        c.query_row(
            "SELECT name, schema, version, rows, sha256, imported_at FROM datasets WHERE name = ?1",
            params![name],
            row_to_meta,
        )
        .optional()
        .map_err(|e| store.sql_error(e))
    })
}

fn row_to_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<DatasetMeta> {
    let schema: String = r.get(1)?;
    Ok(DatasetMeta {
        name: r.get(0)?,
        schema: serde_json::from_str(&schema).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        version: r.get::<_, i64>(2)? as u64,
        rows: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        imported_at: r.get(5)?,
    })
}

/// Every dataset's description.
pub fn list(journal: &Journal) -> Result<Vec<DatasetMeta>, crate::store::StoreError> {
    let store = &journal.store;
    store.read(|c| {
        let mut stmt = c
            .prepare("SELECT name, schema, version, rows, sha256, imported_at FROM datasets ORDER BY name")
            .map_err(|e| store.sql_error(e))?;
        let rows = stmt.query_map([], row_to_meta).map_err(|e| store.sql_error(e))?;
        rows.map(|r| r.map_err(|e| store.sql_error(e))).collect()
    })
}

/// Unseal every dataset (at node start).
pub async fn load_all(
    es: &EnvelopeStore,
    journal: &Journal,
) -> Result<BTreeMap<String, (DatasetMeta, Dataset)>, DatasetError> {
    let mut out = BTreeMap::new();
    for meta in list(journal).map_err(|source| DatasetError::Store {
        name: "*".into(),
        source,
    })? {
        let ds = open(es, &meta).await?;
        out.insert(meta.name.clone(), (meta, ds));
    }
    Ok(out)
}

/// Unseal the current version of a dataset and check it against its digest.
async fn open(es: &EnvelopeStore, meta: &DatasetMeta) -> Result<Dataset, DatasetError> {
    let id = blob_id(&meta.name)?;
    let bytes = es.get(&id).await.map_err(|source| DatasetError::Keys {
        name: meta.name.clone(),
        source,
    })?;
    if hex::encode(Sha256::digest(&bytes[..])) != meta.sha256 {
        return Err(DatasetError::Corrupt {
            name: meta.name.clone(),
            message: "digest mismatch".into(),
        });
    }
    let stored = decode(&bytes).map_err(|e| DatasetError::Corrupt {
        name: meta.name.clone(),
        message: e.to_string(),
    })?;
    Ok(Dataset {
        name: meta.name.clone(),
        schema: stored.schema,
        columns: stored.columns,
        population: stored.population,
    })
}
