//! Differential privacy for released statistics: calibration of the distributed discrete
//! Gaussian, accounting in zCDP, the noise pool and the per-dataset budget.
//!
//! Owns [`calibrate`] (σ per party from ρ, sensitivity, dimension and the number of honest
//! parties), [`kls_rho`] (the bound it inverts), [`tail_bound`], [`epsilon_for`] (ρ-zCDP to
//! (ε, δ)), [`Sigma`], [`noise::NoisePool`] and [`budget::PrivacyBudget`]. Where the noise
//! goes into the computation is [`crate::analytics`]'s business.
//!
//! # Mechanism
//!
//! Each of the n parties draws its share of the noise for a statistic, z_i ~ N_Z(0, σ²), with
//! the exact sampler of the `prio` crate (Canonne–Kamath–Steinke 2020) from a CSPRNG, inside
//! its node, and inputs it like any other value: secret-shared, and range-checked inside the
//! computation (|z_i| ≤ M = ⌈10σ⌉, [`Sigma::bound`]). Only statistic + Σ z_i is opened.
//!
//! A sum of discrete Gaussians is not a discrete Gaussian. Kairouz, Liu and Steinke (ICML
//! 2021, Prop. 14 / Eq. 17 of the arXiv version) bound the sum of h i.i.d. N_Z(0, σ²) in d
//! dimensions for a query of L2 sensitivity Δ: with τ = 10·Σ_{k=1}^{h−1} e^(−2π²σ²·k/(k+1)),
//! the mechanism is ρ-zCDP for
//!
//!   ρ = min( Δ²/(2hσ²) + τ·d ,  ½·(Δ/(√h·σ) + τ·√d)² ).
//!
//! **Only honest noise counts**: up to t corrupted parties may add no noise (anything within
//! ±M; they never see the honest noise), so σ is calibrated with h = n − t. The promise then
//! holds from the honest parties' noise alone.
//!
//! **Truncation**: an honest party's samples beyond M are redrawn (the pool does it), so its
//! noise is the discrete Gaussian conditioned on |z| ≤ M, within total-variation distance
//! η = P(|Z| > M) ≤ 2·e^(−(M+1)²/(2σ²))/(1 − e^(−(2M+3)/(2σ²))) of it (≈ e^−50 at M = 10σ). A
//! job with s noisy values from h honest parties is within s·h·η of the untruncated
//! mechanism, which is folded into δ: (ε, δ_total) with δ_total = δ + (1 + e^ε)·s·h·η.
//!
//! **Accounting** is in ρ (zCDP composes additively); ε is shown for a stated δ with
//! ε = ρ + 2·√(ρ·ln(1/δ)) (Bun–Steinke 2016, Prop. 1.3).
//!
//! **Timing**: the sampler's running time depends on the sample, so samples are drawn into a
//! pool between jobs and taken from it at random positions when a job starts
//! ([`noise::NoisePool`]).
//!
//! σ is rounded up to a multiple of 2^−10 (and is at least 1), so every party computes the
//! same σ and the same bound M from the job spec; calibration uses f64 only to find σ, never
//! in anything hashed or signed.

pub mod budget;
pub mod noise;

use crate::decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Denominator of σ: σ is a multiple of 2^−10.
pub const SIGMA_DENOMINATOR: u64 = 1024;

/// Smallest σ used (the KLS bound is stated for σ ≥ 1/2; 1 leaves margin).
pub const MIN_SIGMA_UNITS: u64 = SIGMA_DENOMINATOR;

/// Range-check bound in standard deviations: honest noise is within ±10σ.
pub const BOUND_SIGMAS: u64 = 10;

/// DP configuration errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// ρ must be positive.
    #[error("the zCDP cost ρ must be positive, got {0}")]
    ZeroRho(Decimal),
    /// δ must be in (0, 1).
    #[error("δ must be in (0, 1), got {0}")]
    BadDelta(Decimal),
    /// The required σ is too large to represent.
    #[error(
        "ρ = {rho} is too small for a sensitivity of {sensitivity}: σ would exceed 2^53; raise ρ or narrow the bounds"
    )]
    SigmaTooLarge {
        /// The requested cost.
        rho: Decimal,
        /// The query's sensitivity.
        sensitivity: String,
    },
    /// A budget or pool parameter is unusable.
    #[error("{0}")]
    Other(String),
}

/// One party's noise scale σ, a multiple of 2^−10.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Sigma {
    /// σ·1024.
    pub units: u64,
}

impl Sigma {
    /// σ as f64 (display and numerics).
    pub fn to_f64(self) -> f64 {
        self.units as f64 / SIGMA_DENOMINATOR as f64
    }
    /// The range-check bound M = ⌈10σ⌉ on one party's noise.
    pub fn bound(self) -> u64 {
        (BOUND_SIGMAS * self.units).div_ceil(SIGMA_DENOMINATOR)
    }
    /// σ as an exact decimal string (1024 = 2^10, so at most 10 fractional digits).
    pub fn to_decimal(self) -> Decimal {
        // units/1024 = units·5^10/10^10.
        Decimal::from_atto(u128::from(self.units) * 9_765_625 * 100_000_000)
    }
}

