//! Protocols on shares built from the program IR: random bits, comparison, bit
//! decomposition, truncation, fixed point, and range checks of inputs.
//!
//! Owns [`Circuit`], a [`ProgramBuilder`] that also knows the federation's (n, t), the
//! statistical parameter κ and the field, and so can (1) refuse, while the program is being
//! built, any value that is too wide for a masked opening ([`LimitError`], naming the value,
//! its bits, the limit and what to change); (2) track how far each value is from the last
//! verification and insert a checkpoint where an opening would otherwise be unsafe; (3) draw
//! every random bit the program needs at its start, so the bits are verified before any
//! opening uses them. The engine knows nothing of these protocols: they are instruction
//! sequences ([`compare`], [`fixed`], [`range`]).
//!
//! # Values and notation
//!
//! A value "of K signed bits" is an integer a ∈ [−2^(K−1), 2^(K−1)) held as a mod p.
//! Bit vectors are `Vec<Reg>`, least significant first, one register per bit position, each
//! as long as the batch. Every gadget works element-wise on whole batches: rounds do not grow
//! with the batch.
//!
//! # Openings: masked and checked
//!
//! Every opening inside these protocols is
//! - **checked**: opened all-to-all with the degree-t consistency check, so its value is the
//!   one the n − t ≥ t + 1 honest shares fix; a wrong share aborts (`intermediate opening`);
//!   and every multiplication it depends on is covered by the Chida check before any output;
//! - **masked**: either perfectly — the square r² of a uniform r reveals nothing about which
//!   root r is, which is the random bit — or statistically: a value a of K bits is opened as
//!   2^(K−1) + a + r with r = r' + 2^m·r'', r' an m-bit integer from random bits and r'' a
//!   PRSS random integer of K + κ − m bits (a sum over the C(n, t) key sets, one of which no
//!   t parties know). Its distribution is 2^−κ-close to one that does not depend on a.
//!
//! Statistical masking needs the opened value to be what the program thinks it is: a value
//! that carries a *value-dependent* error (an additive attack on a product, then multiplied by
//! an honest value: (x·y + e)·h) could be huge, and opening it masked would reveal h. So each
//! register has a **depth** since the last verification: 0 = verified (or linear in verified
//! values with public coefficients derived from verified values); 1 = may carry an additive
//! error that the adversary chose and knows (a product of depth-0 values, or a depth-0 value
//! plus an opened public value); 2 = may carry an error that depends on honest values (a
//! product involving depth ≥ 1, or a product with a public value opened from depth ≥ 1). A
//! masked opening requires the value at depth ≤ 1 and its mask at depth 0; otherwise
//! [`Circuit`] inserts a checkpoint first, which verifies everything so far (5 rounds).
//! Random bits from a square opened before verification count as depth 2, which is why all
//! of them are drawn at the start (in the input round's segment) and verified with the
//! inputs.
//!
//! # Limits (checked while building)
//!
//! A masked opening of a K-bit value must not wrap around p:
//! 2^K + C(n, t)·2^(K+κ) ≤ p, i.e. K + κ + log2 C(n, t) < log2 p (DESIGN §5's
//! K + κ + 1 ≤ log2 p, with the PRSS sum's log2 C(n, t) in place of the 1).
//! κ is sized for the job's masked openings: (openings) · 2^−κ ≤ 2^−40; with
//! [`KAPPA`] = 60 a job may open at most 2^20 (≈ 10^6) masked values, which [`Circuit`] also
//! checks. The largest K per field and federation size ([`max_masked_bits`]):
//!
//! | field | n = 3 (C = 3) | n = 5, t = 2 (C = 10) | n = 7, t = 3 (C = 35) |
//! |---|---|---|---|
//! | 2^61 − 1 | none (κ = 60 leaves no room) | none | none |
//! | 2^127 − 1 | K ≤ 65 | K ≤ 63 | K ≤ 61 |
//! | 2^521 − 1 | K ≤ 459 | K ≤ 457 | K ≤ 455 |
//!
//! The fixed-point limits that follow are in [`fixed`].

