//! Appraisal results: an overall status and reasons with stable codes.
//!
//! Every check that fails or weakens trust adds a [`Reason`]; the status is the worst
//! status among them. Codes are stable strings (kebab-case) that tests and auditors match
//! on; messages are plain English for operators and may change.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Overall appraisal status, ordered from best to worst (EAR vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Genuine evidence that meets every rule of the policy.
    Affirming,
    /// Acceptable only where the policy tolerates warnings; the reasons say why.
    Warning,
    /// Refused.
    Contraindicated,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of an appraisal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable machine-readable code, e.g. `measurement-not-accepted`.
    pub code: String,
    /// Plain-English explanation naming the offending value and what is expected.
    pub message: String,
    /// The status this finding alone implies.
    pub severity: Status,
}

impl Reason {
    pub fn new(code: &str, severity: Status, message: impl Into<String>) -> Self {
        Reason {
            code: code.to_owned(),
            message: message.into(),
            severity,
        }
    }
    pub fn refuse(code: &str, message: impl Into<String>) -> Self {
        Self::new(code, Status::Contraindicated, message)
    }
    pub fn warn(code: &str, message: impl Into<String>) -> Self {
        Self::new(code, Status::Warning, message)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A list of reasons and the status they add up to (the worst one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    pub reasons: Vec<Reason>,
}

impl Findings {
    pub fn push(&mut self, reason: Reason) {
        self.reasons.push(reason);
    }
    /// The worst severity among the reasons; `Affirming` when there are none.
    pub fn status(&self) -> Status {
        self.reasons
            .iter()
            .map(|r| r.severity)
            .max()
            .unwrap_or(Status::Affirming)
    }
    pub fn has(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

/// Reason codes shared by every evidence type and by the policy layer. The SNP, TDX and
/// RA-TLS modules re-export the ones they emit, so each string is defined once.
pub mod codes {
    // Genuineness (every evidence type).
    /// Genuineness was checked but no policy was applied (auditor CLI without `--policy`).
    pub const NO_POLICY: &str = "no-policy";
    /// The bytes are not any evidence format Parley knows.
    pub const UNKNOWN_EVIDENCE_TYPE: &str = "unknown-evidence-type";
    /// The evidence could not be parsed.
    pub const MALFORMED_EVIDENCE: &str = "malformed-evidence";
    /// The evidence format version is not one this build reads.
    pub const UNSUPPORTED_VERSION: &str = "unsupported-version";
    /// The evidence signature does not verify.
    pub const BAD_SIGNATURE: &str = "bad-signature";
    /// The endorsement chain does not reach an accepted root.
    pub const UNTRUSTED_CHAIN: &str = "untrusted-chain";
    /// A certificate or endorsement is outside its validity window at the verification time.
    pub const EXPIRED: &str = "expired";
    /// No endorsement (VCEK/VLEK) was supplied for the evidence.
    pub const MISSING_ENDORSEMENT: &str = "missing-endorsement";
    /// A supplied certificate cannot be parsed or lacks required extensions.
    pub const MALFORMED_CERTIFICATE: &str = "malformed-certificate";
    /// The chain ends at a root given explicitly, not a pinned vendor root (warning).
    pub const NON_DEFAULT_ROOT: &str = "non-default-root";
    /// No CRL was supplied: revocation not checked.
    pub const CRL_MISSING: &str = "crl-missing";
    /// A CRL is malformed, badly signed or from the wrong issuer.
    pub const CRL_INVALID: &str = "crl-invalid";
    /// A CRL is outside its validity window at the verification time.
    pub const CRL_EXPIRED: &str = "crl-expired";
    /// A CRL revokes a certificate of the chain.
    pub const REVOKED: &str = "revoked";
    /// Collateral (TCB Info, QE Identity, signing chain) was not supplied.
    pub const COLLATERAL_MISSING: &str = "collateral-missing";
    /// Collateral is outside its validity window at the verification time.
    pub const COLLATERAL_EXPIRED: &str = "collateral-expired";
    /// Non-zero bytes follow the evidence; no signature covers them (warning).
    pub const TRAILING_DATA: &str = "trailing-data";
    /// Simulated evidence: no hardware protection.
    pub const SIMULATED: &str = "simulated-evidence";
    /// The claims and the endorsement name different platforms (chips).
    pub const PLATFORM_MISMATCH: &str = "platform-mismatch";

    // Policy (appraisal of genuine claims).
    /// The policy has no section for this TEE type.
    pub const TEE_TYPE_NOT_ACCEPTED: &str = "tee-type-not-accepted";
    /// Simulated evidence while the policy does not set `allow_simulated`.
    pub const SIMULATED_NOT_ALLOWED: &str = "simulated-not-allowed";
    /// The chain ends at a root the policy does not accept.
    pub const ROOT_NOT_ACCEPTED: &str = "root-not-accepted";
    /// The launch measurement (SNP MEASUREMENT, TDX MRTD, simulated) is not accepted.
    pub const MEASUREMENT_NOT_ACCEPTED: &str = "measurement-not-accepted";
    /// TDX: an RTMR differs from every accepted measurement set with this MRTD.
    pub const RTMR_NOT_ACCEPTED: &str = "rtmr-not-accepted";
    /// The guest runs with debugging enabled.
    pub const DEBUG_ENABLED: &str = "debug-enabled";
    /// The VM's migration agent is enabled.
    pub const MIGRATION_AGENT_ENABLED: &str = "migration-agent-enabled";
    /// TDX: the TD is migratable.
    pub const MIGRATABLE_TD: &str = "migratable-td";
    /// SNP: SMT is enabled on the host but the policy requires it off.
    pub const SMT_ENABLED: &str = "smt-enabled";
    /// The guest runs at a VMPL the policy does not allow.
    pub const VMPL_NOT_ALLOWED: &str = "vmpl-not-allowed";
    /// SNP: the guest SVN is below the policy's minimum.
    pub const GUEST_SVN_TOO_OLD: &str = "guest-svn-too-old";
    /// The reported TCB is below the policy's minimum.
    pub const TCB_TOO_OLD: &str = "tcb-too-old";
    /// SNP: the committed TCB is below the policy's minimum.
    pub const COMMITTED_TCB_TOO_OLD: &str = "committed-tcb-too-old";
    /// SNP: the launch TCB is below the policy's minimum.
    pub const LAUNCH_TCB_TOO_OLD: &str = "launch-tcb-too-old";
    /// SNP: HOST_DATA differs from the pinned value.
    pub const HOST_DATA_MISMATCH: &str = "host-data-mismatch";
    /// SNP: the ID key digest differs from the pinned one.
    pub const ID_KEY_MISMATCH: &str = "id-key-digest-mismatch";
    /// SNP: the author key digest differs from the pinned one.
    pub const AUTHOR_KEY_MISMATCH: &str = "author-key-digest-mismatch";
    /// SNP: FAMILY_ID differs from the pinned one.
    pub const FAMILY_ID_MISMATCH: &str = "family-id-mismatch";
    /// SNP: IMAGE_ID differs from the pinned one.
    pub const IMAGE_ID_MISMATCH: &str = "image-id-mismatch";
    /// TDX: the TDX module measurement is not accepted.
    pub const MR_SEAM_NOT_ACCEPTED: &str = "mr-seam-not-accepted";
    /// TDX: the TDX module signer is not accepted.
    pub const MR_SIGNER_SEAM_NOT_ACCEPTED: &str = "mr-signer-seam-not-accepted";
    /// TDX: XFAM is not accepted.
    pub const XFAM_NOT_ACCEPTED: &str = "xfam-not-accepted";
    /// TDX: SEPT_VE_DISABLE is off while the policy requires it.
    pub const SEPT_VE_NOT_DISABLED: &str = "sept-ve-disable-off";
    /// TDX: MRCONFIGID differs from the pinned value.
    pub const MR_CONFIG_ID_MISMATCH: &str = "mr-config-id-mismatch";
    /// TDX: the collateral's TCB evaluation data number is below the policy's minimum.
    pub const TCB_EVALUATION_TOO_OLD: &str = "tcb-evaluation-data-number-too-low";
    /// The report data does not bind the values it must (TLS key, identity, nonce).
    pub const REPORT_DATA_MISMATCH: &str = "report-data-mismatch";
}
