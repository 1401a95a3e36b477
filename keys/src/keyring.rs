//! The local [`KeyBackend`]: a keyring of KEK versions in one 0600 file.
//!
//! Owns the file format and the local wrap of data keys. The file holds every KEK version
//! (32 random bytes and a creation time each) and the minimum decryption version; rotation
//! appends a version and rewrites the file atomically, so a crash leaves the old keyring or
//! the new one. The file's bytes pass through a [`FileProtector`]: a plain 0600 file by
//! default, or sealed to the TEE ([`crate::sealing::TeeSealed`]).
//!
//! Plain format: `"PKR1" ‖ min_decryption_version u32 ‖ count u32 ‖ count × (version u32 ‖
//! created u64 ‖ key 32 bytes)`, big-endian. A wrapped data key is
//! `local:v<N>:<base64(nonce ‖ AES-256-GCM(KEK_N, dek) ‖ tag)>` with associated data
//! `"parley-keys/dek/v1\0" ‖ N`, so a wrap can't be replayed under another version's label.
//!
//! The keyring re-reads the file when it changed on disk (another process, e.g.
//! `parley keys rotate`, rotated or revoked), and serialises writers with a lock file.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::backend::{
    BackendFuture, DATA_KEY_LEN, DataKey, Health, KekStatus, KekVersion, KeyBackend, WrappedKey,
};
use crate::codec::{Reader, now_unix};
use crate::local::{read_secret_file, replace_secret_file};
use crate::sealing::{FileProtector, PlainFile};
use crate::{KeyError, store::FileLock};

const MAGIC: &[u8; 4] = b"PKR1";
const AD_PREFIX: &[u8] = b"parley-keys/dek/v1\0";
const PREFIX: &str = "local";

struct Version {
    version: u32,
    created_unix: u64,
    key: LessSafeKey,
}

struct State {
    versions: Vec<Version>,
    min_decryption_version: u32,
    /// (device, inode, size, mtime ns) of the file last read: a change means reload.
    stamp: (u64, u64, u64, i64),
}

/// A KEK keyring in a file. See the module docs.
pub struct LocalKeyring {
    path: PathBuf,
    protector: Arc<dyn FileProtector>,
    state: Mutex<State>,
    rng: SystemRandom,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyring")
            .field("path", &self.path)
            .field("protector", &self.protector.describe())
            .finish_non_exhaustive()
    }
}