pub mod bench;
pub mod compare;
pub mod fixed;
pub mod range;

use crate::error::{LimitError, MpcError};
use crate::field::Field;
use crate::program::{Op, Program, ProgramBuilder, PublicFn, Reg};
use num_bigint::BigUint;
use std::collections::VecDeque;

/// The statistical security parameter of masked openings: 2^20 openings per job at
/// 2^−60 each keep the job's total below 2^−40 (DESIGN §5).
pub const KAPPA: u32 = 60;

/// −log2 of the statistical distance a whole job may accumulate from masked openings.
pub const JOB_STATISTICAL_SECURITY: u32 = 40;

/// The field's modulus as an integer.
pub fn modulus<F: Field>() -> BigUint {
    BigUint::from_bytes_le(&(-F::one()).to_bytes()) + 1u32
}

/// Whether a masked opening of a K-bit value fits: 2^K + C·2^(K+κ) ≤ p.
pub fn masked_fits<F: Field>(k: u32, kappa: u32, sets: usize) -> bool {
    let bound = (BigUint::from(1u32) << k) + (BigUint::from(sets) << (k + kappa));
    bound <= modulus::<F>()
}

/// The largest K whose masked opening fits (`None` if even K = 1 does not).
pub fn max_masked_bits<F: Field>(kappa: u32, sets: usize) -> Option<u32> {
    (1..=F::BITS + 1)
        .rev()
        .find(|&k| masked_fits::<F>(k, kappa, sets))
}

/// A program builder that knows the federation, κ and the field's limits; see the module
/// docs. Build with [`Circuit::build`], which runs the construction twice (once to count
/// the random bits, once with all of them drawn up front).
pub struct Circuit<F: Field> {
    b: ProgramBuilder<F>,
    t: usize,
    kappa: u32,
    sets: usize,
    max_k: Option<u32>,
    depth: Vec<u8>,
    verified_below: usize,
    /// Second pass: the bits drawn at the start, handed out in request order.
    pool: Option<VecDeque<Vec<Reg>>>,
    /// First pass: the (batch length, bits) of every request.
    requests: Vec<(usize, u32)>,
    masked_openings: u64,
    widest: u32,
    advice: String,
    error: Option<LimitError>,
}

impl<F: Field> core::fmt::Debug for Circuit<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Circuit")
            .field("field", &F::NAME)
            .field("n", &self.b.parties())
            .field("t", &self.t)
            .field("kappa", &self.kappa)
            .finish_non_exhaustive()
    }
}

/// Facts about a built circuit, for job planning and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitInfo {
    /// Masked openings (elements).
    pub masked_openings: u64,
    /// The widest masked value, in bits (0 if none).
    pub widest_masked_bits: u32,
    /// The field's limit for masked values, in bits.
    pub max_masked_bits: u32,
    /// Random bits drawn.
    pub random_bits: u64,
    /// The statistical parameter.
    pub kappa: u32,
}

impl<F: Field> Circuit<F> {
    fn new(n: usize, t: usize, kappa: u32, pool: Option<&[(usize, u32)]>) -> Self {
        let sets = crate::prss::set_count(n, t);
        let mut c = Self {
            b: ProgramBuilder::new(n).for_threshold(t),
            t,
            kappa,
            sets,
            max_k: max_masked_bits::<F>(kappa, sets),
            depth: Vec::new(),
            verified_below: 0,
            pool: None,
            requests: Vec::new(),
            masked_openings: 0,
            widest: 0,
            advice:
                "narrow the declared bounds, lower the maximum row count, or use a larger field"
                    .into(),
            error: None,
        };
        if let Some(reqs) = pool {
            let mut pool = VecDeque::with_capacity(reqs.len());
            for &(len, m) in reqs {
                pool.push_back(c.fresh_bits(len, m));
            }
            c.pool = Some(pool);
        }
        c
    }

