//! The analytics catalogue (DESIGN §5, §6): typed job kinds with input schemas, declared
//! bounds, release policy and DP, compiled to MPC programs over exact local aggregates.
//!
//! - [`spec`]: the job spec every party approves ([`AnalyticsSpec`]) and its static checks.
//! - [`policy`]: a dataset's [`ReleasePolicy`] (exact, DP-only or refused, per kind).
//! - [`local`]: inside one node: its rows ([`Table`]), its exact local aggregates
//!   ([`LocalStats`]) and the consistency checks they pass when shared.
//! - [`compile`]: the circuit: range-checked inputs, the kind's formula on shares, outputs.
//! - [`mod@reference`]: plaintext references, straight from the pooled rows (tests, demo).
//!
//! # A job's life
//!
//! 1. [`Plan::new`] validates the spec, checks every party's release policy, calibrates DP
//!    noise (σ per party from ρ, the L2 sensitivity, the dimension and the n − t honest
//!    parties) and compiles the circuit, choosing the field: 2^127 − 1 when every value and
//!    masked opening fits its limits, else 2^521 − 1; if neither fits, the job is refused
//!    before it runs with a [`crate::LimitError`] naming the value, its bits, the limit and
//!    what to change (the **bit budget** of the kind, from its bounds and `max_rows`).
//! 2. [`Plan::reserve`] at approval (DP jobs): the dataset's budget reserves ρ.
//! 3. Each party: [`local::local_stats`] on its rows; [`NoisePool::take`] its noise;
//!    [`Plan::inputs`] (aggregates, noise and the range-check hints).
//! 4. The engine runs [`Plan::program`]; before any output share leaves a node the host
//!    calls [`Plan::confirm_spend`]; then [`Plan::finish`] turns the opened outputs into an
//!    [`AnalyticsResult`] with its privacy parameters (ρ, ε, δ, σ).
//!
//! [`run_in_memory`] does steps 3–4 for all parties with the in-memory harness.
//!
//! # Limits (per kind)
//!
//! Bounds within ±2^31, `max_rows` ≤ 2^32 per party, up to 256 groups, 1024 bins, 4
//! predictors, 8 covariance columns ([`spec`]). Beyond those, the bit budget decides: every
//! exact total (n·max_rows·bound², n·Σx² products, det(XᵀX)) must stay below p/2, and every
//! masked opening (comparisons, truncations of the divisions) within K + κ + log2 C(n, t) <
//! log2 p (see [`crate::gadgets`]). E.g. a regression on 2 predictors with bounds ≤ 500 and
//! 10^5 rows per party at n = 3 needs det(XᵀX) of ≈ 110 bits and a final truncation of
//! ≈ 290 bits: it runs in 2^521 − 1; with 4 predictors and bounds of 2^31 it is refused.
//!
//! # DP noise per statistic
//!
//! A DP job noises every released sufficient statistic. Their sensitivities differ widely
//! (a count moves by 1 when a record is added, Σx² by max x²), and discrete noise cannot be
//! rescaled (s + Δ·z for a non-integer shift is not private), so ρ is split equally across
//! the kinds of statistic (count, each Σx, each Σxy) and each is calibrated for its own
//! sensitivity over its `groups` coordinates; zCDP composes, so the job is ρ-zCDP in total.
//! Histograms (and quantiles, min, max) are one kind: Δ2 = 1 over all bins.
//!
//! # Accuracy
//!
//! Integers (counts, sums, histogram counts, quantile bins) are exact. Values from exact
//! divisions on shares have |error| ≤ |value|·2^−61 + 2^−40 ([`compile`]); DP values carry
//! the noise of the released statistics, σ_total = √n·σ per statistic (√(n − t)·σ from the
//! honest parties alone), listed in [`PrivacyReport::noise`].

// Index loops over parallel per-group vectors read more clearly than zipped iterators here.
#![allow(clippy::needless_range_loop)]

pub mod compile;
pub mod local;
pub mod policy;
pub mod reference;
pub mod rule;
pub mod spec;

pub use local::{LocalStats, Table};
pub use policy::{PolicyError, Release, ReleasePolicy, View};
pub use spec::{AnalyticsSpec, SpecError};

use crate::decimal::Decimal;
use crate::decimal::Decimal as Dec;
use crate::dp::budget::{BudgetError, PrivacyBudget};
use crate::dp::noise::{NoisePool, NoiseSamples};
use crate::dp::{DpError, Sigma, calibrate, epsilon_for, tail_bound};
use crate::engine::Security;
use crate::error::MpcError;
use crate::field::{Field, M127, M521};
use crate::gadgets::{Circuit, CircuitInfo, KAPPA, from_bigint, to_bigint};
use crate::program::Program;
use crate::secret::SecretVec;
use local::{CheckGroup, Layout, Shape};
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use serde::Serialize;
use spec::{Analysis, KindName, Neighbouring, Privacy, SecurityModel};
use std::collections::BTreeMap;