impl LocalKeyring {
    /// Create a keyring with one fresh KEK version; refuses to overwrite a file.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        Self::create_with(path, Arc::new(PlainFile))
    }

    /// Open an existing keyring (plain 0600 file).
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        Self::open_with(path, Arc::new(PlainFile))
    }

    /// Open the keyring, creating it if the file does not exist yet.
    pub fn open_or_create(
        path: &Path,
        protector: Arc<dyn FileProtector>,
    ) -> Result<Self, KeyError> {
        if path.exists() {
            Self::open_with(path, protector)
        } else {
            Self::create_with(path, protector)
        }
    }

    pub fn create_with(path: &Path, protector: Arc<dyn FileProtector>) -> Result<Self, KeyError> {
        if path.exists() {
            return Err(KeyError::AlreadyExists {
                what: "KEK keyring",
                path: path.to_owned(),
            });
        }
        let rng = SystemRandom::new();
        let mut plain = Zeroizing::new(Vec::new());
        plain.extend_from_slice(MAGIC);
        plain.extend_from_slice(&1u32.to_be_bytes());
        plain.extend_from_slice(&1u32.to_be_bytes());
        push_version(&mut plain, 1, now_unix(), &rng)?;
        let _lock = FileLock::exclusive(&lock_path(path))?;
        let stored = protector.protect(&plain)?;
        crate::local::write_new_secret_file(path, "KEK keyring", &stored)?;
        Self::open_with(path, protector)
    }

    pub fn open_with(path: &Path, protector: Arc<dyn FileProtector>) -> Result<Self, KeyError> {
        let state = load(path, protector.as_ref())?;
        Ok(LocalKeyring {
            path: path.to_owned(),
            protector,
            state: Mutex::new(state),
            rng: SystemRandom::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the current state, reloading it first if the file changed.
    fn with_state<T>(&self, f: impl FnOnce(&State) -> Result<T, KeyError>) -> Result<T, KeyError> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| KeyError::Crypto("keyring lock poisoned"))?;
        if stamp(&self.path)? != guard.stamp {
            *guard = load(&self.path, self.protector.as_ref())?;
        }
        f(&guard)
    }

    /// Read-modify-write the file under the lock file; `edit` gets the plain bytes' parts.
    fn modify(
        &self,
        edit: impl FnOnce(&mut u32, &mut Vec<(u32, u64, Zeroizing<[u8; 32]>)>) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| KeyError::Crypto("keyring lock poisoned"))?;
        let _lock = FileLock::exclusive(&lock_path(&self.path))?;
        let plain = read_plain(&self.path, self.protector.as_ref())?;
        let (mut min, mut entries) = parse(&self.path, &plain)?;
        edit(&mut min, &mut entries)?;
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&min.to_be_bytes());
        let count =
            u32::try_from(entries.len()).map_err(|_| KeyError::Crypto("too many KEK versions"))?;
        out.extend_from_slice(&count.to_be_bytes());
        for (v, created, key) in &entries {
            out.extend_from_slice(&v.to_be_bytes());
            out.extend_from_slice(&created.to_be_bytes());
            out.extend_from_slice(key.as_ref());
        }
        let stored = self.protector.protect(&out)?;
        replace_secret_file(&self.path, &stored)?;
        *guard = load(&self.path, self.protector.as_ref())?;
        Ok(())
    }

    fn wrap(&self, dek: &[u8; DATA_KEY_LEN]) -> Result<WrappedKey, KeyError> {
        self.with_state(|s| {
            let latest = s.versions.last().ok_or(KeyError::Crypto("empty keyring"))?;
            let mut nonce = [0u8; NONCE_LEN];
            self.rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
            let mut buf = Zeroizing::new(dek.to_vec());
            latest
                .key
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad(latest.version)),
                    &mut *buf,
                )
                .map_err(|_| KeyError::Crypto("AES-256-GCM seal"))?;
            let body = [nonce.as_slice(), buf.as_slice()].concat();
            Ok(WrappedKey::new(PREFIX, latest.version, &B64.encode(body)))
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey) -> Result<Zeroizing<[u8; DATA_KEY_LEN]>, KeyError> {
        let key_name = || format!("local:{}", self.path.display());
        if wrapped.backend() != PREFIX {
            return Err(KeyError::WrongBackend {
                blob: "(data key)".into(),
                expected: PREFIX,
                found: wrapped.backend().to_owned(),
            });
        }
        let reject = |reason: &str| KeyError::WrappedKeyRejected {
            key: key_name(),
            what: format!("{wrapped:?}"),
            reason: reason.to_owned(),
        };
        let v = wrapped.version();
        self.with_state(|s| {
            if v < s.min_decryption_version {
                return Err(KeyError::KeyVersionRevoked {
                    key: key_name(),
                    version: v,
                    min: s.min_decryption_version,
                });
            }
            let kek = s
                .versions
                .iter()
                .find(|k| k.version == v)
                .ok_or_else(|| reject("no such KEK version in this keyring"))?;
            let body = B64
                .decode(wrapped.body())
                .map(Zeroizing::new)
                .map_err(|_| reject("not base64"))?;
            let (nonce, ct) = body
                .split_at_checked(NONCE_LEN)
                .ok_or_else(|| reject("too short"))?;
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| reject("bad nonce"))?;
            let mut buf = Zeroizing::new(ct.to_vec());
            let pt = kek
                .key
                .open_in_place(nonce, Aad::from(aad(v)), buf.as_mut_slice())
                .map_err(|_| reject("authentication failed"))?;
            let dek: [u8; DATA_KEY_LEN] = pt
                .try_into()
                .map_err(|_| reject("a data key is 32 bytes"))?;
            Ok(Zeroizing::new(dek))
        })
    }

    fn status(&self) -> Result<KekStatus, KeyError> {
        self.with_state(|s| {
            Ok(KekStatus {
                key: format!("local:{}", self.path.display()),
                latest_version: s.versions.last().map_or(0, |v| v.version),
                min_decryption_version: s.min_decryption_version,
                versions: s
                    .versions
                    .iter()
                    .map(|v| KekVersion {
                        version: v.version,
                        created_unix: v.created_unix,
                    })
                    .collect(),
            })
        })
    }
}

