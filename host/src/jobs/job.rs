//! Jobs: what a proposal says, the states a job goes through, and what it delivers.
//!
//! Job kinds:
//! - `summary-stats`: count, sum, mean and sample variance of integer columns across all
//!   parties. Each node computes exact local aggregates (count, Σx, Σx²) inside its TEE and
//!   secret-shares them; the MPC sums them and computes the variance numerator
//!   n·Σx² − (Σx)² on shares; only n, Σx and that numerator are opened.
//! - `bench-mul`: the mul-1M workload of `../shared/BASELINES.md` on synthetic inputs
//!   generated inside the nodes (for `parley bench mpc`).

use std::fmt;

use std::collections::BTreeMap;

use parley_attestation::hexbytes::HexBytes;
use serde::{Deserialize, Serialize};

use crate::store::data::Moments;

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
    /// Element-wise products of two parties' synthetic vectors (benchmarks only).
    BenchMul,
    /// A job of the enclave's analytics catalogue (`JobSpec::analytics`), under each
    /// party's release policy and privacy budget.
    Analytics,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::SummaryStats => "summary-stats",
            JobKind::BenchMul => "bench-mul",
            JobKind::Analytics => "analytics",
        }
    }
}

/// The security model every party approves as part of the job (never a silent fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityModel {
    /// Chida et al.: private and correct with abort against t < n/2 malicious parties.
    #[default]
    Malicious,
    /// Correct only against parties that follow the protocol; a named policy choice.
    SemiHonest,
}

/// The analytics spec names the same two models.
impl From<parley_enclave::analytics::spec::SecurityModel> for SecurityModel {
    fn from(m: parley_enclave::analytics::spec::SecurityModel) -> Self {
        match m {
            parley_enclave::analytics::spec::SecurityModel::Malicious => SecurityModel::Malicious,
            parley_enclave::analytics::spec::SecurityModel::SemiHonest => SecurityModel::SemiHonest,
        }
    }
}

impl SecurityModel {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityModel::Malicious => "malicious",
            SecurityModel::SemiHonest => "semi-honest",
        }
    }
}

/// The `bench-mul` workloads (BASELINES "mul-1M"), each with a baseline twin that does the
/// same job without the multiplications, so the marginal cost can be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchWorkload {
    /// One vectorised multiplication of `size` elements, then Σ opened.
    T1,
    T1Baseline,
    /// Dependent multiplications in chunks of 1000: acc ← acc · b[chunk].
    T2,
    T2Baseline,
    /// Comparisons (issue 9): `ltz` of `size` 32-bit values, Σ opened
    /// (`parley_enclave::gadgets::bench`).
    Compare,
    /// Probabilistic truncations of `size` 63-bit values by 16 bits, Σ opened.
    Trunc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BenchSpec {
    pub workload: BenchWorkload,
    pub size: u64,
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
    #[serde(default)]
    pub security: SecurityModel,
    /// Parameters of a `bench-mul` job.
    #[serde(default)]
    pub bench: Option<BenchSpec>,
    /// The parties that receive the result (empty: every party). The others never receive
    /// the output's opening shares.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Fresh per proposal: a re-run is a new job with new approvals.
    #[serde(default)]
    pub nonce: [u8; 16],
    /// Unix seconds after which no approval counts and the job cannot start.
    #[serde(default)]
    pub expires: i64,
    /// Each party's version of `dataset` when proposed: an approval is for these rows only.
    #[serde(default)]
    pub dataset_versions: BTreeMap<String, u64>,
    /// An `analytics` job's spec (kind, bounds, privacy, recipients): part of the hash.
    #[serde(default, with = "analytics_wire")]
    pub analytics: Option<Box<parley_enclave::analytics::AnalyticsSpec>>,
}

/// The analytics spec uses internally tagged enums, which `postcard` (the peer wire format)
/// cannot read: on binary formats it travels as its JSON text; JSON (admin socket, store,
/// the canonical hash) carries it as a plain object.
mod analytics_wire {
    use parley_enclave::analytics::AnalyticsSpec;
    use serde::{
        Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _,
    };

    pub fn serialize<S: Serializer>(
        v: &Option<Box<AnalyticsSpec>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return v.serialize(s);
        }
        let text = v
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(S::Error::custom)?;
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Box<AnalyticsSpec>>, D::Error> {
        if d.is_human_readable() {
            return Option::<Box<AnalyticsSpec>>::deserialize(d);
        }
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
}

impl JobSpec {
    /// SHA-256 of the canonical (RFC 8785) encoding: what every approval signs.
    pub fn hash(&self) -> [u8; 32] {
        parley_attestation::canonical::jcs_sha256(self).unwrap_or_default()
    }
}

/// One party's decision on a job, signed by its identity key (domain `job-approval`).
/// Single-use: it names the job id and the hash, which covers the job's nonce and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobApproval {
    pub job: JobId,
    pub job_hash: HexBytes<32>,
    pub party: String,
    pub approved: bool,
    pub reason: Option<String>,
    /// Unix seconds.
    pub time: i64,
}

