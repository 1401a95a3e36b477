//! The Mersenne prime field p = 2^521 − 1, for aggregate-level analytics whose exact
//! intermediates exceed 127 bits (DESIGN §5). Only O(d²) values use it, so it favours
//! simplicity (schoolbook limbs) over speed.

use super::{Field, FieldError};
use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};
use rand_core::Rng;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

const LIMBS: usize = 9;
/// Bits used in the top limb: 521 = 8 · 64 + 9.
const TOP_BITS: u32 = 9;
const TOP_MASK: u64 = (1 << TOP_BITS) - 1;
const P: [u64; LIMBS] = [
    u64::MAX,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    TOP_MASK,
];
/// Canonical encoding length: 521 bits in 66 bytes.
const LEN: usize = 66;

/// An element of GF(2^521 − 1): little-endian 64-bit limbs of the canonical integer in `[0, p)`.
#[derive(Clone, Copy, Default)]
pub struct M521([u64; LIMBS]);

impl zeroize::DefaultIsZeroes for M521 {}

impl M521 {
    /// The canonical integer as little-endian limbs.
    pub const fn to_limbs(self) -> [u64; LIMBS] {
        self.0
    }

    /// Adds two limb vectors; returns the sum (no carry-out: inputs are < 2^522 in total).
    #[inline]
    fn add_limbs(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> [u64; LIMBS] {
        let mut out = [0u64; LIMBS];
        let mut carry = 0u64;
        for i in 0..LIMBS {
            let (s1, c1) = a[i].overflowing_add(b[i]);
            let (s2, c2) = s1.overflowing_add(carry);
            out[i] = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
        out
    }

    /// Reduces `s < 2^522` (top limb < 2^10) to `[0, p)` without branching.
    #[inline]
    fn reduce_small(mut s: [u64; LIMBS]) -> [u64; LIMBS] {
        // Fold bit 521 back in (2^521 ≡ 1), then subtract p once if the result is ≥ p.
        let high = s[LIMBS - 1] >> TOP_BITS;
        s[LIMBS - 1] &= TOP_MASK;
        let mut carry = high;
        for limb in s.iter_mut() {
            let (v, c) = limb.overflowing_add(carry);
            *limb = v;
            carry = u64::from(c);
        }
        // Now s ≤ p + 1 = 2^521; one conditional subtraction of p finishes.
        let mut t = [0u64; LIMBS];
        let mut borrow = 0u64;
        for i in 0..LIMBS {
            let (d1, b1) = s[i].overflowing_sub(P[i]);
            let (d2, b2) = d1.overflowing_sub(borrow);
            t[i] = d2;
            borrow = u64::from(b1) + u64::from(b2);
        }
        // borrow = 1 iff s < p: keep s; else keep t = s − p.
        let keep_s = Choice::from(borrow as u8);
        let mut out = [0u64; LIMBS];
        for i in 0..LIMBS {
            out[i] = u64::conditional_select(&t[i], &s[i], keep_s);
        }
        out
    }

    fn from_wide(r: &[u64; 2 * LIMBS]) -> Self {
        // value = low 521 bits + (value >> 521); both < 2^521.
        let mut low = [0u64; LIMBS];
        low.copy_from_slice(&r[..LIMBS]);
        low[LIMBS - 1] &= TOP_MASK;
        let mut high = [0u64; LIMBS];
        for (k, h) in high.iter_mut().enumerate() {
            let a = r[LIMBS - 1 + k] >> TOP_BITS;
            let b = r[LIMBS + k] << (64 - TOP_BITS);
            *h = a | b;
        }
        Self(Self::reduce_small(Self::add_limbs(&low, &high)))
    }
}

impl core::fmt::Debug for M521 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "M521(0x")?;
        for limb in self.0.iter().rev() {
            write!(f, "{limb:016x}")?;
        }
        write!(f, ")")
    }
}

impl ConstantTimeEq for M521 {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}
impl PartialEq for M521 {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}
impl Eq for M521 {}
impl ConditionallySelectable for M521 {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        let mut out = [0u64; LIMBS];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u64::conditional_select(&a.0[i], &b.0[i], choice);
        }
        Self(out)
    }
}

