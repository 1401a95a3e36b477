//! Simulated evidence: the claims of an SEV-SNP report, signed in software.
//!
//! Simulation mode lets developers run a federation on ordinary hardware. A simulated
//! report carries the same claims a real one does (the "measurement" is the SHA-384 of the
//! running `parley` executable, so every node must run the same build), signed by a
//! **per-node** simulation key. A per-federation simulation root certifies each node's key
//! in an *endorsement* (the analogue of a VCEK certificate), so no node can forge another's
//! evidence. It offers no hardware protection at all: appraisal refuses it unless the
//! policy sets `allow_simulated = true` and pins the root, and even then the verdict is
//! `warning`.
//!
//! Encoding: the magic line [`SIM_MAGIC`](crate::evidence::SIM_MAGIC) followed by one JSON
//! object `{"claims", "endorsement", "signature"}` with unknown fields refused. Signatures
//! cover the canonical (RFC 8785) encoding of the parsed values (see [`crate::canonical`]),
//! so formatting of the JSON does not matter, but every field does.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::canonical::{self, Domain};
use crate::evidence::SIM_MAGIC;
use crate::hexbytes::{Ed25519Key, HexBytes};
use crate::verdict::{Findings, Reason, codes};

/// Simulated evidence above this size is refused before parsing.
pub const MAX_SIM_EVIDENCE_LEN: usize = 16 * 1024;

/// The only version of the simulated claims format.
pub const SIM_CLAIMS_VERSION: u32 = 1;

/// TCB version components, as in an SNP `TCB_VERSION` (Milan/Genoa layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl SimTcb {
    /// Components where `self` is below `min`, as (name, value, minimum).
    pub fn below(&self, min: &SimTcb) -> Vec<(&'static str, u8, u8)> {
        [
            ("bootloader", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("microcode", self.microcode, min.microcode),
        ]
        .into_iter()
        .filter(|(_, v, m)| v < m)
        .collect()
    }
}

/// Guest policy bits, as in an SNP report's `POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimGuestPolicy {
    pub debug: bool,
    pub migrate_ma: bool,
    pub smt: bool,
}

/// What a simulated report claims; mirrors the SNP report fields Parley appraises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimClaims {
    pub version: u32,
    /// The simulated chip: a random id fixed when the node's simulation key is created.
    pub platform_id: HexBytes<32>,
    /// SHA-384 of the running executable.
    pub measurement: HexBytes<48>,
    pub report_data: HexBytes<64>,
    pub host_data: HexBytes<32>,
    pub guest_svn: u32,
    pub vmpl: u32,
    pub policy: SimGuestPolicy,
    pub reported_tcb: SimTcb,
}

/// What the simulation root certifies about one node's simulation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimEndorsementBody {
    /// The party the key was issued to (informational; the TLS binding names the party).
    pub node: String,
    pub platform_id: HexBytes<32>,
    /// The node's simulation public key.
    pub key: Ed25519Key,
    /// Validity window, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// A simulation root's signature over a node's simulation key (the "VCEK certificate").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimEndorsement {
    pub body: SimEndorsementBody,
    /// The root that signed; appraisal accepts it only if the policy pins it.
    pub root: Ed25519Key,
    pub signature: HexBytes<64>,
}

impl SimEndorsement {
    /// Bytes the root signs for `body`.
    pub fn to_be_signed(body: &SimEndorsementBody) -> Vec<u8> {
        // The body contains only strings and integers: canonicalisation cannot fail.
        canonical::to_be_signed(Domain::SimEndorsement, body).unwrap_or_default()
    }
}

/// A complete piece of simulated evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimEvidence {
    pub claims: SimClaims,
    pub endorsement: SimEndorsement,
    /// The node's simulation key over the claims.
    pub signature: HexBytes<64>,
}

