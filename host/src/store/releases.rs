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

/// The ledger of `dataset` (empty before its first exact release).
pub async fn load(es: &EnvelopeStore, dataset: &str) -> Result<Ledger, ReleasesError> {
    match es.get(&blob(dataset)?).await {
        Ok(bytes) => postcard::from_bytes(&bytes).map_err(|e| ReleasesError::Corrupt {
            dataset: dataset.to_owned(),
            message: e.to_string(),
        }),
        Err(KeyError::BlobNotFound { .. }) => Ok(Ledger::default()),
        Err(source) => Err(ReleasesError::Keys {
            dataset: dataset.to_owned(),
            source,
        }),
    }
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
