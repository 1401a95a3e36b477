//! Verdicts as EAT Attestation Results (EAR, draft-fv-rats-ear / draft-ietf-rats-ear),
//! signed with Parley's canonical signature, and their offline check.
//!
//! A verdict serialises as an EAR JSON claims-set with one submodule, named by the
//! evidence type (`snp`, `tdx`, `sim`, or `unknown`):
//!
//! ```json
//! {"eat_profile": "tag:github.com,2023:veraison/ear",
//!  "iat": 1750377600,                               // the verification time
//!  "ear.verifier-id": {"developer": "https://github.com/parley-mpc/parley",
//!                      "build": "parley-attestation 0.1.0"},
//!  "submods": {"snp": {
//!     "ear.status": "affirming",
//!     "ear.trustworthiness-vector": {"instance-identity": 2, "configuration": 2,
//!                                    "executables": 3, "hardware": 2},
//!     "ear.appraisal-policy-id": "tag:parley.dev,2026:policy/prod-2026-11@sha256:…",
//!     "ear.parley.policy":   {"name": "prod-2026-11", "sha256": "…"},
//!     "ear.parley.evidence": {"type": "snp", "sha256": "…", "report-data": "…" | null},
//!     "ear.parley.claims":   {…},                  // the appraised claims
//!     "ear.parley.platform": {"tee": "snp", "chip": "…", "measurement": "…"},
//!     "ear.parley.inputs":   [{"item": "ark", "sha256": "…"}, …],
//!     "ear.parley.reasons":  [{"code": "…", "message": "…", "severity": "warning"}]}}}
//! ```
//!
//! The `ear.parley.*` claims are private extensions in the draft's
//! `$$ear-appraisal-extension` socket, named like the draft's own `ear.veraison.*`.
//!
//! **Protection and the domain label.** The draft protects an EAR as a JWT or CWT. Parley
//! signs every object the same way instead (see [`crate::canonical`]): Ed25519 over
//! `"parley-signature/v1\n" ‖ "verdict" ‖ "\n" ‖ JCS(EAR claims-set)`. The domain label is
//! therefore carried in the signed bytes, not in the claims-set, and the envelope names it:
//!
//! ```json
//! {"ear": {…claims-set…},
//!  "signature": {"alg": "Ed25519", "domain": "parley-signature/v1 verdict",
//!                "key": "ed25519:…", "value": "<128 hex>"}}
//! ```
//!
//! A verdict is *reproduced* when appraising the same evidence with the same policy,
//! collateral and roots at its `iat` gives a byte-identical JCS claims-set (the unsigned
//! body). The `build` names the verifier version: a different version may not reproduce.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::appraise::Verdict;
use crate::canonical::{self, Domain};
use crate::evidence::{EvidenceKind, InputDigest, Platform};
use crate::hexbytes::{Ed25519Key, HexBytes};
use crate::verdict::{Reason, Status, codes};

/// The EAR profile this serialisation follows.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";
/// Who built the verifier.
pub const DEVELOPER: &str = "https://github.com/parley-mpc/parley";
/// How the envelope names the signature domain.
pub const SIGNATURE_DOMAIN: &str = "parley-signature/v1 verdict";

/// The verifier build, part of every verdict.
pub fn build() -> String {
    format!("parley-attestation {}", env!("CARGO_PKG_VERSION"))
}

/// The AR4SI trustworthiness vector (only the claims Parley appraises). Values follow
/// AR4SI: 0 no claim, 2/3 affirming, 32/33 warning, 96/97/99 contraindicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustVector {
    #[serde(rename = "instance-identity")]
    pub instance_identity: i8,
    pub configuration: i8,
    pub executables: i8,
    pub hardware: i8,
}

/// AR4SI claim values used here.
pub mod ar4si {
    pub const NO_CLAIM: i8 = 0;
    pub const UNEXPECTED_EVIDENCE: i8 = 1;
    /// instance-identity: recognised; configuration: approved; hardware: genuine.
    pub const AFFIRMING: i8 = 2;
    /// executables: only approved code was loaded at boot (a launch measurement).
    pub const APPROVED_BOOT: i8 = 3;
    /// Known issues: unsafe configuration, hardware with known vulnerabilities.
    pub const WARNING: i8 = 32;
    pub const CONTRAINDICATED: i8 = 96;
    pub const UNRECOGNIZED: i8 = 97;
    pub const CRYPTO_FAILED: i8 = 99;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    InstanceIdentity,
    Configuration,
    Executables,
    Hardware,
}

