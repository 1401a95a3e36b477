//! A planned job compiled to a [`Circuit`]: every party's local aggregates (and DP noise)
//! shared and range-checked, summed, then the kind's formula on shares; only the released
//! values are outputs.
//!
//! # Exact releases (counts, sums, means, variances, histograms: the privacy rule)
//!
//! Divisions happen on shares, so only the statistic is opened (not the count or the sums
//! behind it): [`ratio`] computes num/den with one normalised reciprocal
//! ([`Circuit::norm_reciprocal`], working precision [`PRECISION`] bits) and one truncation
//! to [`OUT_FRAC`] fractional bits. Error: |result − num/den| ≤ |num/den|·2^(−P+3) + 2^(−F)
//! with P = [`PRECISION`], F = [`OUT_FRAC`]. A zero denominator (an empty cell) is flagged
//! in a separate output and its value is 0.
//!
//! - mean: Σx / n; variance: (n·Σx² − (Σx)²) / (n(n − 1)) with the count and mean;
//! - suppression: each party enters one keep bit per cell (checked to be 0 or 1; computed
//!   alone by [`super::rule`]); the product over all parties is the cell's keep bit, and
//!   every output of the cell — values and flags — is multiplied by it on shares. Only the
//!   product and the products are opened.
//!
//! Weighted means, correlations, covariances, regressions, quantiles, min and max have no
//! exact circuit: they are released only with DP.
//!
//! # DP releases
//!
//! Each party adds its noise vector (one sample per released statistic, range-checked
//! |z| ≤ M) to its aggregates; the noisy sufficient statistics (after k-anonymity
//! suppression on the **noisy** counts) are opened and the kind's formula is applied to
//! them as post-processing. Quantiles, min and max open only the answer: a binary search
//! over the noisy cumulative histogram with one comparison per level (O(log bins)), the
//! current node held as a secret one-hot vector.

use super::local::{CheckGroup, Shape, Term, width};
use super::spec::Analysis;
use super::{Plan, Release};
use crate::error::MpcError;
use crate::field::Field;
use crate::gadgets::{Circuit, from_bigint};
use crate::program::Reg;
use num_bigint::BigInt;

/// Working precision of divisions on shares (bits).
pub const PRECISION: u32 = 64;
/// Fractional bits of values released by exact divisions.
pub const OUT_FRAC: u32 = 40;

/// Names of the outputs, in program order (the finishing step reads them by name).
pub type OutputNames = Vec<String>;

fn bits_of(v: &BigInt) -> u32 {
    u32::try_from(v.bits()).unwrap_or(u32::MAX)
}

/// `k` copies of a length-1 register.
fn repeat<F: Field>(c: &mut Circuit<F>, r: Reg, k: usize) -> Reg {
    if k == 1 {
        return r;
    }
    let parts = vec![r; k];
    c.b().concat(&parts)
}

/// num/den on shares (see the module docs): `num` signed of `kn` bits, `den` ≥ 0 of `kd`
/// bits, of length 1 (broadcast) or num's length. Returns (value·2^F, [den = 0]).
pub fn ratio<F: Field>(
    c: &mut Circuit<F>,
    num: Reg,
    kn: u32,
    den: Reg,
    kd: u32,
    what: &str,
) -> (Reg, Reg) {
    let len = c.len(num);
    let kd = kd.max(2);
    let z = c.eqz(den, kd + 1, what);
    let den1 = c.b().add(den, z);
    let (v, w) = c.norm_reciprocal(den1, kd, PRECISION, what);
    let (v, w) = if c.len(den) == 1 && len > 1 {
        (repeat(c, v, len), repeat(c, w, len))
    } else {
        (v, w)
    };
    // 1/den ≈ v·w/2^(kd+P): num·v·w has kn + kd + P + 1 bits.
    let nv = c.b().mul(num, v);
    let nvw = c.b().mul(nv, w);
    let out = c.shift(
        nvw,
        kn + kd + PRECISION + 2,
        i64::from(OUT_FRAC) - i64::from(kd + PRECISION),
        what,
    );
    let nz = {
        let one = c.scalar(F::one());
        c.b().sub(one, z)
    };
    let nz = if c.len(z) == 1 && len > 1 {
        repeat(c, nz, len)
    } else {
        nz
    };
    let out = c.b().mul(out, nz);
    (out, z)
}

/// Refuses (through the circuit's limit error) an exact intermediate that does not fit the
/// field as a signed integer.
fn fits<F: Field>(c: &mut Circuit<F>, what: &str, bound: &BigInt) {
    let bits = bits_of(bound) + 1;
    if bits + 1 >= F::BITS {
        c.refuse(
            what,
            u64::from(bits),
            u64::from(F::BITS - 2),
            format!("an exact integer in {} must stay below p/2", F::NAME),
        );
    }
}

