//! One interface over every evidence type: detect, parse, verify, produce claims.
//!
//! [`verify`] detects the type from the bytes and runs that type's [`EvidenceVerifier`]:
//! SEV-SNP ([`crate::snp`]), TDX ([`crate::tdx`]) or simulated ([`crate::sim`]). Each says
//! whether the evidence is *genuine* at a given time against given roots and collateral
//! ([`Inputs`]) and hands out its [`Claims`], the [`Platform`] that produced it and the
//! digests of the inputs it relied on. Nothing downstream branches on the vendor: the
//! policy layer ([`crate::appraise`]) reads [`Claims`], sessions compare [`Platform`]s.
//!
//! Verification is a pure function of (bytes, inputs, time): no network, no clock.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::collateral::TdxCollateral;
use crate::hexbytes::Ed25519Key;
use crate::sim::{SimClaims, SimEvidence};
use crate::snp::{self, Endorsements, SnpClaims, TrustAnchors};
use crate::tdx::{self, PckIdentity, TcbEvaluation, TdxClaims, TrustRoots};
use crate::verdict::{Findings, Reason, Status, codes};

/// The evidence formats Parley understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceKind {
    /// AMD SEV-SNP attestation report.
    Snp,
    /// Intel TDX quote.
    Tdx,
    /// Parley simulated evidence (no hardware protection).
    Sim,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Snp => "snp",
            EvidenceKind::Tdx => "tdx",
            EvidenceKind::Sim => "sim",
        }
    }
}

impl std::str::FromStr for EvidenceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "snp" => Ok(EvidenceKind::Snp),
            "tdx" => Ok(EvidenceKind::Tdx),
            "sim" => Ok(EvidenceKind::Sim),
            other => Err(format!(
                "unknown evidence type {other:?}: expected snp, tdx or sim"
            )),
        }
    }
}

/// Magic prefix of Parley simulated evidence.
pub const SIM_MAGIC: &[u8] = b"parley-sim-evidence/1\n";

/// Guess the evidence type from its first bytes. `None` when nothing matches; the
/// type-specific parser still decides whether the bytes are well formed.
pub fn detect(bytes: &[u8]) -> Option<EvidenceKind> {
    if bytes.starts_with(SIM_MAGIC) {
        return Some(EvidenceKind::Sim);
    }
    // TDX quote header: u16 version (4 or 5), u16 attestation key type, u32 TEE type 0x81.
    if let (Some(v), Some(tee)) = (le_u16(bytes, 0), le_u32(bytes, 4))
        && (v == 4 || v == 5)
        && tee == 0x81
    {
        return Some(EvidenceKind::Tdx);
    }
    // SNP report: u32 little-endian version; the report is 1184 bytes. Small versions
    // that the parser does not support are still detected so it can name them.
    if let Some(v) = le_u32(bytes, 0)
        && (1..=31).contains(&v)
    {
        return Some(EvidenceKind::Snp);
    }
    None
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_le_bytes)
}

/// Everything verification needs besides the evidence: roots and collateral. Built once
/// (by the host from files, by tests from vectors) and reused for many verifications.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// AMD ARKs to trust; `None` means the pinned ones.
    pub snp_roots: Option<TrustAnchors>,
    /// VCEK/VLEK certificates, intermediates and CRLs.
    pub snp: Endorsements,
    /// Roots for Intel's chains; `None` means the pinned Intel SGX Root CA.
    pub tdx_roots: Option<TrustRoots>,
    /// TCB Info, QE Identity, CRLs.
    pub tdx: TdxCollateral,
    /// Simulation roots (the appraiser takes them from the policy).
    pub sim_roots: Vec<Ed25519Key>,
}

/// One input a verification relied on, named by what it is and its SHA-256, so an auditor
/// can pin exactly what produced a verdict (file paths are deliberately not recorded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputDigest {
    pub item: String,
    pub sha256: String,
}

impl InputDigest {
    pub fn new(item: &str, sha256: String) -> Self {
        InputDigest {
            item: item.to_owned(),
            sha256,
        }
    }
}