/// Which trustworthiness claim a reason code bears on.
fn component(code: &str) -> Component {
    match code {
        codes::REPORT_DATA_MISMATCH | "platform-changed" | "clock-skew" | "reflection" => {
            Component::InstanceIdentity
        }
        codes::DEBUG_ENABLED
        | codes::MIGRATION_AGENT_ENABLED
        | codes::MIGRATABLE_TD
        | codes::SMT_ENABLED
        | codes::VMPL_NOT_ALLOWED
        | codes::HOST_DATA_MISMATCH
        | codes::XFAM_NOT_ACCEPTED
        | codes::SEPT_VE_NOT_DISABLED
        | codes::MR_CONFIG_ID_MISMATCH
        | codes::FAMILY_ID_MISMATCH
        | codes::IMAGE_ID_MISMATCH
        | codes::ID_KEY_MISMATCH
        | codes::AUTHOR_KEY_MISMATCH => Component::Configuration,
        codes::MEASUREMENT_NOT_ACCEPTED
        | codes::RTMR_NOT_ACCEPTED
        | codes::MR_SEAM_NOT_ACCEPTED
        | codes::MR_SIGNER_SEAM_NOT_ACCEPTED
        | codes::GUEST_SVN_TOO_OLD => Component::Executables,
        _ => Component::Hardware,
    }
}

/// Codes meaning the cryptography failed (AR4SI 99), or the evidence is unrecognised (97).
fn refusal_value(code: &str) -> i8 {
    match code {
        codes::BAD_SIGNATURE
        | codes::UNTRUSTED_CHAIN
        | "bad-quote-signature"
        | "bad-qe-report-signature"
        | "qe-report-data-mismatch"
        | "bad-collateral-signature"
        | "untrusted-root"
        | "pck-chain-invalid" => ar4si::CRYPTO_FAILED,
        codes::UNKNOWN_EVIDENCE_TYPE
        | codes::MALFORMED_EVIDENCE
        | codes::UNSUPPORTED_VERSION
        | codes::TEE_TYPE_NOT_ACCEPTED
        | codes::ROOT_NOT_ACCEPTED => ar4si::UNRECOGNIZED,
        _ => ar4si::CONTRAINDICATED,
    }
}

impl TrustVector {
    /// The vector for a verdict's reasons. `appraised`: claims were available and the
    /// policy was applied; `bound`: the report data was checked against an expected value.
    pub fn from_reasons(reasons: &[Reason], appraised: bool, bound: bool) -> TrustVector {
        let base = |c: Component| -> i8 {
            match c {
                _ if !appraised => ar4si::NO_CLAIM,
                Component::InstanceIdentity if !bound => ar4si::NO_CLAIM,
                Component::Executables => ar4si::APPROVED_BOOT,
                _ => ar4si::AFFIRMING,
            }
        };
        let mut v = [
            Component::InstanceIdentity,
            Component::Configuration,
            Component::Executables,
            Component::Hardware,
        ]
        .map(|c| (c, base(c)));
        for r in reasons {
            let c = component(&r.code);
            let value = match r.severity {
                Status::Affirming => continue,
                Status::Warning => ar4si::WARNING,
                Status::Contraindicated => refusal_value(&r.code),
            };
            if let Some(slot) = v.iter_mut().find(|(k, _)| *k == c) {
                // A refusal outranks a warning, which outranks any affirming value.
                if rank(value) > rank(slot.1) {
                    slot.1 = value;
                }
            }
        }
        let [(_, i), (_, c), (_, e), (_, h)] = v;
        TrustVector {
            instance_identity: i,
            configuration: c,
            executables: e,
            hardware: h,
        }
    }
}

fn rank(value: i8) -> (u8, i8) {
    let tier = match value {
        96..=127 => 3,
        32..=95 => 2,
        2..=31 => 1,
        _ => 0,
    };
    (tier, value)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierId {
    pub developer: String,
    pub build: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRef {
    #[serde(rename = "type")]
    pub kind: Option<EvidenceKind>,
    pub sha256: String,
    /// The report data the evidence had to carry (hex), or `null` when not checked.
    #[serde(rename = "report-data")]
    pub report_data: Option<String>,
}

/// One EAR appraisal (a submodule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarAppraisal {
    #[serde(rename = "ear.status")]
    pub status: Status,
    #[serde(rename = "ear.trustworthiness-vector")]
    pub vector: TrustVector,
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: String,
    #[serde(rename = "ear.parley.policy")]
    pub policy: PolicyRef,
    #[serde(rename = "ear.parley.evidence")]
    pub evidence: EvidenceRef,
    #[serde(rename = "ear.parley.claims")]
    pub claims: Value,
    #[serde(
        rename = "ear.parley.platform",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub platform: Option<Platform>,
    #[serde(rename = "ear.parley.inputs")]
    pub inputs: Vec<InputDigest>,
    #[serde(rename = "ear.parley.reasons")]
    pub reasons: Vec<Reason>,
}

/// An EAR claims-set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ear {
    #[serde(rename = "eat_profile")]
    pub profile: String,
    pub iat: i64,
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    pub submods: BTreeMap<String, EarAppraisal>,
}