impl KeyBackend for LocalKeyring {
    fn kind(&self) -> &'static str {
        PREFIX
    }
    fn describe(&self) -> String {
        format!(
            "local keyring {} ({})",
            self.path.display(),
            self.protector.describe()
        )
    }
    fn generate_data_key(&self) -> BackendFuture<'_, DataKey> {
        Box::pin(async move {
            let mut plaintext = Zeroizing::new([0u8; DATA_KEY_LEN]);
            self.rng
                .fill(plaintext.as_mut())
                .map_err(|_| KeyError::Random)?;
            let wrapped = self.wrap(&plaintext)?;
            Ok(DataKey { plaintext, wrapped })
        })
    }
    fn unwrap_data_key<'a>(
        &'a self,
        wrapped: &'a WrappedKey,
    ) -> BackendFuture<'a, Zeroizing<[u8; DATA_KEY_LEN]>> {
        Box::pin(async move { self.unwrap(wrapped) })
    }
    fn rewrap<'a>(&'a self, wrapped: &'a WrappedKey) -> BackendFuture<'a, WrappedKey> {
        Box::pin(async move {
            let dek = self.unwrap(wrapped)?;
            self.wrap(&dek)
        })
    }
    fn rotate_kek(&self) -> BackendFuture<'_, u32> {
        Box::pin(async move {
            let mut new_version = 0;
            self.modify(|_, entries| {
                let next = entries.last().map_or(1, |e| e.0 + 1);
                let mut key = Zeroizing::new([0u8; 32]);
                self.rng.fill(key.as_mut()).map_err(|_| KeyError::Random)?;
                entries.push((next, now_unix(), key));
                new_version = next;
                Ok(())
            })?;
            tracing::info!(keyring = %self.path.display(), version = new_version, "KEK rotated");
            Ok(new_version)
        })
    }
    fn kek_status(&self) -> BackendFuture<'_, KekStatus> {
        Box::pin(async move { self.status() })
    }
    fn set_min_decryption_version(&self, version: u32) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.modify(|min, entries| {
                let latest = entries.last().map_or(0, |e| e.0);
                if version == 0 || version > latest {
                    return Err(KeyError::Refused {
                        op: "raise the minimum decryption version",
                        reason: format!(
                            "version {version} is not between 1 and the latest ({latest})"
                        ),
                    });
                }
                if version < *min {
                    return Err(KeyError::Refused {
                        op: "lower the minimum decryption version",
                        reason: format!("it is {min}; a revoked version stays revoked"),
                    });
                }
                *min = version;
                Ok(())
            })?;
            tracing::info!(keyring = %self.path.display(), min_decryption_version = version, "KEK versions revoked");
            Ok(())
        })
    }
    fn health(&self) -> BackendFuture<'_, Health> {
        Box::pin(async move {
            let r = self.status();
            Ok(Health {
                backend: self.describe(),
                reachable: r.is_ok(),
                sealed: false,
                detail: match r {
                    Ok(s) => format!(
                        "{} KEK versions, latest v{}",
                        s.versions.len(),
                        s.latest_version
                    ),
                    Err(e) => e.to_string(),
                },
            })
        })
    }
}

const AD_LEN: usize = AD_PREFIX.len() + 4;

fn aad(version: u32) -> [u8; AD_LEN] {
    let mut out = [0u8; AD_LEN];
    out[..AD_PREFIX.len()].copy_from_slice(AD_PREFIX);
    out[AD_PREFIX.len()..].copy_from_slice(&version.to_be_bytes());
    out
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn push_version(
    out: &mut Vec<u8>,
    version: u32,
    created: u64,
    rng: &SystemRandom,
) -> Result<(), KeyError> {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill(key.as_mut()).map_err(|_| KeyError::Random)?;
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&created.to_be_bytes());
    out.extend_from_slice(key.as_ref());
    Ok(())
}

fn stamp(path: &Path) -> Result<(u64, u64, u64, i64), KeyError> {
    let m = fs::metadata(path).map_err(|source| KeyError::Io {
        action: "stat",
        path: path.to_owned(),
        source,
    })?;
    Ok((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime_nsec() + m.mtime() * 1_000_000_000,
    ))
}

fn read_plain(path: &Path, protector: &dyn FileProtector) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let stored = read_secret_file(path)?;
    protector.unprotect(path, &stored)
}

type Entries = Vec<(u32, u64, Zeroizing<[u8; 32]>)>;

