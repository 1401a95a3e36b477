//! The federation manifest: who the parties are and how they compute together.
//!
//! A TOML file (format 1) that every operator holds an identical copy of:
//!
//! ```toml
//! format = 1
//! federation = "demo"
//! epoch = 1
//! field = "mersenne127"
//! threshold = 1
//!
//! [[party]]
//! name = "hospital-a"                 # a DNS label: also the TLS server name
//! point = 1                           # Shamir evaluation point
//! address = "127.0.0.1:7101"
//! identity_key = "ed25519:…"
//! policy_hash = "…"                   # SHA-256 of the party's appraisal policy file
//! ```
//!
//! Its hash — SHA-256 of the RFC 8785 canonical JSON of the parsed manifest *without* its
//! signatures — is bound into every RA-TLS certificate and every job, so parties of
//! different federations (or of different epochs of one) never exchange shares.
//!
//! **Signatures and epochs.** Every party's operator signs the manifest with its identity
//! key (`[[signature]]` entries: party, key, signature over the canonical encoding under the
//! `manifest` domain). A node refuses to start on a manifest without every party's valid
//! signature. A new epoch names the previous epoch's hash in `previous` and has
//! `epoch = previous epoch + 1`; when a party's identity key changes between epochs, its
//! old key must sign the new epoch too, so a key rotation is consented to by the key it
//! replaces. Nodes switch epochs at a job boundary (`parley manifest activate`).

use std::path::Path;

use parley_attestation::canonical;
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};
use serde::{Deserialize, Serialize};

pub const MANIFEST_FORMAT: u32 = 1;
pub const MIN_PARTIES: usize = 3;
pub const MAX_PARTIES: usize = 7;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub federation: String,
    pub epoch: u64,
    /// Hash of the previous epoch's manifest (none for the first epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<HexBytes<32>>,
    pub field: FieldName,
    pub threshold: usize,
    #[serde(rename = "party")]
    pub parties: Vec<Party>,
    /// Operators' signatures over everything above (not covered by the hash).
    #[serde(default, rename = "signature", skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<ManifestSignature>,
}

/// One operator's signature over a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    pub party: String,
    /// The identity key that signed (the party's key in this epoch, or in the previous one
    /// when it consents to its own rotation).
    pub key: Ed25519Key,
    pub signature: HexBytes<64>,
}

