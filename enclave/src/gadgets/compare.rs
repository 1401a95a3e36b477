//! Comparison and bit decomposition on shares (Catrina–de Hoogh 2010 family; random bits by
//! squaring).
//!
//! Owns: [`Circuit::bit_lt`] (public < shared bits), [`Circuit::mod2m`], [`Circuit::trunc`]
//! (exact), [`Circuit::ltz`], [`Circuit::lt`], [`Circuit::le`], [`Circuit::eqz`],
//! [`Circuit::eq`], [`Circuit::min`], [`Circuit::max`], [`Circuit::select`],
//! [`Circuit::bit_decompose`], [`Circuit::prefix_or_from_top`] and
//! [`Circuit::msb_onehot`]. Inputs are "K-bit signed" values (see [`super`]); a value out
//! of that range gives a wrong result (never a leak beyond the 2^−κ of its mask), which is
//! why inputs are range-checked exactly first ([`super::range`]).
//!
//! # Cost (per element of the batch; rounds are per batch)
//!
//! Random bits are drawn at the start of the program (2 rounds there, shared by every
//! gadget) and not counted below; each costs 1 multiplication and 1 perfectly masked
//! opening. "Mults" are shared × shared products (each twice the traffic in malicious mode).
//! ⌈lg x⌉ is the ceiling of log2 x.
//!
//! | gadget | random bits | masked openings | mults | rounds |
//! |---|---|---|---|---|
//! | `bit_lt` (m bits) | — | — | 2m − 3 | ⌈lg m⌉ |
//! | `mod2m(a, K, m)`, `trunc` | m | 1 | 2m − 3 | 1 + ⌈lg m⌉ |
//! | `ltz(a, K)` | K − 1 | 1 | 2K − 5 | 1 + ⌈lg (K − 1)⌉ |
//! | `lt(a, b, K)`, `le` | K | 1 | 2K − 3 | 1 + ⌈lg K⌉ |
//! | `eqz(a, K)` | K | 1 | K − 1 | 1 + ⌈lg K⌉ |
//! | `min`/`max(a, b, K)` | K | 1 | 2K − 2 | 2 + ⌈lg K⌉ |
//! | `bit_decompose(a, K)` | K | 1 | ≈ 2K·⌈lg K⌉ + K | 2 + ⌈lg K⌉ |
//! | `prefix_or_from_top` (K bits) | — | — | ≈ K·⌈lg K⌉ | ⌈lg K⌉ |
//!
//! At K = 32: `ltz` is 31 random bits, 1 opening, 59 multiplications, 6 rounds. A checkpoint
//! (5 rounds) is added before a masked opening whose operand depends on an unverified product
//! of products (see [`super`]), e.g. when a comparison's result feeds another comparison.

use super::{Circuit, inv_pow2, pow2};
use crate::field::Field;
use crate::program::{PublicFn, Reg};

impl<F: Field> Circuit<F> {
    /// `[c < r]` for a public m-bit integer `c` (its bits, public registers) and a shared
    /// one (its bits `r`, shared): the carry out of r + (2^m − 1 − c), computed as a tree of
    /// (generate, propagate) pairs. ⌈lg m⌉ rounds, 2m − 3 multiplications (m ≥ 2).
    pub fn bit_lt(&mut self, c: &[Reg], r: &[Reg]) -> Reg {
        let one = self.scalar(F::one());
        // Level 0: ĉ = 1 − c; g = r·ĉ, p = r ⊕ ĉ = ĉ + r − 2·r·ĉ (linear: ĉ is public).
        let mut nodes: Vec<(Reg, Reg)> = c
            .iter()
            .zip(r)
            .map(|(&ci, &ri)| {
                let cc = self.b.sub(one, ci);
                let g = self.b.mul(ri, cc);
                let s = self.b.add(cc, ri);
                let g2 = self.b.scale(g, F::from_u64(2));
                let p = self.b.sub(s, g2);
                (g, p)
            })
            .collect();
        while nodes.len() > 1 {
            let last_level = nodes.len() == 2;
            // All products of the level first, so they share one round.
            let mut prods = Vec::with_capacity(nodes.len() / 2);
            for pair in nodes.chunks(2) {
                if let [lo, hi] = pair {
                    let pg = self.b.mul(hi.1, lo.0);
                    let pp = if last_level {
                        None
                    } else {
                        Some(self.b.mul(hi.1, lo.1))
                    };
                    prods.push((pg, pp));
                }
            }
            let mut next = Vec::with_capacity(nodes.len().div_ceil(2));
            for (pair, (pg, pp)) in nodes.chunks(2).zip(&prods) {
                if let [_, hi] = pair {
                    let g = self.b.add(hi.0, *pg);
                    next.push((g, pp.unwrap_or(g)));
                }
            }
            if nodes.len() % 2 == 1
                && let Some(&top) = nodes.last()
            {
                next.push(top);
            }
            nodes = next;
        }
        match nodes.first() {
            Some(&(g, _)) => g,
            None => {
                self.b.fail("bit_lt of zero bits".into());
                one
            }
        }
    }

