//! The Mersenne prime field p = 2^61 − 1, for integer-only analytics whose values fit.

use super::{Field, FieldError};
use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};
use rand_core::Rng;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

const P: u64 = (1u64 << 61) - 1;

/// An element of GF(2^61 − 1), held as its canonical integer in `[0, p)`.
#[derive(Clone, Copy, Default)]
pub struct M61(u64);

impl zeroize::DefaultIsZeroes for M61 {}

impl M61 {
    /// The modulus 2^61 − 1.
    pub const MODULUS: u64 = P;

    /// The element for a canonical integer; `None` if `x ≥ p`.
    pub const fn new(x: u64) -> Option<Self> {
        if x < P { Some(Self(x)) } else { None }
    }

    /// The canonical integer in `[0, p)`.
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Reduces `s ≤ 2p` to `[0, p)` without branching.
    #[inline(always)]
    const fn reduce_once(s: u64) -> u64 {
        let t = s.wrapping_sub(P);
        let keep_s = (t >> 63).wrapping_neg();
        (s & keep_s) | (t & !keep_s)
    }

    /// Index and error of the first non-canonical element in `bytes` (failure path only).
    fn first_bad(bytes: &[u8]) -> (usize, FieldError) {
        let i = bytes
            .chunks_exact(8)
            .position(|b| Self::from_bytes(b).is_err())
            .unwrap_or(0);
        (i, FieldError::NonCanonical { field: "M61" })
    }

    /// Reduces any `s < 2^128` with `s < 2^122 · 2^6` to `[0, p)`.
    #[inline(always)]
    const fn reduce_u128(s: u128) -> u64 {
        // 2^61 ≡ 1: fold twice, then one conditional subtraction.
        let s = (s & P as u128) + (s >> 61);
        let s = (s & P as u128) + (s >> 61);
        Self::reduce_once(s as u64)
    }
}

impl core::fmt::Debug for M61 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "M61({})", self.0)
    }
}

impl ConstantTimeEq for M61 {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}
impl PartialEq for M61 {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}
impl Eq for M61 {}
impl ConditionallySelectable for M61 {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        Self(u64::conditional_select(&a.0, &b.0, choice))
    }
}

impl Add for M61 {
    type Output = Self;
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        Self(Self::reduce_once(self.0 + rhs.0))
    }
}
impl Sub for M61 {
    type Output = Self;
    #[inline(always)]
    #[allow(clippy::suspicious_arithmetic_impl)] // `&` masks p in without a branch
    fn sub(self, rhs: Self) -> Self {
        let (d, borrow) = self.0.overflowing_sub(rhs.0);
        Self(d.wrapping_add(P & (borrow as u64).wrapping_neg()))
    }
}
impl Neg for M61 {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Self::default() - self
    }
}
impl Mul for M61 {
    type Output = Self;
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        Self(Self::reduce_u128(u128::from(self.0) * u128::from(rhs.0)))
    }
}
impl AddAssign for M61 {
    #[inline(always)]
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}
impl SubAssign for M61 {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}
impl MulAssign for M61 {
    #[inline(always)]
    fn mul_assign(&mut self, rhs: Self) {
        *self = *self * rhs;
    }
}

impl Field for M61 {
    const NAME: &'static str = "M61";
    const ENCODED_LEN: usize = 8;
    const BITS: u32 = 60;

    fn zero() -> Self {
        Self(0)
    }
    fn one() -> Self {
        Self(1)
    }
    fn from_u64(x: u64) -> Self {
        Self(Self::reduce_once((x & P) + (x >> 61)))
    }
    fn from_u128(x: u128) -> Self {
        // Three folds bring any 128-bit value below 2p.
        let s = (x & P as u128) + (x >> 61);
        Self(Self::reduce_u128(s))
    }
    fn inverse(&self) -> Option<Self> {
        let inv = self.pow_limbs(&[P - 2]);
        if bool::from(self.0.ct_eq(&0)) {
            None
        } else {
            Some(inv)
        }
    }
    fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let x = rng.next_u64() & P;
            // x = p happens with probability 2^-61.
            if x != P {
                return Self(x);
            }
        }
    }
    fn write_bytes(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0.to_le_bytes());
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError> {
        let arr: [u8; 8] = bytes.try_into().map_err(|_| FieldError::WrongLength {
            field: Self::NAME,
            expected: 8,
            got: bytes.len(),
        })?;
        let x = u64::from_le_bytes(arr);
        if x < P {
            Ok(Self(x))
        } else {
            Err(FieldError::NonCanonical { field: Self::NAME })
        }
    }
    fn encode_extend(xs: &[Self], out: &mut Vec<u8>) {
        out.reserve(xs.len() * 8);
        for x in xs {
            out.extend_from_slice(&x.0.to_le_bytes());
        }
    }
    fn decode_into(bytes: &[u8], out: &mut [Self]) -> Result<(), (usize, FieldError)> {
        let mut bad = 0u64;
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            let v = u64::from_le_bytes(le);
            let bad_e = (v >> 61) | u64::from(v == P);
            bad |= bad_e;
            // Invalid elements become 0 so no out-of-range value ever exists.
            *o = Self(v & u64::from(bad_e != 0).wrapping_sub(1));
        }
        if bad == 0 {
            Ok(())
        } else {
            Err(Self::first_bad(bytes))
        }
    }
    fn decode_add(bytes: &[u8], acc: &mut [Self]) -> Result<(), (usize, FieldError)> {
        let mut bad = 0u64;
        for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            let v = u64::from_le_bytes(le);
            let bad_e = (v >> 61) | u64::from(v == P);
            bad |= bad_e;
            *a = Self(Self::reduce_once(
                a.0 + (v & u64::from(bad_e != 0).wrapping_sub(1)),
            ));
        }
        if bad == 0 {
            Ok(())
        } else {
            Err(Self::first_bad(bytes))
        }
    }
    fn to_i128_vartime(&self) -> Option<i128> {
        if self.0 <= P / 2 {
            Some(i128::from(self.0))
        } else {
            Some(-i128::from(P - self.0))
        }
    }
    fn dot(x: &[Self], y: &[Self]) -> Self {
        assert_eq!(x.len(), y.len(), "dot: length mismatch");
        // Products are < 2^122: 32 of them sum below 2^127 before a fold is needed.
        let mut total = 0u64;
        for (xs, ys) in x.chunks(32).zip(y.chunks(32)) {
            let mut acc = 0u128;
            for (a, b) in xs.iter().zip(ys) {
                acc += u128::from(a.0) * u128::from(b.0);
            }
            total = Self::reduce_once(total + Self::reduce_u128(acc));
        }
        Self(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_at_the_edges() {
        let pm1 = M61(P - 1);
        assert_eq!(pm1 + M61::one(), M61::zero());
        assert_eq!(pm1 * pm1, M61::one());
        assert_eq!(M61::from_u64(u64::MAX), M61::from_u64(u64::MAX - P));
        // 2^128 = 2^(2·61 + 6) ≡ 2^6.
        assert_eq!(M61::from_u128(u128::MAX), M61::from_u64(63));
        assert_eq!(
            M61::from_bytes(&P.to_le_bytes()),
            Err(FieldError::NonCanonical { field: "M61" })
        );
    }
}