/// Why an analytics job failed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    /// The spec is invalid.
    #[error("job spec refused: {0}")]
    Spec(#[from] SpecError),
    /// A party's release policy refuses the job.
    #[error("release policy: {0}")]
    Policy(#[from] PolicyError),
    /// DP calibration or noise.
    #[error("differential privacy: {0}")]
    Dp(#[from] DpError),
    /// The budget refuses the job.
    #[error("privacy budget: {0}")]
    Budget(#[from] BudgetError),
    /// The MPC layer: limits (refused before running), checks (aborted), protocol errors.
    #[error("{0}")]
    Mpc(#[from] MpcError),
    /// A party's data does not fit the job.
    #[error("data: {0}")]
    Data(String),
}

/// The field a plan runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FieldKind {
    /// 2^127 − 1.
    M127,
    /// 2^521 − 1.
    M521,
}

impl FieldKind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::M127 => M127::NAME,
            FieldKind::M521 => M521::NAME,
        }
    }
}

/// The privacy parameters of a release, as printed and exported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrivacyReport {
    /// "exact" or "dp".
    pub mode: &'static str,
    /// The rule that admitted the release, in words.
    pub rule: &'static str,
    /// The neighbouring relation.
    pub neighbouring: Neighbouring,
    /// k-anonymity threshold applied.
    pub k_anonymity: Option<u64>,
    /// zCDP cost.
    pub rho: Option<Decimal>,
    /// ε for `delta`.
    pub epsilon: Option<f64>,
    /// δ of the spec.
    pub delta: Option<Decimal>,
    /// δ plus the 10σ truncation tail of every honest sample (see [`crate::dp`]).
    pub delta_total: Option<f64>,
    /// Per kind of released statistic: its sensitivity, its share of ρ, each party's σ, the
    /// bound M and the σ of the total noise (√n·σ; √(n − t)·σ from the honest alone).
    pub noise: Vec<StatNoise>,
    /// Noised statistics.
    pub noised_values: Option<usize>,
}

/// What admits an exact release, as results state it.
pub const RULE_EXACT: &str = "the privacy rule: an exact view every data owner declared; each party suppressed any cell that would let a combination of releases isolate fewer than its min_k individuals";
/// What admits a DP release, as results state it.
pub const RULE_DP: &str = "differential privacy: every released statistic carries distributed discrete Gaussian noise, charged to each party's budget";

/// The DP noise of one kind of released statistic (e.g. the counts, or Σ bp).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatNoise {
    /// The statistic, e.g. "count" or "Σ systolic_bp".
    pub statistic: String,
    /// How much one record changes it (per group, L1 = L2 for one coordinate).
    pub sensitivity: f64,
    /// Its share of the job's ρ.
    pub rho: Dec,
    /// Each party's σ.
    pub sigma: Sigma,
    /// Each party's σ as text.
    pub sigma_text: String,
    /// The range-check bound M = ⌈10σ⌉ on each party's noise.
    pub bound: u64,
    /// σ of the total noise when all n parties add theirs: √n·σ.
    pub sigma_total: f64,
    /// σ the promise rests on, from the n − t honest parties alone: √(n − t)·σ.
    pub sigma_honest: f64,
}

/// Splits ρ across the kinds of statistic and calibrates each (see the module docs).
fn calibrate_noise(
    spec: &AnalyticsSpec,
    layout: &Layout,
    rho: Dec,
    n: usize,
    honest: usize,
) -> Result<Vec<StatNoise>, AnalyticsError> {
    let names = local::stat_names(spec, layout);
    let sens = layout.stat_bounds(1);
    let mk = |statistic: String,
              sensitivity: f64,
              rho: Dec,
              d: usize|
     -> Result<StatNoise, AnalyticsError> {
        let sigma = calibrate(rho, sensitivity, d as u64, honest)?;
        Ok(StatNoise {
            statistic,
            sensitivity,
            rho,
            sigma,
            sigma_text: sigma.to_string(),
            bound: sigma.bound(),
            sigma_total: (n as f64).sqrt() * sigma.to_f64(),
            sigma_honest: (honest as f64).sqrt() * sigma.to_f64(),
        })
    };
    match layout.shape {
        Shape::Bins { bins } => {
            // One record changes one bin by one: Δ2 = 1 over all bins.
            let s = mk("count per bin".into(), 1.0, rho, bins)?;
            Ok(vec![s; bins])
        }
        Shape::Moments { .. } => {
            let k = layout.per_group();
            let share = rho.div_floor(k as u64);
            names
                .into_iter()
                .zip(sens)
                .map(|(name, s)| {
                    let s = s.to_f64().unwrap_or(f64::MAX);
                    mk(name, s, share, layout.groups)
                })
                .collect()
        }
    }
}

