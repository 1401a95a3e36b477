//! The privacy rule's release ledger at rest (DESIGN §6, item 2): per dataset, every cell
//! this party let through in an exact job — memberships of its own individuals, never
//! values — sealed like a dataset (`releases/<dataset>`, AES-256-GCM under a data key the
//! key backend wraps), because a membership in a value band says something about a person.
//!
//! Owns loading and appending; [`parley_enclave::analytics::rule`] owns what the cells mean.
//! Cells are appended before any output share of their job leaves the node, and never
//! removed: a cell another party suppressed stays counted (conservative).

use parley_enclave::analytics::rule::{Ledger, ReleasedCell};
use parley_keys::KeyError;
use parley_keys::envelope::EnvelopeStore;
use parley_keys::store::BlobId;
use rusqlite::OptionalExtension;

use crate::store::audit::Journal;

/// Why the ledger cannot be read or written (the job then aborts before any share leaves).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleasesError {
    #[error("the release ledger of dataset {dataset:?}: {source}")]
    Keys { dataset: String, source: KeyError },
    #[error(
        "the release ledger of dataset {dataset:?} is corrupt ({message}): restore the store from a backup; nothing exact is released until then"
    )]
    Corrupt { dataset: String, message: String },
    #[error("cannot audit the release ledger of dataset {dataset:?}: {source}")]
    Audit {
        dataset: String,
        source: crate::store::StoreError,
    },
}

fn blob(dataset: &str) -> Result<BlobId, ReleasesError> {
    BlobId::new(&format!("releases/{dataset}")).map_err(|e| ReleasesError::Corrupt {
        dataset: dataset.to_owned(),
        message: e.to_string(),
    })
}

/// The ledger of `dataset` (empty before its first exact release), checked against the
/// audit log: every append records the ledger's length there, and the log is anchored by
/// the tree heads peers hold, so a ledger rolled back or deleted on its own is refused
/// rather than forgetting what was released.
pub async fn load(
    es: &EnvelopeStore,
    journal: &Journal,
    dataset: &str,
) -> Result<Ledger, ReleasesError> {
    let ledger = match es.get(&blob(dataset)?).await {
        Ok(bytes) => postcard::from_bytes(&bytes).map_err(|e| ReleasesError::Corrupt {
            dataset: dataset.to_owned(),
            message: e.to_string(),
        })?,
        Err(KeyError::BlobNotFound { .. }) => Ledger::default(),
        Err(source) => {
            return Err(ReleasesError::Keys {
                dataset: dataset.to_owned(),
                source,
            });
        }
    };
    let audited = audited_len(journal, dataset)?;
    if ledger.cells.len() as u64 != audited {
        return Err(ReleasesError::Corrupt {
            dataset: dataset.to_owned(),
            message: format!(
                "it holds {} cells but the audit log recorded {audited} (rolled back or tampered with)",
                ledger.cells.len()
            ),
        });
    }
    Ok(ledger)
}

/// The ledger length the audit log last recorded for `dataset` (0 if never).
fn audited_len(journal: &Journal, dataset: &str) -> Result<u64, ReleasesError> {
    let store = &journal.store;
    let audit = |source| ReleasesError::Audit {
        dataset: dataset.to_owned(),
        source,
    };
    let last: Option<Vec<u8>> = store
        .read(|c| {
            c.query_row(
                "SELECT entry FROM audit
                 WHERE json_extract(CAST(entry AS TEXT), '$.event') = 'release-ledger'
                   AND json_extract(CAST(entry AS TEXT), '$.detail.dataset') = ?1
                 ORDER BY seq DESC LIMIT 1",
                rusqlite::params![dataset],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| store.sql_error(e))
        })
        .map_err(audit)?;
    let Some(bytes) = last else { return Ok(0) };
    let entry: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ReleasesError::Corrupt {
            dataset: dataset.to_owned(),
            message: format!("its audit entry does not parse: {e}"),
        })?;
    entry["detail"]["ledger_cells"]
        .as_u64()
        .ok_or_else(|| ReleasesError::Corrupt {
            dataset: dataset.to_owned(),
            message: "its audit entry has no ledger length".into(),
        })
}

/// Append a job's kept cells to the ledger of `dataset`, sealed, with an audit entry (the
/// number of cells, no memberships).
pub async fn append(
    es: &EnvelopeStore,
    journal: &Journal,
    dataset: &str,
    job: &str,
    mut ledger: Ledger,
    cells: Vec<ReleasedCell>,
) -> Result<Ledger, ReleasesError> {
    let added = cells.len();
    ledger.cells.extend(cells);
    let bytes = zeroize::Zeroizing::new(postcard::to_allocvec(&ledger).map_err(|e| {
        ReleasesError::Corrupt {
            dataset: dataset.to_owned(),
            message: e.to_string(),
        }
    })?);
    es.put(&blob(dataset)?, &bytes)
        .await
        .map_err(|source| ReleasesError::Keys {
            dataset: dataset.to_owned(),
            source,
        })?;
    journal
        .record(
            "release-ledger",
            serde_json::json!({ "dataset": dataset, "job": job, "cells": added, "ledger_cells": ledger.cells.len() }),
        )
        .map_err(|source| ReleasesError::Audit {
            dataset: dataset.to_owned(),
            source,
        })?;
    Ok(ledger)
}
