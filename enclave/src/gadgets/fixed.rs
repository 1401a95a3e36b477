//! Fixed-point arithmetic on shares: probabilistic truncation (Catrina–Saxena 2010),
//! multiplication, and reciprocal, division, square root and inverse square root by
//! Goldschmidt iterations after a secret normalisation.
//!
//! Owns [`FixedFormat`] (signed k-bit values with f fractional bits), [`Circuit::trunc_pr`],
//! [`Circuit::fx_mul`], the normalised cores [`Circuit::norm_reciprocal`] and
//! [`Circuit::norm_sqrt`] (on integers, with a chosen working precision — the analytics
//! use these directly), and [`Circuit::fx_reciprocal`], [`Circuit::fx_div`],
//! [`Circuit::fx_sqrt`], [`Circuit::fx_inv_sqrt`].
//!
//! # Representation
//!
//! x is held as x̃ = round(x·2^f) with |x̃| ≤ 2^(k−1) − 1 (a symmetric range, so a product of
//! two values has |x̃·ỹ| < 2^(2k−2) and fits 2k − 1 signed bits).
//!
//! # Limits: (k, f, κ) per field
//!
//! A product is truncated from K = 2k − 1 bits by a masked opening, so
//! 2k − 1 ≤ [`super::max_masked_bits`] (K + κ + log2 C(n, t) < log2 p). With κ = 60
//! (≤ 2^20 masked openings per job, each ≤ 2^−60, total ≤ 2^−40):
//!
//! | field | n = 3 | n = 5 (t = 2) | n = 7 (t = 3) |
//! |---|---|---|---|
//! | 2^127 − 1 | k ≤ 33 | k ≤ 32 | k ≤ 31 |
//! | 2^521 − 1 | k ≤ 230 | k ≤ 229 | k ≤ 228 |
//!
//! f < k is free within that; the reciprocal and square root need f even and 2f < k − 1 for
//! 1/x to be representable near the smallest inputs. 2^61 − 1 has no room for κ = 60 and
//! is refused. [`FixedFormat::check`] tests a format against a circuit and names the value,
//! its bits and what to change.
//!
//! # Accuracy (documented bounds, checked by the property tests against f64)
//!
//! - `trunc_pr(a, K, m)` returns ⌊a/2^m⌋ + u with u ∈ {0, 1}, u = 1 with probability
//!   (a mod 2^m)/2^m: unbiased, error < 1.
//! - `fx_mul`: |result − x·y| < 2^−f (one truncation).
//! - `norm_reciprocal(d, kd, p)`, working precision p: the returned w has relative error
//!   ≤ 2^(−p+3) (Goldschmidt error e0^(2^i) ≤ 2^(−p−1) after i iterations, e0 ≤ 0.0858, plus
//!   one ulp of 2^−p per truncation).
//! - `fx_reciprocal(x)`: |result − 1/x| ≤ 2^−f + 2^(−p+3)·|1/x|, with p the largest working
//!   precision the field allows ([`Circuit::fx_precision`]: 31 at n = 3, 30 at n = 5, 29 at
//!   n = 7 in 2^127 − 1).
//! - `fx_div(a, b)`: |result − a/b| ≤ 2·2^−f + |a|·(2^−f + 2^(−p+3)/|b|).
//! - `fx_sqrt(x)`: |result − √x| ≤ 2^−f + 2^(−p+4)·√x; `fx_inv_sqrt` likewise with 1/√x.
//!
//! # Cost
//!
//! `trunc_pr`: m random bits, 1 masked opening, 1 round. `fx_mul`: 1 multiplication + a
//! truncation, 2 rounds. Reciprocal and inverse square root: one bit decomposition and
//! MSB search (about 2K·lg K multiplications, 2 + 2·⌈lg K⌉ rounds), then 3–6 Goldschmidt
//! iterations of two multiplications and two truncations each; every iteration multiplies
//! values that depend on unverified products, so each is preceded by a checkpoint
//! (see [`super`]): about 8 rounds per iteration.

use super::{Circuit, inv_pow2, pow2};
use crate::error::MpcError;
use crate::field::Field;
use crate::program::{PublicFn, Reg};

/// What [`Circuit::norm_sqrt`] returns (see there).
#[derive(Clone, Copy, Debug)]
pub struct NormSqrt {
    /// 2^(s/2).
    pub u: Reg,
    /// 2^(K2/2 − s/2).
    pub u_inv: Reg,
    /// ≈ 2^p·√y.
    pub g: Reg,
    /// ≈ 2^p/√y.
    pub h: Reg,
}

/// Signed fixed-point values of `k` bits with `f` fractional bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FixedFormat {
    /// Total bits including the sign.
    pub k: u32,
    /// Fractional bits.
    pub f: u32,
}

