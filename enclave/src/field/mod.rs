//! Prime fields for Shamir sharing.
//!
//! Owns the [`Field`] trait, its canonical byte encoding and the three Mersenne-prime fields of
//! DESIGN §5: [`M127`] (2^127 − 1, the default), [`M61`] (2^61 − 1, integer-only analytics whose
//! values fit) and [`M521`] (2^521 − 1, aggregate-level analytics with wide intermediates).
//!
//! Arithmetic on field elements is constant-time: no branch or memory access depends on an
//! element's value, and equality goes through [`subtle`]. The exceptions are named:
//! [`Field::inverse`] reveals through its return type whether the input was zero, and
//! rejection sampling in [`Field::random`] loops with probability ≤ 2^-61 per draw.
//!
//! Batch operations over slices ([`Field::add_assign_slice`], [`Field::dot`], …) are the unit
//! the protocols use; fields override them where lazy reduction pays.

mod m127;
mod m521;
mod m61;

pub use m61::M61;
pub use m127::M127;
pub use m521::M521;

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};
use rand_core::Rng;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

/// Why a byte string is not a field element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The encoding has the wrong length for this field.
    #[error("field element encoding has {got} bytes, expected {expected} for {field}")]
    WrongLength {
        /// The field's name.
        field: &'static str,
        /// Expected length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The encoded integer is not below the modulus, so it is not the canonical encoding.
    #[error(
        "field element encoding is not canonical for {field}: the integer is not below the modulus"
    )]
    NonCanonical {
        /// The field's name.
        field: &'static str,
    },
}