/// One released value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Value {
    /// An exact (or noisy) integer.
    Integer {
        /// Value.
        value: i128,
    },
    /// A real number (a fixed-point result, or DP post-processing).
    Real {
        /// Value.
        value: f64,
    },
    /// A bin [lo, hi) of the declared edges.
    Bin {
        /// Bin index.
        index: usize,
        /// Lower edge (inclusive).
        lo: i64,
        /// Upper edge (exclusive, except the last bin).
        hi: i64,
    },
    /// Suppressed by k-anonymity.
    Suppressed,
    /// Not defined (an empty group, a singular matrix).
    Undefined {
        /// Why.
        reason: String,
    },
}

impl Value {
    /// As f64, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer { value } => Some(*value as f64),
            Value::Real { value } => Some(*value),
            _ => None,
        }
    }
}

/// A named released value, per group when grouped.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// e.g. `mean`, `variance`, `beta[age]`, `quantile 0.5`.
    pub name: String,
    /// The group's bin [lo, hi) when grouped.
    pub group: Option<[i64; 2]>,
    /// The value.
    pub value: Value,
    /// DP: the standard error the noise alone gives the value (derived values by the delta
    /// method from each noised statistic's σ of the total noise); none for exact values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standard_error: Option<f64>,
}

/// A job's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnalyticsResult {
    /// Kind.
    pub kind: KindName,
    /// The field it ran in.
    pub field: &'static str,
    /// Released values.
    pub estimates: Vec<Estimate>,
    /// Privacy parameters.
    pub privacy: PrivacyReport,
    /// The documented error bound of real values from exact divisions.
    pub error_bound: Option<String>,
}

impl AnalyticsResult {
    /// The value named `name` in `group` (None: ungrouped).
    pub fn get(&self, name: &str, group: Option<[i64; 2]>) -> Option<&Value> {
        self.estimates
            .iter()
            .find(|e| e.name == name && e.group == group)
            .map(|e| &e.value)
    }
}

/// A planned job: validated, admitted, calibrated and compiled (see the module docs).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The spec.
    pub spec: AnalyticsSpec,
    /// Parties.
    pub n: usize,
    /// Threshold.
    pub t: usize,
    /// Statistics layout.
    pub layout: Layout,
    /// Consistency checks of every party's aggregates.
    pub checks: Vec<CheckGroup>,
    /// DP: the noise of each statistic within a group (per kind of statistic).
    pub noise: Option<Vec<StatNoise>>,
    /// Exact or DP.
    pub release: Release,
    /// The field.
    pub field: FieldKind,
    /// Facts about the compiled circuit.
    pub info: CircuitInfo,
    /// Privacy parameters.
    pub privacy: PrivacyReport,
}

impl Plan {
    /// Validates, admits against every party's policy, calibrates and compiles. Refuses
    /// before anything runs.
    pub fn new(
        spec: &AnalyticsSpec,
        n: usize,
        t: usize,
        policies: &[&ReleasePolicy],
    ) -> Result<Self, AnalyticsError> {
        spec.validate(n)?;
        if !(3..=7).contains(&n) {
            return Err(AnalyticsError::Data(format!(
                "a federation of {n} parties: Parley runs 3 to 7 (DESIGN §5)"
            )));
        }
        if t == 0 || 2 * t >= n {
            return Err(AnalyticsError::Data(format!(
                "threshold t = {t} with n = {n}: need 1 ≤ t < n/2 (honest majority)"
            )));
        }
        for p in policies {
            p.admit(spec)?;
        }
        let layout = Layout::of(spec)?;
        let checks = local::checks(&layout, spec.max_rows);
        let honest = n - t;
        let (noise, release, privacy) = match spec.privacy {
            Privacy::Exact => (
                None,
                Release::Exact,
                PrivacyReport {
                    mode: "exact",
                    rule: RULE_EXACT,
                    neighbouring: spec.neighbouring,
                    // Each party's own min_k applies, not the spec's k.
                    k_anonymity: None,
                    rho: None,
                    epsilon: None,
                    delta: None,
                    delta_total: None,
                    noise: Vec::new(),
                    noised_values: None,
                },
            ),
            Privacy::Dp { rho, delta } => {
                let noise = calibrate_noise(spec, &layout, rho, n, honest)?;
                let eps = epsilon_for(rho.to_f64(), delta.to_f64());
                let groups = layout.groups;
                let tails: f64 = noise
                    .iter()
                    .map(|s| groups as f64 * tail_bound(s.sigma.to_f64(), s.bound))
                    .sum();
                let delta_total = delta.to_f64() + (1.0 + eps.exp()) * honest as f64 * tails;
                let report = PrivacyReport {
                    mode: "dp",
                    rule: RULE_DP,
                    neighbouring: spec.neighbouring,
                    k_anonymity: spec.k_anonymity,
                    rho: Some(rho),
                    epsilon: Some(eps),
                    delta: Some(delta),
                    delta_total: Some(delta_total),
                    noise: {
                        let mut v = noise.clone();
                        v.dedup_by(|a, b| a.statistic == b.statistic);
                        v
                    },
                    noised_values: Some(layout.len()),
                };
                (Some(noise), Release::Dp, report)
            }
        };
        let mut plan = Plan {
            spec: spec.clone(),
            n,
            t,
            layout,
            checks,
            noise,
            release,
            field: FieldKind::M127,
            info: CircuitInfo {
                masked_openings: 0,
                widest_masked_bits: 0,
                max_masked_bits: 0,
                random_bits: 0,
                kappa: KAPPA,
            },
            privacy,
        };
        match plan.program::<M127>() {
            Ok((_, _, info)) => plan.info = info,
            Err(AnalyticsError::Mpc(MpcError::Limit(_))) => {
                plan.field = FieldKind::M521;
                let (_, _, info) = plan.program::<M521>()?;
                plan.info = info;
            }
            Err(e) => return Err(e),
        }
        Ok(plan)
    }

