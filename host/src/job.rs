//! Jobs: what a proposal says, the states a job goes through, and what it delivers.
//!
//! The spine's one job kind, `summary-stats`, computes count, sum, mean and sample variance
//! of integer columns across all parties: each node computes exact local aggregates
//! (count, Σx, Σx²) inside its TEE, secret-shares them, and the parties open only the sums.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::data::Moments;

/// A job's identity: 16 random bytes, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub [u8; 16]);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl std::str::FromStr for JobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let v = hex::decode(s).map_err(|_| format!("job id {s:?} is not hex"))?;
        v.try_into()
            .map(JobId)
            .map_err(|_| format!("job id {s:?} is not 32 hex digits"))
    }
}

/// The analytics a job can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Count, sum, mean and sample variance of each column.
    SummaryStats,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::SummaryStats => "summary-stats",
        }
    }
}

/// A proposal, identical at every party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: JobId,
    pub kind: JobKind,
    /// The dataset name every party computes over.
    pub dataset: String,
    pub columns: Vec<String>,
    /// The party that proposed the job.
    pub proposer: String,
    pub manifest_hash: [u8; 32],
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum JobState {
    Proposed,
    /// Every party approved; peers are being re-attested before the protocol starts.
    Attesting,
    Running,
    Done,
    Aborted(String),
    Refused(String),
}

impl JobState {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Aborted(_) | JobState::Refused(_)
        )
    }
}

/// One column's joint statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub column: String,
    /// Exact integers as decimal strings (they may exceed 2^53).
    pub count: String,
    pub sum: String,
    pub sum_of_squares: String,
    /// Exact rationals rounded once to the nearest f64.
    pub mean: Option<f64>,
    /// Sample variance (n − 1 denominator).
    pub variance: Option<f64>,
}

impl ColumnStats {
    pub fn from_moments(column: &str, m: &Moments) -> Self {
        ColumnStats {
            column: column.to_owned(),
            count: m.count.to_string(),
            sum: m.sum.to_string(),
            sum_of_squares: m.sum_sq.to_string(),
            mean: m.mean(),
            variance: m.variance(),
        }
    }
}

/// What a node can say about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub spec: JobSpec,
    pub state: JobState,
    pub approvals: Vec<String>,
    pub result: Option<Vec<ColumnStats>>,
    /// Milliseconds from start of computation to result, when done.
    pub compute_ms: Option<u64>,
}
