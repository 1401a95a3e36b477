//! The Mersenne prime field p = 2^127 − 1 (DESIGN §5 default).

use super::{Field, FieldError};
use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};
use rand_core::Rng;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

const P: u128 = (1u128 << 127) - 1;

/// An element of GF(2^127 − 1), held as its canonical integer in `[0, p)`.
#[derive(Clone, Copy, Default)]
pub struct M127(u128);

impl zeroize::DefaultIsZeroes for M127 {}

impl M127 {
    /// The modulus 2^127 − 1.
    pub const MODULUS: u128 = P;

    /// The element for a canonical integer; `None` if `x ≥ p`.
    pub const fn new(x: u128) -> Option<Self> {
        if x < P { Some(Self(x)) } else { None }
    }

    /// The canonical integer in `[0, p)`.
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    /// Reduces `s ≤ 2p` to `[0, p)` without branching.
    #[inline(always)]
    const fn reduce_once(s: u128) -> u128 {
        let t = s.wrapping_sub(P);
        // Top bit of `t` set iff `s < p` (then `t` wrapped around 2^128).
        let keep_s = (t >> 127).wrapping_neg();
        (s & keep_s) | (t & !keep_s)
    }

    /// Reduces any `s < 2^128` to `[0, p)`: 2^127 ≡ 1 (mod p).
    #[inline(always)]
    const fn reduce_u128(s: u128) -> u128 {
        Self::reduce_once((s & P) + (s >> 127))
    }

    /// The 256-bit product of two values below 2^127 as (high, low).
    #[inline(always)]
    const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
        let (a0, a1) = (a as u64 as u128, a >> 64);
        let (b0, b1) = (b as u64 as u128, b >> 64);
        let lo_lo = a0 * b0;
        // a1, b1 < 2^63, so each cross product is < 2^127 and their sum fits in u128.
        let mid = a0 * b1 + a1 * b0;
        let hi_hi = a1 * b1;
        let (lo, carry) = lo_lo.overflowing_add(mid << 64);
        let hi = hi_hi + (mid >> 64) + carry as u128;
        (hi, lo)
    }

    /// Reduces a product `hi·2^128 + lo` (with `hi < 2^126`) to `[0, p)`.
    #[inline(always)]
    const fn reduce_wide(hi: u128, lo: u128) -> u128 {
        // 2^128 ≡ 2 and 2^127 ≡ 1: value ≡ (lo mod 2^127) + lo/2^127 + 2·hi, which is < 2^128.
        let s = (lo & P) + (lo >> 127) + (hi << 1);
        Self::reduce_u128(s)
    }

    /// Index and error of the first non-canonical element in `bytes` (failure path only).
    fn first_bad(bytes: &[u8]) -> (usize, FieldError) {
        let i = bytes
            .chunks_exact(16)
            .position(|b| Self::from_bytes(b).is_err())
            .unwrap_or(0);
        (i, FieldError::NonCanonical { field: "M127" })
    }

    /// Product reduced only to `[0, 2^128)`: a sum of such values needs care, see [`Field::dot`].
    #[inline(always)]
    const fn mul_partial(a: u128, b: u128) -> u128 {
        let (hi, lo) = Self::mul_wide(a, b);
        let s = (lo & P) + (lo >> 127) + (hi << 1);
        (s & P) + (s >> 127)
    }
}

impl core::fmt::Debug for M127 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "M127({})", self.0)
    }
}

impl ConstantTimeEq for M127 {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for M127 {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}
impl Eq for M127 {}

impl ConditionallySelectable for M127 {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        Self(u128::conditional_select(&a.0, &b.0, choice))
    }
}

impl Add for M127 {
    type Output = Self;
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        Self(Self::reduce_once(self.0 + rhs.0))
    }
}
impl Sub for M127 {
    type Output = Self;
    #[inline(always)]
    #[allow(clippy::suspicious_arithmetic_impl)] // `&` masks p in without a branch
    fn sub(self, rhs: Self) -> Self {
        let (d, borrow) = self.0.overflowing_sub(rhs.0);
        let mask = (borrow as u128).wrapping_neg();
        Self(d.wrapping_add(P & mask))
    }
}
impl Neg for M127 {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Self::default() - self
    }
}
impl Mul for M127 {
    type Output = Self;
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        let (hi, lo) = Self::mul_wide(self.0, rhs.0);
        Self(Self::reduce_wide(hi, lo))
    }
}
impl AddAssign for M127 {
    #[inline(always)]
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}
impl SubAssign for M127 {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}
impl MulAssign for M127 {
    #[inline(always)]
    fn mul_assign(&mut self, rhs: Self) {
        *self = *self * rhs;
    }
}

impl Field for M127 {
    const NAME: &'static str = "M127";
    const ENCODED_LEN: usize = 16;
    const BITS: u32 = 126;