    /// What to change when a value is over a limit.
    pub fn advice(&self) -> String {
        let cols = self.spec.analysis.value_columns();
        format!(
            "lower max_rows (now {}) or narrow the bounds of {} in the job spec, or split the job",
            self.spec.max_rows,
            if cols.is_empty() {
                "its columns".to_owned()
            } else {
                cols.join(", ")
            }
        )
    }

    /// The name of a range check on party `p`'s inputs.
    pub fn check_name(&self, p: usize, what: &str) -> String {
        format!("range: party {p}'s {what}")
    }

    /// Bound on |total| of each statistic (within a group): n parties' aggregates plus
    /// their noise.
    pub fn total_bounds(&self) -> Vec<BigInt> {
        let n = BigInt::from(self.n);
        self.layout
            .stat_bounds(self.spec.max_rows)
            .into_iter()
            .enumerate()
            .map(|(k, b)| {
                let m = self
                    .noise
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .map_or(0, |s| s.bound);
                &n * b + &n * BigInt::from(m)
            })
            .collect()
    }

    /// The program in field F (deterministic: every party builds the same), the names of
    /// its outputs and the circuit's facts.
    pub fn program<F: Field>(
        &self,
    ) -> Result<(Program<F>, compile::OutputNames, CircuitInfo), AnalyticsError> {
        Ok(Circuit::<F>::build(self.n, self.t, KAPPA, |c| {
            compile::build(self, c)
        })?)
    }

    /// The security model of the spec.
    pub fn security(&self) -> Security {
        match self.spec.security {
            SecurityModel::Malicious => Security::Malicious,
            SecurityModel::SemiHonest => Security::SemiHonest,
        }
    }

    /// Party `me`'s input vectors, in program order: aggregates, noise (DP), keep bits
    /// (exact: one per cell, from [`rule`]), the hint of each consistency check, the noise's
    /// hint. `strict = false` builds hints for values
    /// outside their bounds too (a cheating party, for tests): the range checks then abort.
    pub fn inputs<F: Field>(
        &self,
        me: usize,
        stats: &LocalStats,
        noise: Option<&NoiseSamples>,
        keep: Option<&[bool]>,
        strict: bool,
    ) -> Result<Vec<SecretVec<F>>, AnalyticsError> {
        let groups = self.layout.groups;
        let len = self.layout.len();
        if stats.0.len() != len {
            return Err(AnalyticsError::Data(format!(
                "party {me}'s aggregates have {} values, the job needs {len}",
                stats.0.len()
            )));
        }
        let to_f = |v: i128| from_bigint::<F>(&BigInt::from(v));
        let mut out = vec![SecretVec::new(stats.0.iter().map(|&v| to_f(v)).collect())];
        let noise_vals: Option<Vec<i128>> = match (&self.noise, noise) {
            (Some(_), Some(z)) if z.len() == len => {
                Some(z.as_slice().iter().map(|&v| i128::from(v)).collect())
            }
            (Some(_), _) => {
                return Err(AnalyticsError::Data(format!(
                    "party {me} needs {len} noise samples for this DP job"
                )));
            }
            (None, _) => None,
        };
        if let Some(z) = &noise_vals {
            out.push(SecretVec::new(z.iter().map(|&v| to_f(v)).collect()));
        }
        if self.release == Release::Exact {
            let cells = self.layout.cells();
            let keep = keep.filter(|k| k.len() == cells).ok_or_else(|| {
                AnalyticsError::Data(format!(
                    "party {me} needs one keep bit per cell ({cells}) for this exact job"
                ))
            })?;
            out.push(SecretVec::new(
                keep.iter()
                    .map(|&b| if b { F::one() } else { F::zero() })
                    .collect(),
            ));
        }
        for g in &self.checks {
            let (lo, hi, w) = compile::check_bounds(g, groups);
            let mut values = Vec::with_capacity(lo.len());
            for (term, _) in &g.terms {
                for grp in 0..groups {
                    values.push(term.eval(&stats.0, groups, grp));
                }
            }
            out.push(SecretVec::new(local::hint::<F>(
                &values,
                &lo,
                &hi,
                w,
                strict,
                &self.check_name(me, &g.what),
            )?));
        }
        if let Some(z) = &noise_vals {
            let (lo, hi, w) = self.noise_ranges();
            let values: Vec<BigInt> = z.iter().map(|&v| BigInt::from(v)).collect();
            out.push(SecretVec::new(local::hint::<F>(
                &values, &lo, &hi, w, strict, "DP noise",
            )?));
        }
        Ok(out)
    }

