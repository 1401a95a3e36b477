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

/// Reason codes shared by every evidence type.
pub mod codes {
    /// Genuineness was checked but no policy was applied (auditor CLI without `--policy`).
    pub const NO_POLICY: &str = "no-policy";
    /// The bytes are not any evidence format Parley knows.
    pub const UNKNOWN_EVIDENCE_TYPE: &str = "unknown-evidence-type";
    /// The evidence could not be parsed.
    pub const MALFORMED_EVIDENCE: &str = "malformed-evidence";
    /// The evidence signature does not verify.
    pub const BAD_SIGNATURE: &str = "bad-signature";
    /// The endorsement chain does not reach an accepted root.
    pub const UNTRUSTED_CHAIN: &str = "untrusted-chain";
    /// A certificate or endorsement is outside its validity window at the verification time.
    pub const EXPIRED: &str = "expired";
    /// The launch measurement is not one the policy accepts.
    pub const MEASUREMENT_NOT_ACCEPTED: &str = "measurement-not-accepted";
    /// The guest runs with debugging enabled.
    pub const DEBUG_ENABLED: &str = "debug-enabled";
    /// The TCB is below the policy's minimum.
    pub const TCB_TOO_OLD: &str = "tcb-too-old";
    /// Simulated evidence: no hardware protection.
    pub const SIMULATED: &str = "simulated-evidence";
    /// Simulated evidence while the policy does not set `allow_simulated`.
    pub const SIMULATED_NOT_ALLOWED: &str = "simulated-not-allowed";
    /// The claims and the endorsement name different platforms (chips).
    pub const PLATFORM_MISMATCH: &str = "platform-mismatch";
    /// The VM's migration agent is enabled.
    pub const MIGRATION_AGENT_ENABLED: &str = "migration-agent-enabled";
    /// The guest runs at a VMPL the policy does not allow.
    pub const VMPL_NOT_ALLOWED: &str = "vmpl-not-allowed";
    /// An evidence type the policy has no rules for.
    pub const EVIDENCE_TYPE_NOT_SUPPORTED: &str = "evidence-type-not-supported";
    /// The report data does not bind the values it must (TLS key, identity, nonce).
    pub const REPORT_DATA_MISMATCH: &str = "report-data-mismatch";
}