    /// `a mod 2^m` (the non-negative residue) for a K-bit signed `a`, 1 ≤ m < K.
    /// Open c = 2^(K−1) + a + r' + 2^m·r'' (r' from m random bits, r'' a PRSS integer);
    /// then a mod 2^m = (c mod 2^m) − r' + 2^m·[c mod 2^m < r'].
    pub fn mod2m(&mut self, a: Reg, k: u32, m: u32, what: &str) -> Reg {
        if m == 0 || m >= k {
            self.b.fail(format!(
                "mod2m of {what}: need 1 ≤ m < K, got m = {m}, K = {k}"
            ));
            return a;
        }
        let len = self.len(a);
        let (c, bits, r1) = self.masked_open_low(a, k, m, what);
        let low = self.b.public_map(c, PublicFn::LowBits(m));
        let cbits_all = self.b.public_map(c, PublicFn::Bits(m));
        let cbits: Vec<Reg> = (0..m as usize)
            .map(|i| self.b.slice(cbits_all, i * len, len))
            .collect();
        let u = self.bit_lt(&cbits, &bits);
        let d = self.b.sub(low, r1);
        let u2 = self.b.scale(u, pow2(m));
        self.b.add(d, u2)
    }

    /// Opens 2^(K−1) + a + r' + 2^m·r'' and returns (the opened value, r's bits, r').
    fn masked_open_low(&mut self, a: Reg, k: u32, m: u32, what: &str) -> (Reg, Vec<Reg>, Reg) {
        let len = self.len(a);
        self.check_masked(what, k);
        let bits = self.random_bits(len, m);
        let r1 = self.from_bits(&bits).unwrap_or(a);
        let hi_bits = (k + self.kappa).saturating_sub(m).max(1);
        let r2 = self.b.random_int(len, hi_bits);
        let r2s = self.b.scale(r2, pow2(m));
        let mask = self.b.add(r1, r2s);
        let shifted = self.add_scalar(a, pow2(k - 1));
        let masked = self.b.add(shifted, mask);
        let mut parts = bits.clone();
        parts.push(r2);
        let c = self.open_masked(masked, a, &parts);
        (c, bits, r1)
    }

    /// ⌊a / 2^m⌋ exactly, for a K-bit signed `a`, 1 ≤ m < K.
    pub fn trunc(&mut self, a: Reg, k: u32, m: u32, what: &str) -> Reg {
        let low = self.mod2m(a, k, m, what);
        let d = self.b.sub(a, low);
        self.b.scale(d, inv_pow2(m))
    }

    /// `[a < 0]` for a K-bit signed `a` (K ≥ 2): −⌊a / 2^(K−1)⌋.
    pub fn ltz(&mut self, a: Reg, k: u32, what: &str) -> Reg {
        let t = self.trunc(a, k, k - 1, what);
        self.b.neg(t)
    }