/// The verdict's policy id: a tag URI naming the policy and its hash.
pub fn policy_id(name: &str, sha256: &str) -> String {
    format!("tag:parley.dev,2026:policy/{name}@sha256:{sha256}")
}

impl Ear {
    pub fn from_verdict(v: &Verdict) -> Ear {
        let appraisal = EarAppraisal {
            status: v.status,
            vector: v.trust_vector,
            policy_id: policy_id(&v.policy_name, &v.policy_hash),
            policy: PolicyRef {
                name: v.policy_name.clone(),
                sha256: v.policy_hash.clone(),
            },
            evidence: EvidenceRef {
                kind: v.evidence_type,
                sha256: v.evidence_sha256.clone(),
                report_data: v.report_data.clone(),
            },
            claims: v.claims.clone(),
            platform: v.platform.clone(),
            inputs: v.inputs.clone(),
            reasons: v.reasons.clone(),
        };
        let name = v.evidence_type.map_or("unknown", EvidenceKind::as_str);
        Ear {
            profile: EAR_PROFILE.to_owned(),
            iat: v.verification_time,
            verifier_id: VerifierId {
                developer: DEVELOPER.to_owned(),
                build: build(),
            },
            submods: BTreeMap::from([(name.to_owned(), appraisal)]),
        }
    }

    pub fn to_value(&self) -> Value {
        // Only strings, integers, booleans, arrays and maps: cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The one appraisal of a Parley EAR.
    pub fn appraisal(&self) -> Option<(&str, &EarAppraisal)> {
        let mut it = self.submods.iter();
        match (it.next(), it.next()) {
            (Some((k, a)), None) => Some((k.as_str(), a)),
            _ => None,
        }
    }
}

/// The signature block of a signed verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSignature {
    pub alg: String,
    pub domain: String,
    pub key: Ed25519Key,
    pub value: HexBytes<64>,
}

/// A verdict as stored and exchanged: the EAR claims-set and the appraiser's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedVerdict {
    /// Kept as parsed JSON so that a check compares exactly what was stored.
    pub ear: Value,
    pub signature: VerdictSignature,
}

/// Why a stored verdict was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerdictError {
    #[error("verdict {origin} is not a signed Parley verdict: {reason}")]
    Malformed { origin: String, reason: String },
    #[error(
        "verdict {origin}: the signature does not verify under {key}: the verdict was altered or signed by another key"
    )]
    BadSignature { origin: String, key: String },
    #[error("verdict {origin} is signed by {got}, not by the expected key {expected}")]
    WrongSigner {
        origin: String,
        got: String,
        expected: String,
    },
    #[error(
        "verdict {origin} is not reproduced: appraising the evidence again gives a different body at {}; first difference: {first}",
        paths.join(", ")
    )]
    NotReproduced {
        origin: String,
        paths: Vec<String>,
        first: String,
    },
}

/// The exact bytes the appraising node signs for an EAR claims-set.
pub fn to_be_signed(ear: &Value) -> Result<Vec<u8>, canonical::CanonicalError> {
    canonical::to_be_signed(Domain::Verdict, ear)
}

/// The unsigned body: the RFC 8785 canonical form of the claims-set.
pub fn body(ear: &Value) -> Result<Vec<u8>, canonical::CanonicalError> {
    canonical::jcs(ear)
}

impl SignedVerdict {
    /// Assemble a signed verdict from an EAR and a signature made over [`to_be_signed`].
    pub fn new(ear: Value, key: Ed25519Key, signature: [u8; 64]) -> Self {
        SignedVerdict {
            ear,
            signature: VerdictSignature {
                alg: "Ed25519".to_owned(),
                domain: SIGNATURE_DOMAIN.to_owned(),
                key,
                value: HexBytes(signature),
            },
        }
    }

