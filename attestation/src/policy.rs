//! The appraisal policy: which genuine evidence this node accepts from its peers.
//!
//! A policy is a TOML file, format 2 (layout below and in `ARCHITECTURE.md`). Unknown keys
//! and malformed values are errors that carry the line and column; so are rules that do
//! not make sense together (an `image_id` without a pinned key digest, a TCB status that
//! cannot be opted in to). The policy's identity is the SHA-256 of the file's bytes, which
//! the federation manifest pins per party, so every party knows the exact rules each other
//! party applies.
//!
//! Each TEE type has its own section; evidence of a type whose section is absent is
//! refused (`tee-type-not-accepted`), so a policy admits only what it names.
//!
//! ```toml
//! format = 2
//! name = "prod-2026-11"                # letters, digits, '.', '_', '-'
//! tolerate = []                        # relaxations by code: crl-missing, crl-expired,
//!                                      # collateral-expired, non-default-root, trailing-data
//!
//! [session]
//! max_age_secs = 3600                  # re-attest sessions older than this
//! max_clock_skew_secs = 120            # refuse peers whose clock is further off
//!
//! [federation]
//! min_distinct_tee_types = 1           # platform diversity: 2 = not all on one TEE type
//!
//! [snp]
//! measurements = ["<96 hex digits>"]  # accepted MEASUREMENT values
//! accepted_roots = []                  # SHA-256 of accepted ARKs; empty: the pinned AMD ARKs
//! [snp.guest]
//! allow_debug = false
//! allow_migration_agent = false
//! smt = "allowed"                      # or "disabled": PLATFORM_INFO.SMT_EN must be clear
//! allowed_vmpls = [0]
//! min_guest_svn = 0
//! # host_data = "<64 hex>"  id_key_digest = "<96 hex>"  author_key_digest = "<96 hex>"
//! # family_id = "<32 hex>"  image_id = "<32 hex>"  (only with a pinned key digest)
//! [snp.tcb]
//! min_reported = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }   # fmc on Turin
//! min_committed = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//! min_launch = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//!
//! [tdx]
//! accepted_roots = []                  # SHA-256 of accepted roots; empty: Intel SGX Root CA
//! tcb_statuses = []                    # weaker statuses accepted, by Intel's name
//! min_tcb_evaluation_data_number = 17
//! mr_seam = ["<96 hex>"]               # optional; empty: any module the TCB Info accepts
//! mr_signer_seam = ["<96 hex>"]        # optional
//! xfam = ["<16 hex>"]                  # optional
//! allow_debug = false
//! allow_migratable = false
//! require_sept_ve_disable = true
//! # mr_config_id = "<96 hex>"
//! [[tdx.measurements]]                 # one accepted set; RTMRs optional within a set
//! mr_td = "<96 hex>"
//! rtmr0 = "<96 hex>"
//!
//! [sim]
//! allow_simulated = true               # refused unless set: no hardware protection
//! roots = ["ed25519:…"]                # the federation's simulation root(s)
//! measurements = ["<96 hex>"]          # SHA-384 of the parley binary
//! allow_debug = false
//! allow_migration_agent = false
//! allowed_vmpls = [0]
//! min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hexbytes::{Ed25519Key, HexBytes};
use crate::sim::SimTcb;
use crate::tdx::TcbStatus;
use crate::verdict::codes;

/// The policy format this build reads.
pub const POLICY_FORMAT: u32 = 2;

/// Reason codes a policy may relax by naming them in `tolerate`: the reason is then at
/// most a warning, and attested sessions accept it. Nothing else can be relaxed.
pub const TOLERABLE: [&str; 5] = [
    codes::CRL_MISSING,
    codes::CRL_EXPIRED,
    codes::COLLATERAL_EXPIRED,
    codes::NON_DEFAULT_ROOT,
    codes::TRAILING_DATA,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub format: u32,
    pub name: String,
    /// Reason codes (from [`TOLERABLE`]) this policy relaxes to warnings sessions accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerate: Vec<String>,
    #[serde(default)]
    pub session: SessionRules,
    #[serde(default)]
    pub federation: FederationRules,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimRules>,
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

fn vmpl0() -> Vec<u32> {
    vec![0]
}

fn yes() -> bool {
    true
}

/// SEV-SNP rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpRules {
    /// Accepted launch measurements (`MEASUREMENT`).
    pub measurements: Vec<HexBytes<48>>,
    /// SHA-256 (DER) of accepted ARKs; empty means the pinned AMD ARKs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_roots: Vec<HexBytes<32>>,
    #[serde(default)]
    pub guest: SnpGuestRules,
    #[serde(default)]
    pub tcb: SnpTcbRules,
}