impl Add for M521 {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(Self::reduce_small(Self::add_limbs(&self.0, &rhs.0)))
    }
}
impl Neg for M521 {
    type Output = Self;
    fn neg(self) -> Self {
        // p − x is a limb-wise complement within 521 bits (p is all ones); maps 0 to p, fixed below.
        let mut out = [0u64; LIMBS];
        for i in 0..LIMBS {
            out[i] = P[i] ^ self.0[i];
        }
        Self(Self::reduce_small(out))
    }
}
impl Sub for M521 {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        self + (-rhs)
    }
}
impl Mul for M521 {
    type Output = Self;
    fn mul(self, rhs: Self) -> Self {
        let mut r = [0u64; 2 * LIMBS];
        for i in 0..LIMBS {
            let mut carry = 0u128;
            for j in 0..LIMBS {
                let t = u128::from(r[i + j]) + u128::from(self.0[i]) * u128::from(rhs.0[j]) + carry;
                r[i + j] = t as u64;
                carry = t >> 64;
            }
            r[i + LIMBS] = carry as u64;
        }
        Self::from_wide(&r)
    }
}
impl AddAssign for M521 {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}
impl SubAssign for M521 {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}
impl MulAssign for M521 {
    fn mul_assign(&mut self, rhs: Self) {
        *self = *self * rhs;
    }
}

impl Field for M521 {
    const NAME: &'static str = "M521";
    const ENCODED_LEN: usize = LEN;
    const BITS: u32 = 520;

    fn zero() -> Self {
        Self([0; LIMBS])
    }
    fn one() -> Self {
        let mut l = [0; LIMBS];
        l[0] = 1;
        Self(l)
    }
    fn from_u64(x: u64) -> Self {
        let mut l = [0; LIMBS];
        l[0] = x;
        Self(l)
    }
    fn from_u128(x: u128) -> Self {
        let mut l = [0; LIMBS];
        l[0] = x as u64;
        l[1] = (x >> 64) as u64;
        Self(l)
    }
    fn inverse(&self) -> Option<Self> {
        // p − 2 = 2^521 − 3.
        let mut e = P;
        e[0] = u64::MAX - 2;
        let inv = self.pow_limbs(&e);
        if bool::from(self.ct_eq(&Self::zero())) {
            None
        } else {
            Some(inv)
        }
    }
    fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let mut l = [0u64; LIMBS];
            for limb in l.iter_mut() {
                *limb = rng.next_u64();
            }
            l[LIMBS - 1] &= TOP_MASK;
            // x = p happens with probability 2^-521.
            if l != P {
                return Self(l);
            }
        }
    }
    fn write_bytes(&self, out: &mut [u8]) {
        let mut full = [0u8; LIMBS * 8];
        for (i, limb) in self.0.iter().enumerate() {
            full[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        // Bytes 66..72 are always zero for a value below 2^521.
        out.copy_from_slice(&full[..LEN]);
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError> {
        if bytes.len() != LEN {
            return Err(FieldError::WrongLength {
                field: Self::NAME,
                expected: LEN,
                got: bytes.len(),
            });
        }
        let mut full = [0u8; LIMBS * 8];
        full[..LEN].copy_from_slice(bytes);
        let mut l = [0u64; LIMBS];
        for (i, limb) in l.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&full[i * 8..i * 8 + 8]);
            *limb = u64::from_le_bytes(w);
        }
        if l[LIMBS - 1] > TOP_MASK || l == P {
            return Err(FieldError::NonCanonical { field: Self::NAME });
        }
        Ok(Self(l))
    }
    fn to_i128_vartime(&self) -> Option<i128> {
        let small = self.0[2..].iter().all(|&l| l == 0) && self.0[1] >> 63 == 0;
        if small {
            return Some((i128::from(self.0[1] as i64) << 64) | i128::from(self.0[0]));
        }
        let neg = -*self;
        let small_neg = neg.0[2..].iter().all(|&l| l == 0) && neg.0[1] >> 63 == 0;
        small_neg.then(|| -((i128::from(neg.0[1] as i64) << 64) | i128::from(neg.0[0])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges() {
        let pm1 = -M521::one();
        assert_eq!(pm1 + M521::one(), M521::zero());
        assert_eq!(pm1 * pm1, M521::one());
        assert_eq!(-M521::zero(), M521::zero());
        assert_eq!(pm1.to_i128_vartime(), Some(-1));
        assert_eq!(M521::from_i64(-5).to_i128_vartime(), Some(-5));
        let x = M521::from_u128(0xdead_beef_0123_4567_89ab_cdef_f00d_cafe);
        assert_eq!(x * x.inverse().expect("nonzero"), M521::one());
        let mut p_bytes = [0xffu8; LEN];
        p_bytes[LEN - 1] = 0x01;
        assert_eq!(
            M521::from_bytes(&p_bytes),
            Err(FieldError::NonCanonical { field: "M521" })
        );
        p_bytes[0] = 0xfe;
        assert_eq!(M521::from_bytes(&p_bytes), Ok(pm1));
        p_bytes[LEN - 1] = 0x02;
        assert_eq!(
            M521::from_bytes(&p_bytes),
            Err(FieldError::NonCanonical { field: "M521" })
        );
    }
}
