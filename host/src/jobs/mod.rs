//! The jobs: from a proposal to a result.
//!
//! - [`engine`] owns every job's state — consent, re-attestation before a job, budgets,
//!   timeouts, aborts — and persists each transition with its audit entry. It never
//!   computes.
//! - [`actor`]: each running job is an actor on its own thread holding the job's sans-IO
//!   protocol; it sends its own protocol frames and reports once, when it ends.
//! - [`board`]: what the engine publishes for readers (job views, peers), so the admin
//!   socket answers without waiting on the engine or a job.
//! - [`job`]: job specs, the hash every party signs, approvals, states and views.
//! - [`analytics`]: analytics jobs under the node's release policy and privacy budget.
//! - [`programs`]: the MPC programs of the built-in job kinds and their decoding.

pub mod actor;
pub mod analytics;
pub mod board;
pub mod engine;
pub mod job;
pub mod programs;

/// A version of a dataset as an operator reads it ("none" when the node holds none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub Option<u64>);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}

/// Why this node refuses a proposal, or why a job cannot start or finish here. Each
/// message names the party, the rule and what to change; a job's refusal or abort reason
/// (what peers and operators see) is this error's text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    #[error("the job is for another federation manifest")]
    OtherManifest,
    #[error("recipient {0:?} is not a party of this federation")]
    UnknownRecipient(String),
    /// The spec itself is malformed for its kind.
    #[error("{0}")]
    Spec(String),
    #[error("{party} has no dataset {dataset:?}")]
    NoDataset { party: String, dataset: String },
    #[error("{party}'s dataset {dataset:?} has no column {column:?}")]
    NoColumn {
        party: String,
        dataset: String,
        column: String,
    },
    #[error(
        "{party}'s dataset {dataset:?} is at version {now} but the job was approved on version {approved}: propose it again"
    )]
    VersionChanged {
        party: String,
        dataset: String,
        now: Version,
        approved: Version,
    },
    #[error(
        "the proposal names version {named} of {party}'s dataset {dataset:?}, which is at version {now}: propose it again"
    )]
    VersionMismatch {
        party: String,
        dataset: String,
        named: Version,
        now: Version,
    },
    #[error(
        "{party} has no release policy for dataset {dataset:?}: add a [[release]] section for it to node.toml"
    )]
    NoReleasePolicy { party: String, dataset: String },
    /// The party's release policy or the analytics plan refuses the job.
    #[error("{party} refuses: {reason}")]
    Policy { party: String, reason: String },
    #[error("{party}'s dataset {dataset:?}: {reason}")]
    Data {
        party: String,
        dataset: String,
        reason: String,
    },
    #[error(
        "{party} has no privacy budget for dataset {dataset:?}: add it under [budgets] in node.toml"
    )]
    NoBudget { party: String, dataset: String },
    /// A refusal peers and the analyst read: it names the job's need, never what is left
    /// (the owner's operator sees that in its own log and `parley status`).
    #[error(
        "{party}'s privacy budget for {dataset:?} does not cover ρ = {need}: lower rho, or ask {party}'s operator"
    )]
    BudgetExhausted {
        party: String,
        dataset: String,
        need: String,
    },
    #[error("the budget ledger: {0}")]
    Ledger(String),
    #[error("cannot record the privacy spend, so nothing is sent: {0}")]
    Spend(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the system random number generator failed")]
    Rng,
    #[error("this node has no noise pool (the system random number generator failed)")]
    NoNoisePool,
    #[error("cannot draw this node's noise: {0}")]
    Noise(String),
    #[error("cannot build the job's program: {0}")]
    Program(String),
    #[error("cannot interpret the result: {0}")]
    Decode(String),
    /// The node is in no state to take the job (switching epochs, no session, expired).
    #[error("{0}")]
    NotNow(String),
}