/// Whether SMT may be enabled on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtRule {
    /// Whatever the host runs.
    #[default]
    Allowed,
    /// `PLATFORM_INFO.SMT_EN` must be clear: no sibling thread shares the core.
    Disabled,
}

/// SNP guest policy and identity rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpGuestRules {
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(default)]
    pub allow_migration_agent: bool,
    #[serde(default)]
    pub smt: SmtRule,
    #[serde(default = "vmpl0")]
    pub allowed_vmpls: Vec<u32>,
    #[serde(default)]
    pub min_guest_svn: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<HexBytes<32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key_digest: Option<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_key_digest: Option<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<HexBytes<16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<HexBytes<16>>,
}

impl Default for SnpGuestRules {
    fn default() -> Self {
        SnpGuestRules {
            allow_debug: false,
            allow_migration_agent: false,
            smt: SmtRule::Allowed,
            allowed_vmpls: vmpl0(),
            min_guest_svn: 0,
            host_data: None,
            id_key_digest: None,
            author_key_digest: None,
            family_id: None,
            image_id: None,
        }
    }
}

/// Minimum SNP TCB, per component (security version numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcbMinimum {
    /// Turin and later only; ignored for Milan and Genoa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    #[serde(default)]
    pub bootloader: u8,
    #[serde(default)]
    pub tee: u8,
    #[serde(default)]
    pub snp: u8,
    #[serde(default)]
    pub microcode: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpTcbRules {
    #[serde(default)]
    pub min_reported: TcbMinimum,
    #[serde(default)]
    pub min_committed: TcbMinimum,
    #[serde(default)]
    pub min_launch: TcbMinimum,
}

/// Intel TDX rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxRules {
    /// Accepted measurement sets (MRTD with optional RTMRs).
    pub measurements: Vec<TdxMeasurement>,
    /// SHA-256 (DER) of accepted roots; empty means the pinned Intel SGX Root CA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_roots: Vec<HexBytes<32>>,
    /// TCB statuses weaker than UpToDate that this policy accepts, by Intel's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcb_statuses: Vec<String>,
    #[serde(default)]
    pub min_tcb_evaluation_data_number: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mr_seam: Vec<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mr_signer_seam: Vec<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xfam: Vec<HexBytes<8>>,
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(default)]
    pub allow_migratable: bool,
    #[serde(default = "yes")]
    pub require_sept_ve_disable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<HexBytes<48>>,
}

/// One accepted TDX measurement set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxMeasurement {
    pub mr_td: HexBytes<48>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr0: Option<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr1: Option<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr2: Option<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr3: Option<HexBytes<48>>,
}

impl TdxMeasurement {
    pub fn rtmrs(&self) -> [Option<&HexBytes<48>>; 4] {
        [
            self.rtmr0.as_ref(),
            self.rtmr1.as_ref(),
            self.rtmr2.as_ref(),
            self.rtmr3.as_ref(),
        ]
    }
}

impl TdxRules {
    /// The weaker TCB statuses this policy accepts.
    pub fn accepted_statuses(&self) -> Vec<TcbStatus> {
        self.tcb_statuses
            .iter()
            .filter_map(|s| weaker_status(s))
            .collect()
    }
}

/// The TCB statuses a policy may opt in to, by Intel's name. `UpToDate` is always
/// accepted; `Revoked` never is.
pub const OPT_IN_STATUSES: [TcbStatus; 7] = [
    TcbStatus::SwHardeningNeeded,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::ConfigurationAndSwHardeningNeeded,
    TcbStatus::OutOfDate,
    TcbStatus::OutOfDateConfigurationNeeded,
    TcbStatus::TdRelaunchAdvised,
    TcbStatus::TdRelaunchAdvisedConfigurationNeeded,
];