/// Builds the job's circuit; returns the output names.
pub fn build<F: Field>(plan: &Plan, c: &mut Circuit<F>) -> Result<OutputNames, MpcError> {
    let n = plan.n;
    let layout = &plan.layout;
    let len = layout.len();
    let groups = layout.groups;
    c.set_advice(plan.advice());
    // ---- inputs, range checks --------------------------------------------------------
    let mut total: Option<Reg> = None;
    let checks: &[CheckGroup] = &plan.checks;
    let dp = plan.release == Release::Dp;
    let cells = layout.cells();
    let mut keeps: Vec<Reg> = Vec::new();
    for p in 0..n {
        let s = c.b().input(p, len);
        let noise = plan.noise.as_ref().map(|_| c.b().input(p, len));
        if !dp {
            // The party's keep bit per cell (the privacy rule, DESIGN §6 item 4): a checked
            // shared input; only the product over all parties is ever opened.
            let kb = c.b().input(p, cells);
            let one = c.scalar(F::one());
            let km1 = c.b().sub(kb, one);
            let sq = c.b().mul(kb, km1);
            c.b()
                .assert_zero(sq, &plan.check_name(p, "keep bits are 0 or 1"));
            keeps.push(kb);
        }
        for g in checks {
            let (lo, hi, w) = check_bounds(g, groups);
            let hint = c.b().input(p, 2 * w as usize * lo.len());
            let mut parts = Vec::with_capacity(g.terms.len());
            for (term, _) in &g.terms {
                parts.push(term_reg(c, s, term, groups));
            }
            let x = c.b().concat(&parts);
            c.assert_range(x, &lo, &hi, w, hint, &plan.check_name(p, &g.what));
        }
        if let Some(z) = noise {
            let (lo, hi, w) = plan.noise_ranges();
            let hint = c.b().input(p, 2 * w as usize * len);
            c.assert_range(
                z,
                &lo,
                &hi,
                w,
                hint,
                &plan.check_name(p, "DP noise within ±M = ⌈10σ⌉"),
            );
        }
        let sp = match noise {
            Some(z) => c.b().add(s, z),
            None => s,
        };
        total = Some(match total {
            Some(t) => c.b().add(t, sp),
            None => sp,
        });
    }
    // Everything below depends on checked inputs only.
    c.checkpoint();
    let Some(t) = total else {
        return Err(MpcError::Program("a job needs parties".into()));
    };
    let bounds = plan.total_bounds();
    let stat_names = super::local::stat_names(&plan.spec, layout);
    for (k, b) in bounds.iter().enumerate() {
        let name = stat_names.get(k).map_or("a statistic", String::as_str);
        fits(c, &format!("the total {name} over all parties"), b);
    }
    let stat = |c: &mut Circuit<F>, k: usize| c.b().slice(t, k * groups, groups);
    let mut names = Vec::new();
    let out = |c: &mut Circuit<F>, names: &mut Vec<String>, name: &str, r: Reg| {
        c.b().output_to(r, plan.spec.recipients.clone());
        names.push(name.to_owned());
    };
    // Exact: every cell's keep bit is the product of the parties' bits.
    let mut product: Option<Reg> = None;
    for &kb in &keeps {
        product = Some(match product {
            Some(a) => c.b().mul(a, kb),
            None => kb,
        });
    }
    // DP: keep = [noisy count ≥ k] per group (bins: per bin), post-processing of noisy
    // counts. Exact: the parties' product.
    let keep = |c: &mut Circuit<F>, counts: Reg, bound: &BigInt| -> Option<Reg> {
        if !dp {
            return product;
        }
        let k = plan.spec.k_anonymity?;
        let kb = bits_of(bound).max(bits_of(&BigInt::from(k))) + 2;
        let kc = c.scalar(F::from_u64(k));
        Some(c.le(kc, counts, kb, "k-anonymity: a (noisy) count against k"))
    };
    match (&layout.shape, &plan.spec.analysis) {
        (Shape::Bins { bins }, Analysis::Histogram { .. }) => {
            let counts = t;
            let bound = bounds.iter().max().cloned().unwrap_or_default();
            match keep(c, counts, &bound) {
                Some(kp) => {
                    let kept = c.b().mul(counts, kp);
                    out(c, &mut names, "counts", kept);
                    out(c, &mut names, "keep", kp);
                }
                None => out(c, &mut names, "counts", counts),
            }
            let _ = bins;
        }
        (Shape::Bins { bins }, a) => {
            // DP only (the spec refuses exact): binary searches over the noisy histogram.
            let bins = *bins;
            let bound = bounds.iter().fold(BigInt::from(0), |a, b| a + b);
            let (targets, reverse): (Vec<(u128, u128)>, bool) = match a {
                Analysis::Quantiles { quantiles, .. } => {
                    (quantiles.iter().map(|q| q.as_fraction()).collect(), false)
                }
                Analysis::Min { min_count, .. } => (vec![(u128::from(*min_count), 0)], false),
                Analysis::Max { min_count, .. } => (vec![(u128::from(*min_count), 0)], true),
                _ => (Vec::new(), false),
            };
            let mut cums = Vec::with_capacity(bins);
            let mut acc: Option<Reg> = None;
            for b in 0..bins {
                let i = if reverse { bins - 1 - b } else { b };
                let h = c.b().slice(t, i, 1);
                let next = match acc {
                    Some(a) => c.b().add(a, h),
                    None => h,
                };
                cums.push(next);
                acc = Some(next);
            }
            let levels = bins.next_power_of_two().trailing_zeros();
            let padded = 1usize << levels;
            let Some(&last) = cums.last() else {
                return Err(MpcError::Program("a histogram needs bins".into()));
            };
            while cums.len() < padded {
                cums.push(last);
            }
            let mut answers = Vec::new();
            for &(num, den) in &targets {
                // den = 0: an absolute target `num` (min/max); else the fraction num/den of
                // the noisy total.
                let (scale_c, target, kb) = if den == 0 {
                    let tc = c.scalar(F::from_u128(num));
                    (
                        F::one(),
                        tc,
                        bits_of(&bound).max(bits_of(&BigInt::from(num))) + 2,
                    )
                } else {
                    let tn = c.b().scale(last, F::from_u128(num));
                    let kb = bits_of(&(bound.clone() * BigInt::from(num.max(den)))) + 3;
                    (F::from_u128(den), tn, kb)
                };
                let mut e: Option<Reg> = None;
                for s in 0..levels {
                    let span = padded >> s;
                    let mids: Vec<Reg> = (0..1usize << s)
                        .map(|j| cums[j * span + span / 2 - 1])
                        .collect();
                    let mv = c.b().concat(&mids);
                    let val = match e {
                        Some(e) => c.b().dot(e, mv),
                        None => mv,
                    };
                    let scaled = c.b().scale(val, scale_c);
                    // go left = [target ≤ den·C_mid].
                    let go = c.le(
                        target,
                        scaled,
                        kb,
                        "quantile search: a noisy cumulative count against its target",
                    );
                    e = Some(match e {
                        None => {
                            let one = c.scalar(F::one());
                            let right = c.b().sub(one, go);
                            c.b().concat(&[go, right])
                        }
                        Some(e) => {
                            let m = 1usize << s;
                            let go_r = repeat(c, go, m);
                            let left = c.b().mul(e, go_r);
                            let right = c.b().sub(e, left);
                            let mut parts = Vec::with_capacity(2 * m);
                            for j in 0..m {
                                let l = c.b().slice(left, j, 1);
                                let r = c.b().slice(right, j, 1);
                                parts.push(l);
                                parts.push(r);
                            }
                            c.b().concat(&parts)
                        }
                    });
                }
                let idx = match e {
                    Some(e) => {
                        let w: Vec<F> = (0..padded as u64).map(F::from_u64).collect();
                        let wc = c.b().constant(w);
                        let prod = c.b().mul(e, wc);
                        c.b().sum(prod)
                    }
                    None => c.scalar(F::zero()),
                };
                answers.push(idx);
            }
            if answers
                .iter()
                .any(|&a| !c.b().info(a).is_some_and(|i| i.shared))
            {
                // A single bin: the answer is bin 0 whatever the data.
                return Err(MpcError::Program(
                    "a quantile over one bin says nothing: declare at least two bins".into(),
                ));
            }
            let all = c.b().concat(&answers);
            out(c, &mut names, "bins", all);
        }
        (Shape::Moments { dims, second }, a) => {
            let count = stat(c, layout.count());
            let cb = bounds[layout.count()].clone();
            let kp = keep(c, count, &cb);
            if dp {
                // Noisy sufficient statistics, suppressed per group on the noisy count.
                match kp {
                    Some(kp) => {
                        let kr = repeat_vec(c, kp, layout.per_group());
                        let kept = c.b().mul(t, kr);
                        out(c, &mut names, "noisy", kept);
                        out(c, &mut names, "keep", kp);
                    }
                    None => out(c, &mut names, "noisy", t),
                }
                return Ok(names);
            }
            if let Some(kp) = kp {
                out(c, &mut names, "keep", kp);
            }
            let gate = |c: &mut Circuit<F>, r: Reg| -> Reg {
                match kp {
                    Some(kp) => {
                        let k = if c.len(r) == c.len(kp) {
                            kp
                        } else {
                            repeat_vec(c, kp, c.len(r) / c.len(kp).max(1))
                        };
                        c.b().mul(r, k)
                    }
                    None => r,
                }
            };
            let nb = bits_of(&cb);
            let sb = |k: usize| bits_of(&bounds[k]);
            match a {
                Analysis::Count { .. } => {
                    let v = gate(c, count);
                    out(c, &mut names, "count", v);
                }
                Analysis::Sum { .. } => {
                    let s = stat(c, layout.first(0));
                    let v = gate(c, s);
                    out(c, &mut names, "sum", v);
                }
                Analysis::Mean { .. } => {
                    let s = stat(c, layout.first(0));
                    let (m, z) = ratio(
                        c,
                        s,
                        sb(layout.first(0)) + 1,
                        count,
                        nb,
                        "the mean's division",
                    );
                    let m = gate(c, m);
                    out(c, &mut names, "mean", m);
                    {
                        let g = gate(c, z);
                        out(c, &mut names, "empty", g);
                    }
                }
                Analysis::Variance { .. } => {
                    let s = stat(c, layout.first(0));
                    let q = stat(c, layout.second(0, 0));
                    let nq = c.b().mul(count, q);
                    let ss = c.b().mul(s, s);
                    let v = c.b().sub(nq, ss);
                    let one = c.scalar(F::one());
                    let nm1 = c.b().sub(count, one);
                    let nn = c.b().mul(count, nm1);
                    let kv = nb + sb(layout.second(0, 0)) + 1;
                    fits(c, "n·Σx² of the variance", &(BigInt::from(1u8) << kv));
                    let nums = c.b().concat(&[s, v]);
                    let dens = c.b().concat(&[count, nn]);
                    let kn = kv.max(sb(layout.first(0))) + 1;
                    let (r, z) = ratio(c, nums, kn, dens, 2 * nb + 1, "the variance's divisions");
                    let cnt = gate(c, count);
                    let r = gate(c, r);
                    out(c, &mut names, "count", cnt);
                    out(c, &mut names, "mean_variance", r);
                    {
                        let g = gate(c, z);
                        out(c, &mut names, "empty", g);
                    }
                }
                _ => {
                    return Err(MpcError::Program(format!(
                        "kind {} has no exact circuit: it is released only with DP",
                        a.kind()
                    )));
                }
            }
            let _ = (dims, second);
        }
    }
    Ok(names)
}