impl FixedFormat {
    /// The default format of DESIGN §5: k = 32, f = 16.
    pub const DEFAULT: FixedFormat = FixedFormat { k: 32, f: 16 };

    /// Largest representable magnitude of x̃, 2^(k−1) − 1.
    pub fn max_raw(&self) -> i128 {
        (1i128 << (self.k - 1)) - 1
    }

    /// x̃ = round(x·2^f), if representable.
    pub fn encode_f64(&self, x: f64) -> Option<i128> {
        let v = (x * (self.f as f64).exp2()).round();
        (v.is_finite() && v.abs() <= self.max_raw() as f64).then_some(v as i128)
    }

    /// The element holding x̃.
    pub fn to_field<F: Field>(&self, raw: i128) -> F {
        super::from_bigint(&num_bigint::BigInt::from(raw))
    }

    /// x̃ of a public element (centred), if within the format.
    pub fn raw_of<F: Field>(&self, x: F) -> Option<i128> {
        let v = x.to_i128_vartime()?;
        (v.abs() <= self.max_raw()).then_some(v)
    }

    /// x̃ / 2^f.
    pub fn to_f64(&self, raw: i128) -> f64 {
        raw as f64 / (self.f as f64).exp2()
    }

    /// Checks the format against a circuit's limits: a product's 2k − 1 bits must fit a
    /// masked opening. The error names the format, the bits and what to change.
    pub fn check<F: Field>(&self, c: &Circuit<F>) -> Result<(), MpcError> {
        let max = c.max_masked_bits();
        if self.f >= self.k || self.k < 2 {
            return Err(MpcError::Program(format!(
                "fixed-point format k = {}, f = {}: need 2 ≤ k and f < k",
                self.k, self.f
            )));
        }
        if 2 * self.k - 1 > max {
            return Err(crate::error::LimitError {
                value: format!(
                    "a product of two fixed-point values with k = {} bits (f = {})",
                    self.k, self.f
                ),
                bits: u64::from(2 * self.k - 1),
                limit: u64::from(max),
                reason: format!(
                    "its truncation is a masked opening in {} with κ = {} at n = {}, t = {}",
                    F::NAME,
                    c.kappa(),
                    c.n(),
                    c.t()
                ),
                advice: format!(
                    "use k ≤ {} (keeping f = {}), or the 2^521 − 1 field",
                    max.div_ceil(2),
                    self.f
                ),
            }
            .into());
        }
        Ok(())
    }
}

/// Goldschmidt iterations for an initial relative error `e0` and a squaring factor `c`
/// (ε ← c·ε²) to reach 2^(−p−1).
fn iterations(e0: f64, c: f64, p: u32) -> u32 {
    let target = (-(f64::from(p) + 1.0)).exp2();
    let mut e = e0;
    let mut i = 0;
    while e > target && i < 16 {
        e = c * e * e;
        i += 1;
    }
    i
}

impl<F: Field> Circuit<F> {
    /// ⌊a / 2^m⌋ + u for a K-bit signed `a`, u ∈ {0, 1} with probability (a mod 2^m)/2^m
    /// (Catrina–Saxena): open c = 2^(K−1) + a + r' + 2^m·r'' (r' from m random bits) and
    /// return (a − (c mod 2^m) + r')/2^m. 1 round, 1 masked opening, no multiplication.
    pub fn trunc_pr(&mut self, a: Reg, k: u32, m: u32, what: &str) -> Reg {
        if m == 0 {
            return a;
        }
        if m >= k {
            self.b.fail(format!(
                "trunc_pr of {what}: need m < K, got m = {m}, K = {k}"
            ));
            return a;
        }
        let len = self.len(a);
        self.check_masked(what, k);
        let bits = self.random_bits(len, m);
        let r1 = self.from_bits(&bits).unwrap_or(a);
        let r2 = self.b.random_int(len, (k + self.kappa - m).max(1));
        let r2s = self.b.scale(r2, pow2(m));
        let mask = self.b.add(r1, r2s);
        let shifted = self.add_scalar(a, pow2(k - 1));
        let masked = self.b.add(shifted, mask);
        let mut parts = bits;
        parts.push(r2);
        let c = self.open_masked(masked, a, &parts);
        let low = self.b.public_map(c, PublicFn::LowBits(m));
        let d = self.b.sub(a, low);
        let d = self.b.add(d, r1);
        self.b.scale(d, inv_pow2(m))
    }

    /// x·y in `fmt`: one multiplication and a truncation of 2k − 1 bits by f.
    pub fn fx_mul(&mut self, x: Reg, y: Reg, fmt: FixedFormat, what: &str) -> Reg {
        let p = self.b.mul(x, y);
        self.trunc_pr(p, 2 * fmt.k - 1, fmt.f, what)
    }

