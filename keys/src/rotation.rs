//! Rotation and revocation over an [`EnvelopeStore`], and the status report.
//!
//! - [`EnvelopeStore::rotate_kek`]: add a KEK version, then rewrap every blob's data key
//!   to it. Ciphertexts are untouched. Idempotent: running it again finishes a rewrap that
//!   was interrupted (a blob already under the latest version is skipped).
//! - [`EnvelopeStore::revoke_below_latest`]: raise the minimum decryption version to the
//!   latest, only after checking that no stored blob still needs an older version — the
//!   check is what makes revocation lose nothing.
//! - [`EnvelopeStore::rotate_data`]: re-encrypt every blob under a fresh data key. The job
//!   is recorded in the store's metadata before any blob changes (target generation); each
//!   blob is replaced by one atomic compare-and-swap; blobs already at the target are
//!   skipped. A crash at any point leaves every blob readable (old or new, never half), and
//!   the next run finds the job and finishes it.
//! - [`EnvelopeStore::status`] and [`RotationSchedule::due`]: versions, ages, what is due.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::KeyError;
use crate::backend::KekStatus;
use crate::codec::now_unix;
use crate::envelope::{EnvelopeStore, META_GENERATION, parse_sealed, read_u64_meta, with_wrapped};
use crate::store::{BlobId, Record};

/// Metadata: target generation of an unfinished `rotate-data` job.
const META_DATA_JOB: &str = "keys/rotate-data-job";
/// Metadata: when the last `rotate-data` finished (Unix seconds).
const META_DATA_DONE: &str = "keys/rotate-data-finished";
const CAS_ATTEMPTS: usize = 8;

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// KEK version after the operation.
    pub kek_version: u32,
    /// Data-key generation after the operation.
    pub generation: u64,
    /// Blobs changed by this run.
    pub changed: usize,
    /// Blobs already up to date.
    pub skipped: usize,
    /// True when this run finished a job an earlier, interrupted run had started.
    pub resumed: bool,
}

/// Where a stored blob stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobStatus {
    pub id: String,
    pub version: u64,
    pub kek_version: u32,
    pub generation: u64,
    pub data_key_created_unix: u64,
}

/// `parley keys status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysStatus {
    pub backend: String,
    pub kek: KekStatus,
    pub generation: u64,
    /// Number of blobs per KEK version their data key is wrapped under.
    pub blobs_per_kek_version: BTreeMap<u32, usize>,
    pub blob_count: usize,
    pub oldest_data_key_unix: Option<u64>,
    /// Target generation of an unfinished `rotate-data`, if one was interrupted.
    pub pending_data_rotation: Option<u64>,
    pub last_data_rotation_unix: Option<u64>,
    /// Blobs that failed to parse (named so an operator can restore them).
    pub unreadable: Vec<String>,
    pub blobs: Vec<BlobStatus>,
}

/// When rotations are due; a `[keys.rotation]` config section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSchedule {
    /// Rotate the KEK (and rewrap) when its latest version is older than this.
    pub kek_max_age_days: Option<u32>,
    /// Re-encrypt data when the oldest data key is older than this.
    pub data_max_age_days: Option<u32>,
    /// After a scheduled KEK rotation, revoke the older versions once everything is rewrapped.
    #[serde(default)]
    pub revoke_after_rotate: bool,
}

/// A rotation the schedule says is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Due {
    Kek {
        age_days: u64,
    },
    Data {
        age_days: u64,
    },
    /// An interrupted `rotate-data` must be finished.
    ResumeData,
}

impl std::fmt::Display for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Due::Kek { age_days } => write!(f, "KEK rotation (the KEK is {age_days} days old)"),
            Due::Data { age_days } => {
                write!(f, "data-key rotation (data keys are {age_days} days old)")
            }
            Due::ResumeData => f.write_str("finishing an interrupted data-key rotation"),
        }
    }
}

impl RotationSchedule {
    /// What is due at `now_unix` given `status`.
    pub fn due(&self, status: &KeysStatus, now_unix: u64) -> Vec<Due> {
        let days = |t: u64| now_unix.saturating_sub(t) / 86_400;
        let mut out = Vec::new();
        if let (Some(max), Some(created)) =
            (self.kek_max_age_days, status.kek.latest_created_unix())
            && days(created) >= u64::from(max)
        {
            out.push(Due::Kek {
                age_days: days(created),
            });
        }
        if status.pending_data_rotation.is_some() {
            out.push(Due::ResumeData);
        } else if let (Some(max), Some(oldest)) =
            (self.data_max_age_days, status.oldest_data_key_unix)
            && days(oldest) >= u64::from(max)
        {
            out.push(Due::Data {
                age_days: days(oldest),
            });
        }
        out
    }
}

impl EnvelopeStore {
    /// Rotate the KEK and rewrap every data key to the new version.
    pub async fn rotate_kek(&self) -> Result<RotationReport, KeyError> {
        let version = self.backend.rotate_kek().await?;
        let mut report = self.rewrap_all().await?;
        report.kek_version = version;
        Ok(report)
    }

