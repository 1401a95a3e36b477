//! A dataset's release policy (DESIGN §6): the exact views its owner declares, which kinds
//! may be released with DP and which are refused, the privacy rule's `min_k`, and the
//! dataset's declared maximum size. Every party checks a job against its own dataset's
//! policy before approving it; each refusal is a function of the spec and the policy alone.
//!
//! Owns [`ReleasePolicy`], [`View`] and the policy checks ([`ReleasePolicy::validate`] at
//! load, [`ReleasePolicy::admit`] per job).

use super::spec::{AnalyticsSpec, GroupBy, KindName, MAX_BINS, MAX_ROWS, Privacy, SecurityModel};
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

/// An exact view the owner declares (DESIGN §6, item 1): kinds from count, sum, mean,
/// variance and histogram; a value column that is not categorical; a fixed partition whose
/// edges span the schema's bounds (a filter `column = v` selects the cell `[v, v + 1)`).
/// A job released from the view may use any of its partition columns (the others are
/// summed over) and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// Exact kinds the view releases.
    pub kinds: Vec<KindName>,
    /// The value column of sums, means and variances (none: counts and histograms only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The partition: columns with fixed edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition: Vec<GroupBy>,
}

/// A dataset's release policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePolicy {
    /// The dataset it governs.
    pub dataset: String,
    /// The declared maximum size: the most rows the dataset ever holds. Public (it sizes
    /// every job's range checks); an import above it is refused, and a job's `max_rows`
    /// must be at least this.
    pub max_rows: u64,
    /// DP releases per kind (`dp` or `refused`); kinds not listed get `default`. Exact
    /// releases come only from `views`.
    #[serde(default)]
    pub kinds: BTreeMap<KindName, Release>,
    /// For kinds not listed.
    pub default: Release,
    /// The privacy rule's k: no released cell, nor any combination of released cells,
    /// isolates fewer than `min_k` of this party's individuals. Needed for exact views;
    /// DP grouped releases also need k-anonymity ≥ `min_k` on their noisy counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_k: Option<u64>,
    /// The owner declares that this dataset's individuals appear in no other dataset of
    /// this party. The privacy rule keeps one ledger per dataset, so a party may declare
    /// exact views on several datasets only if each is declared disjoint (otherwise two
    /// datasets of the same people could be differenced against each other).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disjoint: bool,
    /// The exact views (`[[release.view]]`).
    #[serde(default, rename = "view", skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<View>,
    /// Whether DP jobs over this dataset may run under the semi-honest model (a named
    /// policy choice, off by default; exact releases always run malicious).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub semi_honest: bool,
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
    /// The kind is never released exactly.
    #[error("dataset {dataset:?} releases {kind} only with DP: set privacy.mode = \"dp\" with a ρ")]
    NeedsDp {
        /// Dataset.
        dataset: String,
        /// Kind.
        kind: KindName,
    },
    /// No declared view admits the exact job.
    #[error(
        "dataset {dataset:?} releases exactly only the views its owner declares, and none admits this {kind} ({need}): use privacy.mode = \"dp\", or ask its owner to declare the view"
    )]
    NoView {
        /// Dataset.
        dataset: String,
        /// Kind.
        kind: KindName,
        /// The view the job would need.
        need: String,
    },
    /// The job's `max_rows` is below the dataset's declared size.
    #[error(
        "dataset {dataset:?} declares up to {declared} rows, the job's max_rows is {got}: set max_rows ≥ {declared}"
    )]
    BelowDeclaredSize {
        /// Dataset.
        dataset: String,
        /// Declared maximum size.
        declared: u64,
        /// The job's.
        got: u64,
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
    /// An exact release from a dataset whose policy sets no `min_k`.
    #[error(
        "dataset {dataset:?} has no min_k in its release policy, so it releases nothing exactly: its owner sets min_k, or use privacy.mode = \"dp\""
    )]
    NoMinK {
        /// Dataset.
        dataset: String,
    },
    /// A semi-honest job over a dataset whose policy does not allow it.
    #[error(
        "dataset {dataset:?} runs jobs only under the malicious security model (its release policy has no semi_honest = true): set security = \"malicious\""
    )]
    SemiHonest {
        /// Dataset.
        dataset: String,
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

impl View {
    /// The view a job would need (the text of a refusal, and what an owner declares).
    pub fn needed_by(spec: &AnalyticsSpec) -> View {
        let a = &spec.analysis;
        let mut partition: Vec<GroupBy> = Vec::new();
        if let Some(g) = a.group_by() {
            partition.push(g.clone());
        }
        if let super::spec::Analysis::Histogram { column, edges, .. } = a {
            partition.push(GroupBy {
                column: column.clone(),
                edges: edges.clone(),
            });
        }
        if let Some(f) = a.filter()
            && !partition.iter().any(|p| p.column == f.column)
        {
            partition.push(GroupBy {
                column: f.column.clone(),
                edges: vec![f.equals, f.equals.saturating_add(1)],
            });
        }
        let column = match a.kind() {
            KindName::Sum | KindName::Mean | KindName::Variance => {
                a.value_columns().first().map(|c| (*c).to_owned())
            }
            _ => None,
        };
        View {
            kinds: vec![a.kind()],
            column,
            partition,
        }
    }

    /// Whether the view admits an exact `spec`: its kind, its value column, and a partition
    /// made of the view's columns with the view's edges (a filter picks one cell `[v, v+1)`).
    pub fn admits(&self, spec: &AnalyticsSpec) -> bool {
        let a = &spec.analysis;
        let kind = a.kind();
        let kind_ok = self.kinds.contains(&kind)
            || (kind == KindName::Histogram && self.kinds.contains(&KindName::Count));
        if !kind_ok {
            return false;
        }
        if matches!(kind, KindName::Sum | KindName::Mean | KindName::Variance)
            && a.value_columns().first().copied() != self.column.as_deref()
        {
            return false;
        }
        let has = |g: &GroupBy| self.partition.iter().any(|p| p == g);
        if let Some(g) = a.group_by()
            && !has(g)
        {
            return false;
        }
        if let super::spec::Analysis::Histogram { column, edges, .. } = a
            && !has(&GroupBy {
                column: column.clone(),
                edges: edges.clone(),
            })
        {
            return false;
        }
        if let Some(f) = a.filter() {
            let cell = self
                .partition
                .iter()
                .filter(|p| p.column == f.column)
                .any(|p| {
                    p.edges
                        .windows(2)
                        .any(|w| w[0] == f.equals && w[1] == f.equals.wrapping_add(1))
                });
            if !cell {
                return false;
            }
        }
        true
    }

    /// The view as one line (`kinds [..], column .., partition age[0,30,…]`).
    pub fn describe(&self) -> String {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
        let parts: Vec<String> = self
            .partition
            .iter()
            .map(|p| format!("{}{:?}", p.column, p.edges))
            .collect();
        format!(
            "kinds [{}], column {}, partition [{}]",
            kinds.join(", "),
            self.column.as_deref().unwrap_or("none"),
            parts.join(", ")
        )
    }
}

impl ReleasePolicy {
    /// Checks the policy itself (at load): what an operator wrote that the privacy rule
    /// does not allow is refused with the change to make.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.dataset;
        if self.max_rows == 0 || self.max_rows > MAX_ROWS {
            return Err(format!(
                "[[release]] {d:?}: max_rows = {} must be 1 to 2^32 (the most rows the dataset holds)",
                self.max_rows
            ));
        }
        for (kind, r) in self
            .kinds
            .iter()
            .map(|(k, r)| (Some(*k), *r))
            .chain([(None, self.default)])
        {
            if r == Release::Exact {
                let what = kind.map_or_else(|| "default".to_owned(), |k| format!("kinds.{k}"));
                return Err(format!(
                    "[[release]] {d:?}: {what} = \"exact\" is not allowed: exact releases come only from declared views ([[release.view]] with kinds from count, sum, mean, variance, histogram); use \"dp\" or \"refused\""
                ));
            }
        }
        if self.min_k == Some(0) {
            return Err(format!("[[release]] {d:?}: min_k must be at least 1"));
        }
        if !self.views.is_empty() && self.min_k.is_none() {
            return Err(format!(
                "[[release]] {d:?}: exact views need min_k (the privacy rule's k)"
            ));
        }
        for (i, v) in self.views.iter().enumerate() {
            let at = format!("[[release]] {d:?}, view {}", i + 1);
            if v.kinds.is_empty() {
                return Err(format!("{at}: kinds is empty"));
            }
            if let Some(k) = v.kinds.iter().find(|k| !k.exact_allowed()) {
                return Err(format!(
                    "{at}: {k} is never released exactly (the privacy rule): exact views release count, sum, mean, variance and histogram; give {k} with DP under kinds"
                ));
            }
            let valued = v
                .kinds
                .iter()
                .any(|k| matches!(k, KindName::Sum | KindName::Mean | KindName::Variance));
            if valued && v.column.is_none() {
                return Err(format!("{at}: sum, mean and variance need a value column"));
            }
            for (j, p) in v.partition.iter().enumerate() {
                if v.partition[..j].iter().any(|q| q.column == p.column) {
                    return Err(format!(
                        "{at}: partition column {:?} appears twice (declare another view)",
                        p.column
                    ));
                }
                if p.edges.len() < 2
                    || p.edges.len() > MAX_BINS + 1
                    || p.edges.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(format!(
                        "{at}: partition {:?} needs 2 to {} strictly increasing edges",
                        p.column,
                        MAX_BINS + 1
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks a job against the policy: for an exact job, the declared view that admits it.
    pub fn admit(&self, spec: &AnalyticsSpec) -> Result<Option<&View>, PolicyError> {
        let kind = spec.analysis.kind();
        let dataset = self.dataset.clone();
        let mut view = None;
        match spec.privacy {
            Privacy::Exact if kind.exact_is_individual() => {
                return Err(PolicyError::ExactIndividual { dataset, kind });
            }
            Privacy::Exact if !kind.exact_allowed() => {
                return Err(PolicyError::NeedsDp { dataset, kind });
            }
            Privacy::Exact => match self.views.iter().find(|v| v.admits(spec)) {
                Some(v) => view = Some(v),
                None => {
                    return Err(PolicyError::NoView {
                        dataset,
                        kind,
                        need: View::needed_by(spec).describe(),
                    });
                }
            },
            Privacy::Dp { .. } => {
                if self.kinds.get(&kind).copied().unwrap_or(self.default) == Release::Refused {
                    return Err(PolicyError::KindRefused { dataset, kind });
                }
            }
        }
        if spec.max_rows < self.max_rows {
            return Err(PolicyError::BelowDeclaredSize {
                dataset,
                declared: self.max_rows,
                got: spec.max_rows,
            });
        }
        if spec.security == SecurityModel::SemiHonest
            && (!self.semi_honest || spec.privacy == Privacy::Exact)
        {
            return Err(PolicyError::SemiHonest { dataset });
        }
        if spec.privacy == Privacy::Exact && self.min_k.is_none() {
            return Err(PolicyError::NoMinK { dataset });
        }
        // Exact releases: each party's own min_k, through its keep bits (the privacy rule);
        // DP: the spec's k on noisy counts, at least the policy's.
        let grouped = spec.analysis.group_by().is_some() || kind == KindName::Histogram;
        if let Some(min_k) = self.min_k
            && grouped
            && spec.privacy != Privacy::Exact
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
        Ok(view)
    }
}