    /// The largest working precision p for the iterations: products of p-bit fractions
    /// need 2p + 3 bits.
    pub fn fx_precision(&self) -> u32 {
        self.max_masked_bits().saturating_sub(3) / 2
    }

    /// Normalised reciprocal of an integer d ∈ [1, 2^kd): returns (v, w) with
    /// v = 2^(kd−1−⌊lg d⌋) (shared) and w ≈ 2^(kd+p)/(d·v) ∈ (2^p, 2^(p+1)], so that
    /// 1/d ≈ v·w / 2^(kd+p), relative error ≤ 2^(−p+3).
    pub fn norm_reciprocal(&mut self, d: Reg, kd: u32, p: u32, what: &str) -> (Reg, Reg) {
        let onehot = self.msb_onehot(d, kd, what);
        let v = self.weighted(&onehot, |j| pow2(kd - 1 - j));
        let y = self.b.mul(d, v);
        // ỹ = y with p fractional bits of y/2^kd ∈ [1/2, 1).
        let yt = self.rescale(y, kd + 1, kd, p, what);
        // w0 = 2.9142 − 2·y (relative error ≤ 0.0858 on [1/2, 1]).
        let c0 = self.scalar(const_fixed::<F>(2.9142, p));
        let y2 = self.b.scale(yt, F::from_u64(2));
        let mut w = self.b.sub(c0, y2);
        let width = 2 * p + 3;
        let yw = self.b.mul(yt, w);
        let yw = self.trunc_pr(yw, width, p, what);
        let one = self.scalar(pow2(p));
        let mut e = self.b.sub(one, yw);
        for _ in 0..iterations(0.0858, 1.0, p) {
            // w ← w·(1 + e), e ← e²: independent products, one round.
            let ope = self.b.add(one, e);
            let wn = self.b.mul(w, ope);
            let en = self.b.mul(e, e);
            w = self.trunc_pr(wn, width, p, what);
            e = self.trunc_pr(en, width, p, what);
        }
        (v, w)
    }

    /// Normalised square root and inverse square root of an integer d ∈ [1, 2^kd): with
    /// K2 = kd rounded up to even and s the even shift that brings d·2^s into
    /// [2^(K2−2), 2^K2), y = d·2^s/2^K2 ∈ [1/4, 1); returns u = 2^(s/2), u' = 2^(K2/2 − s/2)
    /// (shared), g ≈ 2^p·√y and h ≈ 2^p/√y, so that √d ≈ u'·g/2^p and
    /// 1/√d ≈ u·h/2^(K2/2 + p), each with relative error ≤ 2^(−p+4).
    pub fn norm_sqrt(&mut self, d: Reg, kd: u32, p: u32, what: &str) -> NormSqrt {
        let k2 = kd + (kd % 2);
        let onehot = self.msb_onehot(d, kd, what);
        let even = |j: u32| {
            let s = k2 - 1 - j;
            s - (s % 2)
        };
        let vs = self.weighted(&onehot, |j| pow2(even(j)));
        let u = self.weighted(&onehot, |j| pow2(even(j) / 2));
        let u_inv = self.weighted(&onehot, |j| pow2(k2 / 2 - even(j) / 2));
        let y = self.b.mul(d, vs);
        let yt = self.rescale(y, k2 + 1, k2, p, what);
        // w0 = 2.134 − 1.22·y ≈ 1/√y on [1/4, 1] (relative error ≤ 0.0864).
        let a0 = self.scalar(const_fixed::<F>(2.134, p));
        let b0 = const_fixed::<F>(1.22, p);
        let by = self.b.scale(yt, b0);
        let by = self.trunc_pr(by, 2 * p + 3, p, what);
        let w0 = self.b.sub(a0, by);
        let width = 2 * p + 3;
        // g → √y, h → 1/√y: ρ = 1 − g·h; g ← g + g·ρ/2; h ← h + h·ρ/2 (the halving is
        // part of the truncation: a fixed-point value is never divided by 2 in the field).
        let g = self.b.mul(yt, w0);
        let mut g = self.trunc_pr(g, width, p, what);
        let mut h = w0;
        let one = self.scalar(pow2(p));
        for _ in 0..iterations(0.0864, 1.5, p) {
            let gh = self.b.mul(g, h);
            let gh = self.trunc_pr(gh, width, p, what);
            let rho = self.b.sub(one, gh);
            let gr = self.b.mul(g, rho);
            let hr = self.b.mul(h, rho);
            let gr = self.trunc_pr(gr, width, p + 1, what);
            let hr = self.trunc_pr(hr, width, p + 1, what);
            g = self.b.add(g, gr);
            h = self.b.add(h, hr);
        }
        NormSqrt { u, u_inv, g, h }
    }

