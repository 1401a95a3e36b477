//! The key errors. Messages name the file, key, blob or Vault address involved and say what
//! to do; they never contain secret material (keys, tokens, secret-ids, plaintexts).

use std::path::PathBuf;

/// Every failure of the `keys` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {path} has mode {mode:o}; it must be readable by its owner only (run `chmod 600 {path}`)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "cannot unseal {what}: authentication failed (wrong key-encryption key, or the sealed data was altered or swapped)"
    )]
    UnsealFailed { what: String },
    #[error("{what} already exists at {path}; refusing to overwrite a key")]
    AlreadyExists { what: &'static str, path: PathBuf },
    #[error("invalid identity public key {text:?}: {reason}")]
    InvalidPublicKey { text: String, reason: &'static str },
    #[error("the system random number generator failed")]
    Random,
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),

    /// A call to Vault / OpenBao failed; `failure` says how, and whether a retry can help.
    #[error("Vault at {addr}: {op} failed: {failure}")]
    Vault {
        addr: String,
        op: &'static str,
        failure: VaultFailure,
    },
    /// A wrapped data key names a KEK version below the minimum decryption version.
    #[error(
        "key {key}: version {version} is revoked (minimum decryption version is {min}); the blob sealed under it must be restored from a rewrapped copy"
    )]
    KeyVersionRevoked { key: String, version: u32, min: u32 },
    /// A wrapped data key was refused by the backend (altered, or wrapped by another KEK).
    #[error("key {key}: the wrapped data key {what} was rejected: {reason}")]
    WrappedKeyRejected {
        key: String,
        what: String,
        reason: String,
    },
    /// A wrapped data key belongs to another backend (e.g. `vault:` text given to the local one).
    #[error(
        "wrapped data key of blob {blob} was made by backend {found:?}, but this node uses {expected:?}; migrate the store before switching backends"
    )]
    WrongBackend {
        blob: String,
        expected: &'static str,
        found: String,
    },
    #[error("blob {id:?} not found")]
    BlobNotFound { id: String },
    /// A stored blob does not authenticate: tampered, truncated, or swapped with another blob.
    #[error(
        "blob {id:?} (version {version}) failed authentication: {reason}; it was altered or swapped, restore it from a backup"
    )]
    BlobCorrupt {
        id: String,
        version: u64,
        reason: String,
    },
    #[error("invalid blob id {id:?}: {reason}")]
    InvalidBlobId { id: String, reason: &'static str },
    /// A compare-and-swap lost a race too many times.
    #[error("blob {id:?} kept changing while {op}; retry when the node is less busy")]
    Contended { id: String, op: &'static str },
    #[error("keys configuration: {reason}")]
    Config { reason: String },
    /// A secret (AppRole secret-id, role-id) could not be read from where the config points.
    #[error("cannot read {what} from {source_desc}: {reason}")]
    Secret {
        what: &'static str,
        source_desc: String,
        reason: String,
    },
    /// The TEE sealing device failed or is absent.
    #[error("TEE sealing ({device}): {reason}")]
    Sealing { device: String, reason: String },
    /// A rotation was refused because it would make stored data unreadable.
    #[error("refusing to {op}: {reason}")]
    Refused { op: &'static str, reason: String },
    #[error("the {what} is not supported by backend {backend}")]
    Unsupported {
        what: &'static str,
        backend: &'static str,
    },
}

impl KeyError {
    /// True when retrying the same call later can succeed (Vault away, sealed, overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            KeyError::Vault { failure, .. } => failure.is_transient(),
            KeyError::Contended { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn vault(addr: &str, op: &'static str, failure: VaultFailure) -> Self {
        KeyError::Vault {
            addr: addr.to_owned(),
            op,
            failure,
        }
    }
}

/// How a Vault / OpenBao call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultFailure {
    /// Connection refused, reset, DNS or TLS failure, or timeout: Vault is away.
    #[error(
        "cannot reach Vault ({detail}); stored data is untouched, new work waits until it returns"
    )]
    Unreachable { detail: String },
    /// Vault answered 503 "sealed": an operator must unseal it.
    #[error("Vault is sealed; an operator must unseal it (`bao operator unseal`)")]
    Sealed,
    /// The token is valid but its policy does not allow this path.
    #[error(
        "permission denied on {path}; grant the node's AppRole policy this capability (see ARCHITECTURE.md, keys)"
    )]
    PermissionDenied { path: String },
    /// The token expired or was revoked, and logging in again failed or was not possible.
    #[error("the Vault token expired or was revoked and a fresh AppRole login did not succeed")]
    TokenExpired,
    /// AppRole login refused: wrong role-id or secret-id, or the secret-id expired.
    #[error(
        "AppRole login to role {role_id_hint} refused ({detail}); check the role-id and issue a new secret-id"
    )]
    LoginRefused {
        role_id_hint: String,
        detail: String,
    },
    /// The named key or mount does not exist.
    #[error("{path} not found; create it (e.g. `bao write -f {path}`) or fix the keys config")]
    NotFound { path: String },
    /// Vault rejected the request (4xx other than the above).
    #[error("Vault refused the request with HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// Vault failed internally or is overloaded (429, 5xx other than sealed).
    #[error("Vault answered HTTP {status}: {message}; will retry")]
    Server { status: u16, message: String },
    /// The answer could not be understood (not the JSON we expect).
    #[error("unexpected response: {detail}")]
    BadResponse { detail: String },
}

impl VaultFailure {
    /// Network trouble, a sealed Vault and server errors pass; policy and input errors don't.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VaultFailure::Unreachable { .. } | VaultFailure::Sealed | VaultFailure::Server { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input_and_say_what_to_do() {
        let e = KeyError::vault(
            "http://127.0.0.1:8200",
            "unwrap data key",
            VaultFailure::Sealed,
        );
        let t = e.to_string();
        assert!(
            t.contains("http://127.0.0.1:8200") && t.contains("unseal"),
            "{t}"
        );
        assert!(e.is_transient());
        let e = KeyError::vault(
            "a",
            "rotate",
            VaultFailure::PermissionDenied {
                path: "transit/keys/p/rotate".into(),
            },
        );
        assert!(!e.is_transient());
        assert!(e.to_string().contains("transit/keys/p/rotate"));
        let e = KeyError::KeyVersionRevoked {
            key: "parley".into(),
            version: 1,
            min: 2,
        };
        assert!(e.to_string().contains("version 1 is revoked"));
    }
}
