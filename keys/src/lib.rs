//! Parley keys: every long-lived secret of a node and every signature by an identity key.
//!
//! Layout:
//! - [`identity`]: identity public keys, signatures and the [`Signer`] trait through which
//!   the rest of the system signs (it never holds raw key bytes).
//! - [`local`]: the embedded backend: a key-encryption key (KEK) in a 0600 file, secrets
//!   sealed under it with AES-256-GCM, and the local Ed25519 [`local::LocalSigner`].
//!
//! Secrets are zeroized on drop and never appear in `Debug` output, logs or errors.
#![forbid(unsafe_code)]

pub mod error;
pub mod identity;
pub mod local;

pub use error::KeyError;
pub use identity::{IdentityPublicKey, Signature, Signer};
