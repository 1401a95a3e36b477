//! The key-backend scenarios, written once and run against every backend (the local
//! keyring in `keys_local.rs`, a real OpenBao in `keys_openbao.rs`).

use std::sync::Arc;

use parley_keys::KeyError;
use parley_keys::backend::KeyBackend;
use parley_keys::envelope::EnvelopeStore;
use parley_keys::signer::SealedSigner;
use parley_keys::store::{BlobId, BlobStore, MemoryStore, Record};
use parley_keys::{Signer, VaultFailure};

/// An envelope store over an in-memory blob store the test can tamper with.
pub struct Env {
    pub es: EnvelopeStore,
    pub mem: Arc<MemoryStore>,
}

impl Env {
    pub fn new(backend: Arc<dyn KeyBackend>) -> Env {
        let mem = Arc::new(MemoryStore::new());
        Env {
            es: EnvelopeStore::new(backend, mem.clone()),
            mem,
        }
    }

    pub fn record(&self, id: &BlobId) -> Record {
        self.mem.get(id).unwrap().expect("blob exists")
    }
}

pub fn id(s: &str) -> BlobId {
    BlobId::new(s).unwrap()
}

fn value(i: usize) -> Vec<u8> {
    format!("dataset row {i}: {}", "x".repeat(i * 7)).into_bytes()
}

/// Put, get, overwrite; an empty and a large blob.
pub async fn round_trip(env: &Env) {
    let a = id("rt/a");
    assert_eq!(env.es.put(&a, b"first").await.unwrap(), 1);
    assert_eq!(env.es.get(&a).await.unwrap().as_slice(), b"first");
    assert_eq!(env.es.put(&a, b"second").await.unwrap(), 2);
    assert_eq!(env.es.get(&a).await.unwrap().as_slice(), b"second");
    let empty = id("rt/empty");
    env.es.put(&empty, b"").await.unwrap();
    assert!(env.es.get(&empty).await.unwrap().is_empty());
    let big = id("rt/big");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    env.es.put(&big, &data).await.unwrap();
    assert_eq!(env.es.get(&big).await.unwrap().as_slice(), data.as_slice());
    assert!(matches!(
        env.es.get(&id("rt/missing")).await,
        Err(KeyError::BlobNotFound { .. })
    ));
}

/// KEK rotation rewraps every data key without touching ciphertexts.
pub async fn rotation_and_rewrap(env: &Env) {
    let ids: Vec<_> = (0..6).map(|i| id(&format!("rot/{i}"))).collect();
    for (i, b) in ids.iter().enumerate() {
        env.es.put(b, &value(i)).await.unwrap();
    }
    let before: Vec<_> = ids.iter().map(|b| env.record(b)).collect();
    let v0 = env.es.backend().kek_status().await.unwrap().latest_version;
    let report = env.es.rotate_kek().await.unwrap();
    assert_eq!(report.kek_version, v0 + 1);
    assert!(report.changed >= ids.len());
    for (i, b) in ids.iter().enumerate() {
        let st = env.es.status().await.unwrap();
        let bs = st.blobs.iter().find(|s| s.id == b.as_str()).unwrap();
        assert_eq!(bs.kek_version, v0 + 1, "{b} rewrapped");
        assert_eq!(env.es.get(b).await.unwrap().as_slice(), value(i).as_slice());
        // Rewrap only: same blob version, same generation.
        let after = env.record(b);
        assert_eq!(after.version, before[i].version);
        assert_ne!(after.sealed, before[i].sealed);
    }
    // Idempotent: nothing left to rewrap.
    assert_eq!(env.es.rewrap_all().await.unwrap().changed, 0);
}

/// After a KEK rotation and a revocation every stored blob opens with current keys, and
/// none opens with a revoked version.
pub async fn revocation(env: &Env) {
    let ids: Vec<_> = (0..4).map(|i| id(&format!("rev/{i}"))).collect();
    for (i, b) in ids.iter().enumerate() {
        env.es.put(b, &value(i)).await.unwrap();
    }
    let old: Vec<_> = ids.iter().map(|b| env.record(b)).collect();
    // Rotation without rewrap: revocation is refused, because it would lose data.
    env.es.backend().rotate_kek().await.unwrap();
    let err = env.es.revoke_below_latest().await.unwrap_err();
    assert!(matches!(err, KeyError::Refused { .. }), "{err}");
    for (i, b) in ids.iter().enumerate() {
        assert_eq!(env.es.get(b).await.unwrap().as_slice(), value(i).as_slice());
    }
    env.es.rewrap_all().await.unwrap();
    let min = env.es.revoke_below_latest().await.unwrap();
    let st = env.es.backend().kek_status().await.unwrap();
    assert_eq!(st.min_decryption_version, min);
    assert_eq!(st.latest_version, min);
    for (i, b) in ids.iter().enumerate() {
        assert_eq!(env.es.get(b).await.unwrap().as_slice(), value(i).as_slice());
        match env.es.open_record(b, &old[i]).await {
            Err(KeyError::KeyVersionRevoked {
                version, min: m, ..
            }) => {
                assert!(version < m, "{version} < {m}");
            }
            other => panic!("old copy of {b} must be refused as revoked, got {other:?}"),
        }
    }
    // A revoked version stays revoked.
    assert!(
        env.es
            .backend()
            .set_min_decryption_version(min - 1)
            .await
            .is_err()
    );
}

