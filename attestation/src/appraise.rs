//! Appraisal: is this genuine evidence acceptable to this node's policy, bound to what we
//! expect, at this time? The result is a [`Verdict`] whose reasons say why.
//!
//! Appraisal is a pure function of (evidence bytes, policy, expected report data, time).

use serde::{Deserialize, Serialize};

use crate::evidence::{self, EvidenceKind};
use crate::hexbytes::HexBytes;
use crate::policy::PolicyDoc;
use crate::sim::SimEvidence;
use crate::verdict::{Findings, Reason, Status, codes};

/// The outcome of appraising one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `None` when the type could not be determined.
    pub evidence_type: Option<EvidenceKind>,
    pub status: Status,
    pub reasons: Vec<Reason>,
    /// The appraised claims (type-specific), for auditors.
    pub claims: serde_json::Value,
    pub policy_name: String,
    /// SHA-256 of the policy file, hex.
    pub policy_hash: String,
    /// Unix seconds.
    pub verification_time: i64,
    /// Which platform produced the evidence (when it could be parsed), so two pieces of
    /// evidence can be checked to come from the same chip running the same code.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The identity of the platform behind a piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub tee: EvidenceKind,
    /// The chip (SNP chip id, TDX PCK identity, simulated platform id), hex.
    pub chip: String,
    /// The launch measurement, hex.
    pub measurement: String,
}

impl Verdict {
    pub fn has(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }

    /// The reasons as one line, for logs and errors.
    pub fn summary(&self) -> String {
        let reasons: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
        if reasons.is_empty() {
            self.status.to_string()
        } else {
            format!("{} ({})", self.status, reasons.join("; "))
        }
    }
}

/// Appraises evidence against one policy.
#[derive(Debug, Clone)]
pub struct Appraiser {
    doc: PolicyDoc,
}

impl Appraiser {
    pub fn new(doc: PolicyDoc) -> Self {
        Appraiser { doc }
    }

    pub fn policy(&self) -> &PolicyDoc {
        &self.doc
    }

    /// Appraise `evidence`, which must bind `expected_report_data`, at `at_unix`.
    pub fn appraise(
        &self,
        evidence: &[u8],
        expected_report_data: &[u8; 64],
        at_unix: i64,
    ) -> Verdict {
        let mut f = Findings::default();
        let kind = evidence::detect(evidence);
        let mut platform = None;
        let claims = match kind {
            Some(EvidenceKind::Sim) => {
                platform = SimEvidence::parse(evidence).ok().map(|ev| Platform {
                    tee: EvidenceKind::Sim,
                    chip: ev.claims.platform_id.to_string(),
                    measurement: ev.claims.measurement.to_string(),
                });
                self.appraise_sim(evidence, expected_report_data, at_unix, &mut f)
            }
            Some(other) => {
                f.push(Reason::refuse(
                    codes::EVIDENCE_TYPE_NOT_SUPPORTED,
                    format!(
                        "{} evidence cannot yet be appraised for sessions by this build",
                        other.as_str()
                    ),
                ));
                serde_json::Value::Null
            }
            None => {
                f.push(Reason::refuse(
                    codes::UNKNOWN_EVIDENCE_TYPE,
                    format!(
                        "{} bytes of evidence in no known format (SEV-SNP, TDX, simulated)",
                        evidence.len()
                    ),
                ));
                serde_json::Value::Null
            }
        };
        Verdict {
            evidence_type: kind,
            status: f.status(),
            reasons: f.reasons,
            claims,
            policy_name: self.doc.policy.name.clone(),
            policy_hash: self.doc.hash_hex(),
            verification_time: at_unix,
            platform,
        }
    }

    /// A refusal that happened before any evidence was looked at (malformed certificate,
    /// unknown party, …), in the same verdict shape.
    pub fn refusal(&self, code: &str, message: String, at_unix: i64) -> Verdict {
        Verdict {
            evidence_type: None,
            status: Status::Contraindicated,
            reasons: vec![Reason::refuse(code, message)],
            claims: serde_json::Value::Null,
            policy_name: self.doc.policy.name.clone(),
            policy_hash: self.doc.hash_hex(),
            verification_time: at_unix,
            platform: None,
        }
    }

