//! A dataset's release policy (DESIGN §6): which job kinds may release without noise, which
//! need DP, which are refused, and the smallest k-anonymity threshold for grouped exact
//! releases. Every party checks a job against its own dataset's policy before approving it.

use super::spec::{AnalyticsSpec, KindName, Privacy};
use crate::decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a kind may be released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Release {
    /// Without noise (or with DP, if the job asks).
    Exact,
    /// Only with DP.
    Dp,
    /// Never.
    Refused,
}

/// A dataset's release policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePolicy {
    /// The dataset it governs.
    pub dataset: String,
    /// Per kind; kinds not listed get `default`.
    pub kinds: BTreeMap<KindName, Release>,
    /// For kinds not listed.
    pub default: Release,
    /// Grouped or binned releases (group-by, histograms) need k-anonymity with at least this k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_k: Option<u64>,
    /// The largest ρ one job may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rho_per_job: Option<Decimal>,
}

/// Why a job is refused by a dataset's release policy; each names the rule and the change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The kind is refused outright.
    #[error(
        "dataset {dataset:?} refuses {kind} jobs (its release policy): ask its owner, or use another kind"
    )]
    KindRefused {
        /// Dataset.
        dataset: String,
        /// Kind.
        kind: KindName,
    },
    /// The kind needs DP and the job asked for an exact release.
    #[error("dataset {dataset:?} releases {kind} only with DP: set privacy.mode = \"dp\" with a ρ")]
    NeedsDp {
        /// Dataset.
        dataset: String,
        /// Kind.
        kind: KindName,
    },
    /// An exact release of one person's value.
    #[error(
        "an exact {kind} is one person's value: no policy may release it without noise (dataset {dataset:?})"
    )]
    ExactIndividual {
        /// Dataset.
        dataset: String,
        /// Kind.
        kind: KindName,
    },
    /// A grouped release without enough k-anonymity.
    #[error(
        "dataset {dataset:?} needs k-anonymity with k ≥ {min_k} for grouped or binned releases, the job has {got}: set k_anonymity ≥ {min_k}"
    )]
    KAnonymity {
        /// Dataset.
        dataset: String,
        /// Required k.
        min_k: u64,
        /// The job's k (as text; "none" if absent).
        got: String,
    },
    /// The job's ρ is over the per-job cap.
    #[error(
        "dataset {dataset:?} allows at most ρ = {max} per job, the job asks {rho}: lower privacy.rho"
    )]
    RhoTooLarge {
        /// Dataset.
        dataset: String,
        /// Cap.
        max: Decimal,
        /// Asked.
        rho: Decimal,
    },
}

impl ReleasePolicy {
    /// The release of a kind under this policy (an exact min, max or quantile is always
    /// DP-only, whatever the table says).
    pub fn release_of(&self, kind: KindName) -> Release {
        let r = self.kinds.get(&kind).copied().unwrap_or(self.default);
        if kind.exact_is_individual() && r == Release::Exact {
            Release::Dp
        } else {
            r
        }
    }

    /// Checks a job against the policy.
    pub fn admit(&self, spec: &AnalyticsSpec) -> Result<(), PolicyError> {
        let kind = spec.analysis.kind();
        let dataset = self.dataset.clone();
        match (
            self.kinds.get(&kind).copied().unwrap_or(self.default),
            spec.privacy,
        ) {
            (Release::Refused, _) => return Err(PolicyError::KindRefused { dataset, kind }),
            (_, Privacy::Exact) if kind.exact_is_individual() => {
                return Err(PolicyError::ExactIndividual { dataset, kind });
            }
            (Release::Dp, Privacy::Exact) => return Err(PolicyError::NeedsDp { dataset, kind }),
            _ => {}
        }
        let grouped = spec.analysis.group_by().is_some() || kind == KindName::Histogram;
        if let Some(min_k) = self.min_k
            && grouped
            && spec.k_anonymity.is_none_or(|k| k < min_k)
        {
            return Err(PolicyError::KAnonymity {
                dataset,
                min_k,
                got: spec
                    .k_anonymity
                    .map_or_else(|| "none".to_owned(), |k| k.to_string()),
            });
        }
        if let (Some(max), Privacy::Dp { rho, .. }) = (self.max_rho_per_job, spec.privacy)
            && rho > max
        {
            return Err(PolicyError::RhoTooLarge { dataset, max, rho });
        }
        Ok(())
    }
}