/// The identity of the platform behind a piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub tee: EvidenceKind,
    /// The chip: SNP `CHIP_ID` (or `vlek:` and the VLEK's SHA-256 when the chip id is
    /// masked), TDX `ppid:` and the PCK certificate's PPID, the simulated platform id.
    pub chip: String,
    /// The launch measurement, hex (SNP `MEASUREMENT`, TDX `MRTD`, simulated binary hash).
    pub measurement: String,
}

/// TDX claims with what verification established about them.
#[derive(Debug, Clone)]
pub struct TdxAppraisal {
    pub claims: TdxClaims,
    /// The TCB evaluation, when the collateral allowed one.
    pub tcb: Option<TcbEvaluation>,
    pub pck: Option<PckIdentity>,
}

/// The claims of a piece of evidence, for the policy layer.
#[derive(Debug, Clone)]
pub enum Claims {
    Snp(Box<SnpClaims>),
    Tdx(Box<TdxAppraisal>),
    Sim(Box<SimClaims>),
}

impl Claims {
    pub fn kind(&self) -> EvidenceKind {
        match self {
            Claims::Snp(_) => EvidenceKind::Snp,
            Claims::Tdx(_) => EvidenceKind::Tdx,
            Claims::Sim(_) => EvidenceKind::Sim,
        }
    }

    /// The report data the evidence carries.
    pub fn report_data(&self) -> [u8; 64] {
        match self {
            Claims::Snp(c) => c.report_data,
            Claims::Tdx(c) => c.claims.report_data,
            Claims::Sim(c) => c.report_data.0,
        }
    }

    /// The claims as JSON (the verdict's appraised claims).
    pub fn to_json(&self) -> Value {
        match self {
            Claims::Snp(c) => serde_json::to_value(c).unwrap_or(Value::Null),
            Claims::Tdx(t) => {
                let mut v = t.claims.to_json();
                if let Some(m) = v.as_object_mut() {
                    if let Some(tcb) = &t.tcb {
                        m.insert("tcb_status".into(), json!(tcb.status.as_str()));
                        m.insert("advisory_ids".into(), json!(tcb.advisory_ids));
                        m.insert(
                            "tcb_evaluation_data_number".into(),
                            json!(tcb.platform.tcb_evaluation_data_number),
                        );
                    }
                    if let Some(p) = &t.pck {
                        m.insert("fmspc".into(), json!(hex::encode(p.extension.fmspc)));
                        m.insert("ppid".into(), json!(hex::encode(&p.extension.ppid)));
                    }
                }
                v
            }
            Claims::Sim(c) => serde_json::to_value(c).unwrap_or(Value::Null),
        }
    }
}

/// The outcome of verifying one piece of evidence.
#[derive(Debug, Clone)]
pub struct Verified {
    pub kind: Option<EvidenceKind>,
    /// Genuineness findings: signature, chain, collateral, CRLs.
    pub findings: Findings,
    /// The claims, when the evidence parsed and (for SNP) verified.
    pub claims: Option<Claims>,
    pub platform: Option<Platform>,
    /// SHA-256 of the root the chain ended at, when it did.
    pub root_sha256: Option<String>,
    /// Roots and collateral relied on, sorted.
    pub inputs: Vec<InputDigest>,
    /// SHA-256 of the evidence bytes.
    pub evidence_sha256: [u8; 32],
    /// Type-specific details for `parley attest verify`.
    pub details: Value,
}

impl Verified {
    fn new(kind: Option<EvidenceKind>, evidence: &[u8]) -> Self {
        Verified {
            kind,
            findings: Findings::default(),
            claims: None,
            platform: None,
            root_sha256: None,
            inputs: Vec::new(),
            evidence_sha256: Sha256::digest(evidence).into(),
            details: json!({}),
        }
    }
}

/// One evidence type's verifier. Each input a verifier relies on is named in
/// [`Verified::inputs`]; each problem is a reason with a stable code.
pub trait EvidenceVerifier: Sync {
    fn kind(&self) -> EvidenceKind;
    /// Parse `evidence` and check that it is genuine at `at`.
    fn verify(&self, evidence: &[u8], inputs: &Inputs, at: OffsetDateTime) -> Verified;
    /// Every parsed field, for `parley attest inspect`.
    fn inspect(&self, evidence: &[u8]) -> Result<Value, String>;
}