    fn zero() -> Self {
        Self(0)
    }
    fn one() -> Self {
        Self(1)
    }
    fn from_u64(x: u64) -> Self {
        Self(u128::from(x))
    }
    fn from_u128(x: u128) -> Self {
        Self(Self::reduce_u128(x))
    }
    fn inverse(&self) -> Option<Self> {
        // Fermat: a^(p−2), p − 2 = 2^127 − 3.
        let inv = self.pow_limbs(&[u64::MAX - 2, u64::MAX >> 1]);
        if bool::from(self.0.ct_eq(&0)) {
            None
        } else {
            Some(inv)
        }
    }
    fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let mut buf = [0u8; 16];
            rng.fill_bytes(&mut buf);
            let x = u128::from_le_bytes(buf) & P;
            // x = p happens with probability 2^-127.
            if x != P {
                return Self(x);
            }
        }
    }
    fn fill_random<R: Rng + ?Sized>(rng: &mut R, out: &mut [Self]) {
        // One bulk draw: ChaCha output in large blocks is several times faster than per-element.
        const CHUNK: usize = 256;
        let mut buf = [0u8; CHUNK * 16];
        // Only the bytes a draw used need wiping (small draws are common).
        let used = (out.len().min(CHUNK)) * 16;
        for block in out.chunks_mut(CHUNK) {
            let bytes = &mut buf[..block.len() * 16];
            rng.fill_bytes(bytes);
            for (x, b) in block.iter_mut().zip(bytes.chunks_exact(16)) {
                let mut le = [0u8; 16];
                le.copy_from_slice(b);
                let v = u128::from_le_bytes(le) & P;
                *x = if v == P { Self::random(rng) } else { Self(v) };
            }
        }
        zeroize::Zeroize::zeroize(&mut buf[..used]);
    }
    fn write_bytes(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0.to_le_bytes());
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| FieldError::WrongLength {
            field: Self::NAME,
            expected: 16,
            got: bytes.len(),
        })?;
        let x = u128::from_le_bytes(arr);
        if x < P {
            Ok(Self(x))
        } else {
            Err(FieldError::NonCanonical { field: Self::NAME })
        }
    }
    fn encode_extend(xs: &[Self], out: &mut Vec<u8>) {
        out.reserve(xs.len() * 16);
        for x in xs {
            out.extend_from_slice(&x.0.to_le_bytes());
        }
    }
    #[inline(always)]
    fn mul_add2(a: Self, x: Self, b: Self, y: Self) -> Self {
        // Sum the two 256-bit products, then reduce once: hi < 2^127 after the sum.
        let (h1, l1) = Self::mul_wide(a.0, x.0);
        let (h2, l2) = Self::mul_wide(b.0, y.0);
        let (lo, carry) = l1.overflowing_add(l2);
        let hi = h1 + h2 + carry as u128;
        // value ≡ lo + 2·hi; fold each below 2^127 + 1 and add (< 2^128).
        let lo_r = Self::reduce_u128(lo);
        let hi2 = hi << 1;
        let hi_r = (hi2 & P) + (hi2 >> 127);
        Self(Self::reduce_u128(lo_r + hi_r))
    }
    fn decode_into(bytes: &[u8], out: &mut [Self]) -> Result<(), (usize, FieldError)> {
        // Branch-free validity accumulation; locate the culprit only on failure.
        let mut bad = 0u128;
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(16)) {
            let mut le = [0u8; 16];
            le.copy_from_slice(b);
            let v = u128::from_le_bytes(le);
            let bad_e = (v >> 127) | u128::from(v == P);
            bad |= bad_e;
            // Invalid elements become 0 so no out-of-range value ever exists.
            *o = Self(v & u128::from(bad_e != 0).wrapping_sub(1));
        }
        if bad == 0 {
            Ok(())
        } else {
            Err(Self::first_bad(bytes))
        }
    }
    fn decode_add(bytes: &[u8], acc: &mut [Self]) -> Result<(), (usize, FieldError)> {
        let mut bad = 0u128;
        for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(16)) {
            let mut le = [0u8; 16];
            le.copy_from_slice(b);
            let v = u128::from_le_bytes(le);
            let bad_e = (v >> 127) | u128::from(v == P);
            bad |= bad_e;
            *a = Self(Self::reduce_once(
                a.0 + (v & u128::from(bad_e != 0).wrapping_sub(1)),
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
            i128::try_from(self.0).ok()
        } else {
            i128::try_from(P - self.0).ok().map(|m| -m)
        }
    }
    fn dot(x: &[Self], y: &[Self]) -> Self {
        assert_eq!(x.len(), y.len(), "dot: length mismatch");
        // Partially reduced products are < 2^127 + 1; summing two keeps us below 2^128.
        let mut acc = 0u128;
        for (a, b) in x.iter().zip(y) {
            acc = Self::reduce_u128(acc + Self::mul_partial(a.0, b.0));
        }
        Self(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_at_the_edges() {
        let pm1 = M127(P - 1);
        assert_eq!(pm1 + M127::one(), M127::zero());
        assert_eq!(M127::zero() - M127::one(), pm1);
        assert_eq!(pm1 * pm1, M127::one());
        assert_eq!(-M127::zero(), M127::zero());
        assert_eq!(M127::from_u128(u128::MAX), M127(1));
        assert_eq!(M127::from_u128(P), M127::zero());
        assert_eq!(M127::from_i64(-1), pm1);
        assert_eq!(
            M127::from_i64(i64::MIN).to_i128_vartime(),
            Some(i128::from(i64::MIN))
        );
    }

    #[test]
    fn mul_matches_schoolbook_for_known_values() {
        // (2^126)^2 = 2^252 = 2^(127·1 + 125) ≡ 2^125.
        let a = M127(1 << 126);
        assert_eq!(a * a, M127(1 << 125));
        let x = M127(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        assert_eq!(x * x.inverse().expect("nonzero"), M127::one());
    }

    #[test]
    fn rejects_non_canonical_encodings() {
        assert_eq!(
            M127::from_bytes(&P.to_le_bytes()),
            Err(FieldError::NonCanonical { field: "M127" })
        );
        assert_eq!(
            M127::from_bytes(&u128::MAX.to_le_bytes()),
            Err(FieldError::NonCanonical { field: "M127" })
        );
        assert!(matches!(
            M127::from_bytes(&[0u8; 15]),
            Err(FieldError::WrongLength { .. })
        ));
        assert_eq!(M127::from_bytes(&(P - 1).to_le_bytes()), Ok(M127(P - 1)));
    }
}