    /// `[a < b]` for K-bit signed `a`, `b` (their difference has K + 1 bits).
    pub fn lt(&mut self, a: Reg, b: Reg, k: u32, what: &str) -> Reg {
        let d = self.b.sub(a, b);
        self.ltz(d, k + 1, what)
    }

    /// `[a ≤ b]` = 1 − `[b < a]`.
    pub fn le(&mut self, a: Reg, b: Reg, k: u32, what: &str) -> Reg {
        let gt = self.lt(b, a, k, what);
        let one = self.scalar(F::one());
        self.b.sub(one, gt)
    }

    /// `[a = 0]` for a K-bit signed `a`. Open c = 2^(K−1) + a + r' + 2^K·r'' with r' from K
    /// random bits; a = 0 exactly when the low K bits of c + 2^(K−1) equal r'; the AND of
    /// the K bit equalities is a product tree.
    pub fn eqz(&mut self, a: Reg, k: u32, what: &str) -> Reg {
        let len = self.len(a);
        // c + 2^(K−1) < 2^(K+1) + C·2^(K+κ): check one bit wider.
        self.check_masked(what, k + 1);
        let bits = self.random_bits(len, k);
        let r1 = self.from_bits(&bits).unwrap_or(a);
        let r2 = self.b.random_int(len, self.kappa);
        let r2s = self.b.scale(r2, pow2(k));
        let mask = self.b.add(r1, r2s);
        let shifted = self.add_scalar(a, pow2(k - 1));
        let masked = self.b.add(shifted, mask);
        let mut parts = bits.clone();
        parts.push(r2);
        let c = self.open_masked(masked, a, &parts);
        let c2 = self.add_scalar(c, pow2(k - 1));
        let xs_all = self.b.public_map(c2, PublicFn::Bits(k));
        let one = self.scalar(F::one());
        // e_i = 1 − (x_i ⊕ r_i) = 1 − x_i − r_i + 2·x_i·r_i (x public: linear).
        let mut terms: Vec<Reg> = bits
            .iter()
            .enumerate()
            .map(|(i, &ri)| {
                let xi = self.b.slice(xs_all, i * len, len);
                let xr = self.b.mul(ri, xi);
                let xr2 = self.b.scale(xr, F::from_u64(2));
                let s = self.b.add(xi, ri);
                let d = self.b.sub(s, xr2);
                self.b.sub(one, d)
            })
            .collect();
        while terms.len() > 1 {
            let mut next: Vec<Reg> = terms
                .chunks_exact(2)
                .map(|p| self.b.mul(p[0], p[1]))
                .collect();
            if terms.len() % 2 == 1
                && let Some(&l) = terms.last()
            {
                next.push(l);
            }
            terms = next;
        }
        terms.first().copied().unwrap_or(one)
    }

    /// `[a = b]` for K-bit signed `a`, `b`.
    pub fn eq(&mut self, a: Reg, b: Reg, k: u32, what: &str) -> Reg {
        let d = self.b.sub(a, b);
        self.eqz(d, k + 1, what)
    }

    /// `bit ? x : y` for a shared bit (1 multiplication).
    pub fn select(&mut self, bit: Reg, x: Reg, y: Reg) -> Reg {
        let d = self.b.sub(x, y);
        let p = self.b.mul(bit, d);
        self.b.add(y, p)
    }

    /// `min(a, b)` for K-bit signed values.
    pub fn min(&mut self, a: Reg, b: Reg, k: u32, what: &str) -> Reg {
        let lt = self.lt(a, b, k, what);
        self.select(lt, a, b)
    }

    /// `max(a, b)` for K-bit signed values.
    pub fn max(&mut self, a: Reg, b: Reg, k: u32, what: &str) -> Reg {
        let lt = self.lt(a, b, k, what);
        self.select(lt, b, a)
    }