fn weaker_status(name: &str) -> Option<TcbStatus> {
    OPT_IN_STATUSES.into_iter().find(|s| s.as_str() == name)
}

/// Simulated evidence rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRules {
    /// Simulated evidence has no hardware protection: refused unless this is set.
    #[serde(default)]
    pub allow_simulated: bool,
    /// The federation's simulation root(s).
    #[serde(default)]
    pub roots: Vec<Ed25519Key>,
    /// Accepted measurements (SHA-384 of the `parley` executable).
    pub measurements: Vec<HexBytes<48>>,
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(default)]
    pub allow_migration_agent: bool,
    #[serde(default = "vmpl0")]
    pub allowed_vmpls: Vec<u32>,
    #[serde(default)]
    pub min_tcb: SimTcb,
}

/// A policy together with the hash that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDoc {
    pub policy: Policy,
    /// SHA-256 of the file's bytes.
    pub hash: [u8; 32],
}

/// Why a policy file was refused. Both variants carry the position when it is known
/// (line 0 otherwise).
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
    #[error("policy {source_name}{}: {message}", position(*line, *column))]
    Invalid {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
}

fn position(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(", line {line}, column {column}")
    }
}

impl Policy {
    /// Whether simulated evidence may be admitted at all.
    pub fn allow_simulated(&self) -> bool {
        self.sim.as_ref().is_some_and(|s| s.allow_simulated)
    }

    /// The pinned simulation roots (empty unless `[sim] allow_simulated`).
    pub fn simulation_roots(&self) -> &[Ed25519Key] {
        match &self.sim {
            Some(s) if s.allow_simulated => &s.roots,
            _ => &[],
        }
    }

