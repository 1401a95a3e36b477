//! The appraisal policy: which genuine evidence this node accepts from its peers.
//!
//! A policy is a TOML file (format 1). Unknown keys and malformed values are errors that
//! carry the line and column. The policy's identity is the SHA-256 of the file's bytes,
//! which the federation manifest pins per party, so every party knows the exact rules each
//! other party applies.
//!
//! ```toml
//! format = 1
//! name = "demo-2026-11"
//! allow_simulated = true                       # refused unless set
//! simulation_roots = ["ed25519:…"]             # required when allow_simulated
//! tolerate = []                                # warning codes sessions may accept
//!
//! [measurement]
//! accepted = ["<96 hex digits: SHA-384>"]
//!
//! [guest]
//! allow_debug = false
//! allow_migration_agent = false
//! max_vmpl = 0
//!
//! [tcb]
//! min_reported = { bootloader = 0, tee = 0, snp = 0, microcode = 0 }
//!
//! [session]
//! max_age_secs = 3600                          # re-attest sessions older than this
//! max_clock_skew_secs = 120                    # refuse peers whose clock is further off
//!
//! [federation]
//! min_distinct_tee_types = 1                   # platform diversity: e.g. 2 = not all on one vendor
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hexbytes::{Ed25519Key, HexBytes};
use crate::sim::SimTcb;

/// The policy format this build reads.
pub const POLICY_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub format: u32,
    pub name: String,
    #[serde(default)]
    pub allow_simulated: bool,
    #[serde(default)]
    pub simulation_roots: Vec<Ed25519Key>,
    /// Warning reason codes an attested session may accept (e.g. `crl-missing`).
    /// `simulated-evidence` is implied by `allow_simulated`.
    #[serde(default)]
    pub tolerate: Vec<String>,
    pub measurement: MeasurementRules,
    #[serde(default)]
    pub guest: GuestRules,
    #[serde(default)]
    pub tcb: TcbRules,
    #[serde(default)]
    pub session: SessionRules,
    #[serde(default)]
    pub federation: FederationRules,
}

/// Limits on attested sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRules {
    /// A session whose last fresh (gate-2) evidence is older than this is re-attested.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// A peer whose clock differs from ours by more than this is refused.
    #[serde(default = "default_max_skew")]
    pub max_clock_skew_secs: u64,
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules {
            max_age_secs: default_max_age(),
            max_clock_skew_secs: default_max_skew(),
        }
    }
}

fn default_max_age() -> u64 {
    3600
}

fn default_max_skew() -> u64 {
    120
}

/// Rules about the federation as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationRules {
    /// Platform diversity: jobs run only when the parties (this one included) present at
    /// least this many distinct TEE types, so one vendor's flaw cannot expose everyone.
    #[serde(default = "one")]
    pub min_distinct_tee_types: usize,
}

impl Default for FederationRules {
    fn default() -> Self {
        FederationRules {
            min_distinct_tee_types: 1,
        }
    }
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementRules {
    /// Accepted launch measurements (SNP `MEASUREMENT`; simulated: SHA-384 of the binary).
    pub accepted: Vec<HexBytes<48>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRules {
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(default)]
    pub allow_migration_agent: bool,
    #[serde(default)]
    pub max_vmpl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcbRules {
    #[serde(default)]
    pub min_reported: SimTcb,
}

/// A policy together with the hash that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDoc {
    pub policy: Policy,
    /// SHA-256 of the file's bytes.
    pub hash: [u8; 32],
}

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("policy {source_name}, line {line}, column {column}: {message}")]
    Syntax {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("policy {source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
}

impl PolicyDoc {
    /// Parse and validate a policy; `source_name` (usually the path) appears in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            PolicyError::Syntax {
                source_name: source_name.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        let invalid = |message: String| PolicyError::Invalid {
            source_name: source_name.to_owned(),
            message,
        };
        if policy.format != POLICY_FORMAT {
            return Err(invalid(format!(
                "format {} is not supported; this build reads format {POLICY_FORMAT}",
                policy.format
            )));
        }
        if policy.name.trim().is_empty() {
            return Err(invalid("name must not be empty".into()));
        }
        if policy.allow_simulated && policy.simulation_roots.is_empty() {
            return Err(invalid(
                "allow_simulated = true needs simulation_roots: pin the federation's simulation root".into(),
            ));
        }
        if policy.session.max_age_secs == 0 {
            return Err(invalid("[session] max_age_secs must be at least 1".into()));
        }
        if !(1..=3).contains(&policy.federation.min_distinct_tee_types) {
            return Err(invalid(
                "[federation] min_distinct_tee_types must be 1, 2 or 3 (there are three TEE types: snp, tdx, sim)".into(),
            ));
        }
        if policy.measurement.accepted.is_empty() {
            return Err(invalid(
                "[measurement] accepted is empty: the policy would admit no node".into(),
            ));
        }
        Ok(PolicyDoc {
            policy,
            hash: Sha256::digest(text.as_bytes()).into(),
        })
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format = 1
name = "t"
allow_simulated = true
simulation_roots = ["ed25519:0101010101010101010101010101010101010101010101010101010101010101"]

[measurement]
accepted = ["010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101"]
"#;

    #[test]
    fn parses_and_hashes() {
        let d = PolicyDoc::parse(GOOD, "good.toml").unwrap();
        assert!(d.policy.allow_simulated);
        assert!(!d.policy.guest.allow_debug);
        assert_eq!(d.hash, <[u8; 32]>::from(Sha256::digest(GOOD.as_bytes())));
    }

    #[test]
    fn unknown_key_names_line() {
        let text = GOOD.replace("name = \"t\"", "name = \"t\"\nallow_everything = true");
        let e = PolicyDoc::parse(&text, "p.toml").unwrap_err();
        match e {
            PolicyError::Syntax {
                line, ref message, ..
            } => {
                assert_eq!(line, 4, "{e}");
                assert!(message.contains("allow_everything"), "{e}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn simulated_without_root_is_invalid() {
        let text = GOOD.replace(
            "simulation_roots = [\"ed25519:0101010101010101010101010101010101010101010101010101010101010101\"]",
            "",
        );
        assert!(matches!(
            PolicyDoc::parse(&text, "p"),
            Err(PolicyError::Invalid { .. })
        ));
    }

    #[test]
    fn bad_measurement_is_syntax_error() {
        let text = GOOD.replace("accepted = [\"01", "accepted = [\"zz");
        assert!(matches!(
            PolicyDoc::parse(&text, "p"),
            Err(PolicyError::Syntax { line: 8, .. })
        ));
    }
}