/// A prime field: the values Shamir shares live in.
///
/// Elements are plain `Copy` data whose arithmetic is constant-time; they may be secret, so
/// code that holds secret elements wraps them (e.g. [`crate::secret::SecretVec`]) for redacted
/// `Debug` and zeroize-on-drop.
pub trait Field:
    Copy
    + Clone
    + Default
    + Debug
    + Eq
    + Send
    + Sync
    + 'static
    + Zeroize
    + ConstantTimeEq
    + ConditionallySelectable
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// Short name used in errors and benchmarks, e.g. `"M127"`.
    const NAME: &'static str;
    /// Length of the canonical little-endian encoding in bytes.
    const ENCODED_LEN: usize;
    /// ⌊log2 p⌋: every integer below 2^BITS is a distinct element.
    const BITS: u32;

    /// The additive identity.
    fn zero() -> Self;
    /// The multiplicative identity.
    fn one() -> Self;
    /// `x mod p`.
    fn from_u64(x: u64) -> Self;
    /// `x mod p`, negative values mapping to `p − |x|`.
    fn from_i64(x: i64) -> Self {
        let magnitude = Self::from_u64(x.unsigned_abs());
        Self::conditional_select(
            &magnitude,
            &-magnitude,
            subtle::Choice::from(u8::from(x < 0)),
        )
    }
    /// `x mod p` for a 128-bit integer.
    fn from_u128(x: u128) -> Self {
        let hi = Self::from_u64((x >> 64) as u64);
        let lo = Self::from_u64(x as u64);
        // 2^64 = 2^32 · 2^32 keeps `from_u64` inputs in range for every field.
        let two32 = Self::from_u64(1 << 32);
        hi * two32 * two32 + lo
    }
    /// The multiplicative inverse, or `None` for zero. Constant-time apart from revealing, through
    /// the return type, whether `self` was zero.
    fn inverse(&self) -> Option<Self>;
    /// A uniformly random element (rejection sampling; rejections are rarer than 2^-61).
    fn random<R: Rng + ?Sized>(rng: &mut R) -> Self;
    /// Writes the canonical little-endian encoding into `out`, which must be exactly
    /// [`Self::ENCODED_LEN`] bytes long (our own buffers; a mismatch is a bug and panics).
    fn write_bytes(&self, out: &mut [u8]);
    /// Parses a canonical encoding: exactly [`Self::ENCODED_LEN`] bytes holding an integer
    /// below p. Anything else is an error, so every element has exactly one encoding.
    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError>;
    /// The centred representative (in (−p/2, p/2]) as an `i128`, when it fits.
    /// Public values only: this branches on the value.
    fn to_i128_vartime(&self) -> Option<i128>;

    /// The canonical encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; Self::ENCODED_LEN];
        self.write_bytes(&mut out);
        out
    }

    /// `self^e` for an exponent given as little-endian 64-bit limbs (constant-time in both).
    fn pow_limbs(&self, exp: &[u64]) -> Self {
        let mut acc = Self::one();
        for limb in exp.iter().rev() {
            for bit in (0..64).rev() {
                acc = acc * acc;
                let mul = acc * *self;
                acc = Self::conditional_select(
                    &acc,
                    &mul,
                    subtle::Choice::from(((limb >> bit) & 1) as u8),
                );
            }
        }
        acc
    }

    /// Fills `out` with uniformly random elements.
    fn fill_random<R: Rng + ?Sized>(rng: &mut R, out: &mut [Self]) {
        for x in out {
            *x = Self::random(rng);
        }
    }

    /// Decodes `out.len()` canonical encodings from `bytes` (exactly that many) into `out`;
    /// on failure returns the index of the first bad element (`out` then holds valid but
    /// meaningless elements).
    fn decode_into(bytes: &[u8], out: &mut [Self]) -> Result<(), (usize, FieldError)> {
        for (i, (o, b)) in out
            .iter_mut()
            .zip(bytes.chunks_exact(Self::ENCODED_LEN))
            .enumerate()
        {
            *o = Self::from_bytes(b).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Like [`Field::decode_into`] but adds the decoded elements into `acc`.
    fn decode_add(bytes: &[u8], acc: &mut [Self]) -> Result<(), (usize, FieldError)> {
        for (i, (a, b)) in acc
            .iter_mut()
            .zip(bytes.chunks_exact(Self::ENCODED_LEN))
            .enumerate()
        {
            *a += Self::from_bytes(b).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Appends the canonical encodings of `xs` to `out`.
    fn encode_extend(xs: &[Self], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + xs.len() * Self::ENCODED_LEN, 0);
        for (x, chunk) in xs
            .iter()
            .zip(out[start..].chunks_exact_mut(Self::ENCODED_LEN))
        {
            x.write_bytes(chunk);
        }
    }

    /// `a·x + b·y`; fields may reduce once instead of twice.
    #[inline(always)]
    fn mul_add2(a: Self, x: Self, b: Self, y: Self) -> Self {
        a * x + b * y
    }

    /// `acc[i] += x[i]`. Panics if the lengths differ (callers pass equal-length buffers).
    fn add_assign_slice(acc: &mut [Self], x: &[Self]) {
        assert_eq!(acc.len(), x.len(), "add_assign_slice: length mismatch");
        for (a, b) in acc.iter_mut().zip(x) {
            *a += *b;
        }
    }
    /// `acc[i] -= x[i]`.
    fn sub_assign_slice(acc: &mut [Self], x: &[Self]) {
        assert_eq!(acc.len(), x.len(), "sub_assign_slice: length mismatch");
        for (a, b) in acc.iter_mut().zip(x) {
            *a -= *b;
        }
    }
    /// `acc[i] += c · x[i]`.
    fn add_scaled_slice(acc: &mut [Self], c: Self, x: &[Self]) {
        assert_eq!(acc.len(), x.len(), "add_scaled_slice: length mismatch");
        for (a, b) in acc.iter_mut().zip(x) {
            *a += c * *b;
        }
    }
    /// `acc[i] *= c`.
    fn scale_slice(acc: &mut [Self], c: Self) {
        for a in acc {
            *a *= c;
        }
    }
    /// `out[i] = x[i] · y[i]`.
    fn mul_slices(out: &mut [Self], x: &[Self], y: &[Self]) {
        assert!(
            out.len() == x.len() && x.len() == y.len(),
            "mul_slices: length mismatch"
        );
        for ((o, a), b) in out.iter_mut().zip(x).zip(y) {
            *o = *a * *b;
        }
    }
    /// `Σ x[i] · y[i]`.
    fn dot(x: &[Self], y: &[Self]) -> Self {
        assert_eq!(x.len(), y.len(), "dot: length mismatch");
        let mut acc = Self::zero();
        for (a, b) in x.iter().zip(y) {
            acc += *a * *b;
        }
        acc
    }
}

/// Encodes `xs` as the concatenation of their canonical encodings.
pub fn encode_slice<F: Field>(xs: &[F]) -> Vec<u8> {
    let mut out = vec![0u8; xs.len() * F::ENCODED_LEN];
    for (x, chunk) in xs.iter().zip(out.chunks_exact_mut(F::ENCODED_LEN)) {
        x.write_bytes(chunk);
    }
    out
}

/// Where a packed vector failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeFailure {
    /// Index of the first bad element, or `None` when the length itself is wrong.
    pub element: Option<usize>,
    /// The underlying failure.
    pub error: FieldError,
}

/// Decodes a concatenation of canonical encodings; rejects a length that is not a multiple of
/// the element size and any non-canonical element (reporting the first).
pub fn decode_slice<F: Field>(bytes: &[u8]) -> Result<Vec<F>, DecodeFailure> {
    if !bytes.len().is_multiple_of(F::ENCODED_LEN) {
        return Err(DecodeFailure {
            element: None,
            error: FieldError::WrongLength {
                field: F::NAME,
                expected: F::ENCODED_LEN * (bytes.len() / F::ENCODED_LEN + 1),
                got: bytes.len(),
            },
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / F::ENCODED_LEN);
    for (i, chunk) in bytes.chunks_exact(F::ENCODED_LEN).enumerate() {
        match F::from_bytes(chunk) {
            Ok(x) => out.push(x),
            Err(error) => {
                out.zeroize();
                return Err(DecodeFailure {
                    element: Some(i),
                    error,
                });
            }
        }
    }
    Ok(out)
}