/// The verifier for `kind`.
pub fn verifier(kind: EvidenceKind) -> &'static dyn EvidenceVerifier {
    match kind {
        EvidenceKind::Snp => &SnpVerifier,
        EvidenceKind::Tdx => &TdxVerifier,
        EvidenceKind::Sim => &SimVerifier,
    }
}

/// Detect the type of `evidence` (unless `forced`) and verify it.
pub fn verify(
    evidence: &[u8],
    forced: Option<EvidenceKind>,
    inputs: &Inputs,
    at: OffsetDateTime,
) -> Verified {
    match forced.or_else(|| detect(evidence)) {
        Some(kind) => verifier(kind).verify(evidence, inputs, at),
        None => {
            let mut v = Verified::new(None, evidence);
            v.findings.push(Reason::refuse(
                codes::UNKNOWN_EVIDENCE_TYPE,
                format!(
                    "{} bytes of evidence in no known format (SEV-SNP report, TDX quote, Parley simulated evidence)",
                    evidence.len()
                ),
            ));
            v
        }
    }
}

struct SnpVerifier;
struct TdxVerifier;
struct SimVerifier;

impl EvidenceVerifier for SnpVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Snp
    }

    fn verify(&self, evidence: &[u8], inputs: &Inputs, at: OffsetDateTime) -> Verified {
        let mut out = Verified::new(Some(EvidenceKind::Snp), evidence);
        let roots = match &inputs.snp_roots {
            Some(r) => r,
            None => match TrustAnchors::pinned() {
                Ok(r) => r,
                Err(e) => {
                    out.findings
                        .push(Reason::refuse(codes::UNTRUSTED_CHAIN, e.to_string()));
                    return out;
                }
            },
        };
        for (_, der) in &inputs.snp.crls {
            out.inputs
                .push(InputDigest::new("amd-crl", sha256_hex(der)));
        }
        match snp::verify(evidence, &inputs.snp, roots, at) {
            Ok(v) => {
                let [vek, inter, ark] = v.chain_sha256.map(hex::encode);
                let vlek = v.claims.signing_key == "VLEK";
                out.inputs.push(InputDigest::new(
                    if vlek { "vlek" } else { "vcek" },
                    vek.clone(),
                ));
                out.inputs
                    .push(InputDigest::new(if vlek { "asvk" } else { "ask" }, inter));
                out.inputs.push(InputDigest::new("ark", ark.clone()));
                out.root_sha256 = Some(ark);
                let chip = if v.claims.chip_id.iter().all(|b| *b == 0) {
                    format!("vlek:{vek}")
                } else {
                    hex::encode(v.claims.chip_id)
                };
                out.platform = Some(Platform {
                    tee: EvidenceKind::Snp,
                    chip,
                    measurement: hex::encode(v.claims.measurement),
                });
                out.findings = v.findings;
                out.details = v.details;
                if let Some(d) = out.details.as_object_mut() {
                    d.insert("claims".into(), json!(v.claims));
                }
                out.claims = Some(Claims::Snp(Box::new(v.claims)));
            }
            Err(r) => {
                out.findings = r.findings;
                out.details = r.details;
            }
        }
        out.inputs.sort();
        out
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Value, String> {
        let report = snp::Report::parse(evidence).map_err(|e| e.to_string())?;
        Ok(snp::json::report_json(&report, report.product()))
    }
}

