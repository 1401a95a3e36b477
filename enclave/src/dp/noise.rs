//! A party's pool of discrete Gaussian noise samples.
//!
//! Owns [`NoisePool`]: samples of N_Z(0, σ²) drawn with `prio`'s exact sampler
//! (`prio::dp::distributions::DiscreteGaussian`, CKS20) from the pool's ChaCha20 CSPRNG,
//! redrawn when beyond ±⌈10σ⌉ (so the in-computation range check never fails for an honest
//! party; the tail is folded into δ, see [`super`]). The sampler's running time depends on
//! the sample, so the host refills the pool **between jobs** ([`NoisePool::refill`], sized by
//! the job plan) and a job takes its samples at random positions ([`NoisePool::take`]): the
//! host sees only how long a whole refill took. Samples are secret: zeroized when taken
//! or dropped, never in `Debug`.

use super::{DpError, SIGMA_DENOMINATOR, Sigma};
use prio::dp::Rational;
use prio::dp::distributions::DiscreteGaussian;
use rand::distr::Distribution;
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use std::collections::BTreeMap;
use zeroize::Zeroize;

/// Largest pool per σ (a refill beyond it is refused: a host bug).
pub const MAX_POOLED: usize = 1 << 24;

/// Noise samples taken for one job: secret, zeroized on drop.
pub struct NoiseSamples(Vec<i64>);

impl NoiseSamples {
    /// The samples.
    pub fn as_slice(&self) -> &[i64] {
        &self.0
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The samples of `parts`, in order, as one (the parts are zeroized as they drop).
    pub fn concat(parts: Vec<NoiseSamples>) -> NoiseSamples {
        let mut out = Vec::with_capacity(parts.iter().map(NoiseSamples::len).sum());
        for p in &parts {
            out.extend_from_slice(&p.0);
        }
        NoiseSamples(out)
    }
}

impl Drop for NoiseSamples {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for NoiseSamples {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NoiseSamples[{} samples, redacted]", self.0.len())
    }
}

/// Pre-drawn noise per σ; see the module docs.
pub struct NoisePool {
    rng: ChaCha20Rng,
    pools: BTreeMap<Sigma, Vec<i64>>,
}

impl core::fmt::Debug for NoisePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sizes: Vec<(String, usize)> = self
            .pools
            .iter()
            .map(|(s, v)| (s.to_string(), v.len()))
            .collect();
        f.debug_struct("NoisePool")
            .field("pooled", &sizes)
            .finish_non_exhaustive()
    }
}

impl Drop for NoisePool {
    fn drop(&mut self) {
        for v in self.pools.values_mut() {
            v.zeroize();
        }
    }
}

impl NoisePool {
    /// An empty pool drawing from `rng` (seeded from the OS by the host; seeded in tests).
    pub fn new(rng: ChaCha20Rng) -> Self {
        Self {
            rng,
            pools: BTreeMap::new(),
        }
    }

    /// Samples pooled for σ.
    pub fn available(&self, sigma: Sigma) -> usize {
        self.pools.get(&sigma).map_or(0, Vec::len)
    }

    /// Draws until σ's pool holds at least `count` samples. Call between jobs.
    pub fn refill(&mut self, sigma: Sigma, count: usize) -> Result<(), DpError> {
        if count > MAX_POOLED {
            return Err(DpError::Other(format!(
                "a noise pool of {count} samples is over the limit of {MAX_POOLED}"
            )));
        }
        let have = self.available(sigma);
        if have >= count {
            return Ok(());
        }
        let std = Rational::from_unsigned(u128::from(sigma.units), u128::from(SIGMA_DENOMINATOR))
            .map_err(|e| DpError::Other(format!("σ = {sigma}: {e}")))?;
        let dist =
            DiscreteGaussian::new(std).map_err(|e| DpError::Other(format!("σ = {sigma}: {e}")))?;
        let bound = i64::try_from(sigma.bound())
            .map_err(|_| DpError::Other(format!("σ = {sigma} is too large for 64-bit noise")))?;
        let pool = self.pools.entry(sigma).or_default();
        pool.reserve(count - have);
        while pool.len() < count {
            let z = dist.sample(&mut self.rng);
            // Beyond ±M (probability ≈ e^−50): redraw; the range check would refuse it.
            if let Ok(v) = i64::try_from(&z)
                && v.abs() <= bound
            {
                pool.push(v);
            }
        }
        Ok(())
    }

    /// Takes `count` samples for σ from random positions of the pool; refuses if fewer are
    /// pooled (the host refills between jobs, never while a job waits).
    pub fn take(&mut self, sigma: Sigma, count: usize) -> Result<NoiseSamples, DpError> {
        let have = self.available(sigma);
        if have < count {
            return Err(DpError::Other(format!(
                "the noise pool for σ = {sigma} holds {have} samples, the job needs {count}: refill it between jobs"
            )));
        }
        let mut out = Vec::with_capacity(count);
        if let Some(pool) = self.pools.get_mut(&sigma) {
            for _ in 0..count {
                let len = pool.len() as u64;
                // Uniform index by rejection (len ≤ 2^24).
                let idx = loop {
                    let r = self.rng.next_u64() >> 40;
                    let zone = (1u64 << 24) - (1u64 << 24) % len;
                    if r < zone {
                        break (r % len) as usize;
                    }
                };
                out.push(pool.swap_remove(idx));
                // The moved-out last slot still holds a copy: clear it.
                if let Some(slot) = pool.spare_capacity_mut().first_mut() {
                    *slot = core::mem::MaybeUninit::new(0);
                }
            }
        }
        Ok(NoiseSamples(out))
    }
}