    /// Per element of the noise vector: [−M, M], and the width of the range check.
    pub fn noise_ranges(&self) -> (Vec<BigInt>, Vec<BigInt>, u32) {
        let groups = self.layout.groups;
        let mut lo = Vec::new();
        let mut hi = Vec::new();
        let mut top = 0u64;
        for s in self.noise.iter().flatten() {
            top = top.max(s.bound);
            for _ in 0..groups {
                lo.push(BigInt::from(-i128::from(s.bound)));
                hi.push(BigInt::from(s.bound));
            }
        }
        (lo, hi, local::width(&BigInt::from(2 * u128::from(top))))
    }

    /// σ of the total noise (all n parties) on statistic `k` of a group, 0 if exact.
    pub fn sigma_total(&self, k: usize) -> f64 {
        self.noise
            .as_ref()
            .and_then(|v| v.get(k))
            .map_or(0.0, |s| s.sigma_total)
    }

    /// At approval: reserve this job's ρ on a dataset's budget (refused if it would exceed).
    pub fn reserve(&self, budget: &mut PrivacyBudget, job: &str) -> Result<(), AnalyticsError> {
        if let Privacy::Dp { rho, .. } = self.spec.privacy {
            budget.reserve(job, rho)?;
        }
        Ok(())
    }

    /// Before the first output share leaves the node: spend the reservation (the host
    /// persists the ledger before releasing the frames).
    pub fn confirm_spend(
        &self,
        budget: &mut PrivacyBudget,
        job: &str,
    ) -> Result<(), AnalyticsError> {
        if matches!(self.spec.privacy, Privacy::Dp { .. }) {
            budget.spend(job)?;
        }
        Ok(())
    }

    /// The released values from the opened outputs (`names` from [`Plan::program`]).
    pub fn finish<F: Field>(
        &self,
        names: &[String],
        outputs: &[Vec<F>],
    ) -> Result<AnalyticsResult, AnalyticsError> {
        let get = |name: &str| -> Option<Vec<BigInt>> {
            names
                .iter()
                .position(|n| n == name)
                .and_then(|i| outputs.get(i))
                .map(|v| v.iter().map(|&x| to_bigint(x)).collect())
        };
        let mut estimates = finish_estimates(self, &get)?;
        if self.release == Release::Dp {
            standard_errors(self, &get, &mut estimates);
        }
        Ok(AnalyticsResult {
            kind: self.spec.analysis.kind(),
            field: self.field.name(),
            estimates,
            privacy: self.privacy.clone(),
            error_bound: (self.release == Release::Exact
                && !matches!(
                    self.spec.analysis.kind(),
                    KindName::Count | KindName::Sum | KindName::Histogram
                ))
            .then(|| {
                format!(
                    "|error| ≤ |value|·2^-{} + 2^-{} (divisions on shares)",
                    compile::PRECISION - 4,
                    compile::OUT_FRAC
                )
            }),
        })
    }
}

fn fx(v: &BigInt) -> f64 {
    v.to_f64().unwrap_or(f64::NAN) / (compile::OUT_FRAC as f64).exp2()
}

fn int(v: &BigInt) -> i128 {
    v.to_i128().unwrap_or(i128::MAX)
}

fn group_label(plan: &Plan, g: usize) -> Option<[i64; 2]> {
    plan.spec
        .analysis
        .group_by()
        .map(|gb| [gb.edges[g], gb.edges[g + 1]])
}