impl core::fmt::Display for Sigma {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.to_decimal())
    }
}

/// The Kairouz–Liu–Steinke zCDP bound for the sum of `honest` i.i.d. N_Z(0, σ²) in `d`
/// dimensions, L2 sensitivity `delta2` (see the module docs).
pub fn kls_rho(sigma: f64, delta2: f64, d: u64, honest: u64) -> f64 {
    let s2 = sigma * sigma;
    let pi2 = core::f64::consts::PI * core::f64::consts::PI;
    let tau: f64 = 10.0
        * (1..honest)
            .map(|k| (-2.0 * pi2 * s2 * k as f64 / (k as f64 + 1.0)).exp())
            .sum::<f64>();
    let h = honest as f64;
    let dd = d as f64;
    let a = delta2 * delta2 / (2.0 * h * s2) + tau * dd;
    let b = 0.5 * (delta2 / (h.sqrt() * sigma) + tau * dd.sqrt()).powi(2);
    a.min(b)
}

/// The smallest σ (a multiple of 2^−10, at least 1) for which `honest` parties' noise makes
/// a query of L2 sensitivity `delta2` in `d` dimensions ρ-zCDP by [`kls_rho`].
pub fn calibrate(rho: Decimal, delta2: f64, d: u64, honest: usize) -> Result<Sigma, DpError> {
    if rho.is_zero() {
        return Err(DpError::ZeroRho(rho));
    }
    let target = rho.to_f64();
    let h = honest.max(1) as u64;
    let ok = |units: u64| kls_rho(units as f64 / SIGMA_DENOMINATOR as f64, delta2, d, h) <= target;
    let too_large = || DpError::SigmaTooLarge {
        rho,
        sensitivity: format!("{delta2}"),
    };
    // Exponential search for an upper end, then bisection on the grid.
    let mut hi = MIN_SIGMA_UNITS;
    while !ok(hi) {
        hi = hi
            .checked_mul(2)
            .filter(|&h| h < 1 << 63)
            .ok_or_else(too_large)?;
    }
    let mut lo = MIN_SIGMA_UNITS.max(hi / 2);
    if ok(lo) {
        return Ok(Sigma { units: lo });
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Sigma { units: hi })
}

/// An upper bound on P(|Z| > m) for Z ~ N_Z(0, σ²) (see the module docs).
pub fn tail_bound(sigma: f64, m: u64) -> f64 {
    let s2 = sigma * sigma;
    let m = m as f64;
    let num = 2.0 * (-(m + 1.0).powi(2) / (2.0 * s2)).exp();
    let den = 1.0 - (-(2.0 * m + 3.0) / (2.0 * s2)).exp();
    if den <= 0.0 {
        1.0
    } else {
        (num / den).min(1.0)
    }
}

/// ε such that ρ-zCDP implies (ε, δ)-DP: ρ + 2√(ρ·ln(1/δ)).
pub fn epsilon_for(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_units_and_bounds() {
        let s = Sigma { units: 1536 };
        assert_eq!(s.to_f64(), 1.5);
        assert_eq!(s.bound(), 15);
        assert_eq!(s.to_string(), "1.5");
        assert_eq!(Sigma { units: 1 }.to_string(), "0.0009765625");
        assert_eq!(Sigma { units: 1025 }.bound(), 11);
    }

    #[test]
    fn calibration_is_monotone_and_floored() {
        let r = |s: &str| s.parse::<Decimal>().expect("decimal");
        let a = calibrate(r("0.1"), 1.0, 1, 2).expect("ok");
        let b = calibrate(r("0.01"), 1.0, 1, 2).expect("ok");
        assert!(b > a);
        // More honest parties: less noise each.
        assert!(calibrate(r("0.01"), 1.0, 1, 4).expect("ok") < b);
        // A generous budget still gets σ = 1.
        assert_eq!(calibrate(r("5"), 1.0, 1, 2).expect("ok").units, 1024);
        assert!(calibrate(Decimal::ZERO, 1.0, 1, 2).is_err());
        assert!(matches!(
            calibrate(r("0.000000000000000001"), 1e12, 1, 2),
            Err(DpError::SigmaTooLarge { .. })
        ));
    }

    #[test]
    fn tails_and_epsilon() {
        assert!(tail_bound(1.0, 10) < 1e-22);
        assert!(tail_bound(30.0, 300) < 1e-21);
        // ρ = 0.5, δ = 1e-6: ε = 0.5 + 2·√(0.5·ln 10^6) ≈ 5.757.
        assert!((epsilon_for(0.5, 1e-6) - 5.7568).abs() < 1e-3);
    }
}