fn parse(path: &Path, plain: &[u8]) -> Result<(u32, Entries), KeyError> {
    let bad = |reason: &str| KeyError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut r = Reader::new(plain);
    r.magic(MAGIC, "magic")
        .map_err(|_| bad("not a Parley KEK keyring (expected PKR1)"))?;
    let min = r.u32("min").map_err(|e| bad(e.0))?;
    let count = r.u32("count").map_err(|e| bad(e.0))?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let v = r.u32("version").map_err(|e| bad(e.0))?;
        let created = r.u64("created").map_err(|e| bad(e.0))?;
        let key = Zeroizing::new(r.array::<32>("key").map_err(|e| bad(e.0))?);
        if entries.last().is_some_and(|(p, _, _)| *p >= v) {
            return Err(bad("versions are not increasing"));
        }
        entries.push((v, created, key));
    }
    r.finish().map_err(|e| bad(e.0))?;
    let latest = entries.last().map_or(0, |e| e.0);
    if entries.is_empty() || min == 0 || min > latest {
        return Err(bad(
            "no KEK version, or the minimum decryption version is out of range",
        ));
    }
    Ok((min, entries))
}

fn load(path: &Path, protector: &dyn FileProtector) -> Result<State, KeyError> {
    let before = stamp(path)?;
    let plain = read_plain(path, protector)?;
    let (min, entries) = parse(path, &plain)?;
    let mut versions = Vec::with_capacity(entries.len());
    for (version, created_unix, key) in entries {
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
            .map_err(|_| KeyError::Crypto("AES-256-GCM key"))?;
        versions.push(Version {
            version,
            created_unix,
            key: LessSafeKey::new(unbound),
        });
    }
    Ok(State {
        versions,
        min_decryption_version: min,
        stamp: before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn wrap_rotate_rewrap_revoke() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("keyring");
            let ring = LocalKeyring::create(&path).unwrap();
            let dk = ring.generate_data_key().await.unwrap();
            assert_eq!(dk.wrapped().version(), 1);
            assert_eq!(
                *ring.unwrap_data_key(dk.wrapped()).await.unwrap(),
                *dk.plaintext
            );

            assert_eq!(ring.rotate_kek().await.unwrap(), 2);
            let re = ring.rewrap(dk.wrapped()).await.unwrap();
            assert_eq!(re.version(), 2);
            assert_eq!(*ring.unwrap_data_key(&re).await.unwrap(), *dk.plaintext);

            // Another handle on the same file sees the rotation and the revocation.
            let other = LocalKeyring::open(&path).unwrap();
            other.set_min_decryption_version(2).await.unwrap();
            assert!(matches!(
                ring.unwrap_data_key(dk.wrapped()).await,
                Err(KeyError::KeyVersionRevoked {
                    version: 1,
                    min: 2,
                    ..
                })
            ));
            assert!(ring.unwrap_data_key(&re).await.is_ok());
            assert!(other.set_min_decryption_version(1).await.is_err());
            assert!(other.set_min_decryption_version(3).await.is_err());
            let st = ring.kek_status().await.unwrap();
            assert_eq!((st.latest_version, st.min_decryption_version), (2, 2));
            assert_eq!(st.versions.len(), 2);
        });
    }

    #[test]
    fn tampered_or_foreign_wraps_are_rejected() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let ring = LocalKeyring::create(&dir.path().join("a")).unwrap();
            let other = LocalKeyring::create(&dir.path().join("b")).unwrap();
            let dk = ring.generate_data_key().await.unwrap();
            assert!(matches!(
                other.unwrap_data_key(dk.wrapped()).await,
                Err(KeyError::WrappedKeyRejected { .. })
            ));
            let mut body = B64.decode(dk.wrapped().body()).unwrap();
            body[20] ^= 1;
            let bad = WrappedKey::new("local", 1, &B64.encode(body));
            assert!(ring.unwrap_data_key(&bad).await.is_err());
            // A valid wrap relabelled as another version fails (version is in the AD).
            ring.rotate_kek().await.unwrap();
            let relabelled = WrappedKey::new("local", 2, dk.wrapped().body());
            assert!(ring.unwrap_data_key(&relabelled).await.is_err());
            let vault = WrappedKey::parse("vault:v1:AAAA").unwrap();
            assert!(matches!(
                ring.unwrap_data_key(&vault).await,
                Err(KeyError::WrongBackend { .. })
            ));
        });
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        LocalKeyring::create(&path).unwrap();
        let good = fs::read(&path).unwrap();
        for cut in [0, 4, 12, good.len() - 1] {
            replace_secret_file(&path, &good[..cut]).unwrap();
            assert!(matches!(
                LocalKeyring::open(&path),
                Err(KeyError::Malformed { .. })
            ));
        }
        let mut extra = good.clone();
        extra.push(0);
        replace_secret_file(&path, &extra).unwrap();
        assert!(matches!(
            LocalKeyring::open(&path),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            LocalKeyring::create(&path),
            Err(KeyError::AlreadyExists { .. })
        ));
    }
}
