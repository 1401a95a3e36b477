//! Envelope encryption: each blob sealed with its own AES-256-GCM data key (ring), the data
//! key wrapped by the [`KeyBackend`]'s KEK and stored beside the ciphertext.
//!
//! Owns the sealed-blob format and [`EnvelopeStore`], which puts and gets plaintext blobs
//! over any [`BlobStore`]. Rotation lives in [`crate::rotation`].
//!
//! Format: `"PEB1" ‖ generation u64 ‖ created u64 ‖ len u16 ‖ wrapped data key (text) ‖
//! nonce 12 ‖ ciphertext ‖ tag`. The associated data is `"parley-envelope/v1\0" ‖ len u16 ‖
//! blob id ‖ blob version u64 ‖ generation u64 ‖ created u64`: a blob copied under another
//! id or version fails to open. The wrapped key is not in the associated data, so KEK
//! rotation can rewrap it without re-encrypting; a wrong wrapped key yields a wrong data key
//! and fails the tag check anyway. `generation` is the data-key generation the blob was
//! sealed in (raised by `rotate-data`); `created` is when its data key was made.

use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::KeyError;
use crate::backend::{KeyBackend, WrappedKey};
use crate::codec::{Reader, now_unix};
use crate::store::{BlobId, BlobStore, Record};

const MAGIC: &[u8; 4] = b"PEB1";
const AD_PREFIX: &[u8] = b"parley-envelope/v1\0";
/// Metadata name of the current data-key generation (u64, big-endian).
pub(crate) const META_GENERATION: &str = "keys/data-generation";
const CAS_ATTEMPTS: usize = 8;

/// The parsed header of a sealed blob (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    pub generation: u64,
    pub created_unix: u64,
    pub wrapped: WrappedKey,
}

/// Split a sealed blob into its header, nonce and ciphertext.
pub(crate) fn parse_sealed<'a>(
    id: &BlobId,
    record: &'a Record,
) -> Result<(SealedHeader, [u8; NONCE_LEN], &'a [u8]), KeyError> {
    let corrupt = |reason: &str| KeyError::BlobCorrupt {
        id: id.to_string(),
        version: record.version,
        reason: reason.to_owned(),
    };
    let mut r = Reader::new(&record.sealed);
    r.magic(MAGIC, "magic")
        .map_err(|_| corrupt("not a sealed blob (expected PEB1)"))?;
    let generation = r.u64("generation").map_err(|e| corrupt(e.0))?;
    let created_unix = r.u64("created").map_err(|e| corrupt(e.0))?;
    let len = r.u16("wrapped key length").map_err(|e| corrupt(e.0))?;
    let wrapped = r
        .take(usize::from(len), "wrapped key")
        .map_err(|e| corrupt(e.0))?;
    let wrapped = std::str::from_utf8(wrapped)
        .ok()
        .and_then(WrappedKey::parse)
        .ok_or_else(|| corrupt("the wrapped data key is malformed"))?;
    let nonce = r.array::<NONCE_LEN>("nonce").map_err(|e| corrupt(e.0))?;
    let ct = r.rest();
    if ct.len() < AES_256_GCM.tag_len() {
        return Err(corrupt("ciphertext shorter than its tag"));
    }
    Ok((
        SealedHeader {
            generation,
            created_unix,
            wrapped,
        },
        nonce,
        ct,
    ))
}

fn encode_sealed(
    h: &SealedHeader,
    nonce: &[u8; NONCE_LEN],
    ct: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let w = h.wrapped.as_str().as_bytes();
    let len = u16::try_from(w.len()).map_err(|_| KeyError::Crypto("wrapped data key too long"))?;
    let mut out = Vec::with_capacity(4 + 8 + 8 + 2 + w.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&h.generation.to_be_bytes());
    out.extend_from_slice(&h.created_unix.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(w);
    out.extend_from_slice(nonce);
    out.extend_from_slice(ct);
    Ok(out)
}

/// Replace only the wrapped data key (KEK rotation); ciphertext and nonce stay.
pub(crate) fn with_wrapped(
    id: &BlobId,
    record: &Record,
    wrapped: WrappedKey,
) -> Result<Record, KeyError> {
    let (mut h, nonce, ct) = parse_sealed(id, record)?;
    h.wrapped = wrapped;
    Ok(Record {
        version: record.version,
        sealed: encode_sealed(&h, &nonce, ct)?,
    })
}

fn aad(id: &BlobId, version: u64, generation: u64, created: u64) -> Vec<u8> {
    let id = id.as_str().as_bytes();
    let mut ad = Vec::with_capacity(AD_PREFIX.len() + 2 + id.len() + 24);
    ad.extend_from_slice(AD_PREFIX);
    // BlobId is at most 200 bytes, so the length fits.
    ad.extend_from_slice(&(id.len() as u16).to_be_bytes());
    ad.extend_from_slice(id);
    ad.extend_from_slice(&version.to_be_bytes());
    ad.extend_from_slice(&generation.to_be_bytes());
    ad.extend_from_slice(&created.to_be_bytes());
    ad
}

/// Puts and gets plaintext blobs, sealed under data keys from a backend. See module docs.
#[derive(Clone)]
pub struct EnvelopeStore {
    pub(crate) backend: Arc<dyn KeyBackend>,
    pub(crate) store: Arc<dyn BlobStore>,
    rng: SystemRandom,
}

impl std::fmt::Debug for EnvelopeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeStore")
            .field("backend", &self.backend.describe())
            .finish_non_exhaustive()
    }
}

