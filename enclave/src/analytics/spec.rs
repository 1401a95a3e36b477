//! The job spec an analyst proposes and every party approves: serde types with no floats
//! (decimals are strings, see [`Decimal`]), so the host can embed them in its job spec and
//! hash them canonically.
//!
//! Owns [`AnalyticsSpec`], [`Analysis`] (the catalogue of job kinds and their parameters),
//! [`Bounds`], [`Filter`], [`GroupBy`], [`Privacy`], [`Neighbouring`] and the static checks
//! of [`AnalyticsSpec::validate`]; each refusal is a [`SpecError`] naming the field, the value
//! and the limit.

use crate::decimal::Decimal;
use crate::program::Recipients;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest magnitude of a declared bound: values stay below 2^31 so that every local
/// aggregate fits 128 bits (Σx·y over 2^32 rows < 2^94; count·Σx² < 2^127).
pub const MAX_ABS_BOUND: i64 = 1 << 31;
/// Largest declared maximum row count per party.
pub const MAX_ROWS: u64 = 1 << 32;
/// Most bins (histograms, quantiles, min/max).
pub const MAX_BINS: usize = 1024;
/// Most groups of a group-by.
pub const MAX_GROUPS: usize = 256;
/// Most quantiles per job.
pub const MAX_QUANTILES: usize = 16;
/// Most predictors of a regression.
pub const MAX_PREDICTORS: usize = 4;
/// Most columns of a covariance matrix.
pub const MAX_COVARIANCE_COLUMNS: usize = 8;

/// Inclusive clipping bounds of a column: every value is clipped into `[min, max]` before it
/// is aggregated, so one record changes a statistic by a known amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
}

/// Keep only rows whose `column` equals `equals` (e.g. `diabetic = 1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Column.
    pub column: String,
    /// Value kept.
    pub equals: i64,
}

/// Group rows by bins of `column`: group g holds values in `[edges[g], edges[g+1])`; values
/// outside the edges are clipped into the first or last group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBy {
    /// Column.
    pub column: String,
    /// Strictly increasing bin edges (at least 2).
    pub edges: Vec<i64>,
}