    fn appraise_sim(
        &self,
        bytes: &[u8],
        expected: &[u8; 64],
        at: i64,
        f: &mut Findings,
    ) -> serde_json::Value {
        let p = &self.doc.policy;
        let ev = match SimEvidence::parse(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                f.push(Reason::refuse(codes::MALFORMED_EVIDENCE, e.to_string()));
                return serde_json::Value::Null;
            }
        };
        let claims = serde_json::to_value(&ev.claims).unwrap_or_default();
        if !p.allow_simulated {
            f.push(Reason::refuse(
                codes::SIMULATED_NOT_ALLOWED,
                format!(
                    "simulated evidence is refused: policy {:?} does not set allow_simulated = true (simulated evidence has no hardware protection)",
                    p.name
                ),
            ));
            return claims;
        }
        f.push(Reason::warn(
            codes::SIMULATED,
            "simulated evidence: no hardware protection",
        ));
        for r in ev.verify(&p.simulation_roots, at).reasons {
            f.push(r);
        }
        let c = &ev.claims;
        if !p.measurement.accepted.contains(&c.measurement) {
            f.push(Reason::refuse(
                codes::MEASUREMENT_NOT_ACCEPTED,
                measurement_message(&c.measurement, self),
            ));
        }
        if c.policy.debug && !p.guest.allow_debug {
            f.push(Reason::refuse(
                codes::DEBUG_ENABLED,
                format!("the guest runs with debugging enabled; policy {:?} does not allow debug guests", p.name),
            ));
        }
        if c.policy.migrate_ma && !p.guest.allow_migration_agent {
            f.push(Reason::refuse(
                codes::MIGRATION_AGENT_ENABLED,
                format!(
                    "the guest has a migration agent; policy {:?} does not allow one",
                    p.name
                ),
            ));
        }
        if c.vmpl > p.guest.max_vmpl {
            f.push(Reason::refuse(
                codes::VMPL_NOT_ALLOWED,
                format!(
                    "the report was requested at VMPL {}; policy allows at most {}",
                    c.vmpl, p.guest.max_vmpl
                ),
            ));
        }
        let low = c.reported_tcb.below(&p.tcb.min_reported);
        if !low.is_empty() {
            let parts: Vec<String> = low
                .iter()
                .map(|(n, v, m)| format!("{n} {v} < {m}"))
                .collect();
            f.push(Reason::refuse(
                codes::TCB_TOO_OLD,
                format!(
                    "reported TCB is below the policy minimum: {}",
                    parts.join(", ")
                ),
            ));
        }
        if c.report_data.as_bytes() != expected {
            f.push(Reason::refuse(
                codes::REPORT_DATA_MISMATCH,
                format!(
                    "report data {}… does not bind this connection's key and identity (expected {}…)",
                    &c.report_data.to_string()[..16],
                    &hex::encode(expected)[..16]
                ),
            ));
        }
        claims
    }

    /// Whether an attested session may proceed on `verdict`: affirming, or warning where
    /// every warning is tolerated by the policy (`simulated-evidence` when
    /// `allow_simulated`, or a code listed in `tolerate`).
    pub fn accepts(&self, verdict: &Verdict) -> bool {
        let p = &self.doc.policy;
        match verdict.status {
            Status::Affirming => true,
            Status::Contraindicated => false,
            Status::Warning => verdict
                .reasons
                .iter()
                .filter(|r| r.severity == Status::Warning)
                .all(|r| {
                    (r.code == codes::SIMULATED && p.allow_simulated)
                        || p.tolerate.iter().any(|t| t == &r.code)
                }),
        }
    }
}

fn measurement_message(m: &HexBytes<48>, a: &Appraiser) -> String {
    let accepted: Vec<String> = a
        .doc
        .policy
        .measurement
        .accepted
        .iter()
        .map(|x| format!("{}…", &x.to_string()[..12]))
        .collect();
    format!(
        "measurement {}… not in policy {:?}; accepted: {}",
        &m.to_string()[..12],
        a.doc.policy.name,
        accepted.join(", ")
    )
}