impl EnvelopeStore {
    pub fn new(backend: Arc<dyn KeyBackend>, store: Arc<dyn BlobStore>) -> Self {
        EnvelopeStore {
            backend,
            store,
            rng: SystemRandom::new(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn KeyBackend> {
        &self.backend
    }

    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// The data-key generation new blobs are sealed in.
    pub fn current_generation(&self) -> Result<u64, KeyError> {
        read_u64_meta(self.store.as_ref(), META_GENERATION).map(|g| g.unwrap_or(0))
    }

    /// Seal `plaintext` as the next version of `id`; returns that version.
    /// Fails closed: if the backend can't make a data key, nothing is written.
    pub async fn put(&self, id: &BlobId, plaintext: &[u8]) -> Result<u64, KeyError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.store.get(id)?;
            let version = current.as_ref().map_or(1, |r| r.version + 1);
            let generation = self.current_generation()?;
            let sealed = self.seal(id, version, generation, plaintext).await?;
            let new = Record { version, sealed };
            if self.store.compare_and_swap(id, current.as_ref(), &new)? {
                tracing::debug!(blob = %id, version, "blob sealed");
                return Ok(version);
            }
        }
        Err(KeyError::Contended {
            id: id.to_string(),
            op: "writing it",
        })
    }

    /// Open the current version of `id`.
    pub async fn get(&self, id: &BlobId) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let record = self
            .store
            .get(id)?
            .ok_or_else(|| KeyError::BlobNotFound { id: id.to_string() })?;
        self.open_record(id, &record).await
    }

    /// Open a record as blob `id` (authenticates id, version and contents).
    pub async fn open_record(
        &self,
        id: &BlobId,
        record: &Record,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (h, nonce, ct) = parse_sealed(id, record)?;
        if h.wrapped.backend() != self.backend.kind() {
            return Err(KeyError::WrongBackend {
                blob: id.to_string(),
                expected: self.backend.kind(),
                found: h.wrapped.backend().to_owned(),
            });
        }
        let dek = self.backend.unwrap_data_key(&h.wrapped).await?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, dek.as_ref())
                .map_err(|_| KeyError::Crypto("AES-256-GCM key"))?,
        );
        let mut buf = Zeroizing::new(ct.to_vec());
        let ad = aad(id, record.version, h.generation, h.created_unix);
        let len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&ad),
                buf.as_mut_slice(),
            )
            .map_err(|_| KeyError::BlobCorrupt {
                id: id.to_string(),
                version: record.version,
                reason: "the authentication tag does not match".into(),
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Seal `plaintext` as version `version` of `id` under a fresh data key.
    pub(crate) async fn seal(
        &self,
        id: &BlobId,
        version: u64,
        generation: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let dk = self.backend.generate_data_key().await?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, dk.plaintext.as_ref())
                .map_err(|_| KeyError::Crypto("AES-256-GCM key"))?,
        );
        let created = now_unix();
        let mut nonce = [0u8; NONCE_LEN];
        // One key per blob version: a random nonce is used once per key.
        self.rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut buf = Zeroizing::new(plaintext.to_vec());
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(id, version, generation, created)),
            &mut *buf,
        )
        .map_err(|_| KeyError::Crypto("AES-256-GCM seal"))?;
        let header = SealedHeader {
            generation,
            created_unix: created,
            wrapped: dk.wrapped.clone(),
        };
        encode_sealed(&header, &nonce, &buf)
    }
}

pub(crate) fn read_u64_meta(store: &dyn BlobStore, name: &str) -> Result<Option<u64>, KeyError> {
    match store.get_meta(name)? {
        None => Ok(None),
        Some(b) => <[u8; 8]>::try_from(b.as_slice())
            .map(|a| Some(u64::from_be_bytes(a)))
            .map_err(|_| KeyError::Config {
                reason: format!("store metadata {name:?} is not 8 bytes; the store is damaged"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::LocalKeyring;
    use crate::store::MemoryStore;

    #[test]
    fn round_trip_and_bindings() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let backend = Arc::new(LocalKeyring::create(&dir.path().join("k")).unwrap());
            let mem = Arc::new(MemoryStore::new());
            let es = EnvelopeStore::new(backend, mem.clone());
            let a = BlobId::new("a").unwrap();
            let b = BlobId::new("b").unwrap();
            assert_eq!(es.put(&a, b"alpha").await.unwrap(), 1);
            assert_eq!(es.put(&b, b"beta").await.unwrap(), 1);
            assert_eq!(es.get(&a).await.unwrap().as_slice(), b"alpha");
            let old_a = mem.get(&a).unwrap().unwrap();
            assert_eq!(es.put(&a, b"alpha2").await.unwrap(), 2);

            // Swapped: b's record stored under a.
            let rec_b = mem.get(&b).unwrap().unwrap();
            assert!(matches!(
                es.open_record(&a, &rec_b).await,
                Err(KeyError::BlobCorrupt { .. })
            ));
            // Old version relabelled as the current one.
            let relabelled = Record {
                version: 2,
                sealed: old_a.sealed.clone(),
            };
            assert!(es.open_record(&a, &relabelled).await.is_err());
            // Tampered ciphertext, and every truncation.
            let mut t = old_a.clone();
            let n = t.sealed.len();
            t.sealed[n - 20] ^= 0x40;
            assert!(matches!(
                es.open_record(&a, &t).await,
                Err(KeyError::BlobCorrupt { .. })
            ));
            for cut in 0..old_a.sealed.len() {
                let r = Record {
                    version: 1,
                    sealed: old_a.sealed[..cut].to_vec(),
                };
                assert!(es.open_record(&a, &r).await.is_err());
            }
            assert!(matches!(
                es.get(&BlobId::new("none").unwrap()).await,
                Err(KeyError::BlobNotFound { .. })
            ));
        });
    }
}
