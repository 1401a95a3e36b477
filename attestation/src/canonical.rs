//! Canonical to-be-signed bytes and Ed25519 signature checks.
//!
//! Every signature by an identity key (TLS binding, verdict, approval, tree head, result
//! certificate, manifest) and by a simulation key covers
//! `"parley-signature/v1\n" ‖ domain ‖ "\n" ‖ JCS(value)`, where JCS is the RFC 8785 JSON
//! canonicalisation. The domain names what the signature is for, so a signature made for
//! one purpose never verifies for another. This crate builds the bytes and verifies; the
//! host signs them through the `Signer` of `parley-keys`.
//!
//! Signed values contain no floating-point numbers (RFC 8785 number formatting is then
//! plain integer printing), and byte strings are lowercase hex.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a signature is for. New purposes get new variants, never reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Domain {
    /// A node's identity key over its RA-TLS certificate's public key.
    TlsBinding,
    /// The federation's simulation root over a node's simulation key.
    SimEndorsement,
    /// A node's simulation key over simulated evidence claims.
    SimEvidence,
    /// An operator's identity key over a federation manifest.
    Manifest,
    /// A node's identity key over a verdict.
    Verdict,
    /// An operator's identity key over a job approval.
    JobApproval,
    /// A node's identity key over its audit log's tree head.
    TreeHead,
    /// An operator's identity key over a store recovery record.
    Recovery,
}

impl Domain {
    pub fn label(self) -> &'static str {
        match self {
            Domain::TlsBinding => "tls-binding",
            Domain::SimEndorsement => "sim-endorsement",
            Domain::SimEvidence => "sim-evidence",
            Domain::Manifest => "manifest",
            Domain::Verdict => "verdict",
            Domain::JobApproval => "job-approval",
            Domain::TreeHead => "tree-head",
            Domain::Recovery => "recovery",
        }
    }
}

const PREFIX: &[u8] = b"parley-signature/v1\n";

/// The RFC 8785 canonical JSON encoding of `value`.
pub fn jcs<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_jcs::to_vec(value).map_err(|e| CanonicalError(e.to_string()))
}

/// SHA-256 of the canonical encoding: how manifests, jobs and policies are named.
pub fn jcs_sha256<T: Serialize>(value: &T) -> Result<[u8; 32], CanonicalError> {
    Ok(Sha256::digest(jcs(value)?).into())
}

/// The exact bytes a signer signs for `value` under `domain`.
pub fn to_be_signed<T: Serialize>(domain: Domain, value: &T) -> Result<Vec<u8>, CanonicalError> {
    let body = jcs(value)?;
    let mut out = Vec::with_capacity(PREFIX.len() + 32 + body.len());
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(domain.label().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&body);
    Ok(out)
}

/// Verify an Ed25519 signature over `value` under `domain`.
pub fn verify_ed25519<T: Serialize>(
    public_key: &[u8; 32],
    domain: Domain,
    value: &T,
    signature: &[u8],
) -> bool {
    let Ok(tbs) = to_be_signed(domain, value) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(&tbs, signature)
        .is_ok()
}

/// The value could not be canonicalised (a bug in the caller's types, not bad input).
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalise value as RFC 8785 JSON: {0}")]
pub struct CanonicalError(String);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_and_separates_domains() {
        let v = json!({"b": 1, "a": [true, "x"]});
        assert_eq!(jcs(&v).unwrap(), br#"{"a":[true,"x"],"b":1}"#);
        let t = to_be_signed(Domain::Manifest, &v).unwrap();
        assert!(t.starts_with(b"parley-signature/v1\nmanifest\n{"));
        assert_ne!(t, to_be_signed(Domain::Verdict, &v).unwrap());
    }

    #[test]
    fn signature_is_domain_bound() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        use ring::signature::KeyPair;
        let pk: [u8; 32] = kp.public_key().as_ref().try_into().unwrap();
        let v = json!({"x": 1});
        let sig = kp.sign(&to_be_signed(Domain::TlsBinding, &v).unwrap());
        assert!(verify_ed25519(&pk, Domain::TlsBinding, &v, sig.as_ref()));
        assert!(!verify_ed25519(&pk, Domain::Verdict, &v, sig.as_ref()));
        assert!(!verify_ed25519(
            &pk,
            Domain::TlsBinding,
            &json!({"x": 2}),
            sig.as_ref()
        ));
    }
}