    /// Builds a program for n parties with threshold t: runs `f` once to count the random
    /// bits it needs, then again with all of them drawn at the program's start. `f` must be
    /// deterministic. Returns the program, what `f` returned, and the circuit's facts.
    pub fn build<T>(
        n: usize,
        t: usize,
        kappa: u32,
        f: impl Fn(&mut Circuit<F>) -> Result<T, MpcError>,
    ) -> Result<(Program<F>, T, CircuitInfo), MpcError> {
        let mut first = Self::new(n, t, kappa, None);
        f(&mut first)?;
        if let Some(e) = first.error.take() {
            return Err(e.into());
        }
        let requests = core::mem::take(&mut first.requests);
        let mut c = Self::new(n, t, kappa, Some(&requests));
        let out = f(&mut c)?;
        if c.pool.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(MpcError::Program(
                "the circuit asked for different random bits on its second pass".into(),
            ));
        }
        let info = CircuitInfo {
            masked_openings: c.masked_openings,
            widest_masked_bits: c.widest,
            max_masked_bits: c.max_k.unwrap_or(0),
            random_bits: requests
                .iter()
                .map(|&(l, m)| (l as u64) * u64::from(m))
                .sum(),
            kappa,
        };
        let allowed = 1u64 << kappa.saturating_sub(JOB_STATISTICAL_SECURITY).min(63);
        if c.masked_openings > allowed {
            return Err(LimitError {
                value: format!("the job's {} masked openings", c.masked_openings),
                bits: u64::from(64 - c.masked_openings.leading_zeros()),
                limit: u64::from(kappa - JOB_STATISTICAL_SECURITY),
                reason: format!(
                    "each leaks at most 2^-{kappa}, and a job's total must stay below 2^-{JOB_STATISTICAL_SECURITY}, so at most {allowed} openings"
                ),
                advice: "split the job into smaller batches".into(),
            }
            .into());
        }
        if let Some(e) = c.error.take() {
            return Err(e.into());
        }
        let program = c.b.build()?;
        Ok((program, out, info))
    }

    /// The underlying builder, for plain instructions (inputs, linear operations, products,
    /// outputs). Registers it creates are tracked like any other.
    pub fn b(&mut self) -> &mut ProgramBuilder<F> {
        &mut self.b
    }

    /// The threshold.
    pub fn t(&self) -> usize {
        self.t
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.b.parties()
    }

    /// κ.
    pub fn kappa(&self) -> u32 {
        self.kappa
    }

    /// The largest K a masked opening allows here (0 if none).
    pub fn max_masked_bits(&self) -> u32 {
        self.max_k.unwrap_or(0)
    }

    /// Sets the advice given when a later value exceeds a limit (say which job parameter
    /// to change).
    pub fn set_advice(&mut self, advice: impl Into<String>) {
        self.advice = advice.into();
    }

    /// Records a limit violation (the first one wins) for a value of `bits` bits whose
    /// limit is `limit`.
    pub fn refuse(&mut self, value: &str, bits: u64, limit: u64, reason: String) {
        if self.error.is_none() {
            self.error = Some(LimitError {
                value: value.to_owned(),
                bits,
                limit,
                reason,
                advice: self.advice.clone(),
            });
        }
    }

    /// Length of a register.
    pub fn len(&self, r: Reg) -> usize {
        self.b.info(r).map_or(0, |i| i.len)
    }

    /// Checks that a K-bit value may be opened with a statistical mask; records a
    /// [`LimitError`] naming `what` otherwise.
    pub fn check_masked(&mut self, what: &str, k: u32) {
        self.widest = self.widest.max(k);
        if !masked_fits::<F>(k, self.kappa, self.sets) {
            let limit = self.max_k.unwrap_or(0);
            let reason = format!(
                "a masked opening in {} needs 2^K + C(n, t)·2^(K+κ) ≤ p, with κ = {} and C({}, {}) = {} key sets",
                F::NAME,
                self.kappa,
                self.b.parties(),
                self.t,
                self.sets
            );
            self.refuse(what, u64::from(k), u64::from(limit), reason);
        }
    }

    // ---- depth tracking -------------------------------------------------------------------

    /// The register's depth since the last verification (see the module docs).
    pub fn depth(&mut self, r: Reg) -> u8 {
        let ops_len = self.b.ops().len();
        while self.depth.len() < ops_len {
            let i = self.depth.len();
            let d = if i < self.verified_below {
                0
            } else {
                self.op_depth(i)
            };
            self.depth.push(d);
        }
        if r.index() < self.verified_below {
            0
        } else {
            self.depth.get(r.index()).copied().unwrap_or(2)
        }
    }

    fn op_depth(&self, i: usize) -> u8 {
        let d = |r: &Reg| -> u8 {
            if r.index() < self.verified_below {
                0
            } else {
                self.depth.get(r.index()).copied().unwrap_or(2)
            }
        };
        let shared = |r: &Reg| self.b.info(*r).is_some_and(|x| x.shared);
        match &self.b.ops()[i] {
            Op::Mul(a, b) | Op::Dot(a, b) => match (shared(a), shared(b)) {
                (true, true) => (d(a).max(d(b)) + 1).min(2),
                // A shared value times a public one opened from a possibly-wrong value: the
                // error scales an honest value.
                (true, false) => {
                    if d(b) > 0 {
                        2
                    } else {
                        d(a)
                    }
                }
                (false, true) => {
                    if d(a) > 0 {
                        2
                    } else {
                        d(b)
                    }
                }
                (false, false) => d(a).max(d(b)),
            },
            op => op.reads().iter().map(d).max().unwrap_or(0),
        }
    }

    /// Inserts a checkpoint: everything built so far is verified before the program goes on.
    pub fn checkpoint(&mut self) {
        self.b.checkpoint();
        self.verified_below = self.b.ops().len();
    }

    /// Opens `masked` (= value + mask) after making sure the opening is safe: the value at
    /// depth ≤ 1 and every mask part at depth 0, else a checkpoint first. `len` masked
    /// elements are counted against the job's allowance.
    fn open_masked(&mut self, masked: Reg, value: Reg, mask: &[Reg]) -> Reg {
        let unsafe_mask = mask.iter().any(|&m| self.depth(m) > 0);
        if self.depth(value) > 1 || unsafe_mask {
            self.checkpoint();
        }
        self.masked_openings += self.len(masked) as u64;
        self.b.open(masked)
    }

    // ---- random bits ------------------------------------------------------------------------

    /// `m` registers of `len` shared uniformly random bits each. Drawn at the program's start
    /// (see [`Circuit::build`]): squares of PRSS randoms opened (1 multiplication and 1
    /// opening per bit, 2 rounds, both in the input segment).
    pub fn random_bits(&mut self, len: usize, m: u32) -> Vec<Reg> {
        if let Some(pool) = &mut self.pool {
            match pool.pop_front() {
                Some(bits) if bits.len() == m as usize => return bits,
                _ => {
                    self.b
                        .fail("the circuit's random-bit requests changed between passes".into());
                    return Vec::new();
                }
            }
        }
        self.requests.push((len, m));
        self.fresh_bits(len, m)
    }

    /// Random bits by squaring (p ≡ 3 mod 4): r uniform, open s = r² (a uniform nonzero
    /// square: it says nothing about which root r is), u = s^((p−3)/4) = 1/√s for the root
    /// that is a square, b = (r·u + 1)/2 ∈ {0, 1}.
    fn fresh_bits(&mut self, len: usize, m: u32) -> Vec<Reg> {
        let rs: Vec<Reg> = (0..m).map(|_| self.b.random(len)).collect();
        let sq: Vec<Reg> = rs.iter().map(|&r| self.b.mul(r, r)).collect();
        let opened: Vec<Reg> = sq.iter().map(|&s| self.b.open(s)).collect();
        let inv: Vec<Reg> = opened
            .iter()
            .map(|&o| self.b.public_map(o, PublicFn::InvSqrt))
            .collect();
        let half = F::from_u64(2).inverse().unwrap_or_default();
        let one = self.b.constant(vec![F::one()]);
        rs.iter()
            .zip(inv)
            .map(|(&r, u)| {
                let v = self.b.mul(r, u);
                let v1 = self.b.add(v, one);
                self.b.scale(v1, half)
            })
            .collect()
    }

    // ---- small helpers ----------------------------------------------------------------------

    /// A public constant of length 1 (broadcast by `add`/`sub`/`mul`).
    pub fn scalar(&mut self, c: F) -> Reg {
        self.b.constant(vec![c])
    }

    /// `a + c` for a public scalar.
    pub fn add_scalar(&mut self, a: Reg, c: F) -> Reg {
        let k = self.scalar(c);
        self.b.add(a, k)
    }

    /// `Σ 2^i · bits[i]`.
    pub fn from_bits(&mut self, bits: &[Reg]) -> Option<Reg> {
        let mut acc: Option<Reg> = None;
        let mut pow = F::one();
        for &bit in bits {
            let term = self.b.scale(bit, pow);
            acc = Some(match acc {
                Some(a) => self.b.add(a, term),
                None => term,
            });
            pow = pow + pow;
        }
        acc
    }
}

