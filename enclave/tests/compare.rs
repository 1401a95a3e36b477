//! Comparison and bit decomposition on shares against plaintext: exhaustive on small ranges,
//! random (with the extremes) on large ones, at n = 3 and n = 5; limits refused while
//! building; round and multiplication counts as documented.

mod common;

use common::{elems, ints, outputs, run};
use parley_enclave::field::{Field, M127, M521};
use parley_enclave::gadgets::{Circuit, KAPPA};
use parley_enclave::{LimitError, MpcError};
use proptest::prelude::*;

/// Every comparison gadget on a (party 0) and b (party 1), K-bit signed.
fn all_gadgets<F: Field>(
    n: usize,
    t: usize,
    k: u32,
    m: u32,
    len: usize,
) -> parley_enclave::program::Program<F> {
    let (program, (), _) = Circuit::<F>::build(n, t, KAPPA, |c| {
        let a = c.b().input(0, len);
        let b = c.b().input(1, len);
        let outs = [
            c.ltz(a, k, "a"),
            c.lt(a, b, k, "a − b"),
            c.le(a, b, k, "b − a"),
            c.eqz(a, k, "a"),
            c.eq(a, b, k, "a − b"),
            c.min(a, b, k, "a − b"),
            c.max(a, b, k, "a − b"),
            c.mod2m(a, k, m, "a"),
            c.trunc(a, k, m, "a"),
        ];
        for o in outs {
            c.b().output(o);
        }
        // Bits of a + 2^(K−1) ∈ [0, 2^K).
        let off = c.add_scalar(a, parley_enclave::gadgets::pow2(k - 1));
        let bits = c.bit_decompose(off, k, "a + 2^(K−1)");
        let all = c.b().concat(&bits);
        c.b().output(all);
        Ok(())
    })
    .expect("within limits");
    program
}

fn expected(a: &[i128], b: &[i128], k: u32, m: u32) -> Vec<Vec<i128>> {
    let z = |f: &dyn Fn(i128, i128) -> i128| a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    let md = 1i128 << m;
    let mut out: Vec<Vec<i128>> = vec![
        z(&|x, _| i128::from(x < 0)),
        z(&|x, y| i128::from(x < y)),
        z(&|x, y| i128::from(x <= y)),
        z(&|x, _| i128::from(x == 0)),
        z(&|x, y| i128::from(x == y)),
        z(&|x, y| x.min(y)),
        z(&|x, y| x.max(y)),
        z(&|x, _| x.rem_euclid(md)),
        z(&|x, _| x.div_euclid(md)),
    ];
    let mut bits = Vec::new();
    for i in 0..k {
        for &x in a {
            bits.push(((x + (1i128 << (k - 1))) >> i) & 1);
        }
    }
    out.push(bits);
    out
}

fn check<F: Field>(n: usize, t: usize, k: u32, m: u32, a: Vec<i128>, b: Vec<i128>, seed: u64) {
    let len = a.len();
    let program = all_gadgets::<F>(n, t, k, m, len);
    let mut inputs = vec![vec![elems::<F>(&a)], vec![elems::<F>(&b)]];
    inputs.resize(n, vec![]);
    let got: Vec<Vec<i128>> = outputs(&run(t, program, inputs, seed))
        .iter()
        .map(|v| ints(v))
        .collect();
    let want = expected(&a, &b, k, m);
    let names = [
        "ltz", "lt", "le", "eqz", "eq", "min", "max", "mod2m", "trunc", "bits",
    ];
    for ((g, w), name) in got.iter().zip(&want).zip(names) {
        assert_eq!(g, w, "{name} at n = {n}, K = {k}");
    }
}

#[test]
fn exhaustive_on_four_bit_values() {
    let k = 4;
    let vals: Vec<i128> = (-8..8).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for &x in &vals {
        for &y in &vals {
            a.push(x);
            b.push(y);
        }
    }
    check::<M127>(3, 1, k, 2, a.clone(), b.clone(), 1);
    check::<M127>(5, 2, k, 3, a, b, 2);
}

fn extremes(k: u32) -> Vec<i128> {
    let h = 1i128 << (k - 1);
    vec![-h, -h + 1, -1, 0, 1, h - 2, h - 1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3))]

    #[test]
    fn random_wide_values_at_n3_and_n5(seed in any::<u64>(), raw in prop::collection::vec(any::<i64>(), 18)) {
        // n = 3: K = 63 (`eq` masks its (K + 1)-bit difference with one more bit: 65, the limit
        // there);
        // n = 5: K = 61.
        for (n, t, k) in [(3usize, 1usize, 63u32), (5, 2, 61)] {
            let h = 1i128 << (k - 1);
            let fit = |v: i64| i128::from(v).rem_euclid(2 * h) - h;
            let mut a: Vec<i128> = raw[..9].iter().map(|&v| fit(v)).collect();
            let mut b: Vec<i128> = raw[9..].iter().map(|&v| fit(v)).collect();
            // The extremes, against each other and equal pairs.
            let ex = extremes(k);
            a.extend(&ex);
            b.extend(ex.iter().rev());
            a.extend(&ex[..3]);
            b.extend(&ex[..3]);
            check::<M127>(n, t, k, 20, a, b, seed);
        }
    }
}