/// Why simulated evidence could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("simulated evidence is {len} bytes; the limit is {MAX_SIM_EVIDENCE_LEN}")]
    TooLarge { len: usize },
    #[error(
        "not simulated evidence: it does not start with the magic line \"parley-sim-evidence/1\""
    )]
    BadMagic,
    #[error("malformed simulated evidence at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "unsupported simulated claims version {0}; this build understands version {SIM_CLAIMS_VERSION}"
    )]
    Version(u32),
}

impl SimEvidence {
    /// Bytes a node's simulation key signs for `claims`.
    pub fn claims_to_be_signed(claims: &SimClaims) -> Vec<u8> {
        canonical::to_be_signed(Domain::SimEvidence, claims).unwrap_or_default()
    }

    /// Serialise for the wire (magic line + compact JSON).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = SIM_MAGIC.to_vec();
        // Only strings, integers and booleans: serialisation cannot fail.
        out.extend_from_slice(&serde_json::to_vec(self).unwrap_or_default());
        out
    }

    /// Parse, refusing oversize input, a missing magic line, unknown fields and versions.
    pub fn parse(bytes: &[u8]) -> Result<Self, SimError> {
        if bytes.len() > MAX_SIM_EVIDENCE_LEN {
            return Err(SimError::TooLarge { len: bytes.len() });
        }
        let body = bytes.strip_prefix(SIM_MAGIC).ok_or(SimError::BadMagic)?;
        let ev: SimEvidence = serde_json::from_slice(body).map_err(|e| SimError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if ev.claims.version != SIM_CLAIMS_VERSION {
            return Err(SimError::Version(ev.claims.version));
        }
        Ok(ev)
    }

    /// Check genuineness: the endorsement chains to one of `pinned_roots`, is valid at
    /// `at_unix`, names the same platform, and its key signed the claims.
    pub fn verify(&self, pinned_roots: &[Ed25519Key], at_unix: i64) -> Findings {
        let mut f = Findings::default();
        let e = &self.endorsement;
        if !pinned_roots.contains(&e.root) {
            let pinned = if pinned_roots.is_empty() {
                "none".to_owned()
            } else {
                pinned_roots
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            f.push(Reason::refuse(
                codes::UNTRUSTED_CHAIN,
                format!("simulation key of {:?} is endorsed by root {}, which is not pinned (pinned: {pinned})", e.body.node, e.root),
            ));
        } else if !canonical::verify_ed25519(
            &e.root.0,
            Domain::SimEndorsement,
            &e.body,
            &e.signature.0,
        ) {
            f.push(Reason::refuse(
                codes::UNTRUSTED_CHAIN,
                format!(
                    "the endorsement of simulation key {} for {:?} does not verify under root {}: the key is not certified by the federation's simulation root",
                    e.body.key, e.body.node, e.root
                ),
            ));
        }
        if at_unix < e.body.not_before || at_unix > e.body.not_after {
            f.push(Reason::refuse(
                codes::EXPIRED,
                format!(
                    "the endorsement of {:?} is valid from {} to {} (Unix seconds), not at {at_unix}",
                    e.body.node, e.body.not_before, e.body.not_after
                ),
            ));
        }
        if e.body.platform_id != self.claims.platform_id {
            f.push(Reason::refuse(
                codes::PLATFORM_MISMATCH,
                format!(
                    "the claims name platform {} but the endorsement was issued for platform {}",
                    self.claims.platform_id, e.body.platform_id
                ),
            ));
        }
        if !canonical::verify_ed25519(
            &e.body.key.0,
            Domain::SimEvidence,
            &self.claims,
            &self.signature.0,
        ) {
            f.push(Reason::refuse(
                codes::BAD_SIGNATURE,
                format!(
                    "the claims signature does not verify under the endorsed simulation key {}",
                    e.body.key
                ),
            ));
        }
        f
    }

    /// Every field, for `parley attest inspect`.
    pub fn inspect_json(&self) -> serde_json::Value {
        json!({
            "type": "sim",
            "claims": self.claims,
            "endorsement": self.endorsement,
            "signature": self.signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair() -> (Ed25519KeyPair, Ed25519Key) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk = Ed25519Key(kp.public_key().as_ref().try_into().unwrap());
        (kp, pk)
    }

    pub(crate) fn sample(
        root: &Ed25519KeyPair,
        root_pk: Ed25519Key,
        node_key: &Ed25519KeyPair,
    ) -> SimEvidence {
        let platform_id = HexBytes([9; 32]);
        let body = SimEndorsementBody {
            node: "hospital-a".into(),
            platform_id,
            key: Ed25519Key(node_key.public_key().as_ref().try_into().unwrap()),
            not_before: 100,
            not_after: 1000,
        };
        let esig = root.sign(&SimEndorsement::to_be_signed(&body));
        let claims = SimClaims {
            version: 1,
            platform_id,
            measurement: HexBytes([1; 48]),
            report_data: HexBytes([2; 64]),
            host_data: HexBytes([0; 32]),
            guest_svn: 0,
            vmpl: 0,
            policy: SimGuestPolicy::default(),
            reported_tcb: SimTcb::default(),
        };
        let sig = node_key.sign(&SimEvidence::claims_to_be_signed(&claims));
        SimEvidence {
            claims,
            endorsement: SimEndorsement {
                body,
                root: root_pk,
                signature: HexBytes(esig.as_ref().try_into().unwrap()),
            },
            signature: HexBytes(sig.as_ref().try_into().unwrap()),
        }
    }

    #[test]
    fn genuine_round_trip_verifies() {
        let (root, root_pk) = keypair();
        let (node, _) = keypair();
        let ev = sample(&root, root_pk, &node);
        let parsed = SimEvidence::parse(&ev.encode()).unwrap();
        assert_eq!(parsed, ev);
        assert!(parsed.verify(&[root_pk], 500).reasons.is_empty());
    }

    #[test]
    fn each_forgery_has_its_reason() {
        let (root, root_pk) = keypair();
        let (other_root, other_pk) = keypair();
        let (node, _) = keypair();
        let ev = sample(&root, root_pk, &node);
        // Root not pinned.
        assert!(ev.verify(&[other_pk], 500).has(codes::UNTRUSTED_CHAIN));
        // Key certified by another root that claims to be the pinned one.
        let mut forged = sample(&other_root, other_pk, &node);
        forged.endorsement.root = root_pk;
        assert!(forged.verify(&[root_pk], 500).has(codes::UNTRUSTED_CHAIN));
        // Outside the validity window.
        assert!(ev.verify(&[root_pk], 5000).has(codes::EXPIRED));
        // Claims altered after signing.
        let mut altered = ev.clone();
        altered.claims.policy.debug = true;
        assert!(altered.verify(&[root_pk], 500).has(codes::BAD_SIGNATURE));
        // Platform swapped.
        let mut swapped = ev.clone();
        swapped.claims.platform_id = HexBytes([8; 32]);
        assert!(
            swapped
                .verify(&[root_pk], 500)
                .has(codes::PLATFORM_MISMATCH)
        );
    }

    #[test]
    fn parse_errors_are_typed() {
        assert_eq!(SimEvidence::parse(b"hello"), Err(SimError::BadMagic));
        assert!(matches!(
            SimEvidence::parse(&vec![b' '; MAX_SIM_EVIDENCE_LEN + 1]),
            Err(SimError::TooLarge { .. })
        ));
        let mut bad = SIM_MAGIC.to_vec();
        bad.extend_from_slice(b"{\"claims\": 1}");
        assert!(matches!(
            SimEvidence::parse(&bad),
            Err(SimError::Json { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut input = SIM_MAGIC.to_vec();
            input.extend_from_slice(&bytes);
            let _ = SimEvidence::parse(&input);
            let _ = SimEvidence::parse(&bytes);
        }
    }
}