    /// Rewrap every data key not under the latest KEK version (finishes an interrupted
    /// rotation). Blobs that fail stop the run with their error: nothing is skipped silently.
    pub async fn rewrap_all(&self) -> Result<RotationReport, KeyError> {
        let latest = self.backend.kek_status().await?.latest_version;
        let mut report = RotationReport {
            kek_version: latest,
            generation: self.current_generation()?,
            ..Default::default()
        };
        for id in self.store.list()? {
            if self.rewrap_one(&id, latest).await? {
                report.changed += 1;
            } else {
                report.skipped += 1;
            }
        }
        tracing::info!(
            kek_version = latest,
            rewrapped = report.changed,
            "data keys rewrapped"
        );
        Ok(report)
    }

    async fn rewrap_one(&self, id: &BlobId, latest: u32) -> Result<bool, KeyError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(record) = self.store.get(id)? else {
                return Ok(false); // deleted meanwhile
            };
            let (header, _, _) = parse_sealed(id, &record)?;
            if header.wrapped.version() >= latest {
                return Ok(false);
            }
            let rewrapped = self.backend.rewrap(&header.wrapped).await?;
            let new = with_wrapped(id, &record, rewrapped)?;
            if self.store.compare_and_swap(id, Some(&record), &new)? {
                return Ok(true);
            }
        }
        Err(KeyError::Contended {
            id: id.to_string(),
            op: "rewrapping its data key",
        })
    }

    /// Revoke every KEK version below the latest. Refused (nothing changes) while any blob
    /// still has its data key under an older version, or any blob can't be parsed.
    pub async fn revoke_below_latest(&self) -> Result<u32, KeyError> {
        let latest = self.backend.kek_status().await?.latest_version;
        for id in self.store.list()? {
            let Some(record) = self.store.get(&id)? else {
                continue;
            };
            let (h, _, _) = parse_sealed(&id, &record).map_err(|e| KeyError::Refused {
                op: "revoke old KEK versions",
                reason: format!("{e}; fix or remove that blob first"),
            })?;
            if h.wrapped.version() < latest {
                return Err(KeyError::Refused {
                    op: "revoke old KEK versions",
                    reason: format!(
                        "blob {id} still uses KEK version {} (latest {latest}); run `parley keys rotate` to rewrap first",
                        h.wrapped.version()
                    ),
                });
            }
        }
        self.backend.set_min_decryption_version(latest).await?;
        tracing::info!(min_decryption_version = latest, "old KEK versions revoked");
        Ok(latest)
    }

    /// Re-encrypt every blob under a fresh data key. Crash-safe; see the module docs.
    pub async fn rotate_data(&self) -> Result<RotationReport, KeyError> {
        self.rotate_data_with(|_| {}).await
    }

    /// [`Self::rotate_data`], calling `progress` after each blob is replaced (tests use it
    /// to kill the process mid-way).
    pub async fn rotate_data_with(
        &self,
        mut progress: impl FnMut(&BlobId),
    ) -> Result<RotationReport, KeyError> {
        let store = self.store.as_ref();
        let pending = read_u64_meta(store, META_DATA_JOB)?;
        let resumed = pending.is_some();
        let target = match pending {
            Some(t) => t,
            None => {
                let t = self.current_generation()? + 1;
                // Record the job first: from here a crash resumes, never restarts half-done.
                store.put_meta(META_DATA_JOB, Some(&t.to_be_bytes()))?;
                t
            }
        };
        // New writes from now on are sealed in the target generation.
        if self.current_generation()? < target {
            store.put_meta(META_GENERATION, Some(&target.to_be_bytes()))?;
        }
        let mut report = RotationReport {
            kek_version: self.backend.kek_status().await?.latest_version,
            generation: target,
            resumed,
            ..Default::default()
        };
        for id in store.list()? {
            if self.reencrypt_one(&id, target).await? {
                report.changed += 1;
                progress(&id);
            } else {
                report.skipped += 1;
            }
        }
        store.put_meta(META_DATA_DONE, Some(&now_unix().to_be_bytes()))?;
        store.put_meta(META_DATA_JOB, None)?;
        tracing::info!(
            generation = target,
            reencrypted = report.changed,
            resumed,
            "data keys rotated"
        );
        Ok(report)
    }

    async fn reencrypt_one(&self, id: &BlobId, target: u64) -> Result<bool, KeyError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(record) = self.store.get(id)? else {
                return Ok(false);
            };
            let (h, _, _) = parse_sealed(id, &record)?;
            if h.generation >= target {
                return Ok(false);
            }
            let plaintext = self.open_record(id, &record).await?;
            // Same blob version: the content is unchanged, only its data key is new.
            let sealed = self.seal(id, record.version, target, &plaintext).await?;
            let new = Record {
                version: record.version,
                sealed,
            };
            if self.store.compare_and_swap(id, Some(&record), &new)? {
                return Ok(true);
            }
        }
        Err(KeyError::Contended {
            id: id.to_string(),
            op: "re-encrypting it",
        })
    }

    /// Versions, ages and pending work; reads headers only (no data key is unwrapped).
    pub async fn status(&self) -> Result<KeysStatus, KeyError> {
        let kek = self.backend.kek_status().await?;
        let store = self.store.as_ref();
        let mut st = KeysStatus {
            backend: self.backend.describe(),
            kek,
            generation: self.current_generation()?,
            blobs_per_kek_version: BTreeMap::new(),
            blob_count: 0,
            oldest_data_key_unix: None,
            pending_data_rotation: read_u64_meta(store, META_DATA_JOB)?,
            last_data_rotation_unix: read_u64_meta(store, META_DATA_DONE)?,
            unreadable: Vec::new(),
            blobs: Vec::new(),
        };
        for id in store.list()? {
            let Some(record) = store.get(&id)? else {
                continue;
            };
            st.blob_count += 1;
            match parse_sealed(&id, &record) {
                Ok((h, _, _)) => {
                    *st.blobs_per_kek_version
                        .entry(h.wrapped.version())
                        .or_default() += 1;
                    st.oldest_data_key_unix = Some(
                        st.oldest_data_key_unix
                            .map_or(h.created_unix, |o| o.min(h.created_unix)),
                    );
                    st.blobs.push(BlobStatus {
                        id: id.to_string(),
                        version: record.version,
                        kek_version: h.wrapped.version(),
                        generation: h.generation,
                        data_key_created_unix: h.created_unix,
                    });
                }
                Err(_) => st.unreadable.push(id.to_string()),
            }
        }
        Ok(st)
    }

    /// Run whatever `schedule` says is due; the node calls this on a timer.
    pub async fn run_schedule(
        &self,
        schedule: &RotationSchedule,
        now_unix: u64,
    ) -> Result<Vec<Due>, KeyError> {
        let due = schedule.due(&self.status().await?, now_unix);
        for d in &due {
            match d {
                Due::Kek { .. } => {
                    self.rotate_kek().await?;
                    if schedule.revoke_after_rotate {
                        self.revoke_below_latest().await?;
                    }
                }
                Due::Data { .. } | Due::ResumeData => {
                    self.rotate_data().await?;
                }
            }
        }
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyring::LocalKeyring;
    use crate::store::{BlobStore, MemoryStore};

    #[test]
    fn rotate_rewrap_revoke_and_rotate_data() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let backend = Arc::new(LocalKeyring::create(&dir.path().join("k")).unwrap());
            let mem = Arc::new(MemoryStore::new());
            let es = EnvelopeStore::new(backend, mem.clone());
            let ids: Vec<_> = (0..5)
                .map(|i| BlobId::new(&format!("b{i}")).unwrap())
                .collect();
            for (i, id) in ids.iter().enumerate() {
                es.put(id, format!("value {i}").as_bytes()).await.unwrap();
            }
            let old = mem.get(&ids[0]).unwrap().unwrap();

            // Revocation before rewrap would lose data: refused.
            es.backend.rotate_kek().await.unwrap();
            assert!(matches!(
                es.revoke_below_latest().await,
                Err(KeyError::Refused { .. })
            ));
            let r = es.rewrap_all().await.unwrap();
            assert_eq!((r.kek_version, r.changed), (2, 5));
            assert_eq!(es.rewrap_all().await.unwrap().changed, 0);
            assert_eq!(es.revoke_below_latest().await.unwrap(), 2);
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(
                    es.get(id).await.unwrap().as_slice(),
                    format!("value {i}").as_bytes()
                );
            }
            assert!(matches!(
                es.open_record(&ids[0], &old).await,
                Err(KeyError::KeyVersionRevoked { .. })
            ));

            let r = es.rotate_data().await.unwrap();
            assert_eq!((r.generation, r.changed, r.resumed), (1, 5, false));
            let st = es.status().await.unwrap();
            assert_eq!(st.generation, 1);
            assert!(
                st.blobs
                    .iter()
                    .all(|b| b.generation == 1 && b.kek_version == 2)
            );
            assert!(st.pending_data_rotation.is_none() && st.last_data_rotation_unix.is_some());

            // An interrupted job (recorded, half done) is resumed, not restarted.
            mem.put_meta(META_DATA_JOB, Some(&2u64.to_be_bytes()))
                .unwrap();
            let mut n = 0;
            let _ = es.rotate_data_with(|_| n += 1).await.unwrap();
            assert_eq!(n, 5);
            assert_eq!(es.status().await.unwrap().generation, 2);
            let r = es.rotate_data().await.unwrap();
            assert_eq!(r.generation, 3);

            let sched = RotationSchedule {
                kek_max_age_days: Some(30),
                data_max_age_days: Some(90),
                revoke_after_rotate: true,
            };
            let st = es.status().await.unwrap();
            assert!(sched.due(&st, now_unix()).is_empty());
            let later = now_unix() + 100 * 86_400;
            assert_eq!(sched.due(&st, later).len(), 2);
            es.run_schedule(&sched, later).await.unwrap();
            let st = es.status().await.unwrap();
            assert_eq!(
                (st.kek.latest_version, st.kek.min_decryption_version),
                (3, 3)
            );
            assert_eq!(st.generation, 4);
        });
    }
}