impl JobApproval {
    pub fn to_be_signed(&self) -> Vec<u8> {
        parley_attestation::canonical::to_be_signed(
            parley_attestation::canonical::Domain::JobApproval,
            self,
        )
        .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedApproval {
    pub approval: JobApproval,
    pub signature: HexBytes<64>,
}

impl SignedApproval {
    pub fn verify(&self, key: &parley_attestation::hexbytes::Ed25519Key) -> bool {
        parley_attestation::canonical::verify_ed25519(
            &key.0,
            parley_attestation::canonical::Domain::JobApproval,
            &self.approval,
            &self.signature.0,
        )
    }
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

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobState::Proposed => f.write_str("proposed"),
            JobState::Attesting => f.write_str("attesting"),
            JobState::Running => f.write_str("running"),
            JobState::Done => f.write_str("done"),
            JobState::Aborted(r) => write!(f, "aborted: {r}"),
            JobState::Refused(r) => write!(f, "refused: {r}"),
        }
    }
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

/// What a finished job delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "values")]
pub enum JobOutput {
    SummaryStats(Vec<ColumnStats>),
    /// The opened checksum Σc (decimal).
    BenchMul(String),
    /// The released estimates with their privacy parameters
    /// (`parley_enclave::analytics::AnalyticsResult` as JSON).
    Analytics(serde_json::Value),
    /// An exact release some party's keep bit suppressed (the privacy rule): nothing else.
    Suppressed(String),
}

/// What a suppressed release says, and nothing more.
pub const SUPPRESSED: &str = "suppressed by the rule";

impl JobOutput {
    pub fn summary(&self) -> Option<&Vec<ColumnStats>> {
        match self {
            JobOutput::SummaryStats(c) => Some(c),
            JobOutput::BenchMul(_) | JobOutput::Analytics(_) | JobOutput::Suppressed(_) => None,
        }
    }
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
    pub result: Option<JobOutput>,
    /// Milliseconds from start of computation (key set-up included) to result, when done.
    pub compute_ms: Option<u64>,
    /// The same in microseconds (benchmarks).
    #[serde(default)]
    pub compute_us: Option<u64>,
    /// Every party's input commitment (SHA-256, hex), by manifest order, when done.
    #[serde(default)]
    pub commitments: Vec<String>,
    /// The job hash every approval signs (hex).
    #[serde(default)]
    pub hash: String,
    /// Waiting for this node's operator (`parley job approve|refuse`).
    #[serde(default)]
    pub awaiting_operator: bool,
    /// Each peer's gate-2 verdict when the job started (status and reason codes).
    #[serde(default)]
    pub verdicts: BTreeMap<String, String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use parley_attestation::hexbytes::Ed25519Key;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    pub(crate) fn spec() -> JobSpec {
        JobSpec {
            id: JobId([1; 16]),
            kind: JobKind::SummaryStats,
            dataset: "patients".into(),
            columns: vec!["systolic_bp".into()],
            proposer: "hospital-a".into(),
            manifest_hash: [2; 32],
            created: 1_000,
            security: SecurityModel::Malicious,
            bench: None,
            recipients: Vec::new(),
            nonce: [3; 16],
            expires: 4_600,
            dataset_versions: [("hospital-a".to_owned(), 1), ("hospital-b".to_owned(), 2)]
                .into_iter()
                .collect(),
            analytics: None,
        }
    }

    fn keypair() -> (Ed25519KeyPair, Ed25519Key) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk = Ed25519Key(kp.public_key().as_ref().try_into().unwrap());
        (kp, pk)
    }

    fn approve(kp: &Ed25519KeyPair, s: &JobSpec) -> SignedApproval {
        let approval = JobApproval {
            job: s.id,
            job_hash: HexBytes(s.hash()),
            party: "hospital-b".into(),
            approved: true,
            reason: None,
            time: 1_001,
        };
        let sig = kp.sign(&approval.to_be_signed());
        SignedApproval {
            approval,
            signature: HexBytes(sig.as_ref().try_into().unwrap()),
        }
    }

    #[test]
    fn the_hash_covers_nonce_expiry_versions_and_recipients() {
        let base = spec().hash();
        assert_eq!(base, spec().hash(), "deterministic");
        let changes: [fn(&mut JobSpec); 6] = [
            |s| s.nonce[0] ^= 1,
            |s| s.expires += 1,
            |s| {
                s.dataset_versions.insert("hospital-b".into(), 3);
            },
            |s| s.recipients.push("hospital-a".into()),
            |s| s.security = SecurityModel::SemiHonest,
            |s| s.columns.push("cholesterol".into()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut s = spec();
            change(&mut s);
            assert_ne!(s.hash(), base, "change {i} left the hash unchanged");
        }
    }

    #[test]
    fn an_approval_verifies_only_under_its_key_and_for_its_job() {
        let (kp, pk) = keypair();
        let (_, other) = keypair();
        let a = approve(&kp, &spec());
        assert!(a.verify(&pk));
        assert!(!a.verify(&other), "another party's key");
        // Re-pointed at another job (or another version of it): the signature breaks.
        let mut moved = a.clone();
        moved.approval.job = JobId([9; 16]);
        assert!(!moved.verify(&pk));
        let mut rehashed = a.clone();
        let mut s = spec();
        s.nonce = [4; 16];
        rehashed.approval.job_hash = HexBytes(s.hash());
        assert!(!rehashed.verify(&pk));
        let mut flipped = a;
        flipped.approval.approved = false;
        assert!(!flipped.verify(&pk));
    }
}