/// The prime field shares live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldName {
    /// 2^127 − 1, the default.
    Mersenne127,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub name: String,
    pub point: u64,
    pub address: String,
    pub identity_key: Ed25519Key,
    pub policy_hash: HexBytes<32>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("manifest {path}, line {line}, column {column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("manifest {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, source_name: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| crate::util::line_col(text, s.start))
                .unwrap_or((0, 0));
            ManifestError::Syntax {
                path: source_name.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        m.validate().map_err(|message| ManifestError::Invalid {
            path: source_name.to_owned(),
            message,
        })?;
        Ok(m)
    }

    /// Structural rules every node checks before using a manifest.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!(
                "format {} is not supported; this build reads format {MANIFEST_FORMAT}",
                self.format
            ));
        }
        let n = self.parties.len();
        if !(MIN_PARTIES..=MAX_PARTIES).contains(&n) {
            return Err(format!(
                "{n} parties; a federation has {MIN_PARTIES} to {MAX_PARTIES}"
            ));
        }
        if self.threshold == 0 || 2 * self.threshold >= n {
            return Err(format!(
                "threshold {} with {n} parties: it must satisfy 1 ≤ t and 2t < n (honest majority), e.g. t = {}",
                self.threshold,
                (n - 1) / 2
            ));
        }
        for (i, p) in self.parties.iter().enumerate() {
            if !is_dns_label(&p.name) {
                return Err(format!(
                    "party name {:?} must be a DNS label (lowercase letters, digits and '-', 1-63 characters): it is the TLS server name",
                    p.name
                ));
            }
            if p.point == 0 || p.point >= (1 << 32) {
                return Err(format!(
                    "party {:?} has evaluation point {}; points are 1 ≤ x < 2^32",
                    p.name, p.point
                ));
            }
            if !p.address.contains(':') {
                return Err(format!(
                    "party {:?} has address {:?}; expected host:port",
                    p.name, p.address
                ));
            }
            for q in &self.parties[..i] {
                if q.name == p.name {
                    return Err(format!("party name {:?} appears twice", p.name));
                }
                if q.point == p.point {
                    return Err(format!(
                        "parties {:?} and {:?} share evaluation point {}",
                        q.name, p.name, p.point
                    ));
                }
                if q.identity_key == p.identity_key {
                    return Err(format!(
                        "parties {:?} and {:?} share an identity key",
                        q.name, p.name
                    ));
                }
                if q.address == p.address {
                    return Err(format!(
                        "parties {:?} and {:?} share address {}",
                        q.name, p.name, p.address
                    ));
                }
            }
        }
        Ok(())
    }

    /// The manifest without its signatures: what is hashed and signed.
    pub fn body(&self) -> Manifest {
        Manifest {
            signatures: Vec::new(),
            ..self.clone()
        }
    }

    /// SHA-256 of the canonical JSON encoding of the body.
    pub fn hash(&self) -> [u8; 32] {
        // Only strings, integers and arrays: canonicalisation cannot fail.
        canonical::jcs_sha256(&self.body()).unwrap_or_default()
    }

    /// The bytes each operator signs.
    pub fn to_be_signed(&self) -> Vec<u8> {
        canonical::to_be_signed(canonical::Domain::Manifest, &self.body()).unwrap_or_default()
    }

    /// Add (or replace) `party`'s signature made with `key`.
    pub fn add_signature(&mut self, party: &str, key: Ed25519Key, signature: [u8; 64]) {
        self.signatures
            .retain(|s| !(s.party == party && s.key == key));
        self.signatures.push(ManifestSignature {
            party: party.to_owned(),
            key,
            signature: HexBytes(signature),
        });
    }

    fn signed_by(&self, party: &str, key: &Ed25519Key) -> bool {
        self.signatures.iter().any(|s| {
            s.party == party
                && &s.key == key
                && canonical::verify_ed25519(
                    &key.0,
                    canonical::Domain::Manifest,
                    &self.body(),
                    &s.signature.0,
                )
        })
    }

    /// Every party's identity key has signed this manifest, and every signature present
    /// verifies. Errors list who is missing and what to do.
    pub fn verify_signatures(&self) -> Result<(), String> {
        for s in &self.signatures {
            if !canonical::verify_ed25519(
                &s.key.0,
                canonical::Domain::Manifest,
                &self.body(),
                &s.signature.0,
            ) {
                return Err(format!(
                    "the signature of {:?} with key {} does not verify: the manifest was changed after it was signed",
                    s.party, s.key
                ));
            }
        }
        let missing: Vec<&str> = self
            .parties
            .iter()
            .filter(|p| !self.signed_by(&p.name, &p.identity_key))
            .map(|p| p.name.as_str())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "not signed by {}: every party's operator must run `parley manifest sign --config <node.toml> <manifest>` before nodes use it",
                missing.join(", ")
            ))
        }
    }

    /// `self` is a valid next epoch of `previous`: same federation, epoch + 1, names its
    /// hash, and every party whose identity key changed consented with its old key.
    pub fn verify_successor(&self, previous: &Manifest) -> Result<(), String> {
        if self.federation != previous.federation {
            return Err(format!(
                "federation {:?} does not continue {:?}",
                self.federation, previous.federation
            ));
        }
        if self.epoch != previous.epoch + 1 {
            return Err(format!(
                "epoch {} does not follow epoch {}",
                self.epoch, previous.epoch
            ));
        }
        if self.previous.map(|h| h.0) != Some(previous.hash()) {
            return Err(format!(
                "`previous` must be the hash of epoch {} ({})",
                previous.epoch,
                hex::encode(previous.hash())
            ));
        }
        for p in &self.parties {
            if let Some(old) = previous.party(&p.name)
                && old.identity_key != p.identity_key
                && !self.signed_by(&p.name, &old.identity_key)
            {
                return Err(format!(
                    "{}'s identity key changes from {} to {}: the old key must sign the new epoch too",
                    p.name, old.identity_key, p.identity_key
                ));
            }
        }
        Ok(())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.parties.iter().position(|p| p.name == name)
    }

    pub fn party(&self, name: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.name == name)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let parties = (0..3u8)
            .map(|i| Party {
                name: format!("p{i}"),
                point: u64::from(i) + 1,
                address: format!("127.0.0.1:{}", 7000 + u16::from(i)),
                identity_key: Ed25519Key([i; 32]),
                policy_hash: HexBytes([0; 32]),
            })
            .collect();
        Manifest {
            format: 1,
            federation: "t".into(),
            epoch: 1,
            previous: None,
            field: FieldName::Mersenne127,
            threshold: 1,
            parties,
            signatures: Vec::new(),
        }
    }

    #[test]
    fn round_trips_through_toml_with_stable_hash() {
        let m = sample();
        let text = m.to_toml();
        let back = Manifest::parse(&text, "m").unwrap();
        assert_eq!(back, m);
        assert_eq!(back.hash(), m.hash());
        let mut other = m.clone();
        other.parties[0].point = 9;
        assert_ne!(other.hash(), m.hash());
    }

    #[test]
    fn rejects_bad_structure() {
        let mut m = sample();
        m.threshold = 2;
        assert!(m.validate().unwrap_err().contains("honest majority"));
        let mut m = sample();
        m.parties[1].point = 1;
        assert!(m.validate().is_err());
        let mut m = sample();
        m.parties[0].name = "Hospital A".into();
        assert!(m.validate().is_err());
        let mut m = sample();
        m.parties.pop();
        assert!(m.validate().is_err());
    }

    #[test]
    fn signatures_cover_the_body_and_every_party_must_sign() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let keys: Vec<Ed25519KeyPair> = (0..3)
            .map(|_| {
                Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                    .unwrap()
            })
            .collect();
        let mut m = sample();
        for (p, k) in m.parties.iter_mut().zip(&keys) {
            p.identity_key = Ed25519Key(k.public_key().as_ref().try_into().unwrap());
        }
        let hash_before = m.hash();
        for (i, k) in keys.iter().enumerate().take(2) {
            let sig = k.sign(&m.to_be_signed());
            let (name, key) = (m.parties[i].name.clone(), m.parties[i].identity_key);
            m.add_signature(&name, key, sig.as_ref().try_into().unwrap());
        }
        assert_eq!(m.hash(), hash_before, "signatures are not part of the hash");
        assert!(m.verify_signatures().unwrap_err().contains("p2"));
        let sig = keys[2].sign(&m.to_be_signed());
        let (name, key) = (m.parties[2].name.clone(), m.parties[2].identity_key);
        m.add_signature(&name, key, sig.as_ref().try_into().unwrap());
        m.verify_signatures().unwrap();
        let back = Manifest::parse(&m.to_toml(), "m").unwrap();
        back.verify_signatures().unwrap();
        let mut altered = back.clone();
        altered.threshold = 1;
        altered.parties[0].address = "127.0.0.1:9".into();
        assert!(altered.verify_signatures().is_err());

        // A successor epoch that rotates p0's key needs p0's old key too.
        let mut next = m.body();
        next.epoch = 2;
        next.previous = Some(HexBytes(m.hash()));
        let new0 =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                .unwrap();
        next.parties[0].identity_key = Ed25519Key(new0.public_key().as_ref().try_into().unwrap());
        let tbs = next.to_be_signed();
        let signers = [(0, &new0), (1, &keys[1]), (2, &keys[2])];
        for (i, k) in signers {
            let (name, key) = (next.parties[i].name.clone(), next.parties[i].identity_key);
            next.add_signature(&name, key, k.sign(&tbs).as_ref().try_into().unwrap());
        }
        next.verify_signatures().unwrap();
        assert!(next.verify_successor(&m).unwrap_err().contains("old key"));
        let old0 = m.parties[0].identity_key;
        next.add_signature("p0", old0, keys[0].sign(&tbs).as_ref().try_into().unwrap());
        next.verify_successor(&m).unwrap();
        let mut wrong = next.clone();
        wrong.epoch = 3;
        assert!(wrong.verify_successor(&m).is_err());
    }

    #[test]
    fn unknown_key_has_line_number() {
        let text = sample()
            .to_toml()
            .replacen("epoch = 1", "epoch = 1\nsurprise = 2", 1);
        match Manifest::parse(&text, "m.toml") {
            Err(ManifestError::Syntax { line, .. }) => assert!(line > 1),
            other => panic!("{other:?}"),
        }
    }
}