    /// Serialise as TOML (used to write generated policies; the result parses back).
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string(self).map_err(|e| PolicyError::Invalid {
            source_name: self.name.clone(),
            line: 0,
            column: 0,
            message: format!("cannot serialise: {e}"),
        })
    }
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
        validate(&policy, text, source_name)?;
        Ok(PolicyDoc {
            policy,
            hash: Sha256::digest(text.as_bytes()).into(),
        })
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// Rules that serde cannot express; each error points at the offending key.
fn validate(p: &Policy, text: &str, source_name: &str) -> Result<(), PolicyError> {
    let invalid = |path: &[&str], message: String| {
        let (line, column) = locate(text, path).unwrap_or((0, 0));
        PolicyError::Invalid {
            source_name: source_name.to_owned(),
            line,
            column,
            message,
        }
    };
    if p.format != POLICY_FORMAT {
        return Err(invalid(
            &["format"],
            format!(
                "format {} is not supported; this build reads format {POLICY_FORMAT} (per-TEE sections [snp], [tdx], [sim]; see ARCHITECTURE.md)",
                p.format
            ),
        ));
    }
    if p.name.is_empty()
        || p.name.len() > 64
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            &["name"],
            format!(
                "name {:?} must be 1 to 64 letters, digits, '.', '_' or '-' (it becomes part of the verdict's policy id)",
                p.name
            ),
        ));
    }
    for (i, code) in p.tolerate.iter().enumerate() {
        if !TOLERABLE.contains(&code.as_str()) {
            return Err(invalid(
                &["tolerate", &i.to_string()],
                format!(
                    "{code:?} cannot be tolerated; only {} can",
                    TOLERABLE.join(", ")
                ),
            ));
        }
    }
    if p.session.max_age_secs == 0 {
        return Err(invalid(
            &["session", "max_age_secs"],
            "max_age_secs must be at least 1".into(),
        ));
    }
    if !(1..=3).contains(&p.federation.min_distinct_tee_types) {
        return Err(invalid(
            &["federation", "min_distinct_tee_types"],
            "min_distinct_tee_types must be 1, 2 or 3 (there are three TEE types: snp, tdx, sim)"
                .into(),
        ));
    }
    if p.snp.is_none() && p.tdx.is_none() && p.sim.is_none() {
        return Err(invalid(
            &[],
            "the policy has no [snp], [tdx] or [sim] section: it would admit no node".into(),
        ));
    }
    if let Some(s) = &p.snp {
        if s.measurements.is_empty() {
            return Err(invalid(
                &["snp", "measurements"],
                "[snp] measurements is empty: the policy would admit no SEV-SNP node".into(),
            ));
        }
        let g = &s.guest;
        if g.allowed_vmpls.is_empty() || g.allowed_vmpls.iter().any(|v| *v > 3) {
            return Err(invalid(
                &["snp", "guest", "allowed_vmpls"],
                "allowed_vmpls must list VMPLs between 0 and 3".into(),
            ));
        }
        let key_pinned = g.id_key_digest.is_some() || g.author_key_digest.is_some();
        for (key, set) in [
            ("family_id", g.family_id.is_some()),
            ("image_id", g.image_id.is_some()),
        ] {
            if set && !key_pinned {
                return Err(invalid(
                    &["snp", "guest", key],
                    format!(
                        "{key} is chosen by whoever launches the VM unless an ID block signed by a pinned key vouches for it: pin id_key_digest or author_key_digest too"
                    ),
                ));
            }
        }
    }
    if let Some(t) = &p.tdx {
        if t.measurements.is_empty() {
            return Err(invalid(
                &["tdx", "measurements"],
                "[tdx] measurements is empty: add a [[tdx.measurements]] table with mr_td".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, name) in t.tcb_statuses.iter().enumerate() {
            let path = ["tdx", "tcb_statuses", &i.to_string()];
            if name == "UpToDate" {
                return Err(invalid(
                    &path,
                    "UpToDate is always accepted; list only weaker statuses".into(),
                ));
            }
            if name == "Revoked" {
                return Err(invalid(
                    &path,
                    "Revoked can never be accepted: the platform's keys are revoked".into(),
                ));
            }
            if weaker_status(name).is_none() {
                let names: Vec<&str> = OPT_IN_STATUSES.iter().map(|s| s.as_str()).collect();
                return Err(invalid(
                    &path,
                    format!(
                        "{name:?} is not a TCB status; use one of {}",
                        names.join(", ")
                    ),
                ));
            }
            if !seen.insert(name) {
                return Err(invalid(&path, format!("{name} is listed twice")));
            }
        }
    }
    if let Some(s) = &p.sim {
        if s.allow_simulated && s.roots.is_empty() {
            return Err(invalid(
                &["sim", "allow_simulated"],
                "allow_simulated = true needs roots: pin the federation's simulation root".into(),
            ));
        }
        if s.measurements.is_empty() {
            return Err(invalid(
                &["sim", "measurements"],
                "[sim] measurements is empty: the policy would admit no simulated node".into(),
            ));
        }
        if s.allowed_vmpls.is_empty() || s.allowed_vmpls.iter().any(|v| *v > 3) {
            return Err(invalid(
                &["sim", "allowed_vmpls"],
                "allowed_vmpls must list VMPLs between 0 and 3".into(),
            ));
        }
    }
    Ok(())
}

/// Line and column of the key (or array element) at `path`, for error messages.
fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut span = None;
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    for part in path {
        if let Some(v) = value {
            if let (Some(arr), Ok(i)) = (v.as_array(), part.parse::<usize>()) {
                let item = arr.get(i)?;
                span = Some(item.span());
                value = Some(item.get_ref());
                continue;
            }
            table = v.as_table()?;
        }
        let (key, v) = table.iter().find(|(k, _)| k.get_ref() == part)?;
        span = Some(key.span());
        value = Some(v.get_ref());
    }
    span.map(|s| line_col(text, s.start))
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format = 2
name = "t"

[sim]
allow_simulated = true
roots = ["ed25519:0101010101010101010101010101010101010101010101010101010101010101"]
measurements = ["010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101"]
"#;

    fn err(text: &str) -> PolicyError {
        PolicyDoc::parse(text, "p.toml").unwrap_err()
    }

    fn line_of(e: &PolicyError) -> usize {
        match e {
            PolicyError::Syntax { line, .. } | PolicyError::Invalid { line, .. } => *line,
        }
    }

    #[test]
    fn parses_and_hashes() {
        let d = PolicyDoc::parse(GOOD, "good.toml").unwrap();
        assert!(d.policy.allow_simulated());
        assert!(!d.policy.sim.as_ref().unwrap().allow_debug);
        assert_eq!(d.hash, <[u8; 32]>::from(Sha256::digest(GOOD.as_bytes())));
        // What we write reads back identically.
        let again = PolicyDoc::parse(&d.policy.to_toml().unwrap(), "again").unwrap();
        assert_eq!(again.policy, d.policy);
    }

    #[test]
    fn unknown_key_names_line() {
        let text = GOOD.replace("name = \"t\"", "name = \"t\"\nallow_everything = true");
        let e = err(&text);
        assert!(matches!(e, PolicyError::Syntax { line: 4, .. }), "{e}");
        assert!(e.to_string().contains("allow_everything"), "{e}");
    }

    #[test]
    fn simulated_without_root_is_invalid_at_its_line() {
        let text = GOOD.replace(
            "roots = [\"ed25519:0101010101010101010101010101010101010101010101010101010101010101\"]",
            "",
        );
        let e = err(&text);
        assert!(matches!(e, PolicyError::Invalid { line: 6, .. }), "{e}");
    }

    #[test]
    fn bad_measurement_is_syntax_error() {
        let text = GOOD.replace("measurements = [\"01", "measurements = [\"zz");
        assert!(matches!(err(&text), PolicyError::Syntax { line: 8, .. }));
    }

    #[test]
    fn old_format_and_bad_names_are_refused() {
        let e = err(&GOOD.replace("format = 2", "format = 1"));
        assert_eq!(line_of(&e), 2, "{e}");
        assert!(e.to_string().contains("format 1 is not supported"), "{e}");
        let e = err(&GOOD.replace("name = \"t\"", "name = \"a b\""));
        assert_eq!(line_of(&e), 3, "{e}");
    }

    #[test]
    fn only_listed_codes_can_be_tolerated() {
        let ok = GOOD.replace("name = \"t\"", "name = \"t\"\ntolerate = [\"crl-missing\"]");
        PolicyDoc::parse(&ok, "p").unwrap();
        let bad = GOOD.replace(
            "name = \"t\"",
            "name = \"t\"\ntolerate = [\"crl-missing\", \"bad-signature\"]",
        );
        let e = err(&bad);
        assert_eq!(line_of(&e), 4, "{e}");
        assert!(e.to_string().contains("bad-signature"), "{e}");
    }

    #[test]
    fn tdx_statuses_are_checked_by_name() {
        let m = "01".repeat(48);
        let base = format!(
            "format = 2\nname = \"t\"\n[tdx]\ntcb_statuses = [STATUSES]\n[[tdx.measurements]]\nmr_td = \"{m}\"\n"
        );
        let ok = base.replace("STATUSES", "\"SWHardeningNeeded\", \"OutOfDate\"");
        let d = PolicyDoc::parse(&ok, "p").unwrap();
        assert_eq!(
            d.policy.tdx.unwrap().accepted_statuses(),
            [TcbStatus::SwHardeningNeeded, TcbStatus::OutOfDate]
        );
        for bad in [
            "\"Revoked\"",
            "\"UpToDate\"",
            "\"Fine\"",
            "\"OutOfDate\", \"OutOfDate\"",
        ] {
            let e = err(&base.replace("STATUSES", bad));
            assert_eq!(line_of(&e), 4, "{bad}: {e}");
        }
    }

    #[test]
    fn family_and_image_ids_need_a_pinned_key() {
        let m = "01".repeat(48);
        let base = format!(
            "format = 2\nname = \"t\"\n[snp]\nmeasurements = [\"{m}\"]\n[snp.guest]\nimage_id = \"{}\"\nEXTRA\n",
            "02".repeat(16)
        );
        let e = err(&base.replace("EXTRA", ""));
        assert_eq!(line_of(&e), 6, "{e}");
        assert!(e.to_string().contains("id_key_digest"), "{e}");
        let pinned = base.replace("EXTRA", &format!("id_key_digest = \"{}\"", "03".repeat(48)));
        PolicyDoc::parse(&pinned, "p").unwrap();
    }

    #[test]
    fn a_policy_must_admit_something() {
        let e = err("format = 2\nname = \"t\"\n");
        assert!(e.to_string().contains("no [snp], [tdx] or [sim]"), "{e}");
        let e = err("format = 2\nname = \"t\"\n[snp]\nmeasurements = []\n");
        assert_eq!(line_of(&e), 4, "{e}");
    }
}
