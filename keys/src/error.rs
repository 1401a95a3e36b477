//! The key errors. Messages name the file or key involved, never secret material.

use std::path::PathBuf;

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
}
