//! Shamir secret sharing over a [`Field`] with the federation's evaluation points.
//!
//! Owns: validated parameters ([`Shamir`]: points from the manifest, threshold t), dealing
//! degree-t sharings, Lagrange coefficients, and the **degree-t consistency check** used by
//! every opening: all n shares must lie on one polynomial of degree ≤ t, else the opening
//! fails with [`CheckFailure::OpeningConsistency`]. With t < n/2 the n − t ≥ t + 1 honest
//! shares fix that polynomial, so a corrupted party cannot change an opened value without
//! failing the check.

use crate::error::{CheckFailure, ConfigError, MpcError};
use crate::field::Field;
use crate::secret::SecretVec;
use rand_core::Rng;

/// Largest evaluation point accepted: small manifest integers, distinct in every field.
pub const MAX_POINT: u64 = 1 << 32;

/// Lagrange coefficients `L_j(x)` for interpolating through `xs` and evaluating at `x`;
/// `None` if two points coincide.
pub fn lagrange_coefficients<F: Field>(xs: &[F], x: F) -> Option<Vec<F>> {
    let mut out = Vec::with_capacity(xs.len());
    for (j, &xj) in xs.iter().enumerate() {
        let mut num = F::one();
        let mut den = F::one();
        for (m, &xm) in xs.iter().enumerate() {
            if m != j {
                num *= x - xm;
                den *= xj - xm;
            }
        }
        out.push(num * den.inverse()?);
    }
    Some(out)
}

/// Shamir parameters for one federation: n evaluation points and the threshold t.
///
/// Construction precomputes the coefficients for reconstruction and for the degree-t check.
#[derive(Clone, Debug)]
pub struct Shamir<F: Field> {
    points_u64: Vec<u64>,
    points: Vec<F>,
    t: usize,
    /// Lagrange coefficients at 0 over the first t + 1 points.
    recon: Vec<F>,
    /// For each party k > t: coefficients predicting its share from the first t + 1 shares.
    predict: Vec<Vec<F>>,
}

