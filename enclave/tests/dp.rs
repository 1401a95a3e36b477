//! Differential privacy: calibration against known answers and an independent solver, and
//! the distribution of the summed noise against the exact convolution of the parties'
//! (truncated) discrete Gaussians with a stated chi-square test.

use parley_enclave::decimal::Decimal;
use parley_enclave::dp::noise::NoisePool;
use parley_enclave::dp::{Sigma, calibrate, kls_rho};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

/// The KLS bound written out again, independently of the library.
fn rho_independent(sigma: f64, delta: f64, d: f64, h: u32) -> f64 {
    let pi = std::f64::consts::PI;
    let mut tau = 0.0;
    for k in 1..h {
        let k = f64::from(k);
        tau += (-2.0 * pi * pi * sigma * sigma * k / (k + 1.0)).exp();
    }
    tau *= 10.0;
    let first = delta * delta / (2.0 * f64::from(h) * sigma * sigma) + tau * d;
    let second = 0.5 * (delta / (f64::from(h).sqrt() * sigma) + tau * d.sqrt()).powi(2);
    first.min(second)
}

/// The real σ solving ρ(σ) = target, by bisection on the continuous σ.
fn sigma_independent(rho: f64, delta: f64, d: f64, h: u32) -> f64 {
    let (mut lo, mut hi) = (0.5f64, 1e12f64);
    for _ in 0..400 {
        let mid = 0.5 * (lo + hi);
        if rho_independent(mid, delta, d, h) <= rho {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[test]
fn calibration_matches_known_answers() {
    // (ρ, n, t, Δ, d) → σ·1024 rounded up, computed independently (Python, 300 bisection
    // steps of the KLS Prop. 14 bound with h = n − t honest parties).
    let known: [(&str, u32, u32, f64, u64, u64); 5] = [
        ("0.1", 3, 1, 1.0, 1, 1620),
        ("0.01", 5, 2, 1.0, 1, 4181),
        ("0.05", 3, 1, 260.0, 1, 595_331),
        ("0.02", 3, 1, 67_600.0, 5, 244_738_143),
        ("0.25", 3, 1, 1.0, 12, 1027),
    ];
    for (rho, n, t, delta, d, units) in known {
        let s = calibrate(dec(rho), delta, d, (n - t) as usize).expect("calibrates");
        assert_eq!(
            s.units, units,
            "ρ = {rho}, n = {n}, t = {t}, Δ = {delta}, d = {d}"
        );
        // And against the in-test solver: the grid value is the first at or above it.
        let exact = sigma_independent(dec(rho).to_f64(), delta, d as f64, n - t);
        assert!(s.to_f64() >= exact && s.to_f64() - exact < 1.0 / 1024.0);
        assert!(kls_rho(s.to_f64(), delta, d, u64::from(n - t)) <= dec(rho).to_f64());
    }
    // Only honest noise counts: at n = 5 a threshold of t = 2 needs more noise per party
    // than t = 1 for the same promise.
    let t2 = calibrate(dec("0.01"), 1.0, 1, 3).expect("ok");
    let t1 = calibrate(dec("0.01"), 1.0, 1, 4).expect("ok");
    assert!(t2 > t1);
    // σ is at least 1.
    assert_eq!(calibrate(dec("0.5"), 1.0, 20, 4).expect("ok").units, 1024);
}

/// Exact probabilities of N_Z(0, σ²) conditioned on |x| ≤ M (what the pool draws).
fn truncated_gaussian(sigma: f64, m: i64) -> Vec<f64> {
    let w: Vec<f64> = (-m..=m)
        .map(|x| (-(x as f64).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|v| v / total).collect()
}

fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

#[test]
fn summed_noise_matches_the_exact_convolution() {
    // Three parties with σ = 2, 2 and 3.5 (different on purpose), 40,000 jobs' worth of
    // noise, fixed seeds. Test: Pearson chi-square over the support, tails merged so that
    // every bin expects ≥ 5, against the exact convolution of the three truncated discrete
    // Gaussians; the statistic with k degrees of freedom is mapped to a standard normal by
    // the Wilson–Hilferty transform and must be below 3.09 (p > 0.001 one-sided).
    let sigmas = [
        Sigma { units: 2048 },
        Sigma { units: 2048 },
        Sigma { units: 3584 },
    ];
    let samples = 40_000usize;
    let mut sums = vec![0i64; samples];
    for (i, &s) in sigmas.iter().enumerate() {
        let mut pool = NoisePool::new(ChaCha20Rng::seed_from_u64(100 + i as u64));
        pool.refill(s, samples).expect("refill");
        let z = pool.take(s, samples).expect("enough");
        assert!(z.as_slice().iter().all(|v| v.unsigned_abs() <= s.bound()));
        for (acc, v) in sums.iter_mut().zip(z.as_slice()) {
            *acc += v;
        }
    }
    let pmfs: Vec<Vec<f64>> = sigmas
        .iter()
        .map(|s| truncated_gaussian(s.to_f64(), s.bound() as i64))
        .collect();
    let exact = convolve(&convolve(&pmfs[0], &pmfs[1]), &pmfs[2]);
    let offset: i64 = sigmas.iter().map(|s| s.bound() as i64).sum();
    let mut observed = vec![0u64; exact.len()];
    for v in &sums {
        observed[(v + offset) as usize] += 1;
    }
    // Merge into bins expecting ≥ 5.
    let n = samples as f64;
    let (mut bins_e, mut bins_o) = (Vec::new(), Vec::new());
    let (mut e, mut o) = (0.0, 0u64);
    for (p, c) in exact.iter().zip(&observed) {
        e += p * n;
        o += c;
        if e >= 5.0 {
            bins_e.push(e);
            bins_o.push(o);
            (e, o) = (0.0, 0);
        }
    }
    if let (Some(le), Some(lo)) = (bins_e.last_mut(), bins_o.last_mut()) {
        *le += e;
        *lo += o;
    }
    let chi2: f64 = bins_e
        .iter()
        .zip(&bins_o)
        .map(|(e, &o)| (o as f64 - e).powi(2) / e)
        .sum();
    let k = (bins_e.len() - 1) as f64;
    let z = ((chi2 / k).cbrt() - (1.0 - 2.0 / (9.0 * k))) / (2.0 / (9.0 * k)).sqrt();
    assert!(
        z < 3.09,
        "chi-square {chi2:.1} with {k} dof (z = {z:.2}): not the convolution"
    );
    // And the variance is the sum of the parties' (4 + 4 + 12.25 = 20.25).
    let mean = sums.iter().sum::<i64>() as f64 / n;
    let var = sums.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert!((var - 20.25).abs() < 0.6, "variance {var}");
    assert!(mean.abs() < 0.1, "mean {mean}");
}

#[test]
fn the_pool_refuses_to_sample_during_a_job() {
    let s = Sigma { units: 5000 };
    let mut pool = NoisePool::new(ChaCha20Rng::seed_from_u64(1));
    let e = pool.take(s, 3).expect_err("empty");
    assert!(
        e.to_string()
            .contains("holds 0 samples, the job needs 3: refill it between jobs"),
        "{e}"
    );
    pool.refill(s, 10).expect("refill");
    assert_eq!(pool.available(s), 10);
    let z = pool.take(s, 4).expect("enough");
    assert_eq!(z.len(), 4);
    assert_eq!(pool.available(s), 6);
    assert!(format!("{z:?}").contains("redacted"));
    // Debug shows σ and counts, never samples.
    assert_eq!(
        format!("{pool:?}"),
        "NoisePool { pooled: [(\"4.8828125\", 6)], .. }"
    );
}