    /// 1/x in `fmt` for x > 0 (x̃ ∈ [1, 2^(k−1))).
    pub fn fx_reciprocal(&mut self, x: Reg, fmt: FixedFormat, what: &str) -> Reg {
        let kd = fmt.k - 1;
        let p = self.fx_precision();
        let (v, w) = self.norm_reciprocal(x, kd, p, what);
        // 2^(2f)/x̃ = v·w·2^(2f − kd − p).
        let vw = self.b.mul(v, w);
        self.shift(
            vw,
            kd + p + 2,
            i64::from(2 * fmt.f) - i64::from(kd + p),
            what,
        )
    }

    /// a/b in `fmt` for b > 0: a · (1/b).
    pub fn fx_div(&mut self, a: Reg, b: Reg, fmt: FixedFormat, what: &str) -> Reg {
        let r = self.fx_reciprocal(b, fmt, what);
        self.fx_mul(a, r, fmt, what)
    }

    /// 1/√x in `fmt` for x > 0 (f even).
    pub fn fx_inv_sqrt(&mut self, x: Reg, fmt: FixedFormat, what: &str) -> Reg {
        let kd = fmt.k - 1;
        let k2 = kd + (kd % 2);
        let p = self.fx_precision();
        let NormSqrt { u, h, .. } = self.norm_sqrt(x, kd, p, what);
        // 2^f/√(x̃/2^f) = 2^(3f/2)·u·h/2^(K2/2 + p).
        let uh = self.b.mul(u, h);
        self.shift(
            uh,
            k2 / 2 + p + 3,
            i64::from(3 * fmt.f / 2) - i64::from(k2 / 2 + p),
            what,
        )
    }

    /// √x in `fmt` for x ≥ 0 (f even); x = 0 gives 0.
    pub fn fx_sqrt(&mut self, x: Reg, fmt: FixedFormat, what: &str) -> Reg {
        let kd = fmt.k - 1;
        let k2 = kd + (kd % 2);
        let p = self.fx_precision();
        // The normalisation needs x ≥ 1 ulp: take max(x, 1) and zero the result at x = 0.
        let is_zero = self.eqz(x, fmt.k, what);
        let xs = self.b.add(x, is_zero);
        let NormSqrt { u_inv, g, .. } = self.norm_sqrt(xs, kd, p, what);
        // 2^f·√(x̃/2^f) = 2^(f/2)·u'·g/2^p.
        let ug = self.b.mul(u_inv, g);
        let r = self.shift(
            ug,
            k2 / 2 + p + 3,
            i64::from(fmt.f / 2) - i64::from(p),
            what,
        );
        let one = self.scalar(F::one());
        let nz = self.b.sub(one, is_zero);
        self.b.mul(r, nz)
    }

    /// `Σ_j onehot[j]·c(j)` for public constants c(j).
    pub fn weighted(&mut self, onehot: &[Reg], c: impl Fn(u32) -> F) -> Reg {
        let mut acc: Option<Reg> = None;
        for (j, &e) in onehot.iter().enumerate() {
            let t = self.b.scale(e, c(j as u32));
            acc = Some(match acc {
                Some(a) => self.b.add(a, t),
                None => t,
            });
        }
        acc.unwrap_or_else(|| self.scalar(F::zero()))
    }

    /// y (an integer of `bits` bits with `from` fractional bits) with `to` fractional bits.
    fn rescale(&mut self, y: Reg, width: u32, from: u32, to: u32, what: &str) -> Reg {
        if from > to {
            self.trunc_pr(y, width, from - to, what)
        } else {
            self.b.scale(y, pow2(to - from))
        }
    }

    /// a·2^s: a probabilistic truncation for s < 0 (a of `width` signed bits).
    pub fn shift(&mut self, a: Reg, width: u32, s: i64, what: &str) -> Reg {
        match u32::try_from(s.unsigned_abs()) {
            Ok(m) if s < 0 => self.trunc_pr(a, width, m, what),
            Ok(m) => self.b.scale(a, pow2(m)),
            Err(_) => {
                self.b.fail(format!("shift of {what} by {s} bits"));
                a
            }
        }
    }
}

/// round(c·2^p) as a field element (c > 0, p ≤ 1000).
fn const_fixed<F: Field>(c: f64, p: u32) -> F {
    // c·2^p exactly: c = mantissa·2^e with an integer mantissa below 2^53.
    let scaled = c * 2f64.powi(52);
    let mant = scaled.round() as u64;
    let v = F::from_u64(mant);
    if p >= 52 {
        v * pow2(p - 52)
    } else {
        // Round mant / 2^(52 − p).
        let sh = 52 - p;
        F::from_u64((mant + (1 << (sh - 1))) >> sh)
    }
}