/// 2^e in the field.
pub fn pow2<F: Field>(e: u32) -> F {
    let mut x = F::one();
    let two = F::from_u64(2);
    for _ in 0..e {
        x *= two;
    }
    x
}

/// 2^−e in the field.
pub fn inv_pow2<F: Field>(e: u32) -> F {
    pow2::<F>(e).inverse().unwrap_or_default()
}

/// An integer (possibly wider than 64 bits) as a field element.
pub fn from_bigint<F: Field>(x: &num_bigint::BigInt) -> F {
    use num_bigint::Sign;
    let (sign, mag) = x.to_bytes_le();
    let mut acc = F::zero();
    let base = F::from_u64(256);
    for b in mag.iter().rev() {
        acc = acc * base + F::from_u64(u64::from(*b));
    }
    if sign == Sign::Minus { -acc } else { acc }
}

/// The centred integer (in (−p/2, p/2]) of a field element. For public values.
pub fn to_bigint<F: Field>(x: F) -> num_bigint::BigInt {
    use num_bigint::{BigInt, Sign};
    let v = BigUint::from_bytes_le(&x.to_bytes());
    let p = modulus::<F>();
    if v.clone() * 2u32 > p {
        BigInt::from_biguint(Sign::Minus, p - v)
    } else {
        BigInt::from_biguint(Sign::Plus, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{M61, M127, M521};

    #[test]
    fn the_documented_limit_table_holds() {
        let row = |sets| {
            (
                max_masked_bits::<M61>(KAPPA, sets),
                max_masked_bits::<M127>(KAPPA, sets),
                max_masked_bits::<M521>(KAPPA, sets),
            )
        };
        assert_eq!(row(3), (None, Some(65), Some(459)));
        assert_eq!(row(10), (None, Some(63), Some(457)));
        assert_eq!(row(35), (None, Some(61), Some(455)));
        assert_eq!(crate::prss::set_count(3, 1), 3);
        assert_eq!(crate::prss::set_count(5, 2), 10);
        assert_eq!(crate::prss::set_count(7, 3), 35);
    }

    #[test]
    fn integers_round_trip_through_the_field() {
        use num_bigint::BigInt;
        for v in [0i64, 1, -1, 1 << 40, -(1 << 50), i64::MAX, i64::MIN] {
            let b = BigInt::from(v);
            assert_eq!(to_bigint(from_bigint::<M127>(&b)), b);
            assert_eq!(to_bigint(from_bigint::<M521>(&b)), b);
        }
        let wide = BigInt::from(3u32) << 300u32;
        assert_eq!(to_bigint(from_bigint::<M521>(&-wide.clone())), -wide);
    }
}