impl<F: Field> Shamir<F> {
    /// Validates `points` (nonzero, distinct, at most [`MAX_POINT`]) and `t` (1 ≤ t, 2t < n).
    pub fn new(points: &[u64], t: usize) -> Result<Self, MpcError> {
        let n = points.len();
        if t == 0 || 2 * t >= n {
            return Err(ConfigError::Threshold { t, n }.into());
        }
        for (i, &p) in points.iter().enumerate() {
            if p == 0 {
                return Err(ConfigError::ZeroPoint { party: i }.into());
            }
            if p > MAX_POINT {
                return Err(ConfigError::PointTooLarge {
                    party: i,
                    point: p,
                    max: MAX_POINT,
                }
                .into());
            }
            if let Some(a) = points[..i].iter().position(|&q| q == p) {
                return Err(ConfigError::DuplicatePoint { a, b: i, point: p }.into());
            }
        }
        let fpoints: Vec<F> = points.iter().map(|&p| F::from_u64(p)).collect();
        let base = &fpoints[..=t];
        let distinct = || ConfigError::Other("evaluation points collide in the field".into());
        let recon = lagrange_coefficients(base, F::zero()).ok_or_else(distinct)?;
        let predict = fpoints[t + 1..]
            .iter()
            .map(|&x| lagrange_coefficients(base, x).ok_or_else(distinct))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            points_u64: points.to_vec(),
            points: fpoints,
            t,
            recon,
            predict,
        })
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.points.len()
    }
    /// The threshold: any t shares reveal nothing, t + 1 reconstruct.
    pub fn t(&self) -> usize {
        self.t
    }
    /// Party `i`'s evaluation point as a field element. Panics if `i ≥ n` (our own indices).
    pub fn point(&self, i: usize) -> F {
        self.points[i]
    }
    /// All evaluation points as given in the manifest.
    pub fn points(&self) -> &[u64] {
        &self.points_u64
    }
    /// All evaluation points as field elements.
    pub fn field_points(&self) -> &[F] {
        &self.points
    }

    /// Shares one secret: returns party `i`'s share at index `i`.
    pub fn share<R: Rng + ?Sized>(&self, secret: F, rng: &mut R) -> Vec<F> {
        let mut coeffs = vec![F::zero(); self.t + 1];
        coeffs[0] = secret;
        F::fill_random(rng, &mut coeffs[1..]);
        let shares = self.points.iter().map(|&x| horner(&coeffs, x)).collect();
        zeroize::Zeroize::zeroize(&mut coeffs);
        shares
    }

    /// Shares a vector: returns one [`SecretVec`] per party, party `i`'s at index `i`.
    pub fn share_slice<R: Rng + ?Sized>(&self, secrets: &[F], rng: &mut R) -> Vec<SecretVec<F>> {
        const BLOCK: usize = 1024;
        let m = secrets.len();
        let t = self.t;
        let mut out: Vec<SecretVec<F>> = self.points.iter().map(|_| SecretVec::zeros(m)).collect();
        // Coefficients c_1..c_t for one block, coefficient-major.
        let mut coeffs = SecretVec::<F>::zeros(t * BLOCK.min(m.max(1)));
        let mut start = 0;
        while start < m {
            let b = BLOCK.min(m - start);
            let c = &mut coeffs.as_mut_slice()[..t * b];
            F::fill_random(rng, c);
            let s = &secrets[start..start + b];
            for (share, &x) in out.iter_mut().zip(&self.points) {
                let dst = &mut share.as_mut_slice()[start..start + b];
                // Horner: ((c_t·x + c_{t−1})·x + …)·x + s, fused per element.
                dst.copy_from_slice(&c[(t - 1) * b..t * b]);
                for k in (0..t - 1).rev() {
                    for (d, &ck) in dst.iter_mut().zip(&c[k * b..(k + 1) * b]) {
                        *d = *d * x + ck;
                    }
                }
                for (d, &si) in dst.iter_mut().zip(s) {
                    *d = *d * x + si;
                }
            }
            start += b;
        }
        out
    }

    /// Reconstructs from at least t + 1 shares given as `(party index, share)`: interpolates
    /// through the first t + 1 and requires every further share to lie on the same
    /// polynomial of degree ≤ t.
    pub fn reconstruct(&self, shares: &[(usize, F)]) -> Result<F, MpcError> {
        let n = self.n();
        if shares.len() < self.t + 1 {
            return Err(MpcError::Input(format!(
                "{} shares given, reconstruction needs at least t + 1 = {}",
                shares.len(),
                self.t + 1
            )));
        }
        for (k, &(i, _)) in shares.iter().enumerate() {
            if i >= n {
                return Err(MpcError::UnknownParty { from: i, n });
            }
            if shares[..k].iter().any(|&(j, _)| j == i) {
                return Err(MpcError::Input(format!("share of party {i} given twice")));
            }
        }
        let (base, rest) = shares.split_at(self.t + 1);
        let xs: Vec<F> = base.iter().map(|&(i, _)| self.points[i]).collect();
        let ys: Vec<F> = base.iter().map(|&(_, y)| y).collect();
        let internal = || MpcError::Misuse("validated points collide");
        let at_zero = lagrange_coefficients(&xs, F::zero()).ok_or_else(internal)?;
        for &(i, y) in rest {
            let c = lagrange_coefficients(&xs, self.points[i]).ok_or_else(internal)?;
            if F::dot(&c, &ys) != y {
                return Err(CheckFailure::OpeningConsistency {
                    context: "reconstruction",
                    element: 0,
                    degree: self.t,
                    shares: shares.len(),
                }
                .into());
            }
        }
        Ok(F::dot(&at_zero, &ys))
    }

    /// Opens vectors shared among all n parties: `shares[i]` is party `i`'s share vector.
    /// Every element must pass the degree-t consistency check over all n shares; the error
    /// names `context` and the first failing element.
    pub fn open_checked(&self, shares: &[&[F]], context: &'static str) -> Result<Vec<F>, MpcError> {
        let n = self.n();
        if shares.len() != n {
            return Err(MpcError::Misuse(
                "open_checked needs one share vector per party",
            ));
        }
        let m = shares[0].len();
        if shares.iter().any(|s| s.len() != m) {
            return Err(MpcError::Misuse(
                "open_checked share vectors differ in length",
            ));
        }
        let t = self.t;
        let mut value = vec![F::zero(); m];
        for (c, s) in self.recon.iter().zip(&shares[..=t]) {
            F::add_scaled_slice(&mut value, *c, s);
        }
        let mut predicted = vec![F::zero(); m];
        for (coeffs, actual) in self.predict.iter().zip(&shares[t + 1..]) {
            predicted.iter_mut().for_each(|p| *p = F::zero());
            for (c, s) in coeffs.iter().zip(&shares[..=t]) {
                F::add_scaled_slice(&mut predicted, *c, s);
            }
            // Opened values are public, so locating the first mismatch may branch.
            if let Some(element) = predicted
                .iter()
                .zip(actual.iter())
                .position(|(p, a)| p != a)
            {
                return Err(CheckFailure::OpeningConsistency {
                    context,
                    element,
                    degree: t,
                    shares: n,
                }
                .into());
            }
        }
        Ok(value)
    }
}

