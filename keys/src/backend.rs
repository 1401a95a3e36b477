//! The [`KeyBackend`] trait: who holds the key-encryption key (KEK) and wraps data keys.
//!
//! A backend never sees the data it protects: it generates 256-bit data keys, returns them
//! together with a wrapped copy, and later unwraps, rewraps (to its newest KEK version),
//! rotates and revokes. Two implementations: [`crate::keyring::LocalKeyring`] (a KEK
//! keyring in a 0600 file) and [`crate::vault::VaultBackend`] (a Vault/OpenBao Transit key).
//!
//! Wrapped keys are text `<backend>:v<version>:<base64>`, the Transit form; the version
//! tells rotation what to rewrap and revocation what would be lost.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use zeroize::Zeroizing;

use crate::KeyError;

/// Length of every data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A boxed future, so backends can be trait objects.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyError>> + Send + 'a>>;

/// A data key wrapped by a backend's KEK: `<backend>:v<N>:<base64>`. Not secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey(String);

impl WrappedKey {
    /// Parse the text form; the prefix and version must be well formed.
    pub fn parse(text: &str) -> Option<WrappedKey> {
        let mut parts = text.splitn(3, ':');
        let backend = parts.next()?;
        let version = parts.next()?.strip_prefix('v')?;
        let body = parts.next()?;
        let ok = !backend.is_empty()
            && backend.bytes().all(|b| b.is_ascii_lowercase())
            && version.parse::<u32>().is_ok_and(|v| v > 0)
            && !body.is_empty()
            && body.is_ascii();
        ok.then(|| WrappedKey(text.to_owned()))
    }

    pub(crate) fn new(backend: &str, version: u32, body: &str) -> WrappedKey {
        WrappedKey(format!("{backend}:v{version}:{body}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The backend prefix (`local`, `vault`).
    pub fn backend(&self) -> &str {
        self.0.split(':').next().unwrap_or_default()
    }

    /// The KEK version this key is wrapped under.
    pub fn version(&self) -> u32 {
        // Invariant: `parse` and `new` only build well-formed text.
        self.0
            .split(':')
            .nth(1)
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The opaque wrapped bytes, as the backend encoded them.
    pub(crate) fn body(&self) -> &str {
        self.0.splitn(3, ':').nth(2).unwrap_or_default()
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the prefix: the ciphertext is harmless but long and useless in logs.
        write!(f, "WrappedKey({}:v{})", self.backend(), self.version())
    }
}

/// A fresh data key: the plaintext (zeroized on drop) and its wrapped copy.
pub struct DataKey {
    pub(crate) plaintext: Zeroizing<[u8; DATA_KEY_LEN]>,
    pub(crate) wrapped: WrappedKey,
}

impl DataKey {
    pub fn wrapped(&self) -> &WrappedKey {
        &self.wrapped
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("wrapped", &self.wrapped)
            .finish_non_exhaustive()
    }
}

/// One KEK version and when it was created (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KekVersion {
    pub version: u32,
    pub created_unix: u64,
}

/// The state of a backend's KEK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KekStatus {
    /// `local:<path>` or `vault:<addr>/<mount>/keys/<name>`.
    pub key: String,
    pub latest_version: u32,
    pub min_decryption_version: u32,
    /// Every version still stored, oldest first.
    pub versions: Vec<KekVersion>,
}

impl KekStatus {
    pub fn latest_created_unix(&self) -> Option<u64> {
        self.versions
            .iter()
            .find(|v| v.version == self.latest_version)
            .map(|v| v.created_unix)
    }
}

/// The result of a health probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub backend: String,
    pub reachable: bool,
    pub sealed: bool,
    pub detail: String,
}

/// Holds the KEK and wraps data keys. See the module docs.
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// The prefix of wrapped keys this backend makes (`local`, `vault`).
    fn kind(&self) -> &'static str;
    /// A human-readable name of the key (path or address), for status and errors.
    fn describe(&self) -> String;
    /// A fresh random data key and its wrapped copy under the newest KEK version.
    fn generate_data_key(&self) -> BackendFuture<'_, DataKey>;
    /// Unwrap a data key; refuses versions below the minimum decryption version.
    fn unwrap_data_key<'a>(
        &'a self,
        wrapped: &'a WrappedKey,
    ) -> BackendFuture<'a, Zeroizing<[u8; DATA_KEY_LEN]>>;
    /// Re-wrap under the newest KEK version without exposing the data key to the caller.
    fn rewrap<'a>(&'a self, wrapped: &'a WrappedKey) -> BackendFuture<'a, WrappedKey>;
    /// Add a KEK version; returns the new latest version.
    fn rotate_kek(&self) -> BackendFuture<'_, u32>;
    fn kek_status(&self) -> BackendFuture<'_, KekStatus>;
    /// Revoke every KEK version below `version`: data keys wrapped under them stop opening.
    fn set_min_decryption_version(&self, version: u32) -> BackendFuture<'_, ()>;
    /// Probe the backend without touching keys.
    fn health(&self) -> BackendFuture<'_, Health>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_text_form() {
        let w = WrappedKey::parse("vault:v12:abc/+=").unwrap();
        assert_eq!(w.backend(), "vault");
        assert_eq!(w.version(), 12);
        assert_eq!(w.body(), "abc/+=");
        assert_eq!(format!("{w:?}"), "WrappedKey(vault:v12)");
        for bad in [
            "",
            "vault",
            "vault:v1",
            "vault:v1:",
            "vault:1:x",
            "vault:v0:x",
            "Vault:v1:x",
            ":v1:x",
            "vault:vx:x",
        ] {
            assert!(WrappedKey::parse(bad).is_none(), "{bad}");
        }
    }
}
