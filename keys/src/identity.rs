//! Identity public keys (Ed25519), signatures, and the [`Signer`] trait.
//!
//! Callers sign canonical to-be-signed bytes that `parley-attestation` builds (they start
//! with a domain-separation label); a `Signer` signs exactly the bytes it is given.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::KeyError;

/// An Ed25519 identity public key. Text form: `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey([u8; 32]);

impl IdentityPublicKey {
    pub const PREFIX: &'static str = "ed25519:";

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        IdentityPublicKey(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// SHA-256 of the raw public key: the fingerprint bound into RA-TLS evidence.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
    /// Verify an Ed25519 signature by this key over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.0)
            .verify(message, &signature.0)
            .is_ok()
    }
}

impl fmt::Display for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({self})")
    }
}

impl FromStr for IdentityPublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bad = |reason| KeyError::InvalidPublicKey {
            text: text.to_owned(),
            reason,
        };
        let hex_part = text
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| bad("expected the prefix \"ed25519:\""))?;
        let bytes = hex::decode(hex_part).map_err(|_| bad("not hexadecimal"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("an Ed25519 public key is 32 bytes (64 hex digits)"))?;
        Ok(IdentityPublicKey(arr))
    }
}

impl Serialize for IdentityPublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdentityPublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text).ok()?.try_into().ok().map(Signature)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// A boxed future, so `Signer` can be used as a trait object (a Transit key signs remotely).
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Signature, KeyError>> + Send + 'a>>;

/// Signs with an identity key the caller never sees.
pub trait Signer: Send + Sync {
    fn public_key(&self) -> IdentityPublicKey;
    /// Sign exactly `message` (already domain-separated by the caller).
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_rejects_garbage() {
        let k = IdentityPublicKey::from_bytes([7; 32]);
        let t = k.to_string();
        assert!(t.starts_with("ed25519:"));
        assert_eq!(t.parse::<IdentityPublicKey>().unwrap(), k);
        assert!("ed25519:00".parse::<IdentityPublicKey>().is_err());
        assert!("rsa:00".parse::<IdentityPublicKey>().is_err());
        assert!(
            format!("ed25519:{}", "zz".repeat(32))
                .parse::<IdentityPublicKey>()
                .is_err()
        );
    }
}