impl EvidenceVerifier for TdxVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tdx
    }

    fn verify(&self, evidence: &[u8], inputs: &Inputs, at: OffsetDateTime) -> Verified {
        let mut out = Verified::new(Some(EvidenceKind::Tdx), evidence);
        let quote = match tdx::Quote::parse(evidence) {
            Ok(q) => q,
            Err(e) => {
                out.findings.push(Reason::refuse(
                    codes::MALFORMED_EVIDENCE,
                    format!("not a TDX quote Parley can read: {e}"),
                ));
                return out;
            }
        };
        let pinned;
        let roots = match &inputs.tdx_roots {
            Some(r) => r,
            None => {
                pinned = TrustRoots::intel();
                &pinned
            }
        };
        let collateral = match inputs.tdx.for_quote(&quote) {
            Ok(c) => c,
            Err(reason) => {
                out.findings.push(reason);
                tdx::Collateral::default()
            }
        };
        let v = tdx::verify(&quote, &collateral, roots, at);
        for d in &v.collateral {
            out.inputs.push(InputDigest::new(
                &d.item.to_ascii_lowercase().replace(' ', "-"),
                d.sha256.clone(),
            ));
        }
        if let Some(root) = &v.root {
            out.inputs
                .push(InputDigest::new("intel-root", root.sha256.clone()));
            out.root_sha256 = Some(root.sha256.clone());
        }
        out.inputs.sort();
        out.inputs.dedup();
        out.details = v.details_json();
        for r in v.findings.reasons {
            out.findings.push(r);
        }
        out.platform = v.pck.as_ref().map(|p| Platform {
            tee: EvidenceKind::Tdx,
            chip: format!("ppid:{}", hex::encode(&p.extension.ppid)),
            measurement: hex::encode(v.claims.mr_td),
        });
        out.claims = Some(Claims::Tdx(Box::new(TdxAppraisal {
            claims: v.claims,
            tcb: v.tcb,
            pck: v.pck,
        })));
        out
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Value, String> {
        let quote = tdx::Quote::parse(evidence).map_err(|e| e.to_string())?;
        Ok(tdx::inspect::to_json(&quote))
    }
}

impl EvidenceVerifier for SimVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Sim
    }

    fn verify(&self, evidence: &[u8], inputs: &Inputs, at: OffsetDateTime) -> Verified {
        let mut out = Verified::new(Some(EvidenceKind::Sim), evidence);
        let ev = match SimEvidence::parse(evidence) {
            Ok(ev) => ev,
            Err(e) => {
                out.findings
                    .push(Reason::refuse(codes::MALFORMED_EVIDENCE, e.to_string()));
                return out;
            }
        };
        out.findings.push(Reason::warn(
            codes::SIMULATED,
            "simulated evidence: no hardware protection",
        ));
        for r in ev.verify(&inputs.sim_roots, at.unix_timestamp()).reasons {
            out.findings.push(r);
        }
        let root = sha256_hex(&ev.endorsement.root.0);
        out.inputs
            .push(InputDigest::new("simulation-root", root.clone()));
        if out.findings.status() != Status::Contraindicated {
            out.root_sha256 = Some(root);
        }
        out.platform = Some(Platform {
            tee: EvidenceKind::Sim,
            chip: ev.claims.platform_id.to_string(),
            measurement: ev.claims.measurement.to_string(),
        });
        out.details = json!({ "claims": ev.claims, "endorsement": ev.endorsement });
        out.claims = Some(Claims::Sim(Box::new(ev.claims)));
        out
    }

    fn inspect(&self, evidence: &[u8]) -> Result<Value, String> {
        SimEvidence::parse(evidence)
            .map(|ev| ev.inspect_json())
            .map_err(|e| e.to_string())
    }
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_prefix() {
        assert_eq!(
            detect(b"parley-sim-evidence/1\n{}"),
            Some(EvidenceKind::Sim)
        );
        let mut tdx = vec![0u8; 64];
        tdx[0] = 4;
        tdx[2] = 2;
        tdx[4] = 0x81;
        assert_eq!(detect(&tdx), Some(EvidenceKind::Tdx));
        let mut snp = vec![0u8; 1184];
        snp[0] = 2;
        assert_eq!(detect(&snp), Some(EvidenceKind::Snp));
        assert_eq!(detect(b""), None);
        assert_eq!(detect(&[0xff; 8]), None);
    }

    #[test]
    fn unknown_bytes_are_refused_with_a_reason() {
        let v = verify(
            &[0xff; 8],
            None,
            &Inputs::default(),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert!(v.findings.has(codes::UNKNOWN_EVIDENCE_TYPE));
        assert!(v.claims.is_none());
    }
}