/// Post-processing of the opened outputs; see [`compile`] for what each kind opens.
fn finish_estimates(
    plan: &Plan,
    get: &dyn Fn(&str) -> Option<Vec<BigInt>>,
) -> Result<Vec<Estimate>, AnalyticsError> {
    let missing = |n: &str| AnalyticsError::Data(format!("the job's output {n:?} is missing"));
    let layout = &plan.layout;
    let groups = layout.groups;
    let mut out = Vec::new();
    let mut push = |name: &str, group: Option<[i64; 2]>, value: Value| {
        out.push(Estimate {
            name: name.to_owned(),
            group,
            value,
            standard_error: None,
        });
    };
    let undefined = |r: &str| Value::Undefined {
        reason: r.to_owned(),
    };
    let keep = get("keep");
    let kept = |i: usize| {
        keep.as_ref()
            .is_none_or(|k| k.get(i).is_some_and(|b| *b == BigInt::from(1)))
    };
    match &plan.spec.analysis {
        Analysis::Histogram { edges, .. } => {
            let counts = get("counts").ok_or_else(|| missing("counts"))?;
            for (b, c) in counts.iter().enumerate() {
                let v = if kept(b) {
                    Value::Integer { value: int(c) }
                } else {
                    Value::Suppressed
                };
                push("count", Some([edges[b], edges[b + 1]]), v);
            }
        }
        Analysis::Quantiles {
            edges, quantiles, ..
        } => {
            let bins = get("bins").ok_or_else(|| missing("bins"))?;
            for (q, b) in quantiles.iter().zip(&bins) {
                let i = usize::try_from(int(b)).unwrap_or(0).min(edges.len() - 2);
                push(
                    &format!("quantile {q}"),
                    None,
                    Value::Bin {
                        index: i,
                        lo: edges[i],
                        hi: edges[i + 1],
                    },
                );
            }
        }
        Analysis::Min { edges, .. } | Analysis::Max { edges, .. } => {
            let bins = get("bins").ok_or_else(|| missing("bins"))?;
            let last = edges.len() - 2;
            let mut i = usize::try_from(int(&bins[0])).unwrap_or(0).min(last);
            let name = if matches!(plan.spec.analysis, Analysis::Max { .. }) {
                i = last - i;
                "max"
            } else {
                "min"
            };
            push(
                name,
                None,
                Value::Bin {
                    index: i,
                    lo: edges[i],
                    hi: edges[i + 1],
                },
            );
        }
        a if plan.release == Release::Dp => {
            // Noisy sufficient statistics: the formulas as post-processing.
            let noisy = get("noisy").ok_or_else(|| missing("noisy"))?;
            let st = |k: usize, g: usize| noisy[k * groups + g].to_f64().unwrap_or(f64::NAN);
            for g in 0..groups {
                let label = group_label(plan, g);
                if !kept(g) {
                    push("count", label, Value::Suppressed);
                    continue;
                }
                let n = st(0, g);
                let real = |v: f64| {
                    if v.is_finite() {
                        Value::Real { value: v }
                    } else {
                        Value::Undefined {
                            reason: "the noisy count is too small".into(),
                        }
                    }
                };
                let post = sufficient_post(plan, a, &|k| st(k, g), n);
                push(
                    "count",
                    label,
                    Value::Integer {
                        value: int(&noisy[g]),
                    },
                );
                for (name, v) in post {
                    push(&name, label, real(v));
                }
                let _ = &undefined;
            }
        }
        Analysis::Count { .. } | Analysis::Sum { .. } => {
            let name = if matches!(plan.spec.analysis, Analysis::Count { .. }) {
                "count"
            } else {
                "sum"
            };
            let v = get(name).ok_or_else(|| missing(name))?;
            for g in 0..groups {
                let value = if kept(g) {
                    Value::Integer { value: int(&v[g]) }
                } else {
                    Value::Suppressed
                };
                push(name, group_label(plan, g), value);
            }
        }
        Analysis::Mean { .. } => {
            let v = get("mean").ok_or_else(|| missing("mean"))?;
            let z = get("empty").ok_or_else(|| missing("empty"))?;
            for g in 0..groups {
                let value = if !kept(g) {
                    Value::Suppressed
                } else if z[g] == BigInt::from(1) {
                    undefined("no rows")
                } else {
                    Value::Real { value: fx(&v[g]) }
                };
                push("mean", group_label(plan, g), value);
            }
        }
        Analysis::Variance { .. } => {
            let cnt = get("count").ok_or_else(|| missing("count"))?;
            let mv = get("mean_variance").ok_or_else(|| missing("mean_variance"))?;
            let z = get("empty").ok_or_else(|| missing("empty"))?;
            for g in 0..groups {
                let label = group_label(plan, g);
                if !kept(g) {
                    push("count", label, Value::Suppressed);
                    continue;
                }
                push(
                    "count",
                    label,
                    Value::Integer {
                        value: int(&cnt[g]),
                    },
                );
                if z[g] == BigInt::from(1) {
                    push("mean", label, undefined("no rows"));
                } else {
                    push("mean", label, Value::Real { value: fx(&mv[g]) });
                }
                if z[groups + g] == BigInt::from(1) {
                    push("variance", label, undefined("fewer than 2 rows"));
                    push("std_dev", label, undefined("fewer than 2 rows"));
                } else {
                    let var = fx(&mv[groups + g]);
                    push("variance", label, Value::Real { value: var });
                    push(
                        "std_dev",
                        label,
                        Value::Real {
                            value: var.max(0.0).sqrt(),
                        },
                    );
                }
            }
        }
        a => {
            return Err(AnalyticsError::Data(format!(
                "an exact {} is never released (the privacy rule): it runs only with DP",
                a.kind()
            )));
        }
    }
    Ok(out)
}