    /// Parse a stored verdict; the EAR must have Parley's shape.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, VerdictError> {
        let malformed = |reason: String| VerdictError::Malformed {
            origin: origin.to_owned(),
            reason,
        };
        let v: SignedVerdict = serde_json::from_slice(bytes)
            .map_err(|e| malformed(format!("line {}, column {}: {e}", e.line(), e.column())))?;
        if v.signature.alg != "Ed25519" || v.signature.domain != SIGNATURE_DOMAIN {
            return Err(malformed(format!(
                "signature alg {:?} / domain {:?}: expected \"Ed25519\" / {SIGNATURE_DOMAIN:?}",
                v.signature.alg, v.signature.domain
            )));
        }
        let ear: Ear = serde_json::from_value(v.ear.clone())
            .map_err(|e| malformed(format!("the EAR claims-set: {e}")))?;
        if ear.appraisal().is_none() {
            return Err(malformed(
                "the EAR must hold exactly one submodule".to_owned(),
            ));
        }
        Ok(v)
    }

    /// The EAR, typed.
    pub fn ear(&self) -> Result<Ear, VerdictError> {
        serde_json::from_value(self.ear.clone()).map_err(|e| VerdictError::Malformed {
            origin: String::new(),
            reason: e.to_string(),
        })
    }

    /// Check the signature (and, when given, that `expected` signed it).
    pub fn verify_signature(
        &self,
        origin: &str,
        expected: Option<&Ed25519Key>,
    ) -> Result<(), VerdictError> {
        if let Some(k) = expected
            && k != &self.signature.key
        {
            return Err(VerdictError::WrongSigner {
                origin: origin.to_owned(),
                got: self.signature.key.to_string(),
                expected: k.to_string(),
            });
        }
        if canonical::verify_ed25519(
            &self.signature.key.0,
            Domain::Verdict,
            &self.ear,
            &self.signature.value.0,
        ) {
            Ok(())
        } else {
            Err(VerdictError::BadSignature {
                origin: origin.to_owned(),
                key: self.signature.key.to_string(),
            })
        }
    }

    /// Whether `recomputed` reproduces this verdict's body byte for byte.
    pub fn check_reproduced(&self, origin: &str, recomputed: &Verdict) -> Result<(), VerdictError> {
        let again = Ear::from_verdict(recomputed).to_value();
        let (a, b) = (body(&self.ear).ok(), body(&again).ok());
        if a.is_some() && a == b {
            return Ok(());
        }
        let mut paths = Vec::new();
        diff("", &self.ear, &again, &mut paths);
        let first = paths.first().cloned().unwrap_or_default();
        let first = match (pointer(&self.ear, &first), pointer(&again, &first)) {
            (Some(s), Some(r)) => format!("{first}: stored {s}, recomputed {r}"),
            (s, r) => format!(
                "{first}: stored {}, recomputed {}",
                s.unwrap_or_else(|| "(absent)".into()),
                r.unwrap_or_else(|| "(absent)".into())
            ),
        };
        Err(VerdictError::NotReproduced {
            origin: origin.to_owned(),
            paths,
            first,
        })
    }
}

fn pointer(v: &Value, path: &str) -> Option<String> {
    let s = v.pointer(path)?.to_string();
    Some(if s.len() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    })
}

/// JSON pointers where `a` and `b` differ.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(&p, u, v, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), u, v, out);
            }
        }
        _ if a == b => {}
        _ => out.push(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vector_takes_the_worst_per_component() {
        let reasons = vec![
            Reason::warn(codes::SIMULATED, "x"),
            Reason::refuse(codes::DEBUG_ENABLED, "y"),
        ];
        let v = TrustVector::from_reasons(&reasons, true, true);
        assert_eq!(v.hardware, ar4si::WARNING);
        assert_eq!(v.configuration, ar4si::CONTRAINDICATED);
        assert_eq!(v.executables, ar4si::APPROVED_BOOT);
        assert_eq!(v.instance_identity, ar4si::AFFIRMING);
        let v =
            TrustVector::from_reasons(&[Reason::refuse(codes::BAD_SIGNATURE, "z")], false, false);
        assert_eq!(v.hardware, ar4si::CRYPTO_FAILED);
        assert_eq!(v.configuration, ar4si::NO_CLAIM);
        assert_eq!(
            TrustVector::from_reasons(&[], true, false).instance_identity,
            ar4si::NO_CLAIM
        );
    }

    #[test]
    fn diff_names_paths() {
        let a = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        let b = serde_json::json!({"a": {"b": 2, "c": [1, 3]}, "e": 1});
        let mut out = Vec::new();
        diff("", &a, &b, &mut out);
        assert_eq!(out, ["/a/b", "/a/c/1", "/d", "/e"]);
    }
}
