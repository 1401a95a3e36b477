//! A node's configuration file (`parley node --config node.toml`).
//!
//! ```toml
//! party = "hospital-a"
//! manifest = "manifest.toml"                 # relative paths are relative to this file
//! policy = "policy.toml"                     # must hash to this party's policy_hash
//! data_dir = "."                             # the store (parley.db), keys, admin socket
//! # listen = "127.0.0.1:7101"                # default: this party's manifest address
//!
//! [keys]                                     # see parley-keys: local keyring or Vault/OpenBao
//! backend = "local"
//!
//! [attestation]
//! mode = "simulated"
//! sim_endorsement = "sim-endorsement.json"   # the simulation root's certificate of our key
//! # mode = "snp" | "tdx" in a confidential VM, with:
//! # tsm_root = "/sys/kernel/config/tsm/report" # configfs-tsm (the default)
//! # collateral = "collateral"                 # `parley collateral fetch` cache for peers' evidence
//! [attestation.simulated]                    # the claims the simulated platform reports
//! debug = false
//! migrate_ma = false
//! tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//!
//! [jobs]
//! auto_approve = ["summary-stats", "analytics"] # job kinds approved without an operator
//! timeout_secs = 120
//! approval_window_secs = 3600                # proposals expire without every approval
//!
//! [[release]]                                # what analytics may release from a dataset
//! dataset = "patients"
//! max_rows = 5000                            # declared size (public): imports above it fail
//! default = "refused"                        # DP kinds not listed below
//! kinds = { count = "dp", quantiles = "dp", correlation = "dp" }
//! min_k = 10                                 # the privacy rule's k
//! # disjoint = true                          # needed when several datasets have views
//! max_rho_per_job = "1"
//! [[release.view]]                           # an exact view (DESIGN §6, the privacy rule)
//! kinds = ["count", "mean", "variance"]
//! column = "systolic_bp"
//! partition = [{ column = "age", edges = [0, 30, 45, 60, 75, 121] }]
//! [budgets]
//! patients = "2"                             # total ρ (zCDP) of the dataset's DP releases
//! ```
//!
//! Datasets live sealed in the node's store (`parley data import`), not in the config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use parley_attestation::sim::SimTcb;
use serde::{Deserialize, Serialize};

use crate::util::resolve;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub party: String,
    pub manifest: PathBuf,
    pub policy: PathBuf,
    #[serde(default = "dot")]
    pub data_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub keys: parley_keys::config::KeysConfig,
    pub attestation: AttestationSection,
    #[serde(default)]
    pub jobs: JobsSection,
    /// Per dataset: which analytics may be released exactly, which only under DP, which
    /// never (`[[release]]`). Analytics jobs over a dataset without one are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<parley_enclave::analytics::ReleasePolicy>,
    /// Per dataset: the total zCDP budget ρ its DP releases may spend (`[budgets]
    /// patients = "2"`). DP jobs over a dataset without one are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, parley_enclave::decimal::Decimal>,
    /// Deliberate protocol deviations for demonstrations (`sim-cheat` builds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheat: Option<String>,
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSection {
    pub mode: AttestationMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_endorsement: Option<PathBuf>,
    #[serde(default)]
    pub simulated: SimulatedPlatform,
    /// snp / tdx: the configfs-tsm report directory (default `/sys/kernel/config/tsm/report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsm_root: Option<PathBuf>,
    /// snp: the VMPL to request evidence at (default: the driver's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmpl: Option<u32>,
    /// A collateral cache (`parley collateral fetch`) used to appraise peers' hardware
    /// evidence: TDX TCB info, QE identity and CRLs; SNP CRLs and VCEKs. Re-read whenever
    /// the node builds a certificate (start, renewal, new manifest epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationMode {
    /// Software-signed evidence: no hardware protection (development and demos).
    Simulated,
    /// An AMD SEV-SNP guest.
    Snp,
    /// An Intel TDX guest.
    Tdx,
}

/// What a simulated platform claims about itself (settable so tests can present a debug
/// or out-of-date node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedPlatform {
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub migrate_ma: bool,
    #[serde(default = "default_tcb")]
    pub tcb: SimTcb,
}

impl Default for SimulatedPlatform {
    fn default() -> Self {
        SimulatedPlatform {
            debug: false,
            migrate_ma: false,
            tcb: default_tcb(),
        }
    }
}