/// Sets the standard error of every DP value from the noise's σ: a noisy count or bin is
/// the statistic itself (σ of its total noise); a derived value f(s) gets the delta
/// method's √(Σₖ (∂f/∂sₖ)² σₖ²), with the derivatives taken numerically at the released
/// statistics. Quantile, min and max answers are bins and get none.
fn standard_errors(
    plan: &Plan,
    get: &dyn Fn(&str) -> Option<Vec<BigInt>>,
    estimates: &mut [Estimate],
) {
    let layout = &plan.layout;
    let groups = layout.groups;
    match (&layout.shape, &plan.spec.analysis) {
        (Shape::Bins { .. }, Analysis::Histogram { .. }) => {
            for (b, e) in estimates.iter_mut().enumerate() {
                if e.value.as_f64().is_some() {
                    e.standard_error = Some(plan.sigma_total(b));
                }
            }
        }
        (Shape::Bins { .. }, _) => {}
        (Shape::Moments { .. }, a) => {
            let Some(noisy) = get("noisy") else {
                return;
            };
            let per = layout.per_group();
            for g in 0..groups {
                let label = group_label(plan, g);
                let stats: Vec<f64> = (0..per)
                    .map(|k| noisy[k * groups + g].to_f64().unwrap_or(f64::NAN))
                    .collect();
                let eval = |s: &[f64]| -> Vec<(String, f64)> {
                    sufficient_post(plan, a, &|k| s[k], s[layout.count()])
                };
                let base = eval(&stats);
                let mut var = vec![0.0f64; base.len()];
                for k in 0..per {
                    let sigma = plan.sigma_total(k);
                    if sigma == 0.0 {
                        continue;
                    }
                    let h = (sigma * 1e-3).max(stats[k].abs() * 1e-9).max(1e-6);
                    let (mut up, mut down) = (stats.clone(), stats.clone());
                    up[k] += h;
                    down[k] -= h;
                    for (i, ((_, u), (_, d))) in eval(&up).iter().zip(eval(&down)).enumerate() {
                        let grad = (u - d) / (2.0 * h);
                        var[i] += grad * grad * sigma * sigma;
                    }
                }
                for e in estimates.iter_mut().filter(|e| e.group == label) {
                    if e.value.as_f64().is_none() {
                        continue;
                    }
                    if e.name == "count" {
                        e.standard_error = Some(plan.sigma_total(layout.count()));
                    } else if let Some(i) = base.iter().position(|(n, _)| *n == e.name) {
                        let se = var[i].sqrt();
                        e.standard_error = se.is_finite().then_some(se);
                    }
                }
            }
        }
    }
}