/// What the job computes: the catalogue. Every kind works on horizontally partitioned data
/// (each party holds some rows of the same columns).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Analysis {
    /// Number of rows (per group).
    Count {
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
        /// Per-group counts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_by: Option<GroupBy>,
    },
    /// Σ column (per group).
    Sum {
        /// Column.
        column: String,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
        /// Per-group sums.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_by: Option<GroupBy>,
    },
    /// Mean of a column (per group).
    Mean {
        /// Column.
        column: String,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
        /// Per-group means.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_by: Option<GroupBy>,
    },
    /// Count, mean, sample variance (n − 1) and standard deviation (per group).
    Variance {
        /// Column.
        column: String,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
        /// Per-group results.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_by: Option<GroupBy>,
    },
    /// Σ w·x / Σ w for non-negative weights.
    WeightedMean {
        /// Column.
        column: String,
        /// Weight column (bounds must be ≥ 0).
        weight: String,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// Counts per bin, with k-anonymity suppression of small (noisy) counts.
    Histogram {
        /// Column.
        column: String,
        /// Strictly increasing bin edges; values outside are clipped into the end bins.
        edges: Vec<i64>,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// Quantiles (e.g. "0.5", "0.9") as bins of a summed, noised histogram. DP only.
    Quantiles {
        /// Column.
        column: String,
        /// Bin edges: the answer is a bin.
        edges: Vec<i64>,
        /// Quantiles in (0, 1].
        quantiles: Vec<Decimal>,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// The lowest bin whose noisy cumulative count reaches `min_count`. DP only.
    Min {
        /// Column.
        column: String,
        /// Bin edges.
        edges: Vec<i64>,
        /// Rows needed at or below the answer.
        min_count: u64,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// The highest bin whose noisy count from the top reaches `min_count`. DP only.
    Max {
        /// Column.
        column: String,
        /// Bin edges.
        edges: Vec<i64>,
        /// Rows needed at or above the answer.
        min_count: u64,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// Pearson correlation of two columns.
    Correlation {
        /// First column.
        x: String,
        /// Second column.
        y: String,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// Sample covariance matrix (n − 1) of 2 to 8 columns.
    Covariance {
        /// Columns.
        columns: Vec<String>,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// Least squares y ≈ β0 + Σ βi·xi from exact XᵀX and Xᵀy and one division.
    LinearRegression {
        /// y.
        response: String,
        /// x1 … xm (1 to 4).
        predictors: Vec<String>,
        /// Rows kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
}

/// The names of the kinds (release policies refer to them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindName {
    /// [`Analysis::Count`].
    Count,
    /// [`Analysis::Sum`].
    Sum,
    /// [`Analysis::Mean`].
    Mean,
    /// [`Analysis::Variance`].
    Variance,
    /// [`Analysis::WeightedMean`].
    WeightedMean,
    /// [`Analysis::Histogram`].
    Histogram,
    /// [`Analysis::Quantiles`].
    Quantiles,
    /// [`Analysis::Min`].
    Min,
    /// [`Analysis::Max`].
    Max,
    /// [`Analysis::Correlation`].
    Correlation,
    /// [`Analysis::Covariance`].
    Covariance,
    /// [`Analysis::LinearRegression`].
    LinearRegression,
}

impl KindName {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            KindName::Count => "count",
            KindName::Sum => "sum",
            KindName::Mean => "mean",
            KindName::Variance => "variance",
            KindName::WeightedMean => "weighted-mean",
            KindName::Histogram => "histogram",
            KindName::Quantiles => "quantiles",
            KindName::Min => "min",
            KindName::Max => "max",
            KindName::Correlation => "correlation",
            KindName::Covariance => "covariance",
            KindName::LinearRegression => "linear-regression",
        }
    }

    /// Kinds the privacy rule may release exactly (from a view the owner declares): sums of
    /// a per-individual constant over a cell (1, y or y²). Everything else is DP only.
    pub fn exact_allowed(self) -> bool {
        matches!(
            self,
            KindName::Count
                | KindName::Sum
                | KindName::Mean
                | KindName::Variance
                | KindName::Histogram
        )
    }

    /// Kinds whose exact value is one person's value: never released without noise.
    pub fn exact_is_individual(self) -> bool {
        matches!(self, KindName::Quantiles | KindName::Min | KindName::Max)
    }
}

impl core::fmt::Display for KindName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the result is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Privacy {
    /// No noise (only where the release policy allows it).
    Exact,
    /// Distributed discrete Gaussian noise on every released sufficient statistic, ρ-zCDP
    /// in total; ε is reported for `delta`.
    Dp {
        /// zCDP cost charged to every party's dataset.
        rho: Decimal,
        /// δ for the (ε, δ) shown.
        delta: Decimal,
    },
}

/// The neighbouring relation the DP promise is stated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Neighbouring {
    /// Datasets differing by one added or removed record (of one party).
    AddRemoveOne,
}

/// The security model (DESIGN §5: semi-honest only as a named policy choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityModel {
    /// Correct with abort against t < n/2 malicious parties.
    #[default]
    Malicious,
    /// Correct only against parties that follow the protocol.
    SemiHonest,
}

/// An analytics job: what every party approves and hashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSpec {
    /// What to compute.
    pub analysis: Analysis,
    /// Clipping bounds of every column the analysis reads (not the filter column).
    pub bounds: BTreeMap<String, Bounds>,
    /// The declared maximum number of rows any party holds (after the filter): range checks
    /// and the bit budget are computed from it.
    pub max_rows: u64,
    /// Exact or DP.
    pub privacy: Privacy,
    /// The neighbouring relation (add or remove one record).
    pub neighbouring: Neighbouring,
    /// Suppress groups and bins whose (noisy) count is below k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_anonymity: Option<u64>,
    /// Who learns the result.
    pub recipients: Recipients,
    /// The security model.
    #[serde(default)]
    pub security: SecurityModel,
}

/// Why a spec is refused before anything runs; each names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A column the analysis reads has no declared bounds.
    #[error("column {column:?} has no declared bounds: add bounds.{column} = {{min, max}}")]
    MissingBounds {
        /// Column.
        column: String,
    },
    /// Bounds are inverted or too wide.
    #[error(
        "bounds of column {column:?} are [{min}, {max}]: need min ≤ max within ±2^31 (MAX_ABS_BOUND)"
    )]
    BadBounds {
        /// Column.
        column: String,
        /// Declared min.
        min: i64,
        /// Declared max.
        max: i64,
    },
    /// A field's value is outside what is allowed.
    #[error("{field} = {value}: {allowed}")]
    Invalid {
        /// The field, e.g. "max_rows" or "analysis.edges".
        field: String,
        /// Its value (as text).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A kind the privacy rule releases only with DP.
    #[error(
        "an exact {kind} is not a statistic the privacy rule releases (exact releases are counts, sums, means, variances and histograms of views the data owners declare): set privacy.mode = \"dp\" with a rho"
    )]
    DpOnly {
        /// Kind.
        kind: KindName,
    },
    /// An exact release under the semi-honest model.
    #[error(
        "an exact release runs only under the malicious security model (one party's additive error on a suppression bit would release a suppressed cell): set security = \"malicious\", or privacy.mode = \"dp\""
    )]
    ExactNeedsMalicious,
    /// The analysis releases one person's value unless noised.
    #[error(
        "an exact {kind} is one person's value: it is released only with DP (privacy.mode = \"dp\")"
    )]
    ExactIndividual {
        /// Kind.
        kind: KindName,
    },
}

