//! Exact range checks of shared inputs with bits supplied by their owner.
//!
//! Owns [`Circuit::assert_range`] and the owner's side, [`range_hint`]. The value x to check
//! is shared by one party (an input, or an affine or quadratic function of that party's
//! inputs, like `count·hi − Σx`); the same party also inputs, as a hint, the bits of x − lo
//! and of hi − x (w bits each, 2^w > hi − lo). The circuit asserts, under a named check:
//! every hint element is a bit (b·(b − 1) = 0), and x − lo = Σ 2^i·b_i and
//! hi − x = Σ 2^i·b'_i. With 2^(w+1) < p the two sums (each in [0, 2^w)) add up to
//! hi − lo exactly, so lo ≤ x ≤ hi as integers — for any field element x a cheating owner
//! might share, with no statistical assumption (a comparison by masked opening would need x
//! to be in range already, which is exactly what is being checked).
//!
//! Cost: 2w multiplications per element, one round, no opening; the assertions are checked
//! in the next verification after the multiplication check (a failure names the check).
//! Range checks go before the job's first checkpoint, so no value derived from an unchecked
//! input is ever opened.

use super::Circuit;
use crate::error::MpcError;
use crate::field::Field;
use crate::program::Reg;
use num_bigint::BigInt;
use num_traits::{One, Signed, Zero};

/// Bits needed for a range of width `hi − lo` (so that 2^w > hi − lo).
pub fn range_width(lo: &BigInt, hi: &BigInt) -> u32 {
    let w = hi - lo;
    u32::try_from(w.bits()).unwrap_or(u32::MAX).max(1)
}

/// The owner's hint for [`Circuit::assert_range`]: for each element the w bits of x − lo,
/// then for each element the w bits of hi − x, bit-major within each half (bit i of element
/// j at i·len + j). Refuses a value outside [lo, hi] (an honest node clips first, so this is
/// a bug in the caller, never data to send).
pub fn range_hint<F: Field>(
    values: &[BigInt],
    lo: &[BigInt],
    hi: &[BigInt],
    w: u32,
    what: &str,
) -> Result<Vec<F>, MpcError> {
    let len = values.len();
    let at = |v: &[BigInt], j: usize| -> BigInt {
        if v.len() == 1 {
            v[0].clone()
        } else {
            v.get(j).cloned().unwrap_or_default()
        }
    };
    let mut lower = Vec::with_capacity(len);
    let mut upper = Vec::with_capacity(len);
    for (j, x) in values.iter().enumerate() {
        let (l, h) = (at(lo, j), at(hi, j));
        if x < &l || x > &h {
            return Err(MpcError::Input(format!(
                "{what}: element {j} is outside its declared bounds, so it cannot be shared (clip the data first)"
            )));
        }
        lower.push(x - &l);
        upper.push(&h - x);
    }
    Ok(hint_bits(&lower, &upper, w))
}

/// The hint for arbitrary offsets (a cheating owner's, for tests): the low w bits of
/// x − lo and hi − x taken modulo 2^w, whatever they are.
pub fn range_hint_unchecked<F: Field>(
    values: &[BigInt],
    lo: &BigInt,
    hi: &BigInt,
    w: u32,
) -> Vec<F> {
    let lower: Vec<BigInt> = values.iter().map(|x| x - lo).collect();
    let upper: Vec<BigInt> = values.iter().map(|x| hi - x).collect();
    hint_bits(&lower, &upper, w)
}

/// The hint's layout from the offsets x − lo (`lower`) and hi − x (`upper`): bit i of
/// element j of each half at i·len + j, low w bits (two's complement for negative offsets,
/// which only a cheater has).
pub(crate) fn hint_bits<F: Field>(lower: &[BigInt], upper: &[BigInt], w: u32) -> Vec<F> {
    let len = lower.len();
    let mut out = vec![F::zero(); 2 * w as usize * len];
    let m: BigInt = BigInt::one() << w;
    for (half, vals) in [lower, upper].into_iter().enumerate() {
        for (j, v) in vals.iter().enumerate() {
            let mut r = v % &m;
            if r.is_negative() {
                r += &m;
            }
            for i in 0..w {
                if !(&r >> i & BigInt::one()).is_zero() {
                    out[(half * w as usize + i as usize) * len + j] = F::one();
                }
            }
        }
    }
    out
}

impl<F: Field> Circuit<F> {
    /// Asserts lo ≤ x ≤ hi element-wise under the check named `check`, given the owner's
    /// hint register (2·w·len elements from [`range_hint`]); `lo` and `hi` have one entry
    /// per element or one for all. See the module docs.
    pub fn assert_range(
        &mut self,
        x: Reg,
        lo: &[BigInt],
        hi: &[BigInt],
        w: u32,
        hint: Reg,
        check: &str,
    ) {
        let len = self.len(x);
        if self.len(hint) != 2 * w as usize * len {
            self.b.fail(format!(
                "range check {check:?}: hint of {} elements, expected 2·{w}·{len}",
                self.len(hint)
            ));
            return;
        }
        if w + 1 >= F::BITS {
            self.refuse(
                check,
                u64::from(w),
                u64::from(F::BITS - 2),
                format!("an exact range check needs 2^(w+1) < p in {}", F::NAME),
            );
            return;
        }
        let consts = |v: &[BigInt]| -> Vec<F> {
            if v.len() == 1 {
                vec![super::from_bigint(&v[0])]
            } else {
                v.iter().map(super::from_bigint).collect()
            }
        };
        // Every hint element is a bit.
        let one = self.scalar(F::one());
        let hm1 = self.b.sub(hint, one);
        let sq = self.b.mul(hint, hm1);
        self.b.assert_zero(sq, check);
        // x − lo = Σ 2^i·b_i and hi − x = Σ 2^i·b'_i.
        let lo_c = self.b.constant(consts(lo));
        let hi_c = self.b.constant(consts(hi));
        let lower = self.b.sub(x, lo_c);
        let upper = self.b.sub(hi_c, x);
        for (half, target) in [lower, upper].into_iter().enumerate() {
            let bits: Vec<Reg> = (0..w as usize)
                .map(|i| self.b.slice(hint, (half * w as usize + i) * len, len))
                .collect();
            if let Some(sum) = self.from_bits(&bits) {
                let d = self.b.sub(target, sum);
                self.b.assert_zero(d, check);
            }
        }
    }
}