/// A length-G register repeated `k` times (stat-major: [r, r, …]).
fn repeat_vec<F: Field>(c: &mut Circuit<F>, r: Reg, k: usize) -> Reg {
    if k <= 1 {
        return r;
    }
    let parts = vec![r; k];
    c.b().concat(&parts)
}

/// Per-element bounds and the width of a check group (terms repeated over groups).
pub fn check_bounds(g: &CheckGroup, groups: usize) -> (Vec<BigInt>, Vec<BigInt>, u32) {
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    let mut w = 1;
    for (_, top) in &g.terms {
        w = w.max(width(top));
        for _ in 0..groups {
            lo.push(BigInt::from(0));
            hi.push(top.clone());
        }
    }
    (lo, hi, w)
}

/// The register of a term over all groups.
fn term_reg<F: Field>(c: &mut Circuit<F>, s: Reg, term: &Term, groups: usize) -> Reg {
    let at = |c: &mut Circuit<F>, k: usize| c.b().slice(s, k * groups, groups);
    match term {
        Term::Lin(cs) => {
            let mut acc: Option<Reg> = None;
            for &(k, coef) in cs {
                let v = at(c, k);
                let v = c.b().scale(v, from_bigint(&BigInt::from(coef)));
                acc = Some(match acc {
                    Some(a) => c.b().add(a, v),
                    None => v,
                });
            }
            acc.unwrap_or_else(|| c.scalar(F::zero()))
        }
        Term::Cs { sq, sum } => {
            let n = at(c, 0);
            let q = at(c, *sq);
            let s1 = at(c, *sum);
            let a = c.b().mul(n, q);
            let b = c.b().mul(s1, s1);
            c.b().sub(a, b)
        }
    }
}