fn invalid(field: &str, value: impl core::fmt::Display, allowed: &str) -> SpecError {
    SpecError::Invalid {
        field: field.to_owned(),
        value: value.to_string(),
        allowed: allowed.to_owned(),
    }
}

fn check_edges(field: &str, edges: &[i64], max: usize) -> Result<(), SpecError> {
    if edges.len() < 2 || edges.len() > max + 1 {
        return Err(invalid(
            field,
            format!("{} edges", edges.len()),
            &format!("between 2 and {} edges (1 to {max} bins)", max + 1),
        ));
    }
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid(
            field,
            format!("{edges:?}"),
            "edges must be strictly increasing",
        ));
    }
    if edges
        .iter()
        .any(|e| e.unsigned_abs() > MAX_ABS_BOUND as u64)
    {
        return Err(invalid(field, format!("{edges:?}"), "edges within ±2^31"));
    }
    Ok(())
}

impl Analysis {
    /// The kind's name.
    pub fn kind(&self) -> KindName {
        match self {
            Analysis::Count { .. } => KindName::Count,
            Analysis::Sum { .. } => KindName::Sum,
            Analysis::Mean { .. } => KindName::Mean,
            Analysis::Variance { .. } => KindName::Variance,
            Analysis::WeightedMean { .. } => KindName::WeightedMean,
            Analysis::Histogram { .. } => KindName::Histogram,
            Analysis::Quantiles { .. } => KindName::Quantiles,
            Analysis::Min { .. } => KindName::Min,
            Analysis::Max { .. } => KindName::Max,
            Analysis::Correlation { .. } => KindName::Correlation,
            Analysis::Covariance { .. } => KindName::Covariance,
            Analysis::LinearRegression { .. } => KindName::LinearRegression,
        }
    }

    /// The filter, if any.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            Analysis::Count { filter, .. }
            | Analysis::Sum { filter, .. }
            | Analysis::Mean { filter, .. }
            | Analysis::Variance { filter, .. }
            | Analysis::WeightedMean { filter, .. }
            | Analysis::Histogram { filter, .. }
            | Analysis::Quantiles { filter, .. }
            | Analysis::Min { filter, .. }
            | Analysis::Max { filter, .. }
            | Analysis::Correlation { filter, .. }
            | Analysis::Covariance { filter, .. }
            | Analysis::LinearRegression { filter, .. } => filter.as_ref(),
        }
    }

    /// The group-by, if any.
    pub fn group_by(&self) -> Option<&GroupBy> {
        match self {
            Analysis::Count { group_by, .. }
            | Analysis::Sum { group_by, .. }
            | Analysis::Mean { group_by, .. }
            | Analysis::Variance { group_by, .. } => group_by.as_ref(),
            _ => None,
        }
    }

    /// Columns whose values are aggregated (they need bounds), in a fixed order.
    pub fn value_columns(&self) -> Vec<&str> {
        match self {
            Analysis::Count { .. } => vec![],
            Analysis::Sum { column, .. }
            | Analysis::Mean { column, .. }
            | Analysis::Variance { column, .. }
            | Analysis::Histogram { column, .. }
            | Analysis::Quantiles { column, .. }
            | Analysis::Min { column, .. }
            | Analysis::Max { column, .. } => vec![column],
            Analysis::WeightedMean { column, weight, .. } => vec![column, weight],
            Analysis::Correlation { x, y, .. } => vec![x, y],
            Analysis::Covariance { columns, .. } => columns.iter().map(String::as_str).collect(),
            Analysis::LinearRegression {
                response,
                predictors,
                ..
            } => predictors
                .iter()
                .map(String::as_str)
                .chain([response.as_str()])
                .collect(),
        }
    }
}

