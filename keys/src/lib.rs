//! Parley keys: every long-lived secret of a node and every signature by an identity key.
//!
//! Layout:
//! - [`identity`]: identity public keys, signatures and the [`Signer`] trait through which
//!   the rest of the system signs (it never holds raw key bytes).
//! - [`backend`]: the [`KeyBackend`] trait: a KEK that wraps, unwraps, rewraps, rotates
//!   and revokes data keys.
//! - [`keyring`]: the local backend, a KEK keyring in a 0600 file (development, demo).
//! - [`local`]: the single-key [`local::LocalKek`] and the file-sealed
//!   [`local::LocalSigner`] the host used before backends existed.
//! - [`store`]: the [`store::BlobStore`] trait (in-memory and file stores here; SQLite in
//!   the host) for sealed blobs.
//! - [`envelope`]: AES-256-GCM envelope encryption of blobs, [`envelope::EnvelopeStore`].
//! - [`rotation`]: KEK rotation with rewrap, revocation, crash-safe data-key rotation,
//!   status and the rotation schedule.
//! - [`vault`]: the Vault/OpenBao backend (AppRole session, renewal, retries, typed errors).
//! - [`signer`]: identity signers over a backend (sealed Ed25519 key, or a Transit key).
//! - [`secret`]: secrets provisioned from files or the environment.
//! - [`sealing`]: protecting secret files at rest (plain, or sealed to an SNP TEE).
//! - [`config`]: the `[keys]` config section and opening a backend and signer from it.
//!
//! I/O boundary: this crate reads and writes its own key and store files and talks to
//! Vault/OpenBao; it opens no other sockets. Secrets are zeroized on drop and never appear
//! in `Debug` output, logs or errors.
#![forbid(unsafe_code)]

pub mod backend;
mod codec;
pub mod config;
pub mod envelope;
pub mod error;
pub mod identity;
pub mod keyring;
pub mod local;
pub mod rotation;
pub mod sealing;
pub mod secret;
pub mod signer;
pub mod store;
pub mod vault;

pub use backend::{KeyBackend, WrappedKey};
pub use error::{KeyError, VaultFailure};
pub use identity::{IdentityPublicKey, Signature, Signer};