#[test]
fn the_wide_field_compares_hundreds_of_bits() {
    let k = 200;
    let h = 1i128 << 100;
    let a = vec![-h, h, 0, 12345, -1, h - 1];
    let b = vec![h, -h, 0, 12345, 0, h];
    // i128 covers |values| < 2^127, so compare 200-bit-declared values that happen to be
    // smaller; the masks and the bit decomposition still span all 200 bits.
    let len = a.len();
    let (program, (), info) = Circuit::<M521>::build(3, 1, KAPPA, |c| {
        let x = c.b().input(0, len);
        let y = c.b().input(1, len);
        let o = c.lt(x, y, k, "x − y");
        c.b().output(o);
        let e = c.eq(x, y, k, "x − y");
        c.b().output(e);
        Ok(())
    })
    .expect("fits 2^521 − 1");
    assert_eq!(info.widest_masked_bits, k + 2);
    let got = outputs(&run(
        1,
        program,
        vec![vec![elems(&a)], vec![elems(&b)], vec![]],
        9,
    ));
    assert_eq!(ints(&got[0]), vec![1, 0, 0, 0, 1, 1]);
    assert_eq!(ints(&got[1]), vec![0, 0, 1, 1, 0, 0]);
}

#[test]
fn too_wide_comparisons_are_refused_while_building() {
    let err = Circuit::<M127>::build(5, 2, KAPPA, |c| {
        let x = c.b().input(0, 1);
        let y = c.b().input(1, 1);
        let o = c.lt(x, y, 64, "the difference of the two ages");
        c.b().output(o);
        Ok(())
    })
    .expect_err("65 bits at n = 5");
    let MpcError::Limit(LimitError {
        value, bits, limit, ..
    }) = &err
    else {
        panic!("{err}");
    };
    assert_eq!(value, "the difference of the two ages");
    assert_eq!((*bits, *limit), (65, 63));
    let text = err.to_string();
    assert!(text.starts_with("job refused before it runs: the difference of the two ages needs 65 bits, but 63 are allowed"), "{text}");
    assert!(text.contains("κ = 60 and C(5, 2) = 10 key sets"), "{text}");
    // 2^61 − 1 has no room for κ = 60 at all.
    let err = Circuit::<parley_enclave::field::M61>::build(3, 1, KAPPA, |c| {
        let x = c.b().input(0, 1);
        let o = c.ltz(x, 8, "x");
        c.b().output(o);
        Ok(())
    })
    .expect_err("M61");
    assert!(err.to_string().contains("but 0 are allowed"), "{err}");
}

#[test]
fn costs_match_the_documented_counts() {
    // One ltz at K = 32 on a verified input: 31 random bits (31 squares), then a checkpoint
    // (the bits are verified with the input), 1 masked opening and 2K − 5 = 59 products.
    let (program, (), info) = Circuit::<M127>::build(3, 1, KAPPA, |c| {
        let x = c.b().input(0, 10);
        let o = c.ltz(x, 32, "x");
        c.b().output(o);
        Ok(())
    })
    .expect("fits");
    let s = program.stats();
    assert_eq!(info.random_bits, 31 * 10);
    assert_eq!(info.masked_openings, 10);
    assert_eq!(s.checkpoints, 1);
    assert_eq!(s.multiplications, 10 * (31 + 59));
    // Random bits: square, open (2 rounds); then the masked opening and ⌈lg 31⌉ = 5
    // levels of the carry tree.
    assert_eq!(s.rounds, 2 + 1 + 5);
    assert_eq!(s.opened, 10 * 31 + 10);
    // eqz at K = 16: K − 1 = 15 products in ⌈lg 16⌉ = 4 rounds after its opening.
    let (program, (), _) = Circuit::<M127>::build(3, 1, KAPPA, |c| {
        let x = c.b().input(0, 1);
        let o = c.eqz(x, 16, "x");
        c.b().output(o);
        Ok(())
    })
    .expect("fits");
    assert_eq!(program.stats().multiplications, 16 + 15);
    assert_eq!(program.stats().rounds, 2 + 1 + 4);
}
