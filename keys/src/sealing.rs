//! How secret files (the local KEK keyring, an AppRole secret-id) are protected at rest.
//!
//! [`FileProtector`] turns the plaintext of a secret file into the bytes stored on disk and
//! back. [`PlainFile`] stores it as is in a 0600 file: whoever can read the disk (the host
//! operator) can read it.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::KeyError;

/// Protects a secret file's contents at rest.
pub trait FileProtector: Send + Sync + fmt::Debug {
    fn describe(&self) -> String;
    fn protect(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError>;
    fn unprotect(&self, path: &Path, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;
}

/// No protection beyond the file mode: the host operator can read the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFile;

impl FileProtector for PlainFile {
    fn describe(&self) -> String {
        "plain 0600 file".into()
    }
    fn protect(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(plaintext.to_vec())
    }
    fn unprotect(&self, _: &Path, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        Ok(Zeroizing::new(stored.to_vec()))
    }
}