    /// The K bits of `a` ∈ [0, 2^K), least significant first. Open c = a + r' + 2^K·r'';
    /// then a = (c − r') mod 2^K, whose bits come from adding c, the complement of r' and a
    /// carry-in of 1: all carries by a Kogge–Stone prefix over (generate, propagate) pairs,
    /// then one XOR round.
    pub fn bit_decompose(&mut self, a: Reg, k: u32, what: &str) -> Vec<Reg> {
        let len = self.len(a);
        self.check_masked(what, k + 1);
        let bits = self.random_bits(len, k);
        let r1 = self.from_bits(&bits).unwrap_or(a);
        let r2 = self.b.random_int(len, self.kappa);
        let r2s = self.b.scale(r2, pow2(k));
        let mask = self.b.add(r1, r2s);
        let masked = self.b.add(a, mask);
        let mut parts = bits.clone();
        parts.push(r2);
        let c = self.open_masked(masked, a, &parts);
        let cb_all = self.b.public_map(c, PublicFn::Bits(k));
        let one = self.scalar(F::one());
        // ~r_i = 1 − r_i; g_i = c_i·~r_i, p_i = c_i ⊕ ~r_i = c_i + ~r_i − 2·c_i·~r_i.
        let mut g = Vec::with_capacity(k as usize);
        let mut p = Vec::with_capacity(k as usize);
        for (i, &ri) in bits.iter().enumerate() {
            let ci = self.b.slice(cb_all, i * len, len);
            let nr = self.b.sub(one, ri);
            let gi = self.b.mul(nr, ci);
            let s = self.b.add(ci, nr);
            let g2 = self.b.scale(gi, F::from_u64(2));
            g.push(gi);
            p.push(self.b.sub(s, g2));
        }
        let bitp = p.clone();
        // Kogge–Stone: after the loop, (g[i], p[i]) covers bits 0..=i.
        let mut d = 1;
        while d < k as usize {
            let mut prods = Vec::new();
            for i in d..k as usize {
                let pg = self.b.mul(p[i], g[i - d]);
                let pp = self.b.mul(p[i], p[i - d]);
                prods.push((i, pg, pp));
            }
            for (i, pg, pp) in prods {
                g[i] = self.b.add(g[i], pg);
                p[i] = pp;
            }
            d *= 2;
        }
        // Carry into bit i (i ≥ 1) with carry-in 1: G(0..i−1) + P(0..i−1).
        let mut out = Vec::with_capacity(k as usize);
        let mut xors = Vec::new();
        for (i, &pi) in bitp.iter().enumerate() {
            if i == 0 {
                out.push(self.b.sub(one, pi));
                continue;
            }
            let carry = self.b.add(g[i - 1], p[i - 1]);
            xors.push((pi, carry, self.b.mul(pi, carry)));
        }
        for (pi, carry, pc) in xors {
            let s = self.b.add(pi, carry);
            let pc2 = self.b.scale(pc, F::from_u64(2));
            out.push(self.b.sub(s, pc2));
        }
        out
    }

    /// o_j = OR of bits j.. (from the top down), by a Kogge–Stone scan: ⌈lg K⌉ rounds.
    pub fn prefix_or_from_top(&mut self, bits: &[Reg]) -> Vec<Reg> {
        let k = bits.len();
        let mut o = bits.to_vec();
        let mut d = 1;
        while d < k {
            let prods: Vec<(usize, Reg)> = (0..k - d)
                .map(|j| (j, self.b.mul(o[j], o[j + d])))
                .collect();
            for (j, pr) in prods {
                let s = self.b.add(o[j], o[j + d]);
                o[j] = self.b.sub(s, pr);
            }
            d *= 2;
        }
        o
    }

    /// The one-hot position of the most significant set bit of `a` ∈ [1, 2^K): e_j = 1 iff
    /// 2^j ≤ a < 2^(j+1). Bit decomposition, then e_j = o_j − o_(j+1) of the top-down OR.
    pub fn msb_onehot(&mut self, a: Reg, k: u32, what: &str) -> Vec<Reg> {
        let bits = self.bit_decompose(a, k, what);
        let o = self.prefix_or_from_top(&bits);
        (0..o.len())
            .map(|j| match o.get(j + 1) {
                Some(&next) => self.b.sub(o[j], next),
                None => o[j],
            })
            .collect()
    }
}
