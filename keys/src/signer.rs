//! Identity-key [`Signer`]s over a backend.
//!
//! - [`SealedSigner`] (recommended): an Ed25519 key generated in the node and stored as an
//!   envelope blob (its PKCS#8 sealed under a data key the backend wraps). It signs in
//!   process, so signing works while Vault is away, and KEK rotation covers the key like
//!   any other blob. Works identically over the local and the Vault backend.
//! - [`TransitSigner`]: an Ed25519 Transit key; Vault signs and the key never leaves it.
//!   Pinned to one key version (the one in the federation manifest), and every signature is
//!   checked against that version's public key before it is returned.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::KeyError;
use crate::envelope::EnvelopeStore;
use crate::identity::{IdentityPublicKey, SignFuture, Signature, Signer};
use crate::store::BlobId;
use crate::vault::VaultSession;

/// An Ed25519 identity key stored as an envelope blob. See the module docs.
pub struct SealedSigner {
    pair: Ed25519KeyPair,
    public: IdentityPublicKey,
}

impl std::fmt::Debug for SealedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SealedSigner {
    /// Open the key stored at `id`, or generate and store one if there is none.
    pub async fn open_or_create(store: &EnvelopeStore, id: &BlobId) -> Result<Self, KeyError> {
        if store.blob_store().get(id)?.is_some() {
            return Self::open(store, id).await;
        }
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        store.put(id, &pkcs8).await?;
        // Re-open from the store: proves the stored copy is usable before anyone relies on it.
        Self::open(store, id).await
    }

    pub async fn open(store: &EnvelopeStore, id: &BlobId) -> Result<Self, KeyError> {
        let pkcs8 = store.get(id).await?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| KeyError::BlobCorrupt {
            id: id.to_string(),
            version: 0,
            reason: format!("not an Ed25519 PKCS#8 key: {e}"),
        })?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(pair.public_key().as_ref());
        Ok(SealedSigner {
            pair,
            public: IdentityPublicKey::from_bytes(pk),
        })
    }

    pub fn sign_now(&self, message: &[u8]) -> Signature {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        Signature(out)
    }
}

impl Signer for SealedSigner {
    fn public_key(&self) -> IdentityPublicKey {
        self.public
    }
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        let sig = self.sign_now(message);
        Box::pin(async move { Ok(sig) })
    }
}

/// An Ed25519 Transit key pinned to one version. See the module docs.
#[derive(Debug)]
pub struct TransitSigner {
    session: VaultSession,
    key: String,
    version: u32,
    public: IdentityPublicKey,
}

impl TransitSigner {
    /// Use version `version` of Transit key `key` (type ed25519); `None` takes the latest.
    pub async fn new(
        session: VaultSession,
        key: &str,
        version: Option<u32>,
    ) -> Result<Self, KeyError> {
        let info = session.read_key(key).await?;
        let version = version.unwrap_or(info.latest_version);
        let bad = |reason: String| KeyError::Config {
            reason: format!(
                "Transit signing key {key} at {}: {reason}",
                session.address()
            ),
        };
        let b64 = info.public_keys.get(&version).ok_or_else(|| {
            bad(format!(
                "no public key for version {version}; is it an ed25519 key?"
            ))
        })?;
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .map_err(|_| bad("the public key is not base64".into()))?;
        let pk: [u8; 32] = raw
            .try_into()
            .map_err(|_| bad("the public key is not 32 bytes (Ed25519)".into()))?;
        Ok(TransitSigner {
            session,
            key: key.to_owned(),
            version,
            public: IdentityPublicKey::from_bytes(pk),
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}

impl Signer for TransitSigner {
    fn public_key(&self) -> IdentityPublicKey {
        self.public
    }
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            let raw = self.session.sign(&self.key, self.version, message).await?;
            let sig = <[u8; 64]>::try_from(raw.as_slice())
                .map(Signature)
                .map_err(|_| {
                    KeyError::Crypto("Transit returned a signature that is not 64 bytes")
                })?;
            // Fail closed: never hand out a signature our own public key doesn't verify.
            if !self.public.verify(message, &sig) {
                return Err(KeyError::Crypto(
                    "Transit returned a signature that does not verify under the pinned public key",
                ));
            }
            Ok(sig)
        })
    }
}