/// The kind's formula on (noisy) sufficient statistics of one group, in f64; `st(k)` is
/// statistic k, `n` the count. Returns named values (the count is reported separately).
pub fn sufficient_post(
    plan: &Plan,
    a: &Analysis,
    st: &dyn Fn(usize) -> f64,
    n: f64,
) -> Vec<(String, f64)> {
    let l = &plan.layout;
    let d = match &l.shape {
        Shape::Moments { dims, .. } => dims.len(),
        Shape::Bins { .. } => 0,
    };
    let q = |i: usize, j: usize| n * st(l.second(i, j)) - st(l.first(i)) * st(l.first(j));
    match a {
        Analysis::Sum { .. } => vec![("sum".into(), st(l.first(0)))],
        Analysis::Mean { .. } => vec![("mean".into(), st(l.first(0)) / n)],
        Analysis::Variance { .. } => {
            let var = q(0, 0) / (n * (n - 1.0));
            vec![
                ("mean".into(), st(l.first(0)) / n),
                ("variance".into(), var),
                ("std_dev".into(), var.max(0.0).sqrt()),
            ]
        }
        Analysis::WeightedMean { .. } => {
            vec![("weighted_mean".into(), st(l.first(1)) / st(l.first(0)))]
        }
        Analysis::Correlation { .. } => {
            let r = q(0, 1) / (q(0, 0) * q(1, 1)).sqrt();
            vec![("correlation".into(), r.clamp(-1.0, 1.0))]
        }
        Analysis::Covariance { columns, .. } => {
            let mut v = Vec::new();
            for i in 0..d {
                for j in i..d {
                    v.push((
                        format!("cov[{},{}]", columns[i], columns[j]),
                        q(i, j) / (n * (n - 1.0)),
                    ));
                }
            }
            v
        }
        Analysis::LinearRegression { predictors, .. } => {
            let m = d - 1;
            let dim = m + 1;
            let entry = |r: usize, c: usize| match (r, c) {
                (0, 0) => n,
                (0, j) | (j, 0) => st(l.first(j - 1)),
                (i, j) => st(l.second(i - 1, j - 1)),
            };
            let mut a: Vec<Vec<f64>> = (0..dim)
                .map(|r| (0..dim).map(|c| entry(r, c)).collect())
                .collect();
            let mut b: Vec<f64> = (0..dim)
                .map(|r| {
                    if r == 0 {
                        st(l.first(m))
                    } else {
                        st(l.second(r - 1, m))
                    }
                })
                .collect();
            let beta = reference::solve(&mut a, &mut b);
            beta.into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = if i == 0 {
                        "intercept".to_owned()
                    } else {
                        format!("beta[{}]", predictors[i - 1])
                    };
                    (name, v)
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Runs a plan among all parties in memory (the in-memory harness; tests and `parley demo`):
/// each party computes its local aggregates from its table and takes its noise from its
/// pool (refilled here, between jobs).
pub fn run_in_memory(
    plan: &Plan,
    tables: &[Table],
    pools: &mut [NoisePool],
    seed: u64,
) -> Result<AnalyticsResult, AnalyticsError> {
    let stats: Vec<LocalStats> = tables
        .iter()
        .map(|t| local::local_stats(&plan.spec, &plan.layout, t))
        .collect::<Result<_, _>>()?;
    let noise = take_noise(plan, pools)?;
    run_stats(plan, &stats, &noise, &[], seed)
}

/// Each party's noise for a plan, from its pool (refilled first).
pub fn take_noise(
    plan: &Plan,
    pools: &mut [NoisePool],
) -> Result<Vec<Option<NoiseSamples>>, AnalyticsError> {
    let groups = plan.layout.groups;
    match &plan.noise {
        None => Ok((0..plan.n).map(|_| None).collect()),
        Some(per_stat) => {
            if pools.len() != plan.n {
                return Err(AnalyticsError::Data(format!(
                    "{} noise pools for {} parties",
                    pools.len(),
                    plan.n
                )));
            }
            pools
                .iter_mut()
                .map(|p| {
                    // Refill first (between jobs), then take.
                    let mut need: BTreeMap<Sigma, usize> = BTreeMap::new();
                    for s in per_stat {
                        *need.entry(s.sigma).or_default() += groups;
                    }
                    for (&sigma, &count) in &need {
                        p.refill(sigma, count)?;
                    }
                    let parts = per_stat
                        .iter()
                        .map(|s| p.take(s.sigma, groups))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Some(NoiseSamples::concat(parts)))
                })
                .collect()
        }
    }
}

/// Runs a plan in memory on given aggregates and noise; parties listed in `cheaters` share
/// their values even when out of bounds (their range checks then abort the job).
pub fn run_stats(
    plan: &Plan,
    stats: &[LocalStats],
    noise: &[Option<NoiseSamples>],
    cheaters: &[usize],
    seed: u64,
) -> Result<AnalyticsResult, AnalyticsError> {
    match plan.field {
        FieldKind::M127 => run_stats_in::<M127>(plan, stats, noise, cheaters, seed),
        FieldKind::M521 => run_stats_in::<M521>(plan, stats, noise, cheaters, seed),
    }
}

fn run_stats_in<F: Field>(
    plan: &Plan,
    stats: &[LocalStats],
    noise: &[Option<NoiseSamples>],
    cheaters: &[usize],
    seed: u64,
) -> Result<AnalyticsResult, AnalyticsError> {
    let (program, names, _) = plan.program::<F>()?;
    // In memory every party applies the spec's k as its own min_k.
    let min_k = plan.spec.k_anonymity.unwrap_or(1);
    let inputs: Vec<Vec<SecretVec<F>>> = (0..plan.n)
        .map(|p| {
            let keep = rule::cell_keep(&plan.layout, &stats[p], min_k);
            plan.inputs::<F>(
                p,
                &stats[p],
                noise.get(p).and_then(Option::as_ref),
                Some(&keep),
                !cheaters.contains(&p),
            )
        })
        .collect::<Result<_, _>>()?;
    let parties = crate::sim::engines(
        plan.t,
        plan.security(),
        std::sync::Arc::new(program),
        inputs,
        crate::message::SessionId([0x61; 32]),
        seed,
    )?;
    let report = crate::sim::Harness::new(parties, seed).run();
    let mut first: Option<Vec<Vec<F>>> = None;
    for o in &report.outcomes {
        match o {
            crate::sim::Outcome::Done(out) => {
                // The first party the outputs are addressed to.
                if first.is_none() {
                    first = out.all_values();
                }
            }
            crate::sim::Outcome::Aborted(e) => return Err(e.clone().into()),
            crate::sim::Outcome::Stalled(s) => {
                return Err(AnalyticsError::Data(format!(
                    "a party stalled in state {s:?}"
                )));
            }
        }
    }
    let outputs = first.ok_or_else(|| {
        AnalyticsError::Data("no party received the outputs (check the job's recipients)".into())
    })?;
    plan.finish(&names, &outputs)
}