/// A flipped bit anywhere is an error naming the blob; the stored copy is untouched.
pub async fn tampered_ciphertext(env: &Env) {
    let a = id("tamper/a");
    env.es.put(&a, b"do not change me").await.unwrap();
    let good = env.record(&a);
    let n = good.sealed.len();
    // In the ciphertext, in the tag, in the header (generation), in the wrapped key.
    // Header: magic 4, generation 8, created 8, length 2, then `backend:vN:base64`.
    let wrapped_len = usize::from(u16::from_be_bytes([good.sealed[20], good.sealed[21]]));
    let wrapped_at = 22 + wrapped_len / 2 + 6;
    for pos in [n - 1, n - 20, 5, wrapped_at] {
        let mut bad = good.clone();
        bad.sealed[pos] ^= 0x04;
        env.mem.force_put(&a, bad);
        let err = env.es.get(&a).await.unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::BlobCorrupt { .. }
                    | KeyError::WrappedKeyRejected { .. }
                    | KeyError::Vault {
                        failure: VaultFailure::Rejected { .. },
                        ..
                    }
            ),
            "byte {pos}: {err}"
        );
        assert!(!err.to_string().contains("do not change me"));
    }
    env.mem.force_put(&a, good);
    assert_eq!(
        env.es.get(&a).await.unwrap().as_slice(),
        b"do not change me"
    );
}

/// A blob stored under another id, or relabelled with another version, does not open.
pub async fn swapped_blob(env: &Env) {
    let (a, b) = (id("swap/a"), id("swap/b"));
    env.es.put(&a, b"alice's dataset").await.unwrap();
    env.es.put(&b, b"bob's dataset").await.unwrap();
    let (ra, rb) = (env.record(&a), env.record(&b));
    env.mem.force_put(&a, rb.clone());
    assert!(matches!(
        env.es.get(&a).await,
        Err(KeyError::BlobCorrupt { .. })
    ));
    env.mem.force_put(&a, ra.clone());
    env.es.put(&a, b"alice v2").await.unwrap();
    let ra2 = env.record(&a);
    // The old version's bytes presented as the current version.
    env.mem.force_put(
        &a,
        Record {
            version: 2,
            sealed: ra.sealed.clone(),
        },
    );
    assert!(matches!(
        env.es.get(&a).await,
        Err(KeyError::BlobCorrupt { .. })
    ));
    // A corrupt blob stops a rotation with its name (never skipped silently).
    let err = env.es.rotate_data().await.unwrap_err();
    assert!(err.to_string().contains("swap/a"), "{err}");
    env.mem.force_put(&a, ra2);
    assert_eq!(env.es.get(&a).await.unwrap().as_slice(), b"alice v2");
    // Once the blob is restored, the next run finishes the interrupted job.
    let pending = env.es.status().await.unwrap().pending_data_rotation;
    assert!(pending.is_some());
    let r = env.es.rotate_data().await.unwrap();
    assert!(r.resumed);
    assert_eq!(Some(r.generation), pending);
    assert!(env.es.open_record(&b, &rb).await.is_ok());
}

/// Data-key rotation re-encrypts every blob; contents and blob versions are unchanged.
pub async fn rotate_data(env: &Env) {
    let ids: Vec<_> = (0..5).map(|i| id(&format!("rd/{i}"))).collect();
    for (i, b) in ids.iter().enumerate() {
        env.es.put(b, &value(i)).await.unwrap();
    }
    let g0 = env.es.current_generation().unwrap();
    let r = env.es.rotate_data().await.unwrap();
    assert_eq!(r.generation, g0 + 1);
    assert!(r.changed >= ids.len());
    let st = env.es.status().await.unwrap();
    assert!(st.blobs.iter().all(|b| b.generation == g0 + 1));
    assert!(st.pending_data_rotation.is_none());
    for (i, b) in ids.iter().enumerate() {
        assert_eq!(env.es.get(b).await.unwrap().as_slice(), value(i).as_slice());
        assert_eq!(env.record(b).version, 1);
    }
}

/// The sealed identity key survives reopening and KEK rotation.
pub async fn sealed_signer(env: &Env) {
    let key_id = id("identity/node-key");
    let s = SealedSigner::open_or_create(&env.es, &key_id)
        .await
        .unwrap();
    let sig = s.sign(b"parley-test\0message").await.unwrap();
    assert!(s.public_key().verify(b"parley-test\0message", &sig));
    env.es.rotate_kek().await.unwrap();
    let again = SealedSigner::open_or_create(&env.es, &key_id)
        .await
        .unwrap();
    assert_eq!(again.public_key(), s.public_key());
}

/// Every scenario above, in order, on one backend.
pub async fn all(backend: Arc<dyn KeyBackend>) {
    let env = Env::new(backend);
    round_trip(&env).await;
    rotation_and_rewrap(&env).await;
    tampered_ciphertext(&env).await;
    swapped_blob(&env).await;
    rotate_data(&env).await;
    sealed_signer(&env).await;
    revocation(&env).await;
}
