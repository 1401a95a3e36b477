//! The embedded key backend: a key-encryption key in a 0600 file and secrets sealed under it.
//!
//! Whoever can read the KEK file (the host operator, unless the file is itself sealed to
//! the TEE) can unseal everything under it; ARCHITECTURE.md states this limit.
//!
//! Sealed format: `"PKS1" ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag`, with the
//! associated data `"parley-keys/v1\0" ‖ label`, so a blob sealed for one purpose cannot be
//! unsealed as another.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::KeyError;
use crate::identity::{IdentityPublicKey, SignFuture, Signature, Signer};

const MAGIC: &[u8; 4] = b"PKS1";
const AD_PREFIX: &[u8] = b"parley-keys/v1\0";
const KEK_LEN: usize = 32;

/// A key-encryption key held in a file readable by its owner only.
pub struct LocalKek {
    key: LessSafeKey,
    path: PathBuf,
    rng: SystemRandom,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalKek {
    /// Create a fresh KEK file (mode 0600). Refuses to overwrite an existing one.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        rng.fill(bytes.as_mut()).map_err(|_| KeyError::Random)?;
        write_new_secret_file(path, "key-encryption key", bytes.as_ref())?;
        Self::from_bytes(bytes.as_ref(), path, rng)
    }

    /// Open an existing KEK file; refuses files readable by anyone but the owner.
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_secret_file(path)?;
        if bytes.len() != KEK_LEN {
            return Err(KeyError::Malformed {
                path: path.to_owned(),
                reason: format!(
                    "a key-encryption key is {KEK_LEN} bytes, found {}",
                    bytes.len()
                ),
            });
        }
        Self::from_bytes(&bytes, path, SystemRandom::new())
    }

    fn from_bytes(bytes: &[u8], path: &Path, rng: SystemRandom) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::Crypto("AES-256-GCM key"))?;
        Ok(LocalKek {
            key: LessSafeKey::new(unbound),
            path: path.to_owned(),
            rng,
        })
    }

    /// Seal `plaintext` for the purpose named by `label`.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut buf = plaintext.to_vec();
        let ad = aad(label);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&ad),
                &mut buf,
            )
            .map_err(|_| KeyError::Crypto("AES-256-GCM seal"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + buf.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(out)
    }

    /// Unseal a blob sealed with the same label; fails if anything was altered.
    pub fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let fail = || KeyError::UnsealFailed {
            what: label.to_owned(),
        };
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(fail)?;
        let (nonce, ct) = rest.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let ad = aad(label);
        let len = self
            .key
            .open_in_place(nonce, Aad::from(&ad), buf.as_mut_slice())
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn aad(label: &str) -> Vec<u8> {
    [AD_PREFIX, label.as_bytes()].concat()
}

/// An Ed25519 key sealed under a [`LocalKek`] in a file.
pub struct LocalSigner {
    pair: Ed25519KeyPair,
    public: IdentityPublicKey,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// Generate a key, seal it under `kek` with `label` and write it to `path` (0600).
    pub fn create(kek: &LocalKek, label: &str, path: &Path) -> Result<Self, KeyError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&kek.rng).map_err(|_| KeyError::Random)?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let sealed = kek.seal(label, &pkcs8)?;
        write_new_secret_file(path, "sealed key", &sealed)?;
        Self::from_pkcs8(&pkcs8, path)
    }

    /// Open a sealed key written by [`LocalSigner::create`].
    pub fn open(kek: &LocalKek, label: &str, path: &Path) -> Result<Self, KeyError> {
        let sealed = read_secret_file(path)?;
        let pkcs8 = kek.unseal(label, &sealed)?;
        Self::from_pkcs8(&pkcs8, path)
    }

    fn from_pkcs8(pkcs8: &[u8], path: &Path) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError::Malformed {
            path: path.to_owned(),
            reason: format!("not an Ed25519 key: {e}"),
        })?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(pair.public_key().as_ref());
        Ok(LocalSigner {
            pair,
            public: IdentityPublicKey::from_bytes(pk),
        })
    }

    /// Sign synchronously (local keys need no I/O).
    pub fn sign_now(&self, message: &[u8]) -> Signature {
        let sig = self.pair.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        Signature(out)
    }
}

impl Signer for LocalSigner {
    fn public_key(&self) -> IdentityPublicKey {
        self.public
    }
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        let sig = self.sign_now(message);
        Box::pin(async move { Ok(sig) })
    }
}

/// Write a new file readable by its owner only; never overwrite.
fn write_new_secret_file(path: &Path, what: &'static str, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    what,
                    path: path.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Read a secret file after checking that no group or other permission bits are set.
fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let io = |source| KeyError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(Zeroizing::new(fs::read(path).map_err(io)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_label_binding() {
        let dir = tempfile::tempdir().unwrap();
        let kek = LocalKek::create(&dir.path().join("kek")).unwrap();
        let sealed = kek.seal("identity", b"secret").unwrap();
        assert_eq!(
            kek.unseal("identity", &sealed).unwrap().as_slice(),
            b"secret"
        );
        assert!(matches!(
            kek.unseal("sim-key", &sealed),
            Err(KeyError::UnsealFailed { .. })
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(kek.unseal("identity", &tampered).is_err());
        assert!(kek.unseal("identity", b"PKS1").is_err());
        assert!(kek.unseal("identity", b"").is_err());
        // A second KEK cannot open it.
        let other = LocalKek::create(&dir.path().join("kek2")).unwrap();
        assert!(other.unseal("identity", &sealed).is_err());
    }

    #[test]
    fn kek_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        LocalKek::create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            LocalKek::create(&path),
            Err(KeyError::AlreadyExists { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKek::open(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn signer_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let kek = LocalKek::create(&dir.path().join("kek")).unwrap();
        let path = dir.path().join("id.sealed");
        let s = LocalSigner::create(&kek, "identity", &path).unwrap();
        let reopened = LocalSigner::open(&kek, "identity", &path).unwrap();
        assert_eq!(s.public_key(), reopened.public_key());
        let sig = reopened.sign_now(b"msg");
        assert!(s.public_key().verify(b"msg", &sig));
        assert!(!s.public_key().verify(b"other", &sig));
        assert!(format!("{s:?}").contains("ed25519:"));
    }
}