/// A Milan-like TCB of 2024, so policies can demand minimums.
pub fn default_tcb() -> SimTcb {
    SimTcb {
        bootloader: 4,
        tee: 0,
        snp: 22,
        microcode: 213,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    #[serde(default)]
    pub auto_approve: Vec<String>,
    /// A running job that has not finished after this long is aborted.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Proposals this node makes expire after this long without every approval.
    #[serde(default = "default_approval_window")]
    pub approval_window_secs: u64,
    /// A peer that sends no frame for this long is dropped and its jobs abort. Sessions
    /// ping when idle (every third of this, at most 10 s) whether or not the node is busy
    /// with a long MPC step, so only a peer whose process or network is gone falls silent.
    #[serde(default = "default_peer_silent")]
    pub peer_silent_secs: u64,
    /// The fixed time slot in which an exact job's keep bits are computed (the privacy
    /// rule): the job's first message leaves no earlier, whatever the data, so the time the
    /// node takes does not tell peers what it suppressed. A step that overruns rounds up to
    /// a whole number of slots.
    #[serde(default = "default_rule_slot")]
    pub rule_slot_ms: u64,
}

fn default_rule_slot() -> u64 {
    250
}

fn default_peer_silent() -> u64 {
    30
}

fn default_approval_window() -> u64 {
    3600
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            auto_approve: Vec::new(),
            timeout_secs: default_timeout(),
            approval_window_secs: default_approval_window(),
            peer_silent_secs: default_peer_silent(),
            rule_slot_ms: default_rule_slot(),
        }
    }
}

fn default_timeout() -> u64 {
    120
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read node config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("node config {path}, line {line}, column {column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("node config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl NodeConfig {
    /// Load a config and make its relative paths relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| crate::util::line_col(&text, s.start))
                .unwrap_or((0, 0));
            ConfigError::Syntax {
                path: name.clone(),
                line,
                column,
                // Never the offending line itself: a secret typed into the config would
                // end up in a log.
                message: e.message().to_owned(),
            }
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        cfg.make_absolute(&base);
        let invalid = |message: String| ConfigError::Invalid {
            path: name.clone(),
            message,
        };
        if cfg.attestation.mode == AttestationMode::Simulated
            && cfg.attestation.sim_endorsement.is_none()
        {
            return Err(invalid(
                "[attestation] mode = \"simulated\" needs sim_endorsement".into(),
            ));
        }
        cfg.keys
            .validate()
            .map_err(|e| invalid(format!("[keys]: {e}")))?;
        for (i, r) in cfg.release.iter().enumerate() {
            r.validate().map_err(&invalid)?;
            if cfg.release[..i].iter().any(|q| q.dataset == r.dataset) {
                return Err(invalid(format!(
                    "two [[release]] policies for dataset {:?}: keep one",
                    r.dataset
                )));
            }
        }
        let viewed: Vec<&parley_enclave::analytics::ReleasePolicy> =
            cfg.release.iter().filter(|r| !r.views.is_empty()).collect();
        if viewed.len() > 1
            && let Some(r) = viewed.iter().find(|r| !r.disjoint)
        {
            return Err(invalid(format!(
                "[[release]] {:?} declares exact views beside another dataset's: the privacy rule keeps one ledger per dataset, so each dataset with views must set disjoint = true (its individuals appear in no other dataset of this party), or keep exact views on one dataset",
                r.dataset
            )));
        }
        if cfg.jobs.timeout_secs == 0 {
            return Err(invalid("[jobs] timeout_secs must be at least 1".into()));
        }
        Ok(cfg)
    }

    fn make_absolute(&mut self, base: &Path) {
        self.manifest = resolve(base, &self.manifest);
        self.policy = resolve(base, &self.policy);
        self.data_dir = resolve(base, &self.data_dir);
        let dd = self.data_dir.clone();
        if let Some(p) = &mut self.attestation.sim_endorsement {
            *p = resolve(&dd, p);
        }
        if let Some(p) = &mut self.attestation.collateral {
            *p = resolve(&dd, p);
        }
    }

    /// The node's store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("parley.db")
    }

    /// The operator-only admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }

    /// Where the node writes its final status (frame counters, verdicts) at shutdown.
    pub fn status_file(&self) -> PathBuf {
        self.data_dir.join("status.json")
    }
}