/// Evaluates the polynomial with coefficients `coeffs` (constant first) at `x`.
fn horner<F: Field>(coeffs: &[F], x: F) -> F {
    coeffs.iter().rev().fold(F::zero(), |acc, &c| acc * x + c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{M61, M127, M521};
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn params(n: usize, t: usize) -> Shamir<M127> {
        let points: Vec<u64> = (1..=n as u64).collect();
        Shamir::new(&points, t).expect("valid")
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(matches!(
            Shamir::<M127>::new(&[1, 2, 3], 2),
            Err(MpcError::Config(ConfigError::Threshold { t: 2, n: 3 }))
        ));
        assert!(matches!(
            Shamir::<M127>::new(&[1, 2, 2], 1),
            Err(MpcError::Config(ConfigError::DuplicatePoint {
                a: 1,
                b: 2,
                point: 2
            }))
        ));
        assert!(matches!(
            Shamir::<M127>::new(&[1, 0, 2], 1),
            Err(MpcError::Config(ConfigError::ZeroPoint { party: 1 }))
        ));
    }

    #[test]
    fn open_checked_names_the_inconsistent_element() {
        let s = params(3, 1);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secrets: Vec<M127> = (0..5).map(M127::from_u64).collect();
        let shares = s.share_slice(&secrets, &mut rng);
        let mut bad = shares[2].duplicate();
        bad.as_mut_slice()[3] += M127::one();
        let views = [shares[0].as_slice(), shares[1].as_slice(), bad.as_slice()];
        let err = s.open_checked(&views, "opening").expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "security check failed, job aborted with no output: opening consistency check failed for element 3 (degree-1 check over 3 shares)"
        );
        let good = [
            shares[0].as_slice(),
            shares[1].as_slice(),
            shares[2].as_slice(),
        ];
        assert_eq!(
            s.open_checked(&good, "opening").expect("consistent"),
            secrets
        );
    }

    fn check_any_subset<F: Field>(n: usize, t: usize, secret: F, seed: u64) {
        let points: Vec<u64> = (0..n as u64).map(|i| 3 * i + 2).collect();
        let s = Shamir::<F>::new(&points, t).expect("valid");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let shares = s.share(secret, &mut rng);
        // Every subset of size ≥ t + 1 reconstructs; checked subsets of size > t + 1 too.
        for mask in 0u32..(1 << n) {
            let subset: Vec<(usize, F)> = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| (i, shares[i]))
                .collect();
            if subset.len() > t {
                assert_eq!(s.reconstruct(&subset).expect("consistent"), secret);
            }
        }
        // A wrong share in a set of t + 2 is caught.
        let mut subset: Vec<(usize, F)> = (0..t + 2).map(|i| (i, shares[i])).collect();
        subset[t + 1].1 += F::one();
        assert!(s.reconstruct(&subset).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn reconstructs_from_any_t_plus_1_m127(a in any::<u128>(), seed in any::<u64>(), n in 3usize..=7) {
            let t = (n - 1) / 2;
            check_any_subset::<M127>(n, t, M127::from_u128(a), seed);
            check_any_subset::<M127>(n, 1, M127::from_u128(a), seed);
        }

        #[test]
        fn reconstructs_from_any_t_plus_1_m61(a in any::<u64>(), seed in any::<u64>(), n in 3usize..=7) {
            check_any_subset::<M61>(n, (n - 1) / 2, M61::from_u64(a), seed);
        }

        #[test]
        fn reconstructs_from_any_t_plus_1_m521(a in any::<u128>(), b in any::<u64>(), seed in any::<u64>(), n in 3usize..=5) {
            let x = M521::from_u128(a) * M521::from_u64(b) * M521::from_u128(a);
            check_any_subset::<M521>(n, (n - 1) / 2, x, seed);
        }

        #[test]
        fn share_slice_matches_share(secrets in proptest::collection::vec(any::<u128>(), 0..20), seed in any::<u64>()) {
            let s = params(5, 2);
            let xs: Vec<M127> = secrets.iter().map(|&a| M127::from_u128(a)).collect();
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let shares = s.share_slice(&xs, &mut rng);
            let views: Vec<&[M127]> = shares.iter().map(|v| v.as_slice()).collect();
            prop_assert_eq!(s.open_checked(&views, "opening").expect("consistent"), xs);
        }
    }
}