impl AnalyticsSpec {
    /// The bounds of a column the analysis reads.
    pub fn bounds_of(&self, column: &str) -> Result<Bounds, SpecError> {
        self.bounds
            .get(column)
            .copied()
            .ok_or_else(|| SpecError::MissingBounds {
                column: column.to_owned(),
            })
    }

    /// Static checks, before any data is touched, for a federation of `n` parties.
    pub fn validate(&self, n: usize) -> Result<(), SpecError> {
        for c in self.analysis.value_columns() {
            let b = self.bounds_of(c)?;
            if b.min > b.max
                || b.min.unsigned_abs() > MAX_ABS_BOUND as u64
                || b.max.unsigned_abs() > MAX_ABS_BOUND as u64
            {
                return Err(SpecError::BadBounds {
                    column: c.to_owned(),
                    min: b.min,
                    max: b.max,
                });
            }
        }
        if self.max_rows == 0 || self.max_rows > MAX_ROWS {
            return Err(invalid("max_rows", self.max_rows, "1 to 2^32"));
        }
        if let Some(k) = self.k_anonymity
            && k == 0
        {
            return Err(invalid("k_anonymity", k, "at least 1 (or absent)"));
        }
        match &self.recipients {
            Recipients::Parties(ps) if ps.is_empty() || ps.iter().any(|&p| p >= n) => {
                return Err(invalid(
                    "recipients.parties",
                    format!("{ps:?}"),
                    &format!("party indices below {n}, at least one"),
                ));
            }
            _ => {}
        }
        if let Privacy::Dp { rho, delta } = self.privacy {
            if rho.is_zero() {
                return Err(invalid("privacy.rho", rho, "positive"));
            }
            if delta.is_zero() || delta >= Decimal::ONE {
                return Err(invalid("privacy.delta", delta, "in (0, 1)"));
            }
        }
        if let Some(g) = self.analysis.group_by() {
            check_edges("analysis.group_by.edges", &g.edges, MAX_GROUPS)?;
        }
        let kind = self.analysis.kind();
        if kind.exact_is_individual() && self.privacy == Privacy::Exact {
            return Err(SpecError::ExactIndividual { kind });
        }
        if self.privacy == Privacy::Exact && !kind.exact_allowed() {
            return Err(SpecError::DpOnly { kind });
        }
        if self.privacy == Privacy::Exact && self.security == SecurityModel::SemiHonest {
            return Err(SpecError::ExactNeedsMalicious);
        }
        match &self.analysis {
            Analysis::Histogram { edges, .. } => check_edges("analysis.edges", edges, MAX_BINS)?,
            Analysis::Quantiles {
                edges, quantiles, ..
            } => {
                check_edges("analysis.edges", edges, MAX_BINS)?;
                if quantiles.is_empty() || quantiles.len() > MAX_QUANTILES {
                    return Err(invalid(
                        "analysis.quantiles",
                        format!("{} quantiles", quantiles.len()),
                        "1 to 16 quantiles",
                    ));
                }
                if let Some(q) = quantiles.iter().find(|q| q.is_zero() || **q > Decimal::ONE) {
                    return Err(invalid("analysis.quantiles", q, "each in (0, 1]"));
                }
            }
            Analysis::Min {
                edges, min_count, ..
            }
            | Analysis::Max {
                edges, min_count, ..
            } => {
                check_edges("analysis.edges", edges, MAX_BINS)?;
                if *min_count == 0 || *min_count > self.max_rows {
                    return Err(invalid("analysis.min_count", min_count, "1 to max_rows"));
                }
            }
            Analysis::WeightedMean { weight, .. } if self.bounds_of(weight)?.min < 0 => {
                return Err(invalid(
                    &format!("bounds.{weight}.min"),
                    self.bounds_of(weight)?.min,
                    "weights must be non-negative",
                ));
            }
            Analysis::Covariance { columns, .. }
                if columns.len() < 2 || columns.len() > MAX_COVARIANCE_COLUMNS =>
            {
                return Err(invalid(
                    "analysis.columns",
                    format!("{} columns", columns.len()),
                    "2 to 8 columns",
                ));
            }
            Analysis::LinearRegression { predictors, .. }
                if predictors.is_empty() || predictors.len() > MAX_PREDICTORS =>
            {
                return Err(invalid(
                    "analysis.predictors",
                    format!("{} predictors", predictors.len()),
                    "1 to 4 predictors",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}
